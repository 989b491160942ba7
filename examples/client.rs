//! A command-line client that calls an API with certificate-bound, DPoP or
//! PoP tokens, using the crate exactly as a user would: a `BoundClient` built in
//! one expression (OAuth client credentials over mTLS, the token cache,
//! `TokenBindingLayer` with the retry policy, and the per-certificate pool),
//! its certificate and key files watched for renewal.
//!
//! ```text
//! cargo run --example client -- (--issuer URL | --token-url URL) --client-id ID \
//!     [--client-secret S] [--auth tls_client_auth|self_signed_tls_client_auth|client_secret_basic|client_secret_post] \
//!     [--cert client.pem --key client.key] [--ca ca.pem] [--scope "a b"] [--resource URI] \
//!     [--scheme bearer|mtls_pop|mtls|dpop|pop] [--dpop-key FILE] [--pop-key FILE] \
//!     [--header-word bearer|mtls_pop] [--token-cache redis://HOST:PORT] \
//!     [--requests N] [--concurrency C] URL
//! cargo run --example client -- --managed-identity [--imds-url URL] [--ca ca.pem] \
//!     [--scope "a b"] [--resource URI] [--header-word bearer|mtls_pop] \
//!     [--requests N] [--concurrency C] URL
//! ```
//!
//! Prints `status=CODE` per response, the body of the last response, and a
//! final line `requests=N ok=K token_fetches=F`. Exits 0 only when every
//! response was 2xx. `--header-word mtls_pop` also asks for Microsoft
//! Entra's `mtls_pop` tokens. `--scheme dpop` binds tokens to a DPoP key
//! (RFC 9449; from `--dpop-key`, a PEM private key, or a new ES256 key) and
//! sends a proof with every request; then `--cert` and `--key` are needed
//! only for `tls_client_auth`. `--scheme pop` does the same with
//! Microsoft's PoP: tokens bound to a key (`cnf.kid`; from `--pop-key`, or a
//! new RSA-2048 key signing with PS256) and `Authorization: PoP <SHR>`, a
//! signed HTTP request made for every request. `--managed-identity` takes
//! the certificate, the client id and the token endpoint from Azure's
//! managed identity (IMDS v2, at `--imds-url` or the default address) and
//! asks for `mtls_pop` tokens; off Azure it fails at once. `--token-cache
//! redis://...` shares tokens with the other processes using the same Redis
//! (built with `--features redis`): one of them fetches, the others read
//! it; bound tokens only, never keys (with DPoP, give them all the same
//! `--dpop-key`). Set `RUST_LOG=tower_token_binding=debug` for
//! details.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Mutex;
use tower_token_binding::BoundClient;
use tower_token_binding::binding::{HeaderWord, Scheme};
use tower_token_binding::identity::managed::ManagedIdentity;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: client (--issuer URL | --token-url URL) --client-id ID [--client-secret S] \
[--auth tls_client_auth|self_signed_tls_client_auth|client_secret_basic|client_secret_post] \
[--cert PEM --key PEM] [--ca PEM] [--scope \"a b\"] [--resource URI] [--scheme bearer|mtls_pop|mtls|dpop|pop] \
[--dpop-key PEM] [--pop-key PEM] [--header-word bearer|mtls_pop] [--token-cache redis://HOST:PORT] \
[--requests N] [--concurrency C] URL
   or: client --managed-identity [--imds-url URL] [--ca PEM] [--scope \"a b\"] [--resource URI] \
[--header-word bearer|mtls_pop] [--token-cache redis://HOST:PORT] [--requests N] [--concurrency C] URL";

#[derive(Default)]
struct Args {
    issuer: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    auth: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    ca: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    scheme: Option<String>,
    dpop_key: Option<String>,
    pop_key: Option<String>,
    header_word: Option<String>,
    token_cache: Option<String>,
    requests: Option<String>,
    concurrency: Option<String>,
    url: Option<String>,
    managed_identity: bool,
    imds_url: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        let slot = match arg.as_str() {
            "--issuer" => &mut args.issuer,
            "--token-url" => &mut args.token_url,
            "--client-id" => &mut args.client_id,
            "--client-secret" => &mut args.client_secret,
            "--auth" => &mut args.auth,
            "--cert" => &mut args.cert,
            "--key" => &mut args.key,
            "--ca" => &mut args.ca,
            "--scope" => &mut args.scope,
            "--resource" => &mut args.resource,
            "--scheme" => &mut args.scheme,
            "--dpop-key" => &mut args.dpop_key,
            "--pop-key" => &mut args.pop_key,
            "--header-word" => &mut args.header_word,
            "--token-cache" => &mut args.token_cache,
            "--requests" => &mut args.requests,
            "--concurrency" => &mut args.concurrency,
            "--imds-url" => &mut args.imds_url,
            "--managed-identity" => {
                args.managed_identity = true;
                continue;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other if other.starts_with("--") => {
                return Err(format!("unknown argument {other:?}\n{USAGE}"));
            }
            _ => {
                if args.url.replace(arg.clone()).is_some() {
                    return Err(format!("more than one URL given\n{USAGE}"));
                }
                continue;
            }
        };
        *slot = Some(value()?);
    }
    let is = |name: &str| {
        args.scheme
            .as_deref()
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(name))
    };
    let (dpop, pop) = (is("dpop"), is("pop"));
    if args.managed_identity {
        // The identity, the client id and the token endpoint come from IMDS.
        for (given, what) in [
            (args.issuer.is_some(), "--issuer"),
            (args.token_url.is_some(), "--token-url"),
            (args.client_id.is_some(), "--client-id"),
            (args.client_secret.is_some(), "--client-secret"),
            (args.auth.is_some(), "--auth"),
            (
                args.cert.is_some() || args.key.is_some(),
                "--cert and --key",
            ),
            (args.scheme.is_some(), "--scheme"),
            (
                args.dpop_key.is_some() || args.pop_key.is_some(),
                "--dpop-key and --pop-key",
            ),
        ] {
            if given {
                return Err(format!("{what} cannot go with --managed-identity\n{USAGE}"));
            }
        }
        if args.url.is_none() {
            return Err(format!("the URL to call is required\n{USAGE}"));
        }
        return Ok(args);
    }
    if args.imds_url.is_some() {
        return Err(format!("--imds-url is for --managed-identity\n{USAGE}"));
    }
    // With DPoP or PoP a client secret may authenticate alone; a
    // certificate is then optional, but comes as a pair.
    let certificate_optional = (dpop || pop) && args.client_secret.is_some();
    let missing_cert = !certificate_optional || args.key.is_some();
    let missing_key = !certificate_optional || args.cert.is_some();
    for (missing, what) in [
        (args.url.is_none(), "the URL to call"),
        (args.client_id.is_none(), "--client-id"),
        (args.cert.is_none() && missing_cert, "--cert"),
        (args.key.is_none() && missing_key, "--key"),
        (
            args.dpop_key.is_some() && !dpop,
            "--scheme dpop (for --dpop-key)",
        ),
        (
            args.pop_key.is_some() && !pop,
            "--scheme pop (for --pop-key)",
        ),
        (
            args.issuer.is_none() && args.token_url.is_none(),
            "--issuer or --token-url",
        ),
    ] {
        if missing {
            return Err(format!("{what} is required\n{USAGE}"));
        }
    }
    Ok(args)
}

fn required(value: Option<String>, what: &str) -> Result<String, String> {
    value.ok_or_else(|| format!("{what} is required\n{USAGE}"))
}

fn number(value: Option<String>, what: &str, default: usize) -> Result<usize, String> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{what} must be a positive number, got {v:?}")),
    }
}

