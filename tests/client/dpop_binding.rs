//! `TokenBindingLayer` with `Scheme::Dpop` over a plain hyper client (no
//! client certificate), against a resource server over real TLS that checks
//! every proof with `DpopVerifier`; tokens from `ClientCredentials` with
//! DPoP at the test issuer.
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::dpop_api;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use dpop_api::{Nonces, start_api};
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;
use tower::retry::RetryLayer;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_token_binding::TokenBindingLayer;
use tower_token_binding::proof::dpop::{DPOP, DpopProofs, access_token_hash};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::source::ClientCredentials;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::{BoxError, Token, TokenUnavailable, TokenUnavailableKind};

const SECRET: &str = "s3cret";

struct Setup {
    pki: TestPki,
    issuer: TestIssuer,
    proofs: DpopProofs,
    binding: TokenBindingLayer,
}

/// The test issuer and a binding layer whose tokens come from it, bound to
/// a new key.
async fn setup() -> Setup {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", SECRET)
        .start(&pki)
        .await
        .unwrap();
    let source = ClientCredentials::builder()
        .token_endpoint(issuer.token_endpoint())
        .client_id("svc")
        .client_secret_basic(SECRET)
        .dpop(ProofKey::generate(Algorithm::Es256).unwrap())
        .root_store(pki.root_store())
        .build()
        .unwrap();
    let proofs = source.dpop_proofs().unwrap().clone();
    Setup {
        pki,
        issuer,
        proofs,
        binding: TokenBindingLayer::dpop(source),
    }
}

/// Retry outside the binding layer, a plain HTTPS client (no certificate)
/// inside it.
fn client(
    setup: &Setup,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Incoming>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    ServiceBuilder::new()
        .layer(RetryLayer::new(setup.binding.retry_policy()))
        .layer(setup.binding.clone())
        .service(support::https_client(&setup.pki, None))
}

async fn get(
    client: impl Service<Request<Full<Bytes>>, Response = Response<Incoming>, Error = BoxError>,
    url: &str,
) -> (StatusCode, Value) {
    let request = Request::get(url).body(Full::default()).unwrap();
    let response = client.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_request_gets_a_fresh_proof_for_its_method_uri_and_token() {
    let setup = setup().await;
    let api = start_api(&setup.pki, Nonces::Off).await;
    let client = client(&setup);
    let url = format!("{}/orders/7?page=2&q=x", api.base);
    for _ in 0..3 {
        let (status, body) = get(client.clone(), &url).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["jkt"], setup.proofs.thumbprint().to_string());
    }
    // One token for all of them, a proof for each.
    assert_eq!(setup.issuer.token_requests(), 1);
    assert_eq!(api.requests.load(Ordering::SeqCst), 3);
    let seen = api.seen.lock().unwrap();
    let token = seen[0].authorization.strip_prefix("DPoP ").unwrap();
    let mut jtis: Vec<&str> = seen
        .iter()
        .map(|s| s.claims["jti"].as_str().unwrap())
        .collect();
    for s in seen.iter() {
        assert_eq!(s.authorization, format!("DPoP {token}"));
        assert_eq!(s.claims["htm"], "GET");
        assert_eq!(s.claims["htu"], format!("{}/orders/7", api.base));
        assert_eq!(s.claims["ath"], access_token_hash(token));
        assert!(s.claims.get("nonce").is_none());
        let iat = s.claims["iat"].as_u64().unwrap();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(iat) <= 5, "iat {iat}, now {now}");
    }
    jtis.sort_unstable();
    jtis.dedup();
    assert_eq!(jtis.len(), 3, "every proof has its own jti");
}

#[tokio::test]
async fn use_dpop_nonce_is_retried_once_with_a_new_proof_then_remembered() {
    let setup = setup().await;
    let api = start_api(&setup.pki, Nonces::Required).await;
    let client = client(&setup);
    let url = format!("{}/orders", api.base);

    let (status, body) = get(client.clone(), &url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.requests.load(Ordering::SeqCst), 2);
    {
        let seen = api.seen.lock().unwrap();
        assert!(seen[0].claims.get("nonce").is_none());
        assert!(seen[1].claims["nonce"].is_string());
        assert_ne!(seen[0].claims["jti"], seen[1].claims["jti"]);
    }
    // The same token both times: a nonce is not a reason for a new one.
    assert_eq!(setup.issuer.token_requests(), 1);

    // The origin's nonce is remembered: no more refusals.
    for n in 3..=5 {
        let (status, _) = get(client.clone(), &url).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(api.requests.load(Ordering::SeqCst), n);
    }
    let uri: Uri = url.parse().unwrap();
    assert!(setup.proofs.nonces().get(&uri).is_some());
}

