//! A resource server that accepts RFC 8705 certificate-bound access tokens,
//! RFC 9449 DPoP-bound ones and, with `--accept-pop`, PoP-bound ones in
//! Microsoft's signed HTTP requests: [`ResourceServer`] set up from the
//! command line.
//!
//! ```text
//! cargo run --example resource_server -- --listen 127.0.0.1:0 \
//!     --tls-cert server.pem --tls-key server.key \
//!     [--client-ca ca.pem | --any-client-cert] \
//!     --issuer ISS... --audience AUD [--issuer-ca ca.pem] \
//!     [--token-profile rfc9068|entra|keycloak|auth0|okta] [--allowed-tenant TID...] \
//!     [--allow-unbound] [--required-scope SCOPE]... [--terse] \
//!     [--dpop-nonce] [--accept-pop] [--public-origin URL] \
//!     [--replay-store redis://HOST:PORT] \
//!     [--introspection-client-id ID --introspection-secret S \
//!      [--introspection-endpoint URL]]
//!
//! cargo run --example resource_server -- --listen 127.0.0.1:0 \
//!     --forwarded xfcc|client-cert|escaped-pem (--trusted-proxy CIDR... | --trust-any-peer) \
//!     [--forwarded-header NAME|nginx|ingress-nginx|aws-alb-leaf|aws-alb-chain|traefik] \
//!     [--xfcc-element only|first|last] \
//!     --issuer ISS --audience AUD [--issuer-ca ca.pem | --jwks-file jwks.json] ...
//! ```
//!
//! A token bound to a certificate (`cnf.x5t#S256`) is accepted with
//! `Authorization: Bearer` over a connection with that client certificate;
//! a token bound to a DPoP key (`cnf.jkt`) with `Authorization: DPoP` and a
//! fresh `DPoP` proof by that key, each proof once; with `--accept-pop`, a
//! token bound to a PoP key (`cnf.kid`) with `Authorization: PoP <SHR>`, a
//! signed HTTP request by that key carrying the token, each SHR once.
//! `--dpop-nonce` makes
//! proofs carry a server nonce (answered `401 use_dpop_nonce` with a
//! `DPoP-Nonce` header until they do). `--public-origin` names the origin
//! clients address, such as `https://api.example.com`, for the proofs'
//! `htu` and the SHRs' `u`: needed behind a proxy, where the server's own address is not the
//! one clients use; without it, `htu` must name `https` and the request's
//! `Host`.
//!
//! `--token-profile` reads tokens as that issuer shapes them (header `typ`
//! `JWT` or none, `azp`/`appid`/`cid` for the client, `uti` for the id,
//! permissions in Entra's `scp` and `roles`, Okta's `scp` array or Auth0's
//! `permissions`); `--required-scope` looks in the profile's permission
//! claims. `--issuer` may be given more than once: each issuer's tokens are
//! checked with its own keys. With `--token-profile entra`, an issuer such
//! as `https://login.microsoftonline.com/organizations/v2.0` is
//! multi-tenant, and `--allowed-tenant` (repeated, or comma-separated)
//! lists the tenants (`tid`) it accepts; it is required then.
//!
//! The signing keys are found through the issuer's metadata (RFC 8414, else
//! OpenID Connect Discovery) and fetched at the first request with a token;
//! `--issuer-ca` trusts these CA certificates for the issuer's HTTPS instead
//! of the platform's. Client certificates are optional and any certificate
//! is accepted (self-signed included, the handshake signature checked)
//! unless `--client-ca` names the CAs that must have issued them.
//!
//! Once it listens it prints `listening on https://ADDR:PORT` (the real
//! port) and flushes stdout. `GET /whoami` answers
//! `{"sub", "client_id", "scope", "scopes", "x5t#S256", "binding", "jkt", "kid"}`
//! (`client_id` and `scopes` as the token profile reads them)
//! (`binding`: `certificate`, `dpop`, `pop` or `none`, what the request
//! proved); everything
//! else gets the
//! answer of `CnfValidationLayer` (401, 400, 403) or, with a valid token,
//! 404.
//!
//! With `--forwarded` it serves plain HTTP behind a TLS-terminating proxy
//! and takes the client certificate from the header the proxy sets: the
//! RFC 9440 `Client-Cert` header (`--forwarded client-cert`, or its older
//! name `--trust-client-cert-header`), Envoy's `x-forwarded-client-cert`
//! (`--forwarded xfcc`; `--xfcc-element first|last` takes one of several
//! elements, where by default exactly one is expected), or a URL-escaped
//! PEM as nginx, ingress-nginx, AWS ALB and Traefik send it
//! (`--forwarded escaped-pem`) in the header `--forwarded-header` names:
//! the header's name, or `nginx` (`X-SSL-Client-Cert`), `ingress-nginx`
//! (`ssl-client-cert`), `aws-alb-leaf`, `aws-alb-chain` or `traefik` for the
//! name that product uses; an empty value means no certificate. The header is
//! believed only from peers whose address is in a `--trusted-proxy`
//! network (CIDR, such as `10.0.0.0/8` or `::1/128`, or one address; give
//! several after the flag, comma-separated, or repeat it);
//! from other peers it is ignored and a warning is logged. Without
//! `--trusted-proxy` the server refuses to start, unless `--trust-any-peer`
//! says that everyone who can reach it is the proxy (unsafe anywhere else).
//! In this mode `--tls-cert`, `--tls-key`, `--client-ca` and
//! `--any-client-cert` are not used, and `--jwks-file` may give the
//! issuer's keys instead of fetching them.
//!
//! With `--introspection-client-id` and `--introspection-secret`, opaque
//! access tokens (not three dot-separated segments) are checked by token
//! introspection (RFC 7662) as that client (`client_secret_basic`), at
//! `--introspection-endpoint` or the `introspection_endpoint` of the
//! issuer's metadata; the answers must carry `--issuer` as `iss` and name
//! `--audience` in `aud`, as JWTs must. JWTs are still checked locally.
//! Their binding is checked the same way.
//!
//! `--replay-store redis://...` (built with `--features redis`) remembers
//! DPoP proofs and signed requests in Redis, shared with every replica
//! using the same Redis: a proof accepted by one is refused by all; when
//! Redis cannot answer, such requests get `503` with `Retry-After`.
//!
//! Set `RUST_LOG=tower_token_binding=debug` to see why requests are refused.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use axum::routing::get;
use axum::{Extension, Json, Router};
use http::HeaderName;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_token_binding::proof::dpop::{DpopVerifier, StatelessNonces};
use tower_token_binding::proof::pop::PopVerifier;
use tower_token_binding::replay::BoxReplayStore;
use tower_token_binding::server::forwarded::{
    self, ForwardedClientCertLayer, IpNetwork, XfccElement,
};
use tower_token_binding::server::{PeerCertificate, ResourceServer};
use tower_token_binding::validation::{
    CnfValidationLayer, IntrospectionValidator, JwksSource, JwtValidator, PRESETS, TokenProfile,
    TrustedIssuer, VerifiedToken,
};
use tower_token_binding::{ConfigErrorKind, ProvenBinding};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: resource_server --listen ADDR --issuer ISS... --audience AUD \
[--issuer-ca PEM] [--token-profile rfc9068|entra|keycloak|auth0|okta] [--allowed-tenant TID...] \
[--allow-unbound] [--required-scope SCOPE]... [--terse] \
[--dpop-nonce] [--accept-pop] [--public-origin URL] [--replay-store redis://HOST:PORT] \
[--introspection-client-id ID --introspection-secret S [--introspection-endpoint URL]] \
(--tls-cert PEM --tls-key PEM [--client-ca PEM | --any-client-cert] \
| --forwarded xfcc|client-cert|escaped-pem (--trusted-proxy CIDR... | --trust-any-peer) \
[--forwarded-header NAME] [--xfcc-element only|first|last] [--jwks-file JSON])";

#[derive(Default)]
struct Args {
    listen: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    client_ca: Option<String>,
    any_client_cert: bool,
    issuers: Vec<String>,
    audience: Option<String>,
    token_profile: Option<String>,
    allowed_tenants: Vec<String>,
    issuer_ca: Option<String>,
    jwks_file: Option<String>,
    allow_unbound: bool,
    required_scopes: Vec<String>,
    terse: bool,
    forwarded: Option<String>,
    trusted_proxies: Vec<String>,
    trust_any_peer: bool,
    xfcc_element: Option<String>,
    forwarded_header: Option<String>,
    dpop_nonce: bool,
    accept_pop: bool,
    public_origin: Option<String>,
    introspection_endpoint: Option<String>,
    introspection_client_id: Option<String>,
    introspection_secret: Option<String>,
    replay_store: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1).peekable();
    while let Some(flag) = it.next() {
        if flag == "--trusted-proxy" {
            // One or more networks: repeated, comma-separated, or several
            // values after one flag.
            let mut any = false;
            while let Some(next) = it.next_if(|next| !next.starts_with("--")) {
                args.trusted_proxies.extend(
                    next.split(',')
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned),
                );
                any = true;
            }
            if !any {
                return Err(format!("{flag} needs a value"));
            }
            continue;
        }
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = Some(value()?),
            "--tls-cert" => args.tls_cert = Some(value()?),
            "--tls-key" => args.tls_key = Some(value()?),
            "--client-ca" => args.client_ca = Some(value()?),
            "--any-client-cert" => args.any_client_cert = true,
            "--issuer" => args.issuers.push(value()?),
            "--token-profile" => args.token_profile = Some(value()?),
            "--allowed-tenant" => args
                .allowed_tenants
                .extend(value()?.split(',').map(str::to_owned)),
            "--audience" => args.audience = Some(value()?),
            "--issuer-ca" => args.issuer_ca = Some(value()?),
            "--jwks-file" => args.jwks_file = Some(value()?),
            "--allow-unbound" => args.allow_unbound = true,
            "--required-scope" => args.required_scopes.push(value()?),
            "--terse" => args.terse = true,
            "--forwarded" => args.forwarded = Some(value()?),
            "--trust-client-cert-header" => args.forwarded = Some("client-cert".to_owned()),
            "--trust-any-peer" => args.trust_any_peer = true,
            "--xfcc-element" => args.xfcc_element = Some(value()?),
            "--forwarded-header" => args.forwarded_header = Some(value()?),
            "--dpop-nonce" => args.dpop_nonce = true,
            "--accept-pop" => args.accept_pop = true,
            "--public-origin" => args.public_origin = Some(value()?),
            "--introspection-endpoint" => args.introspection_endpoint = Some(value()?),
            "--introspection-client-id" => args.introspection_client_id = Some(value()?),
            "--introspection-secret" => args.introspection_secret = Some(value()?),
            "--replay-store" => args.replay_store = Some(value()?),
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

async fn whoami(token: VerifiedToken, peer: Option<Extension<PeerCertificate>>) -> Json<Value> {
    let (binding, jkt, kid) = match token.binding() {
        ProvenBinding::Certificate(_) => ("certificate", None, None),
        ProvenBinding::Dpop(jkt) => ("dpop", Some(jkt.to_string()), None),
        ProvenBinding::Pop(kid) => ("pop", None, Some(kid.to_string())),
        _ => ("none", None, None),
    };
    Json(json!({
        "sub": token.subject(),
        "client_id": token.client_id(),
        "scope": token.scope(),
        "scopes": token.scopes().collect::<Vec<_>>(),
        "x5t#S256": peer.map(|Extension(p)| p.thumbprint().to_string()),
        "binding": binding,
        "jkt": jkt,
        "kid": kid,
    }))
}

/// The DPoP proof checks: the defaults, with server nonces under a random
/// secret when asked (one process: no other server needs its nonces).
fn dpop_verifier(args: &Args) -> Result<DpopVerifier, BoxError> {
    let mut verifier = DpopVerifier::builder();
    if args.dpop_nonce {
        verifier = verifier.nonces(StatelessNonces::random()?);
    }
    Ok(verifier.build())
}

/// Token introspection for opaque tokens, when its flags are given.
fn introspection(
    args: &Args,
) -> Result<Option<tower_token_binding::validation::IntrospectionValidatorBuilder>, String> {
    let (id, secret) = match (&args.introspection_client_id, &args.introspection_secret) {
        (None, None) if args.introspection_endpoint.is_none() => return Ok(None),
        (Some(id), Some(secret)) => (id, secret),
        _ => {
            return Err(format!(
                "--introspection-client-id and --introspection-secret go together\n{USAGE}"
            ));
        }
    };
    let mut builder = IntrospectionValidator::builder()
        .client_id(id)
        .client_secret_basic(secret);
    // The answers must name this server's (first) issuer and audience, as
    // JWTs must.
    if let Some(issuer) = args.issuers.first() {
        builder = builder.issuer(issuer);
    }
    if let Some(audience) = &args.audience {
        builder = builder.audience(audience);
    }
    if let Some(url) = &args.introspection_endpoint {
        builder = builder.endpoint(url);
    }
    Ok(Some(builder))
}

/// The replay store shared through the Redis at `url`.
#[cfg(feature = "redis")]
async fn replay_store(url: &str) -> Result<BoxReplayStore, BoxError> {
    let store = tower_token_binding::replay::RedisReplayStore::connect(url).await?;
    Ok(BoxReplayStore::new(store))
}

#[cfg(not(feature = "redis"))]
async fn replay_store(_url: &str) -> Result<BoxReplayStore, BoxError> {
    Err("--replay-store needs the redis feature: cargo run --features redis --example resource_server".into())
}

async fn run(args: Args) -> Result<(), BoxError> {
    let listen = required(&args.listen, "--listen")?;
    if args.issuers.is_empty() {
        return Err(format!("--issuer is required\n{USAGE}").into());
    }
    let audience = required(&args.audience, "--audience")?;
    let profile = token_profile(&args)?;
    let app = Router::new().route("/whoami", get(whoami));

    if args.forwarded.is_some() {
        if introspection(&args)?.is_some() {
            return Err(format!(
                "the --introspection-* flags work without --forwarded only\n{USAGE}"
            )
            .into());
        }
        return behind_a_proxy(args, listen, profile, audience, app).await;
    }
    if !args.trusted_proxies.is_empty()
        || args.trust_any_peer
        || args.xfcc_element.is_some()
        || args.forwarded_header.is_some()
    {
        return Err(format!(
            "--trusted-proxy, --trust-any-peer, --xfcc-element and --forwarded-header work \
             with --forwarded only\n{USAGE}"
        )
        .into());
    }
    if args.jwks_file.is_some() {
        return Err(format!(
            "--jwks-file works with --forwarded only; otherwise the \
             keys are found through the issuer's metadata\n{USAGE}"
        )
        .into());
    }

    let mut server = ResourceServer::builder().token_profile(profile);
    for issuer in &args.issuers {
        server = server.issuer(issuer);
    }
    if !args.allowed_tenants.is_empty() {
        server = server.allowed_tenants(args.allowed_tenants.iter().cloned());
    }
    let mut server = server.audience(audience).tls_pem_files(
        required(&args.tls_cert, "--tls-cert")?,
        required(&args.tls_key, "--tls-key")?,
    );
    server = match (&args.client_ca, args.any_client_cert) {
        (Some(ca), false) => server.client_ca_file(ca),
        // The default: any certificate, or none.
        (None, _) => server,
        (Some(_), true) => {
            return Err(
                format!("give at most one of --client-ca and --any-client-cert\n{USAGE}").into(),
            );
        }
    };
    if let Some(ca) = &args.issuer_ca {
        server = server.root_ca_file(ca);
    }
    if args.allow_unbound {
        server = server.allow_unbound();
    }
    for scope in &args.required_scopes {
        server = server.required_scope(scope);
    }
    if args.terse {
        server = server.terse();
    }
    server = server.accept_dpop(dpop_verifier(&args)?);
    if args.accept_pop {
        server = server.accept_pop(PopVerifier::new());
    }
    if let Some(origin) = &args.public_origin {
        server = server.public_origin(origin);
    }
    if let Some(introspection) = introspection(&args)? {
        server = server.introspection(introspection);
    }
    if let Some(url) = &args.replay_store {
        server = server.replay_store(replay_store(url).await?);
    }
    // Every setting is checked and every file read here, before listening.
    let server = server.build()?;

    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    announce(&format!("listening on https://{}", listener.local_addr()?))?;
    server
        .serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Plain HTTP behind a TLS-terminating proxy, the client certificate taken
/// from the proxy's `Client-Cert` or `x-forwarded-client-cert` header.
///
/// Stacked by hand because `ResourceServer` terminates TLS itself and reads
/// the certificate of its own connections: here the layers it is made of
/// are put together without its TLS, with `ForwardedClientCertLayer` in
/// front of `CnfValidationLayer`, and the keys may come from a file instead
/// of the issuer.
async fn behind_a_proxy(
    args: Args,
    listen: String,
    profile: TokenProfile,
    audience: String,
    app: Router,
) -> Result<(), BoxError> {
    // Checked before anything else, so a server without its allow-list
    // never starts.
    let forwarded = forwarded_layer(&args)?;
    if !args.allowed_tenants.is_empty() {
        return Err(format!(
            "--allowed-tenant (a multi-tenant issuer) works without --forwarded only\n{USAGE}"
        )
        .into());
    }
    let mut validator = JwtValidator::builder()
        .audience(audience)
        .token_profile(profile);
    for issuer in &args.issuers {
        let jwks = match (&args.jwks_file, &args.issuer_ca) {
            (Some(_), Some(_)) => {
                return Err(
                    format!("give at most one of --jwks-file and --issuer-ca\n{USAGE}").into(),
                );
            }
            (Some(_), None) if args.issuers.len() > 1 => {
                return Err(format!(
                    "--jwks-file holds the keys of one issuer: give one --issuer with it\n{USAGE}"
                )
                .into());
            }
            (Some(file), None) => {
                let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
                JwksSource::from_json(&text).map_err(|e| format!("{file}: {e}"))?
            }
            (None, ca) => {
                let mut remote = JwksSource::discover(issuer)?;
                if let Some(ca) = ca {
                    remote = remote
                        .root_store(tower_token_binding::identity::root_store_from_pem_file(ca)?);
                }
                JwksSource::from(remote)
            }
        };
        validator = validator.trust(TrustedIssuer::new(issuer, jwks));
    }
    let validator = validator.build()?;
    let mut layer = CnfValidationLayer::new(validator);
    if args.allow_unbound {
        layer = layer.allow_unbound();
    }
    for scope in &args.required_scopes {
        layer = layer.try_required_scope(scope)?;
    }
    if args.terse {
        layer = layer.terse();
    }
    layer = layer.accept_dpop(dpop_verifier(&args)?);
    if args.accept_pop {
        layer = layer.accept_pop(PopVerifier::new());
    }
    if let Some(origin) = &args.public_origin {
        layer = layer.try_public_origin(origin)?;
    }
    if let Some(url) = &args.replay_store {
        layer = layer.replay_store(replay_store(url).await?);
    }
    eprintln!(
        "resource_server: reading the client certificate from {} (--forwarded {}), believed from {}",
        forwarded.header_name(),
        args.forwarded.as_deref().unwrap_or_default(),
        if args.trust_any_peer {
            "any peer (--trust-any-peer)".to_owned()
        } else {
            args.trusted_proxies.join(", ")
        }
    );
    let app = app.layer(layer).layer(forwarded);

    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    announce(&format!("listening on http://{}", listener.local_addr()?))?;
    // With the peer's address on every request (`ConnectInfo`), which the
    // trusted-proxy networks are checked against.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// The profile of `--token-profile`, by default RFC 9068's.
fn token_profile(args: &Args) -> Result<TokenProfile, String> {
    match args.token_profile.as_deref() {
        None => Ok(TokenProfile::rfc9068()),
        Some(name) => TokenProfile::named(name).ok_or_else(|| {
            format!(
                "--token-profile takes one of {}, not {name:?}\n{USAGE}",
                PRESETS.join(", ")
            )
        }),
    }
}

/// The header of `--forwarded-header`: a product's preset, or a name.
fn escaped_pem_header(name: &str) -> Result<HeaderName, String> {
    Ok(match name {
        "nginx" => forwarded::NGINX,
        "ingress-nginx" => forwarded::INGRESS_NGINX,
        "aws-alb-leaf" => forwarded::AWS_ALB_LEAF,
        "aws-alb-chain" => forwarded::AWS_ALB_CHAIN,
        "traefik" => forwarded::TRAEFIK,
        name => {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("--forwarded-header {name:?} is not a header name"))?;
            if !name.contains('-') {
                eprintln!(
                    "resource_server: --forwarded-header {name:?} is not one of the presets \
                     (nginx, ingress-nginx, aws-alb-leaf, aws-alb-chain, traefik): reading a \
                     header of that name"
                );
            }
            header
        }
    })
}

/// The forwarded-certificate layer of `--forwarded`, `--trusted-proxy`,
/// `--trust-any-peer` and `--xfcc-element`.
fn forwarded_layer(args: &Args) -> Result<ForwardedClientCertLayer, BoxError> {
    let mut builder = match (args.forwarded.as_deref(), &args.forwarded_header) {
        (Some("xfcc"), None) => ForwardedClientCertLayer::xfcc(),
        (Some("client-cert"), None) => ForwardedClientCertLayer::client_cert(),
        (Some("escaped-pem"), Some(name)) => {
            ForwardedClientCertLayer::escaped_pem(escaped_pem_header(name)?)
        }
        (Some("escaped-pem"), None) => {
            return Err(format!(
                "--forwarded escaped-pem needs --forwarded-header: the header your proxy \
                 sets (or nginx, ingress-nginx, aws-alb-leaf, aws-alb-chain, traefik)\n{USAGE}"
            )
            .into());
        }
        (Some("xfcc" | "client-cert"), Some(_)) => {
            return Err(format!(
                "--forwarded-header is for --forwarded escaped-pem: the other formats have \
                 their standard header\n{USAGE}"
            )
            .into());
        }
        (other, _) => {
            return Err(format!(
                "--forwarded takes xfcc, client-cert or escaped-pem, not {:?}\n{USAGE}",
                other.unwrap_or_default()
            )
            .into());
        }
    };
    for network in &args.trusted_proxies {
        let network: IpNetwork = network
            .parse()
            .map_err(|e| format!("--trusted-proxy {network}: {e}"))?;
        builder = builder.trusted_proxy(network);
    }
    if args.trust_any_peer {
        builder = builder.trust_any_peer();
    }
    if let Some(element) = &args.xfcc_element {
        builder = builder.xfcc_element(match element.as_str() {
            "only" => XfccElement::Only,
            "first" => XfccElement::First,
            "last" => XfccElement::Last,
            other => {
                return Err(
                    format!("--xfcc-element takes only, first or last, not {other:?}").into(),
                );
            }
        });
    }
    builder.build().map_err(|e| {
        let hint = match (e.kind(), e.setting()) {
            (ConfigErrorKind::Missing, _) => {
                "--forwarded needs --trusted-proxy CIDR (the proxies' addresses), or \
                 --trust-any-peer if nothing but the proxy can reach this server"
            }
            (ConfigErrorKind::Invalid, Some("trusted_proxy")) => {
                "--trusted-proxy 0.0.0.0/0 (or ::/0) trusts everyone: list the proxies' \
                 networks, or say --trust-any-peer"
            }
            (_, Some("xfcc_element")) => "--xfcc-element is for --forwarded xfcc",
            _ => "--trust-any-peer cannot be combined with --trusted-proxy",
        };
        format!("{hint}: {e}").into()
    })
}

fn announce(line: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

#[tokio::main]
async fn main() -> ExitCode {
    // Warnings (an ignored forwarded header, say) show without RUST_LOG.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
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
