//! The client side of Microsoft's PoP (signed HTTP requests) over real TLS:
//! `ClientCredentials::pop` against the test issuer (`token_type=pop`,
//! `req_cnf`, the answer's type and `cnf.kid` checked, the cache key per
//! KID), and `BoundClient` with `Scheme::Pop` (one setting, an RSA-2048
//! PS256 key by default, ES256 given) against a resource that checks every
//! SHR with `PopVerifier`.
#![cfg(feature = "test-util")]

use crate::support::pop_api;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderName;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use pop_api::{NonceDemand, server_nonce, start_api, start_api_demanding};
use serde_json::{Value, json};
use tower_token_binding::BoundClient;
use tower_token_binding::ConfigErrorKind;
use tower_token_binding::binding::{HeaderWord, Scheme};
use tower_token_binding::client::BoundClientBuilder;
use tower_token_binding::proof::pop::{PopProofs, PopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::source::{
    ClientCredentials, ClientCredentialsBuilder, TokenEndpointError, TokenEndpointErrorKind,
};
use tower_token_binding::test_util::{Fault, TestIssuer, TestPki};
use tower_token_binding::token::{Token, TokenSource, TokenUnavailable, TokenUnavailableKind};

const SECRET: &str = "s3cret";

fn credentials(pki: &TestPki, issuer: &TestIssuer) -> ClientCredentialsBuilder {
    ClientCredentials::builder()
        .token_endpoint(issuer.token_endpoint())
        .client_id("svc")
        .client_secret_basic(SECRET)
        .root_store(pki.root_store())
        .token_timeout(Duration::from_secs(10))
}

async fn fetch(source: &ClientCredentials) -> Result<Token, TokenEndpointError> {
    source
        .fetch()
        .await
        .map_err(|e| *e.downcast::<TokenEndpointError>().unwrap())
}

fn claims(token: &str) -> Value {
    crate::support::unverified_claims(token)
}

async fn issuer(pki: &TestPki) -> TestIssuer {
    TestIssuer::builder()
        .client_secret("svc", SECRET)
        .start(pki)
        .await
        .unwrap()
}

#[tokio::test]
async fn client_credentials_get_a_token_bound_to_the_kid() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    for alg in [Algorithm::Ps256, Algorithm::Es256] {
        let key = ProofKey::generate(alg).unwrap();
        let kid = key.thumbprint();
        let source = credentials(&pki, &issuer).pop(key).build().unwrap();
        assert_eq!(source.pop_proofs().unwrap().kid(), kid);
        let token = fetch(&source).await.unwrap();
        assert_eq!(token.token_type(), "pop");
        assert_eq!(token.pop_proofs().unwrap().kid(), kid);
        assert!(token.dpop_proofs().is_none() && token.identity().is_none());
        let claims = claims(token.access_token().secret());
        assert_eq!(
            claims["cnf"],
            json!({ "kid": kid.to_string(), "xms_ksl": "sw" })
        );
    }
    // A certificate may authenticate; the token is still bound to the key.
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let kid = key.thumbprint();
    let source = ClientCredentials::builder()
        .token_endpoint(issuer.token_endpoint())
        .client_id("mtls-svc")
        .tls_client_auth(identity)
        .root_store(pki.root_store())
        .pop(key)
        .build()
        .unwrap();
    let token = fetch(&source).await.unwrap();
    assert_eq!(token.pop_proofs().unwrap().kid(), kid);
    assert!(token.identity().is_some());
    assert_eq!(
        claims(token.access_token().secret())["cnf"],
        json!({ "kid": kid.to_string(), "xms_ksl": "sw" })
    );
}

