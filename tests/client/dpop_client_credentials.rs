//! `ClientCredentials` with DPoP (RFC 9449) against the test issuer over
//! real TLS: a proof on every token request with each client
//! authentication, the answer checked (type, `cnf.jkt`), the cache key per
//! key, and the `use_dpop_nonce` retry exactly once.
#![cfg(feature = "test-util")]

use std::time::Duration;

use serde_json::Value;
use tower_token_binding::proof::dpop::DpopProofs;
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::source::{
    ClientCredentials, ClientCredentialsBuilder, TokenEndpointError, TokenEndpointErrorKind,
};
use tower_token_binding::test_util::{Fault, TestIssuer, TestPki};
use tower_token_binding::token::{Token, TokenCache, TokenSource};

const SECRET: &str = "s3cret";

fn key() -> ProofKey {
    ProofKey::generate(Algorithm::Es256).unwrap()
}

fn builder(pki: &TestPki, issuer: &TestIssuer) -> ClientCredentialsBuilder {
    ClientCredentials::builder()
        .token_endpoint(issuer.token_endpoint())
        .client_id("svc")
        .root_store(pki.root_store())
        .token_timeout(Duration::from_secs(10))
}

async fn fetch(source: &ClientCredentials) -> Result<Token, TokenEndpointError> {
    source
        .fetch()
        .await
        .map_err(|e| *e.downcast::<TokenEndpointError>().unwrap())
}

fn claims(token: &Token) -> Value {
    crate::support::unverified_claims(token.access_token().secret())
}

#[tokio::test]
async fn every_client_authentication_gets_a_token_bound_to_the_key() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", SECRET)
        .client_secret("svc-post", SECRET)
        .start(&pki)
        .await
        .unwrap();
    let ca_issued = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let self_signed = TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let cases: Vec<(&str, ClientCredentialsBuilder, bool)> = vec![
        (
            "client_secret_basic",
            builder(&pki, &issuer).client_secret_basic(SECRET),
            false,
        ),
        (
            "client_secret_post",
            builder(&pki, &issuer)
                .client_id("svc-post")
                .client_secret_post(SECRET),
            false,
        ),
        (
            "tls_client_auth",
            builder(&pki, &issuer)
                .client_id("mtls-svc")
                .tls_client_auth(ca_issued.clone()),
            true,
        ),
        (
            "self_signed_tls_client_auth",
            builder(&pki, &issuer)
                .client_id("mtls-svc")
                .self_signed_tls_client_auth(self_signed.clone()),
            true,
        ),
    ];
    for (n, (method, builder, with_certificate)) in cases.into_iter().enumerate() {
        let key = key();
        let jkt = key.thumbprint();
        let source = builder.dpop(key).build().unwrap();
        let token = fetch(&source)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(token.token_type(), "DPoP", "{method}");
        assert_eq!(
            token.dpop_proofs().map(DpopProofs::thumbprint),
            Some(jkt),
            "{method}"
        );
        let claims = claims(&token);
        assert_eq!(claims["cnf"]["jkt"], jkt.to_string(), "{method}");
        // Bound to the key, not to the certificate that authenticated.
        assert!(claims["cnf"].get("x5t#S256").is_none(), "{method}");
        assert_eq!(token.identity().is_some(), with_certificate, "{method}");
        assert_eq!(issuer.dpop_tokens_issued(), n + 1, "{method}");
    }
    assert_eq!(issuer.token_requests(), 4);
}

#[tokio::test]
async fn a_wrong_token_type_is_refused_naming_both_types() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", SECRET)
        .start(&pki)
        .await
        .unwrap();
    let source = builder(&pki, &issuer)
        .client_secret_basic(SECRET)
        .dpop(key())
        .build()
        .unwrap();
    for answered in ["Bearer", "mtls_pop", "DPoP2"] {
        issuer.set_fault(Some(Fault::TokenType(answered.to_owned())));
        let e = fetch(&source).await.unwrap_err();
        assert_eq!(e.kind(), TokenEndpointErrorKind::TokenType, "{e}");
        let message = e.to_string();
        assert!(
            message.contains("DPoP") && message.contains(&format!("{answered:?}")),
            "{message}"
        );
    }
    // The type is compared without regard to case.
    issuer.set_fault(Some(Fault::TokenType("dpop".to_owned())));
    let token = fetch(&source).await.unwrap();
    assert_eq!(token.token_type(), "dpop");
    assert!(token.dpop_proofs().is_some());
}

#[tokio::test]
async fn a_token_bound_to_another_key_is_refused() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", SECRET)
        .start(&pki)
        .await
        .unwrap();
    let ours = key();
    let other = key().thumbprint();
    let source = builder(&pki, &issuer)
        .client_secret_basic(SECRET)
        .dpop(ours.clone())
        .build()
        .unwrap();
    issuer.set_fault(Some(Fault::BindToKey(other)));
    let e = fetch(&source).await.unwrap_err();
    assert_eq!(e.kind(), TokenEndpointErrorKind::KeyMismatch, "{e}");
    let message = e.to_string();
    assert!(
        message.contains(&other.to_string()) && message.contains(&ours.thumbprint().to_string()),
        "{message}"
    );

    // A JWT without cnf is no DPoP token: returned unbound, for the binding
    // layer to refuse.
    issuer.set_fault(Some(Fault::Unbound));
    let token = fetch(&source).await.unwrap();
    assert!(token.dpop_proofs().is_none());
}