#[tokio::test]
async fn a_server_never_satisfied_with_the_nonce_gets_two_tries_not_a_loop() {
    let setup = setup().await;
    let api = start_api(&setup.pki, Nonces::NeverEnough).await;
    let client = client(&setup);
    let (status, body) = get(client.clone(), &format!("{}/x", api.base)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "use_dpop_nonce");
    assert_eq!(api.requests.load(Ordering::SeqCst), 2);
    assert_eq!(setup.issuer.token_requests(), 1);
}

/// A nonce the nonce memory refuses (here 5,000 bytes) is not worth a
/// retry: the server would ask for it again.
#[tokio::test]
async fn a_use_dpop_nonce_whose_nonce_was_not_taken_is_not_retried() {
    let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let source = {
        let proofs = proofs.clone();
        move || {
            let token = Token::new("t")
                .with_token_type("DPoP")
                .dpop_bound(proofs.clone());
            async move { Ok(token) }
        }
    };
    for (nonce, calls_wanted) in [("n".repeat(5000), 1), ("fine-nonce".to_owned(), 2)] {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let binding = TokenBindingLayer::dpop(source.clone());
        let service = ServiceBuilder::new()
            .layer(RetryLayer::new(binding.retry_policy()))
            .layer(binding)
            .service_fn({
                let calls = calls.clone();
                let nonce = nonce.clone();
                move |_request: Request<String>| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let response = Response::builder()
                        .status(StatusCode::UNAUTHORIZED)
                        .header(header::WWW_AUTHENTICATE, "DPoP error=\"use_dpop_nonce\"")
                        .header("dpop-nonce", nonce.as_str())
                        .body(())
                        .unwrap();
                    async move { Ok::<_, Infallible>(response) }
                }
            });
        let request = Request::get("https://api.example/a")
            .body(String::new())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            calls_wanted,
            "nonce of {} bytes",
            nonce.len()
        );
    }
}

#[tokio::test]
async fn dpop_and_authorization_are_sensitive_and_never_in_debug() {
    let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let secret = "the-secret-dpop-token";
    let source = {
        let proofs = proofs.clone();
        move || {
            let token = Token::new(secret)
                .with_token_type("DPoP")
                .dpop_bound(proofs.clone());
            async move { Ok(token) }
        }
    };
    let captured = Arc::new(Mutex::new(None));
    let service = ServiceBuilder::new()
        .layer(TokenBindingLayer::dpop(source))
        .service_fn({
            let captured = captured.clone();
            move |request: Request<()>| {
                let proof = request.headers()[DPOP].clone();
                let auth = request.headers()[header::AUTHORIZATION].clone();
                assert!(proof.is_sensitive() && auth.is_sensitive());
                let shown = format!("{request:?} {:?}", request.headers());
                *captured.lock().unwrap() = Some((shown, proof.to_str().unwrap().to_owned()));
                async { Ok::<_, Infallible>(Response::new(())) }
            }
        });
    let request = Request::get("https://api.example/a").body(()).unwrap();
    service.oneshot(request).await.unwrap();
    let (shown, proof) = captured.lock().unwrap().take().unwrap();
    assert!(!shown.contains(secret), "{shown}");
    assert!(!shown.contains(&proof), "{shown}");
    assert!(shown.contains("Sensitive"), "{shown}");
    // The token's Debug names the key, never the token.
    let token = Token::new(secret).dpop_bound(proofs);
    assert!(!format!("{token:?}").contains(secret));
}

#[tokio::test]
async fn a_token_without_a_dpop_key_or_a_relative_uri_is_an_error_not_a_panic() {
    let echo = tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    // A bearer token under Scheme::Dpop.
    let layer = TokenBindingLayer::dpop(|| async { Ok(Token::new("plain")) });
    let request = Request::get("https://api.example/").body(()).unwrap();
    let e = ServiceBuilder::new()
        .layer(layer)
        .service(echo)
        .oneshot(request)
        .await
        .unwrap_err();
    let e = e.downcast::<TokenUnavailable>().unwrap();
    assert_eq!(e.kind(), TokenUnavailableKind::NotDpopBound);

    // A URI without scheme and host makes no htu.
    let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let layer = TokenBindingLayer::dpop(move || {
        let token = Token::new("t").dpop_bound(proofs.clone());
        async move { Ok(token) }
    });
    let request = Request::get("/relative").body(()).unwrap();
    let e = ServiceBuilder::new()
        .layer(layer)
        .service(echo)
        .oneshot(request)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("absolute"), "{e}");
    // And with unbound fallback allowed, a bearer token goes as Bearer.
    let layer =
        TokenBindingLayer::dpop(|| async { Ok(Token::new("plain")) }).allow_unbound_fallback();
    let cache = layer.cache().unwrap().clone();
    let response = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|request: Request<()>| async move {
            Ok::<_, Infallible>(Response::new(
                request.headers()[header::AUTHORIZATION].clone(),
            ))
        })
        .oneshot(Request::get("https://api.example/").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.body(), "Bearer plain");
    assert_eq!(cache.stats().unbound_fallbacks, 1);
}
