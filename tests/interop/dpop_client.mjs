// An independent DPoP client (RFC 9449) for tower-token-binding's interop
// tests: panva's `dpop` package makes the proofs, with a key of its own.
//
//   NODE_EXTRA_CA_CERTS=ca.pem node dpop_client.mjs URL [ALG]
//
// ALG is what `dpop` generates a key for: ES256 (default), PS256, RS256,
// Ed25519. The script
// 1. prints the key's JWK thumbprint (RFC 7638): {"jkt":"..."};
// 2. reads an access token bound to it from the first line of stdin;
// 3. sends `GET URL` with `Authorization: DPoP <token>` and a new proof; when
//    the answer is 401 `use_dpop_nonce` with a `DPoP-Nonce`, sends it once
//    more with a new proof carrying that nonce;
// 4. sends the last proof again, unchanged: a replay.
// It prints one line per answer:
//   {"status":200,"wwwAuthenticate":null,"dpopNonce":null,"body":"..."}

import { createInterface } from 'node:readline';

import { calculateThumbprint, generateKeyPair, generateProof } from 'dpop';

const [url, alg = 'ES256'] = process.argv.slice(2);
if (!url) {
  console.error('usage: node dpop_client.mjs URL [ALG]');
  process.exit(2);
}

const keypair = await generateKeyPair(alg);
console.log(JSON.stringify({ jkt: await calculateThumbprint(keypair.publicKey) }));

const stdin = createInterface({ input: process.stdin });
const { value: token } = await stdin[Symbol.asyncIterator]().next();
stdin.close();

// RFC 9449 section 4.2: htu is the URI without query and fragment.
const htu = url.replace(/[?#].*$/, '');

async function send(proof) {
  const response = await fetch(url, {
    headers: { authorization: `DPoP ${token}`, dpop: proof },
  });
  const answer = {
    status: response.status,
    wwwAuthenticate: response.headers.get('www-authenticate'),
    dpopNonce: response.headers.get('dpop-nonce'),
    body: await response.text(),
  };
  console.log(JSON.stringify(answer));
  return answer;
}

let proof = await generateProof(keypair, htu, 'GET', undefined, token);
const first = await send(proof);
if (first.status === 401 && first.dpopNonce && first.wwwAuthenticate?.includes('use_dpop_nonce')) {
  proof = await generateProof(keypair, htu, 'GET', first.dpopNonce, token);
  await send(proof);
}
await send(proof);