#[tokio::test]
async fn the_token_endpoint_asks_for_a_nonce_and_gets_it_once() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", SECRET)
        .require_dpop_nonce()
        .start(&pki)
        .await
        .unwrap();
    let source = builder(&pki, &issuer)
        .client_secret_basic(SECRET)
        .dpop(key())
        .build()
        .unwrap();
    let token = fetch(&source).await.unwrap();
    assert_eq!(token.token_type(), "DPoP");
    // One refusal, one retry with the nonce, one token.
    assert_eq!(issuer.token_requests(), 2);
    assert_eq!(issuer.dpop_nonce_challenges(), 1);
    assert_eq!(issuer.tokens_issued(), 1);
    let nonces = source.dpop_proofs().unwrap().nonces();
    let endpoint = issuer.token_endpoint().parse().unwrap();
    assert_eq!(
        nonces.get(&endpoint).as_deref(),
        issuer.dpop_nonce().as_deref()
    );

    // The nonce is remembered: the next token request carries it at once.
    fetch(&source).await.unwrap();
    assert_eq!(issuer.token_requests(), 3);
    assert_eq!(issuer.dpop_nonce_challenges(), 1);
    assert_eq!(issuer.tokens_issued(), 2);
}

#[tokio::test]
async fn a_nonce_refused_again_is_the_answer_not_a_loop() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", SECRET)
        .start(&pki)
        .await
        .unwrap();
    let source = builder(&pki, &issuer)
        .client_secret_basic(SECRET)
        .dpop(key())
        .build()
        .unwrap();
    issuer.set_fault(Some(Fault::UseDpopNonce));
    let e = fetch(&source).await.unwrap_err();
    assert_eq!(e.kind(), TokenEndpointErrorKind::OAuth, "{e}");
    assert_eq!(e.oauth_error(), Some("use_dpop_nonce"));
    assert_eq!(issuer.token_requests(), 2);

    // Through the token cache too: one fetch, two requests.
    let cache = TokenCache::new(source);
    assert!(cache.get().await.is_err());
    assert_eq!(issuer.token_requests(), 4);
    assert_eq!(cache.stats().fetches, 1);
}

#[tokio::test]
async fn without_dpop_a_nonce_refusal_is_not_retried() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let source = builder(&pki, &issuer)
        .tls_client_auth(identity)
        .build()
        .unwrap();
    issuer.set_fault(Some(Fault::UseDpopNonce));
    // No proof is sent, so the fault does not apply: an mTLS-bound token.
    let token = fetch(&source).await.unwrap();
    assert_eq!(token.token_type(), "Bearer");
    assert!(token.dpop_proofs().is_none());
    assert_eq!(issuer.token_requests(), 1);
}

#[test]
fn the_cache_key_holds_the_jkt() {
    let make = |key: ProofKey| {
        ClientCredentials::builder()
            .token_endpoint("https://as.example/token")
            .client_id("svc")
            .client_secret_basic(SECRET)
            .dpop(key)
            .build()
            .unwrap()
    };
    let (a, b) = (key(), key());
    let by_a = make(a.clone());
    assert_eq!(by_a.cache_key().jkt(), Some(a.thumbprint()));
    assert_eq!(by_a.cache_key(), make(a.clone()).cache_key());
    assert_ne!(by_a.cache_key(), make(b).cache_key());
    assert!(format!("{:?}", by_a.cache_key()).contains(&a.thumbprint().to_string()));
    // The same settings without DPoP are another key again.
    let identity = TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let bearer = ClientCredentials::builder()
        .token_endpoint("https://as.example/token")
        .client_id("svc")
        .client_secret_basic(SECRET)
        .identity(identity)
        .build()
        .unwrap();
    assert_ne!(by_a.cache_key(), bearer.cache_key());
    assert_eq!(bearer.cache_key().jkt(), None);
    // Debug names the key's thumbprint, never the secret.
    let shown = format!("{by_a:?}");
    assert!(!shown.contains(SECRET), "{shown}");
}

#[test]
fn misconfigurations_fail_at_build() {
    let base = || {
        ClientCredentials::builder()
            .token_endpoint("https://as.example/token")
            .client_id("svc")
    };
    // DPoP needs some client authentication.
    let e = base().dpop(key()).build().unwrap_err();
    assert!(e.to_string().contains("client authentication"), "{e}");
    // Two bindings at once.
    let e = base()
        .client_secret_basic(SECRET)
        .dpop(key())
        .entra_mtls_pop()
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("DPoP"), "{e}");
    // A secret without DPoP still needs a certificate.
    let e = base().client_secret_basic(SECRET).build().unwrap_err();
    assert!(e.to_string().contains("dpop"), "{e}");
}
