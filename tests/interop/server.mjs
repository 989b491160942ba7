// oidc-provider as the real RFC 8705 and RFC 9449 peer for
// tower-token-binding's interop tests: an OAuth 2.0 authorization server that
// authenticates clients with mutual TLS or secrets and issues bound JWT access
// tokens (RFC 9068 `at+jwt` with `cnf.x5t#S256`, or `cnf.jkt` for DPoP) from
// the client credentials grant.
//
// Usage (every option can also come from the environment variable in
// brackets):
//
//   node server.mjs --cert server.pem --key server.key --ca ca.pem \
//     --clients clients.json [--default-resource https://api.test] \
//     [--token-ttl 600] [--mtls-aliases] [--dpop-nonce] [--opaque-tokens] \
//     [--ignore-stdin]
//
//   --cert, --key  [INTEROP_CERT, INTEROP_KEY]  the server certificate (PEM,
//                  may hold the chain) and its private key
//   --ca           [INTEROP_CA]  CA certificates (PEM) that `tls_client_auth`
//                  client certificates must chain to
//   --clients      [INTEROP_CLIENTS]  a JSON array of oidc-provider client
//                  metadata; see `loadClients` for the defaults filled in
//   --default-resource [INTEROP_DEFAULT_RESOURCE]  the audience of tokens
//                  requested without `resource` (default https://api.test)
//   --token-ttl    [INTEROP_TOKEN_TTL]  access token lifetime in seconds
//                  (default 600)
//   --mtls-aliases [INTEROP_MTLS_ALIASES=1]  publish RFC 8705 section 5
//                  `mtls_endpoint_aliases` under /mtls/ and ignore client
//                  certificates on the regular endpoints, like a deployment
//                  whose default endpoints do not do mutual TLS
//   --dpop-nonce   [INTEROP_DPOP_NONCE=1]  require DPoP proofs to carry a
//                  server nonce (RFC 9449 section 8; a fresh 32-byte
//                  nonceSecret per run): a proof without one gets
//                  `400 use_dpop_nonce` and a `DPoP-Nonce` header. DPoP
//                  itself is always on: a token request with a valid proof
//                  gets a token bound to its key (`cnf.jkt`, token_type DPoP)
//   --opaque-tokens [INTEROP_OPAQUE_TOKENS=1]  issue opaque access tokens
//                  (random strings the provider keeps) instead of JWTs, for
//                  resource servers that check them by token introspection
//                  (RFC 7662, always on); the introspection answer carries
//                  the binding (`cnf.x5t#S256` or `cnf.jkt`). Also turns on
//                  token revocation (RFC 7009) at /token/revocation
//   --ignore-stdin [INTEROP_IGNORE_STDIN=1]  keep running when stdin closes
//
// It listens on 127.0.0.1 with an ephemeral port, prints exactly one line to
// stdout, `listening on https://127.0.0.1:PORT` (the issuer), and runs until
// it is killed or its stdin closes. Everything else goes to stderr.

import * as crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as https from 'node:https';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

// stdout carries the one `listening on` line; oidc-provider prints its
// notices with console.info, so send all console output to stderr.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

function fail(message) {
  console.error(`interop server: ${message}`);
  process.exit(2);
}

function options() {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        cert: { type: 'string' },
        key: { type: 'string' },
        ca: { type: 'string' },
        clients: { type: 'string' },
        'default-resource': { type: 'string' },
        'token-ttl': { type: 'string' },
        'mtls-aliases': { type: 'boolean' },
        'dpop-nonce': { type: 'boolean' },
        'opaque-tokens': { type: 'boolean' },
        'ignore-stdin': { type: 'boolean' },
      },
      strict: true,
    }).values;
  } catch (err) {
    fail(err.message);
  }
  const env = process.env;
  const flag = (value) => value !== undefined && value !== '' && value !== '0' && value !== 'false';
  const required = (name, envName) => parsed[name] ?? env[envName] ?? fail(`--${name} (or ${envName}) is required`);
  const ttl = Number(parsed['token-ttl'] ?? env.INTEROP_TOKEN_TTL ?? 600);
  if (!Number.isSafeInteger(ttl) || ttl <= 0) {
    fail('--token-ttl must be a positive number of seconds');
  }
  return {
    cert: required('cert', 'INTEROP_CERT'),
    key: required('key', 'INTEROP_KEY'),
    ca: required('ca', 'INTEROP_CA'),
    clients: required('clients', 'INTEROP_CLIENTS'),
    defaultResource: parsed['default-resource'] ?? env.INTEROP_DEFAULT_RESOURCE ?? 'https://api.test',
    tokenTtl: ttl,
    mtlsAliases: parsed['mtls-aliases'] ?? flag(env.INTEROP_MTLS_ALIASES),
    dpopNonce: parsed['dpop-nonce'] ?? flag(env.INTEROP_DPOP_NONCE),
    opaqueTokens: parsed['opaque-tokens'] ?? flag(env.INTEROP_OPAQUE_TOKENS),
    ignoreStdin: parsed['ignore-stdin'] ?? flag(env.INTEROP_IGNORE_STDIN),
  };
}

