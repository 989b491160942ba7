//! A resource server that accepts RFC 8705 certificate-bound access tokens.
//!
//! ```text
//! cargo run --example resource_server -- --listen 127.0.0.1:0 \
//!     --tls-cert server.pem --tls-key server.key \
//!     (--client-ca ca.pem | --any-client-cert) \
//!     --issuer ISS --audience AUD \
//!     (--jwks-url URL [--jwks-ca ca.pem] | --jwks-file jwks.json) \
//!     [--allow-unbound] [--required-scope SCOPE] [--trust-client-cert-header]
//! ```
//!
//! Once it listens it prints `listening on https://ADDR:PORT` (the real
//! port) and flushes stdout. `GET /whoami` answers
//! `{"sub", "client_id", "scope", "x5t#S256"}`; everything else gets the
//! answer of `CnfValidationLayer` (401, 400, 403) or, with a valid token,
//! 404. With `--trust-client-cert-header` it serves plain HTTP and takes the
//! client certificate from the RFC 9440 `Client-Cert` header of a
//! TLS-terminating proxy in front of it; then `--tls-cert`, `--tls-key`,
//! `--client-ca` and `--any-client-cert` are not used.
//!
//! Set `RUST_LOG=tower_token_binding=debug` to see why requests are refused.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use axum::routing::get;
use axum::{Extension, Json, Router};
use rustls::RootCertStore;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_token_binding::server::forwarded::ForwardedClientCertLayer;
use tower_token_binding::server::{self, ClientCertMode, PeerCertificate, ServerTlsConfig};
use tower_token_binding::validation::{
    CnfValidationLayer, JwksSource, JwtValidator, VerifiedToken,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: resource_server --listen ADDR --tls-cert PEM --tls-key PEM \
(--client-ca PEM | --any-client-cert) --issuer ISS --audience AUD \
(--jwks-url URL [--jwks-ca PEM] | --jwks-file JSON) [--allow-unbound] \
[--required-scope SCOPE]... [--trust-client-cert-header]";

#[derive(Default)]
struct Args {
    listen: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    client_ca: Option<String>,
    any_client_cert: bool,
    issuer: Option<String>,
    audience: Option<String>,
    jwks_url: Option<String>,
    jwks_ca: Option<String>,
    jwks_file: Option<String>,
    allow_unbound: bool,
    required_scopes: Vec<String>,
    trust_client_cert_header: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = Some(value()?),
            "--tls-cert" => args.tls_cert = Some(value()?),
            "--tls-key" => args.tls_key = Some(value()?),
            "--client-ca" => args.client_ca = Some(value()?),
            "--any-client-cert" => args.any_client_cert = true,
            "--issuer" => args.issuer = Some(value()?),
            "--audience" => args.audience = Some(value()?),
            "--jwks-url" => args.jwks_url = Some(value()?),
            "--jwks-ca" => args.jwks_ca = Some(value()?),
            "--jwks-file" => args.jwks_file = Some(value()?),
            "--allow-unbound" => args.allow_unbound = true,
            "--required-scope" => args.required_scopes.push(value()?),
            "--trust-client-cert-header" => args.trust_client_cert_header = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn required(value: &Option<String>, flag: &str) -> Result<String, String> {
    value
        .clone()
        .ok_or_else(|| format!("{flag} is required\n{USAGE}"))
}

fn root_store(path: &str) -> Result<RootCertStore, BoxError> {
    Ok(tower_token_binding::identity::root_store_from_pem_file(
        path,
    )?)
}

async fn whoami(token: VerifiedToken, peer: Option<Extension<PeerCertificate>>) -> Json<Value> {
    Json(json!({
        "sub": token.subject(),
        "client_id": token.client_id(),
        "scope": token.scope(),
        "x5t#S256": peer.map(|Extension(p)| p.thumbprint().to_string()),
    }))
}

async fn run(args: Args) -> Result<(), BoxError> {
    let listen = required(&args.listen, "--listen")?;
    let issuer = required(&args.issuer, "--issuer")?;
    let audience = required(&args.audience, "--audience")?;
    let jwks = match (&args.jwks_url, &args.jwks_file) {
        (Some(url), None) => {
            let mut remote = JwksSource::remote(url)?;
            if let Some(ca) = &args.jwks_ca {
                remote = remote.root_store(root_store(ca)?);
            }
            JwksSource::from(remote)
        }
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            JwksSource::from_json(&text).map_err(|e| format!("{file}: {e}"))?
        }
        _ => return Err(format!("give exactly one of --jwks-url and --jwks-file\n{USAGE}").into()),
    };
    let validator = JwtValidator::builder()
        .issuer(issuer)
        .audience(audience)
        .jwks(jwks)
        .build()?;
    let mut layer = CnfValidationLayer::new(validator);
    if args.allow_unbound {
        layer = layer.allow_unbound();
    }
    for scope in &args.required_scopes {
        layer = layer.try_required_scope(scope)?;
    }

    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let app = Router::new().route("/whoami", get(whoami)).layer(layer);

    if args.trust_client_cert_header {
        let app = app.layer(ForwardedClientCertLayer::new());
        announce(&format!("listening on http://{addr}"))?;
        axum::serve(listener, app).await?;
        return Ok(());
    }

    let mode = match (&args.client_ca, args.any_client_cert) {
        (Some(ca), false) => ClientCertMode::trusted_roots(root_store(ca)?),
        (None, true) => ClientCertMode::any_certificate(),
        _ => {
            return Err(
                format!("give exactly one of --client-ca and --any-client-cert\n{USAGE}").into(),
            );
        }
    }
    .optional();
    let tls = ServerTlsConfig::new(mode).build_from_pem_files(
        required(&args.tls_cert, "--tls-cert")?,
        required(&args.tls_key, "--tls-key")?,
    )?;
    announce(&format!("listening on https://{addr}"))?;
    server::serve(listener, Arc::new(tls), app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn announce(line: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resource_server: {e}");
            ExitCode::FAILURE
        }
    }
}