#[tokio::test]
async fn the_answer_is_checked_and_the_cache_key_holds_the_kid() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let source = credentials(&pki, &issuer).pop(key.clone()).build().unwrap();

    issuer.set_fault(Some(Fault::TokenType("Bearer".to_owned())));
    let e = fetch(&source).await.unwrap_err();
    assert_eq!(e.kind(), TokenEndpointErrorKind::TokenType);
    let shown = e.to_string();
    assert!(shown.contains("pop") && shown.contains("Bearer"), "{shown}");
    // Any case of pop will do.
    issuer.set_fault(Some(Fault::TokenType("PoP".to_owned())));
    assert!(fetch(&source).await.unwrap().pop_proofs().is_some());

    let other = ProofKey::generate(Algorithm::Es256).unwrap().thumbprint();
    issuer.set_fault(Some(Fault::BindToKey(other)));
    let e = fetch(&source).await.unwrap_err();
    assert_eq!(e.kind(), TokenEndpointErrorKind::KeyMismatch);
    assert!(e.to_string().contains(&other.to_string()), "{e}");

    // A JWT without cnf: returned, but not bound to the key.
    issuer.set_fault(Some(Fault::Unbound));
    let token = fetch(&source).await.unwrap();
    assert!(token.pop_proofs().is_none());
    issuer.set_fault(None);

    // The cache key: per KID, and not DPoP's for the same key.
    let same = credentials(&pki, &issuer).pop(key.clone()).build().unwrap();
    let another = credentials(&pki, &issuer)
        .pop(ProofKey::generate(Algorithm::Es256).unwrap())
        .build()
        .unwrap();
    let dpop = credentials(&pki, &issuer).dpop(key).build().unwrap();
    assert_eq!(source.cache_key(), same.cache_key());
    assert_ne!(source.cache_key(), another.cache_key());
    assert_ne!(source.cache_key(), dpop.cache_key());

    // One binding at a time.
    let both = credentials(&pki, &issuer)
        .pop(ProofKey::generate(Algorithm::Es256).unwrap())
        .dpop(ProofKey::generate(Algorithm::Es256).unwrap())
        .build();
    assert!(both.is_err());
    let entra = credentials(&pki, &issuer)
        .pop(ProofKey::generate(Algorithm::Es256).unwrap())
        .entra_mtls_pop()
        .build();
    assert!(entra.is_err());
}

fn client(pki: &TestPki, issuer: &TestIssuer) -> BoundClientBuilder {
    BoundClient::builder()
        .token_endpoint(issuer.token_endpoint())
        .client_id("svc")
        .client_secret_basic(SECRET)
        .root_store(pki.root_store())
        .scheme(Scheme::Pop)
}

#[tokio::test]
async fn bound_client_sends_a_fresh_shr_per_request_ps256_by_default() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let api = start_api(&pki).await;
    let client = client(&pki, &issuer).build().unwrap();
    let shrs = client.pop_proofs().unwrap().clone();
    assert_eq!(shrs.key().algorithm(), Algorithm::Ps256);
    assert_eq!(shrs.key().public_jwk().key_type(), "RSA");
    assert!(client.identity().is_none());

    for _ in 0..3 {
        let response = client
            .get(&format!("{}/orders/a%20b?page=2", api.base))
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{body}");
        assert_eq!(body["kid"], shrs.kid().to_string());
        assert_eq!(body["cnf_kid"], shrs.kid().to_string());
        assert_eq!(body["alg"], "PS256");
    }
    assert_eq!(client.cache().unwrap().stats().fetches, 1);
    assert_eq!(client.pool().stats().identities, 0);

    let seen = api.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    let first = &seen[0];
    assert!(first.authorization.starts_with("PoP "));
    assert_eq!(first.header["typ"], "pop");
    assert_eq!(first.header["alg"], "PS256");
    assert_eq!(first.header["kid"], shrs.kid().to_string());
    let port = api.base.rsplit(':').next().unwrap();
    assert_eq!(first.claims["u"], format!("localhost:{port}"));
    assert_eq!(first.claims["p"], "/orders/a%20b");
    assert_eq!(first.claims["m"], "GET");
    assert!(first.claims["at"].as_str().unwrap().starts_with("ey"));
    assert!(first.claims["ts"].is_u64());
    assert_eq!(first.claims["cnf"]["jwk"]["kty"], "RSA");
    for absent in ["q", "h", "b"] {
        assert!(!first.claims.contains_key(absent), "{absent}");
    }
    // A new nonce (128 random bits) for every request.
    let nonces: std::collections::HashSet<_> =
        seen.iter().map(|s| s.claims["nonce"].clone()).collect();
    assert_eq!(nonces.len(), 3);
    let nonce = URL_SAFE_NO_PAD
        .decode(first.claims["nonce"].as_str().unwrap())
        .unwrap();
    assert_eq!(nonce.len(), 16);
}

