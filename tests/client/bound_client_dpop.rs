//! `BoundClient` with `Scheme::Dpop`: one setting selects DPoP, the key is
//! generated or given, no client certificate is needed, and every
//! misconfiguration fails at build.
#![cfg(feature = "test-util")]

use crate::support::dpop_api;
use std::sync::atomic::Ordering;

use dpop_api::{Nonces, start_api};
use http::StatusCode;
use serde_json::Value;
use tower_token_binding::BoundClient;
use tower_token_binding::ConfigErrorKind;
use tower_token_binding::binding::{HeaderWord, Scheme};
use tower_token_binding::client::BoundClientBuilder;
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::Token;

const SECRET: &str = "s3cret";

fn builder(pki: &TestPki, issuer: &TestIssuer) -> BoundClientBuilder {
    BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .client_secret_basic(SECRET)
        .root_store(pki.root_store())
        .scheme(Scheme::Dpop)
}

#[tokio::test]
async fn one_setting_selects_dpop_with_a_generated_key_and_nonces_both_ways() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", SECRET)
        .require_dpop_nonce()
        .start(&pki)
        .await
        .unwrap();
    let api = start_api(&pki, Nonces::Required).await;
    let client = builder(&pki, &issuer).build().unwrap();
    let jkt = client.dpop_proofs().unwrap().thumbprint();
    assert!(client.identity().is_none());

    let response = client.get(&format!("{}/orders", api.base)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["jkt"], jkt.to_string());
    // Each side asked for a nonce once.
    assert_eq!(issuer.token_requests(), 2);
    assert_eq!(issuer.dpop_nonce_challenges(), 1);
    assert_eq!(api.requests.load(Ordering::SeqCst), 2);

    for _ in 0..3 {
        let response = client.get(&format!("{}/orders", api.base)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(api.requests.load(Ordering::SeqCst), 5);
    assert_eq!(client.cache().unwrap().stats().fetches, 1);
    // No certificate anywhere: the pool made no client for an identity.
    assert_eq!(client.pool().stats().identities, 0);
}

#[tokio::test]
async fn the_key_comes_from_a_file_and_a_certificate_may_authenticate() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let api = start_api(&pki, Nonces::Off).await;
    let key_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client-pkcs8.key");
    let expected = ProofKey::from_pem_file(key_file).unwrap().thumbprint();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki
        .client_cert("svc.example")
        .unwrap()
        .write_pem_files(dir.path(), "client")
        .unwrap();
    let client = BoundClient::builder()
        .token_endpoint(issuer.token_endpoint())
        .client_id("svc")
        .identity_files(&cert, &key)
        .root_store(pki.root_store())
        .scheme(Scheme::Dpop)
        .dpop_key_file(key_file)
        .build()
        .unwrap();
    assert_eq!(client.dpop_proofs().unwrap().thumbprint(), expected);
    let response = client.get(&format!("{}/x", api.base)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["jkt"], expected.to_string());
    assert_eq!(issuer.dpop_tokens_issued(), 1);
}

#[tokio::test]
async fn misconfigurations_fail_at_build() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let key = || ProofKey::generate(Algorithm::Es256).unwrap();
    let kind = |b: BoundClientBuilder| b.build().map(drop).unwrap_err().kind();

    // A DPoP key without the DPoP scheme.
    let identity = TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    assert_eq!(
        kind(
            builder(&pki, &issuer)
                .scheme(Scheme::MtlsPop)
                .identity(identity)
                .dpop_key(key())
        ),
        ConfigErrorKind::Conflict
    );
    // Entra's mtls_pop or a header word with DPoP.
    assert_eq!(
        kind(builder(&pki, &issuer).entra_mtls_pop()),
        ConfigErrorKind::Conflict
    );
    assert_eq!(
        kind(builder(&pki, &issuer).header_word(HeaderWord::Bearer)),
        ConfigErrorKind::Conflict
    );
    // No client authentication at all.
    assert_eq!(
        kind(
            BoundClient::builder()
                .issuer(issuer.issuer())
                .client_id("svc")
                .scheme(Scheme::Dpop)
        ),
        ConfigErrorKind::Missing
    );
    // A key file that is not there, or not a key.
    assert_eq!(
        kind(builder(&pki, &issuer).dpop_key_file("/nonexistent/dpop.key")),
        ConfigErrorKind::Unreadable
    );
    assert_eq!(
        kind(builder(&pki, &issuer).dpop_key_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/client.pem"
        ))),
        ConfigErrorKind::Unreadable
    );
    // A token source brings its own key.
    let own = BoundClient::builder()
        .scheme(Scheme::Dpop)
        .token_source(|| async { Ok(Token::new("t")) });
    assert_eq!(kind(own.dpop_key(key())), ConfigErrorKind::Conflict);
    // Nowhere to get tokens from.
    assert_eq!(
        kind(BoundClient::builder().scheme(Scheme::Dpop)),
        ConfigErrorKind::Missing
    );
}

/// A DPoP client with neither a client secret nor a certificate is told
/// that it lacks client authentication (the DPoP key binds the token, it
/// does not authenticate the client), not that it lacks an identity.
#[test]
fn a_dpop_client_without_client_authentication_is_told_so() {
    let error = BoundClient::builder()
        .token_endpoint("https://login.example/token")
        .client_id("svc")
        .scheme(Scheme::Dpop)
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ConfigErrorKind::Missing);
    assert_eq!(error.setting(), Some("client_secret_basic"));
    let message = error.to_string();
    assert!(
        message.contains("client secret") && message.contains("tls_client_auth"),
        "{message}"
    );
}