/// A builder with Azure's managed identity: certificate, client id and token
/// endpoint from IMDS v2, renewed while running.
async fn managed_identity(
    imds_url: Option<&str>,
    scope: Option<&str>,
    resource: Option<&str>,
    header_word: Option<&str>,
) -> Result<tower_token_binding::client::BoundClientBuilder, BoxError> {
    let mut identity = ManagedIdentity::imds_v2();
    if let Some(url) = imds_url {
        identity = identity.base_url(url);
    }
    if let Some(scope) = scope {
        identity = identity.scope(scope);
    }
    if let Some(resource) = resource {
        identity = identity.resource(resource);
    }
    let identity = identity.build().await?;
    eprintln!(
        "managed identity client_id={} x5t#S256={}",
        identity.client_id(),
        identity.thumbprint()
    );
    let mut builder = BoundClient::builder().managed_identity(identity);
    if let Some(word) = header_word {
        builder = builder.header_word(word.parse()?);
    }
    Ok(builder)
}

/// Tokens shared through the Redis at `url` (under the in-memory cache).
#[cfg(feature = "redis")]
async fn shared_token_cache(
    builder: tower_token_binding::client::BoundClientBuilder,
    url: &str,
) -> Result<tower_token_binding::client::BoundClientBuilder, BoxError> {
    let cache = tower_token_binding::token::RedisTokenCache::connect(url).await?;
    Ok(builder.shared_token_cache(cache))
}

#[cfg(not(feature = "redis"))]
async fn shared_token_cache(
    _builder: tower_token_binding::client::BoundClientBuilder,
    _url: &str,
) -> Result<tower_token_binding::client::BoundClientBuilder, BoxError> {
    Err("--token-cache needs the redis feature: cargo run --features redis --example client".into())
}