#[tokio::test]
async fn bound_client_with_an_es256_key_given_or_from_a_file() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let api = start_api(&pki).await;
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let kid = key.thumbprint();
    let es256 = client(&pki, &issuer).pop_key(key).build().unwrap();
    let request = http::Request::post(format!("{}/items", api.base))
        .body(http_body_util::Full::new(bytes::Bytes::from("payload")))
        .unwrap();
    let response = es256.send(request).await.unwrap();
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert_eq!(body["kid"], kid.to_string());
    assert_eq!(body["alg"], "ES256");
    assert_eq!(api.seen.lock().unwrap()[0].claims["m"], "POST");

    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rsa-pkcs8.key");
    let expected = ProofKey::from_pem_file(file).unwrap().thumbprint();
    let from_file = client(&pki, &issuer).pop_key_file(file).build().unwrap();
    assert_eq!(from_file.pop_proofs().unwrap().kid(), expected);
    let response = from_file.get(&format!("{}/x", api.base)).await.unwrap();
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert_eq!(body["kid"], expected.to_string());
}

#[tokio::test]
async fn a_token_not_bound_to_a_key_is_refused_under_pop() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let api = start_api(&pki).await;
    issuer.set_fault(Some(Fault::Unbound));
    let unbound = client(&pki, &issuer).build().unwrap();
    let e = unbound.get(&format!("{}/x", api.base)).await.unwrap_err();
    let first: &(dyn std::error::Error + 'static) = &*e;
    let unavailable = std::iter::successors(Some(first), |e| e.source())
        .find_map(|e| e.downcast_ref::<TokenUnavailable>())
        .unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(unavailable.kind(), TokenUnavailableKind::NotPopBound);
    assert_eq!(api.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_token_source_with_pop_bound_tokens() {
    let pki = TestPki::new().unwrap();
    let api = start_api(&pki).await;
    let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    // A JWT-looking token whose cnf.kid names the key (the test resource
    // reads it without verifying).
    let payload = URL_SAFE_NO_PAD.encode(json!({ "cnf": { "kid": shrs.kid() } }).to_string());
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT"}"#);
    let at = format!("{header}.{payload}.c2ln");
    let client = BoundClient::builder()
        .root_store(pki.root_store())
        .scheme(Scheme::Pop)
        .token_source({
            let shrs = shrs.clone();
            move || {
                let token = Token::new(at.clone())
                    .with_token_type("pop")
                    .pop_bound(shrs.clone());
                async move { Ok(token) }
            }
        })
        .build()
        .unwrap();
    let response = client.get(&format!("{}/x", api.base)).await.unwrap();
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    assert_eq!(body["kid"], shrs.kid().to_string());
}

#[tokio::test]
async fn q_and_h_on_demand() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let api = pop_api::start_api_with(
        &pki,
        PopVerifier::builder()
            .require_query(true)
            .require_headers([CONTENT_TYPE])
            .build(),
    )
    .await;
    let url = format!("{}/items?b=bar&a=foo&c=duck", api.base);
    let request = || {
        http::Request::get(&url)
            .header(CONTENT_TYPE, "application/json")
            .header("x-request-id", "42")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    // Without q and h, the resource refuses.
    let plain = client(&pki, &issuer).build().unwrap();
    let response = plain.send(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let signing = client(&pki, &issuer)
        .pop_sign_query()
        .pop_sign_headers([CONTENT_TYPE, HeaderName::from_static("x-request-id")])
        .build()
        .unwrap();
    let response = signing.send(request()).await.unwrap();
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    let last = api.seen.lock().unwrap().last().unwrap().claims.clone();
    assert_eq!(
        last["q"],
        json!([
            ["b", "a", "c"],
            "u4LgkGUWhP9MsKrEjA4dizIllDXluDku6ZqCeyuR-JY"
        ])
    );
    assert_eq!(last["h"][0], json!(["content-type", "x-request-id"]));
    assert!(!last.contains_key("b"));

    // A request without a header to sign fails before it is sent.
    let before = api.requests.load(std::sync::atomic::Ordering::SeqCst);
    let bare = http::Request::get(&url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert!(signing.send(bare).await.is_err());
    assert_eq!(
        api.requests.load(std::sync::atomic::Ordering::SeqCst),
        before
    );
}

#[tokio::test]
async fn misconfigurations_fail_at_build() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let key = || ProofKey::generate(Algorithm::Es256).unwrap();
    let kind = |b: BoundClientBuilder| b.build().map(drop).unwrap_err().kind();
    let identity = TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    // A PoP key without the PoP scheme.
    assert_eq!(
        kind(
            client(&pki, &issuer)
                .scheme(Scheme::MtlsPop)
                .identity(identity)
                .pop_key(key())
        ),
        ConfigErrorKind::Conflict
    );
    assert_eq!(
        kind(client(&pki, &issuer).scheme(Scheme::Dpop).pop_key(key())),
        ConfigErrorKind::Conflict
    );
    assert_eq!(
        kind(client(&pki, &issuer).entra_mtls_pop()),
        ConfigErrorKind::Conflict
    );
    assert_eq!(
        kind(client(&pki, &issuer).header_word(HeaderWord::Bearer)),
        ConfigErrorKind::Conflict
    );
    assert_eq!(
        kind(
            BoundClient::builder()
                .token_endpoint(issuer.token_endpoint())
                .client_id("svc")
                .scheme(Scheme::Pop)
        ),
        ConfigErrorKind::Missing
    );
    assert_eq!(
        kind(client(&pki, &issuer).pop_key_file("/nonexistent/pop.key")),
        ConfigErrorKind::Unreadable
    );
    assert_eq!(
        kind(client(&pki, &issuer).scheme(Scheme::Dpop).pop_sign_query()),
        ConfigErrorKind::Conflict
    );
    let own = BoundClient::builder()
        .scheme(Scheme::Pop)
        .token_source(|| async { Ok(Token::new("t")) });
    assert_eq!(kind(own.pop_key(key())), ConfigErrorKind::Conflict);
}

/// Whether `nonce` is one of the client's own: 128 random bits, base64url.
fn is_random_nonce(nonce: &Value) -> bool {
    nonce
        .as_str()
        .and_then(|n| URL_SAFE_NO_PAD.decode(n).ok())
        .is_some_and(|bytes| bytes.len() == 16)
}

#[tokio::test]
async fn a_server_nonce_is_used_once_after_one_retry() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let api = start_api_demanding(&pki, PopVerifier::new(), NonceDemand::Required).await;
    let client = client(&pki, &issuer).build().unwrap();
    let shrs = client.pop_proofs().unwrap().clone();
    let url = format!("{}/orders", api.base);

    // First request: a random nonce, the challenge, one retry with the
    // server's nonce (quoted-string escapes undone), accepted.
    let response = client.get(&url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.requests.load(Ordering::SeqCst), 2);
    assert_eq!(*api.challenged.lock().unwrap(), [server_nonce(1)]);
    {
        let seen = api.seen.lock().unwrap();
        assert!(is_random_nonce(&seen[0].claims["nonce"]));
        assert_eq!(seen[1].claims["nonce"], server_nonce(1));
        assert_eq!(seen[0].claims["at"], seen[1].claims["at"]);
    }
    // The nonce was consumed by the retried SHR.
    assert!(shrs.nonces().is_empty());
    // Same token throughout: a nonce challenge does not drop it.
    assert_eq!(client.cache().unwrap().stats().fetches, 1);

    // Next request: a random nonce again (the server then wants its new
    // one, and gets it on the one retry).
    let response = client.get(&url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(api.requests.load(Ordering::SeqCst), 4);
    assert_eq!(
        *api.challenged.lock().unwrap(),
        [server_nonce(1), server_nonce(2)]
    );
    let seen = api.seen.lock().unwrap();
    assert!(is_random_nonce(&seen[2].claims["nonce"]));
    assert_ne!(seen[2].claims["nonce"], server_nonce(1));
    assert_eq!(seen[3].claims["nonce"], server_nonce(2));
    assert_eq!(client.cache().unwrap().stats().fetches, 1);
}

#[tokio::test]
async fn a_server_never_satisfied_gets_exactly_two_attempts() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let api = start_api_demanding(&pki, PopVerifier::new(), NonceDemand::NeverSatisfied).await;
    let client = client(&pki, &issuer).build().unwrap();
    let url = format!("{}/orders", api.base);

    let response = client.get(&url).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.requests.load(Ordering::SeqCst), 2);
    {
        let seen = api.seen.lock().unwrap();
        assert!(is_random_nonce(&seen[0].claims["nonce"]));
        assert_eq!(seen[1].claims["nonce"], server_nonce(2));
    }
    // The challenge said invalid_token too, but it was about the nonce:
    // the token was not dropped.
    assert_eq!(client.cache().unwrap().stats().fetches, 1);

    // The last challenge's nonce waits for the next request, which has
    // its own budget: again exactly two attempts.
    let response = client.get(&url).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.requests.load(Ordering::SeqCst), 4);
    let seen = api.seen.lock().unwrap();
    assert_eq!(seen[2].claims["nonce"], server_nonce(3));
    assert_eq!(seen[3].claims["nonce"], server_nonce(4));
}
