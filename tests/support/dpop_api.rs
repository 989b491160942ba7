//! A resource server over real TLS that checks DPoP proofs, for tests of
//! the client side. Include it with
//! `#[path = "support/dpop_api.rs"] mod dpop_api;`.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tower_token_binding::proof::dpop::{
    DPOP, DPOP_NONCE, DpopErrorKind, DpopVerifier, StatelessNonces,
};
use tower_token_binding::proof::jws::CompactJws;
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::test_util::TestPki;

/// How the resource server treats nonces.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Nonces {
    /// None asked for.
    Off,
    /// A current nonce is required (`use_dpop_nonce` otherwise).
    Required,
    /// Every proof is answered with `use_dpop_nonce` and a new nonce.
    NeverEnough,
}

/// A request as the resource server saw it.
pub struct Seen {
    pub authorization: String,
    pub claims: Map<String, Value>,
}

pub struct Api {
    pub base: String,
    pub requests: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

/// Serves a resource that checks DPoP proofs with `DpopVerifier` over TLS
/// (client certificates optional), answering `use_dpop_nonce` as `mode`
/// says, and records every proof.
pub async fn start_api(pki: &TestPki, mode: Nonces) -> Api {
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let nonces = StatelessNonces::random().unwrap();
    let verifier = match mode {
        Nonces::Required => DpopVerifier::builder().nonces(nonces.clone()).build(),
        _ => DpopVerifier::new(),
    };
    let service = {
        let (base, requests, seen) = (base.clone(), requests.clone(), seen.clone());
        tower::service_fn(move |request: Request<Incoming>| {
            let n = requests.fetch_add(1, Ordering::SeqCst);
            let header = |name| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let (authorization, proof) = (header(header::AUTHORIZATION), header(DPOP));
            let token = authorization.strip_prefix("DPoP ").unwrap_or_default();
            let htu: Uri = format!("{base}{}", request.uri().path_and_query().unwrap())
                .parse()
                .unwrap();
            if let Ok(jws) = CompactJws::parse(&proof) {
                seen.lock().unwrap().push(Seen {
                    authorization: authorization.clone(),
                    claims: jws.into_claims(),
                });
            }
            let now = SystemTime::now();
            let result = verifier.verify(&proof, request.method(), &htu, Some(token), now);
            let (status, body, nonce) = match (mode, result) {
                (Nonces::NeverEnough, Ok(_)) => (
                    StatusCode::UNAUTHORIZED,
                    json!({ "error": "use_dpop_nonce" }),
                    Some(format!("nonce-{n}")),
                ),
                (_, Err(e))
                    if matches!(
                        e.kind(),
                        DpopErrorKind::MissingNonce | DpopErrorKind::InvalidNonce
                    ) =>
                {
                    (
                        StatusCode::UNAUTHORIZED,
                        json!({ "error": "use_dpop_nonce" }),
                        Some(nonces.current(now)),
                    )
                }
                (_, Err(e)) => (
                    StatusCode::UNAUTHORIZED,
                    json!({ "error": "invalid_dpop_proof", "detail": e.to_string() }),
                    None,
                ),
                (_, Ok(verified)) => (
                    StatusCode::OK,
                    json!({ "jkt": verified.jkt() }),
                    (mode == Nonces::Required).then(|| nonces.current(now)),
                ),
            };
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            *response.status_mut() = status;
            if status == StatusCode::UNAUTHORIZED {
                let error = body["error"].as_str().unwrap_or_default();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    format!("DPoP error=\"{error}\", algs=\"ES256\"")
                        .parse()
                        .unwrap(),
                );
            }
            if let Some(nonce) = nonce {
                response
                    .headers_mut()
                    .insert(DPOP_NONCE, nonce.parse().unwrap());
            }
            async move { Ok::<_, Infallible>(response) }
        })
    };
    tokio::spawn(server::serve(listener, tls, service).into_future());
    Api {
        base,
        requests,
        seen,
    }
}