async fn run(args: Args) -> Result<bool, BoxError> {
    let url = required(args.url, "the URL to call")?;
    let requests = number(args.requests, "--requests", 1)?;
    let concurrency = number(args.concurrency, "--concurrency", 1)?;
    let scheme: Scheme = args.scheme.as_deref().unwrap_or("mtls_pop").parse()?;
    let word: HeaderWord = args.header_word.as_deref().unwrap_or("bearer").parse()?;

    // The whole client stack in one expression; the certificate and key
    // files are watched, so a renewal on disk is picked up while running.
    let mut builder = BoundClient::builder().scheme(scheme);
    if args.managed_identity {
        builder = managed_identity(
            args.imds_url.as_deref(),
            args.scope.as_deref(),
            args.resource.as_deref(),
            args.header_word.as_deref(),
        )
        .await?;
    }
    if let (Some(cert), Some(key)) = (args.cert, args.key) {
        builder = builder.identity_files(cert, key);
    }
    if let Some(key) = args.dpop_key {
        builder = builder.dpop_key_file(key);
    }
    if let Some(key) = args.pop_key {
        builder = builder.pop_key_file(key);
    }
    if scheme != Scheme::MtlsOnly && !args.managed_identity {
        builder = builder.client_id(required(args.client_id, "--client-id")?);
        if !matches!(scheme, Scheme::Dpop | Scheme::Pop) {
            builder = builder.header_word(word);
        } else if args.header_word.is_some() {
            return Err(format!("--header-word is not for --scheme {scheme}\n{USAGE}").into());
        }
        builder = match (args.issuer, args.token_url) {
            (Some(issuer), None) => builder.issuer(issuer),
            (None, Some(url)) => builder.token_endpoint(url),
            _ => {
                return Err(
                    format!("give exactly one of --issuer and --token-url\n{USAGE}").into(),
                );
            }
        };
        let auth = match (args.auth.as_deref(), &args.client_secret) {
            (Some(auth), _) => auth.to_owned(),
            (None, Some(_)) => "client_secret_basic".to_owned(),
            (None, None) => "tls_client_auth".to_owned(),
        };
        let secret = || {
            args.client_secret
                .clone()
                .ok_or_else(|| format!("--auth {auth} needs --client-secret"))
        };
        builder = match auth.as_str() {
            "tls_client_auth" => builder,
            "self_signed_tls_client_auth" => builder.self_signed_tls_client_auth(),
            "client_secret_basic" => builder.client_secret_basic(secret()?),
            "client_secret_post" => builder.client_secret_post(secret()?),
            other => return Err(format!("unknown --auth {other:?}\n{USAGE}").into()),
        };
        if let Some(scope) = args.scope {
            builder = builder.scope(scope);
        }
        if let Some(resource) = args.resource {
            builder = builder.resource(resource);
        }
        if word == HeaderWord::MtlsPop {
            builder = builder.entra_mtls_pop();
        }
    }
    if let Some(ca) = &args.ca {
        builder = builder.root_ca_file(ca);
    }
    if let Some(url) = &args.token_cache {
        builder = shared_token_cache(builder, url).await?;
    }
    let client = builder.build()?;
    if let Some(proofs) = client.dpop_proofs() {
        eprintln!("DPoP key jkt={}", proofs.thumbprint());
    }
    if let Some(shrs) = client.pop_proofs() {
        eprintln!("PoP key kid={} alg={}", shrs.kid(), shrs.key().algorithm());
    }

    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let last_body = Arc::new(Mutex::new(String::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(requests) {
        let (client, url, next, ok, last_body) = (
            client.clone(),
            url.clone(),
            next.clone(),
            ok.clone(),
            last_body.clone(),
        );
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < requests {
                let response = client.get(&url).await?;
                let status = response.status();
                let body = response.into_body();
                println!("status={}", status.as_u16());
                if status.is_success() {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                *last_body.lock().await = String::from_utf8_lossy(&body).into_owned();
            }
            Ok::<_, BoxError>(())
        });
    }
    while let Some(result) = workers.join_next().await {
        result??;
    }
    let ok = ok.load(Ordering::SeqCst);
    println!("{}", last_body.lock().await);
    let fetches = client.cache().map_or(0, |cache| cache.stats().fetches);
    println!("requests={requests} ok={ok} token_fetches={fetches}");
    Ok(ok == requests)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            let mut message = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                if !message.contains(&cause.to_string()) {
                    message.push_str(&format!(": {cause}"));
                }
                source = cause.source();
            }
            eprintln!("client: {message}");
            ExitCode::FAILURE
        }
    }
}