// Client metadata from the JSON file, with what every interop client needs
// filled in unless given: the client credentials grant only, no redirects,
// certificate-bound access tokens. A `self_signed_tls_client_auth` client may
// list keys with only `x5c`: the public key parameters are taken from the
// first certificate.
function loadClients(path) {
  let clients;
  try {
    clients = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    fail(`cannot read the clients file ${path}: ${err.message}`);
  }
  if (!Array.isArray(clients)) {
    fail(`the clients file ${path} must hold a JSON array`);
  }
  return clients.map((client) => {
    const metadata = {
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      tls_client_certificate_bound_access_tokens: true,
      // The only signing key is ES256 (the default would be RS256).
      id_token_signed_response_alg: 'ES256',
      ...client,
    };
    if (metadata.jwks?.keys) {
      metadata.jwks = {
        keys: metadata.jwks.keys.map((key) => {
          if (key.kty || !Array.isArray(key.x5c) || key.x5c.length === 0) {
            return key;
          }
          const cert = new crypto.X509Certificate(Buffer.from(key.x5c[0], 'base64'));
          return { ...cert.publicKey.export({ format: 'jwk' }), ...key };
        }),
      };
    }
    return metadata;
  });
}

// The DNS names in a certificate's subjectAltName, as Node renders it:
// `DNS:a.example, IP Address:127.0.0.1, DNS:"b,example"`.
function sanDnsNames(cert) {
  const names = [];
  const re = /(?:^|, )DNS:("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (const [, raw] of (cert?.subjectAltName ?? '').matchAll(re)) {
    names.push(raw.startsWith('"') ? JSON.parse(raw) : raw);
  }
  return names;
}

const opts = options();
const clients = loadClients(opts.clients);

// A fresh ES256 signing key for every run, published at the jwks_uri.
// Encoded as a JWK by the key generation itself: exporting the KeyObject
// that generateKeyPairSync returns can deadlock Node 20 when a garbage
// collection during the export frees the key generation job, whose
// destructor takes the lock the export holds (the process then hangs before
// it listens).
const { privateKey } = crypto.generateKeyPairSync('ec', {
  namedCurve: 'P-256',
  publicKeyEncoding: { format: 'jwk' },
  privateKeyEncoding: { format: 'jwk' },
});
const signingKey = {
  ...privateKey,
  kid: crypto.randomBytes(12).toString('base64url'),
  alg: 'ES256',
  use: 'sig',
};

let handler = (req, res) => {
  res.statusCode = 503;
  res.end();
};

const server = https.createServer(
  {
    key: readFileSync(opts.key),
    cert: readFileSync(opts.cert),
    ca: readFileSync(opts.ca),
    // Ask for a client certificate and let every one through, self-signed
    // included (RFC 8705 section 2.2); `socket.authorized` tells whether it
    // chains to the CA, which is what tls_client_auth needs.
    requestCert: true,
    rejectUnauthorized: false,
  },
  (req, res) => handler(req, res),
);

server.on('tlsClientError', (err) => {
  console.error(`interop server: TLS error: ${err.message}`);
});

await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});

const issuer = `https://127.0.0.1:${server.address().port}`;
const MTLS_PREFIX = '/mtls';

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  clientAuthMethods: [
    'tls_client_auth',
    'self_signed_tls_client_auth',
    'client_secret_basic',
    'client_secret_post',
  ],
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  discovery: opts.mtlsAliases
    ? {
      mtls_endpoint_aliases: {
        token_endpoint: `${issuer}${MTLS_PREFIX}/token`,
        introspection_endpoint: `${issuer}${MTLS_PREFIX}/token/introspection`,
      },
    }
    : {},
  ttl: {
    AccessToken: opts.tokenTtl,
    ClientCredentials: opts.tokenTtl,
  },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: opts.opaqueTokens },
    // RFC 9449: a token request with a valid DPoP proof gets a token bound
    // to the proof's key; with --dpop-nonce every proof must carry a nonce.
    dPoP: opts.dpopNonce
      ? { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true }
      : { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf ?? opts.defaultResource,
      getResourceServerInfo: (ctx, resource) => (opts.opaqueTokens
        ? { scope: 'read write', audience: resource, accessTokenFormat: 'opaque' }
        : {
          scope: 'read write',
          audience: resource,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
    },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      getCertificate(ctx) {
        if (opts.mtlsAliases && !ctx.req.viaMtlsAlias) {
          return undefined;
        }
        return ctx.socket.getPeerX509Certificate?.() ?? undefined;
      },
      certificateAuthorized(ctx) {
        return ctx.socket.authorized === true;
      },
      certificateSubjectMatches(ctx, property, expected) {
        if (property !== 'tls_client_auth_san_dns') {
          return false;
        }
        return sanDnsNames(ctx.socket.getPeerX509Certificate()).includes(expected);
      },
    },
  },
});

provider.on('server_error', (ctx, err) => {
  console.error(`interop server: server_error on ${ctx.method} ${ctx.path}:`, err);
});
for (const event of ['grant.error', 'introspection.error', 'jwks.error', 'discovery.error']) {
  provider.on(event, (ctx, err) => {
    console.error(`interop server: ${event} on ${ctx.method} ${ctx.path}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}${err.error_detail ? `: ${err.error_detail}` : ''}`);
  });
}

// Reject bad client metadata now rather than on the first token request.
for (const { client_id: clientId } of clients) {
  try {
    if (!(await provider.Client.find(clientId))) {
      fail(`client ${clientId} not found after configuration`);
    }
  } catch (err) {
    fail(`client ${clientId} is invalid: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}${err.error_detail ? `: ${err.error_detail}` : ''}`);
  }
}

const callback = provider.callback();
handler = (req, res) => {
  if (opts.mtlsAliases && (req.url === MTLS_PREFIX || req.url.startsWith(`${MTLS_PREFIX}/`))) {
    req.url = req.url.slice(MTLS_PREFIX.length) || '/';
    req.viaMtlsAlias = true;
  }
  callback(req, res);
};

function shutdown() {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
if (!opts.ignoreStdin) {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}

process.stdout.write(`listening on ${issuer}\n`);
