//! A resource server over real TLS that checks Microsoft PoP signed HTTP
//! requests with `PopVerifier`, for tests of the client side. Include it
//! with `#[path = "support/pop_api.rs"] mod pop_api;`.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value, json};
use tower_token_binding::proof::jws::CompactJws;
use tower_token_binding::proof::pop::PopVerifier;
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::test_util::TestPki;

/// A request as the resource server saw it.
pub struct Seen {
    pub authorization: String,
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
}

pub struct Api {
    pub base: String,
    pub requests: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// The nonces the server asked for, in its challenges' order.
    pub challenged: Arc<Mutex<Vec<String>>>,
}

/// Whether the resource wants its own nonce in the SHR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceDemand {
    /// Any nonce will do.
    None,
    /// An SHR without the server's current nonce gets `401` with
    /// `WWW-Authenticate: PoP ..., nonce="<current>", ...`; a nonce is good
    /// for one accepted request, then the server has a new one.
    Required,
    /// Every SHR gets `401` with a new nonce: never satisfied.
    NeverSatisfied,
}

/// The server's nonce number `n`: it has a quote and a backslash, to be
/// escaped in the challenge's quoted string.
pub fn server_nonce(n: usize) -> String {
    format!("srv\"\\{n}")
}

/// Serves a resource that takes `Authorization: PoP <SHR>`, checks the SHR
/// with `PopVerifier` against the request as it arrived (method, URI, Host,
/// headers), checks that the token's `cnf.kid` (read without verifying the
/// token: the token's own validation is the server layer's business) names
/// the SHR's key, refuses a replayed SHR, and records every SHR.
pub async fn start_api(pki: &TestPki) -> Api {
    start_api_with(pki, PopVerifier::new()).await
}

/// [`start_api`] with the verifier given (one that requires `q` or `h`,
/// say).
pub async fn start_api_with(pki: &TestPki, verifier: PopVerifier) -> Api {
    start_api_demanding(pki, verifier, NonceDemand::None).await
}

/// [`start_api_with`], wanting server nonces as `demand` says.
pub async fn start_api_demanding(pki: &TestPki, verifier: PopVerifier, demand: NonceDemand) -> Api {
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
    let replays = Arc::new(Mutex::new(HashSet::new()));
    let challenged = Arc::new(Mutex::new(Vec::new()));
    let current = Arc::new(AtomicUsize::new(1));
    let service = {
        let (requests, seen, challenged) = (requests.clone(), seen.clone(), challenged.clone());
        tower::service_fn(move |request: Request<Incoming>| {
            requests.fetch_add(1, Ordering::SeqCst);
            let authorization = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let shr = authorization.strip_prefix("PoP ").unwrap_or_default();
            let mut sent_nonce = None;
            if let Ok(jws) = CompactJws::parse(shr) {
                let claims = jws.claims().clone();
                sent_nonce = claims["nonce"].as_str().map(str::to_owned);
                seen.lock().unwrap().push(Seen {
                    authorization: authorization.clone(),
                    header: jws.header().clone(),
                    claims,
                });
            }
            let wanted = server_nonce(current.load(Ordering::SeqCst));
            let satisfied = match demand {
                NonceDemand::None => true,
                NonceDemand::Required => sent_nonce.as_deref() == Some(wanted.as_str()),
                NonceDemand::NeverSatisfied => false,
            };
            if !satisfied {
                let nonce = match demand {
                    NonceDemand::NeverSatisfied => {
                        server_nonce(current.fetch_add(1, Ordering::SeqCst) + 1)
                    }
                    _ => wanted,
                };
                let escaped = nonce.replace('\\', "\\\\").replace('"', "\\\"");
                challenged.lock().unwrap().push(nonce);
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    format!(
                        "Bearer realm=\"api\", pop realm=\"pop api\", error=\"invalid_token\", \
                         Nonce=\"{escaped}\", error_description=\"a server nonce is required\""
                    )
                    .parse()
                    .unwrap(),
                );
                return std::future::ready(Ok::<_, Infallible>(response));
            }
            let result = verifier
                .verify(
                    shr,
                    request.method(),
                    request.uri(),
                    request.headers(),
                    None,
                    SystemTime::now(),
                )
                .map_err(|e| e.description().into_owned())
                .and_then(|verified| {
                    let cnf_kid = token_cnf_kid(verified.at());
                    if !verified.is_bound_to(&cnf_kid) {
                        return Err("the token is bound to another key".to_owned());
                    }
                    if !replays.lock().unwrap().insert(verified.replay_key()) {
                        return Err("the PoP SHR has been used before".to_owned());
                    }
                    if demand == NonceDemand::Required {
                        // A server nonce is good for one request.
                        current.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(json!({
                        "kid": verified.kid(),
                        "cnf_kid": cnf_kid,
                        "alg": verified.algorithm().as_str(),
                    }))
                });
            let (status, body) = match result {
                Ok(body) => (StatusCode::OK, body),
                Err(description) => (
                    StatusCode::UNAUTHORIZED,
                    json!({ "error": "invalid_token", "error_description": description }),
                ),
            };
            let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
            *response.status_mut() = status;
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    format!(
                        "PoP error=\"invalid_token\", error_description=\"{}\"",
                        body["error_description"].as_str().unwrap_or_default()
                    )
                    .parse()
                    .unwrap(),
                );
            }
            std::future::ready(Ok::<_, Infallible>(response))
        })
    };
    tokio::spawn(server::serve(listener, tls, service).into_future());
    Api {
        base,
        requests,
        seen,
        challenged,
    }
}

/// The `cnf.kid` of a JWT access token, unverified; empty when there is
/// none.
fn token_cnf_kid(token: &str) -> String {
    tower_token_binding::proof::jws::CompactJws::parse(token)
        .ok()
        .and_then(|jws| {
            jws.claims()
                .get("cnf")?
                .get("kid")?
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}
