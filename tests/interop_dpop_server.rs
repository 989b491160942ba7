//! Our DPoP resource server (`CnfValidationLayer::accept_dpop`) against
//! an implementation we did not write, over real TLS on loopback: access
//! tokens that node `oidc-provider` issued and bound to the key of our client
//! layer (`TokenBindingLayer::dpop`), its signing keys found by discovery:
//! accepted with our client's proofs, with and without nonces, and refused
//! with a proof from another key.
//!
//! Needs Node.js 20 or later with npm, like `tests/interop.rs`; without them
//! these tests skip loudly, or fail when `CI` is set.
#![cfg(all(feature = "test-util", feature = "axum"))]

#[path = "support/dpop.rs"]
mod dpop;
#[path = "support/oidc_provider.rs"]
mod oidc_provider;
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dpop::{Call, send, start, uri};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use oidc_provider::{InteropClient, OidcProvider, OidcProviderOptions};
use serde_json::Value;
use support::https_client;
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};
use tower_token_binding::TokenBindingLayer;
use tower_token_binding::proof::dpop::{DPOP, DpopProofs, DpopVerifier, StatelessNonces};
use tower_token_binding::proof::jws::CompactJws;
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::source::ClientCredentials;
use tower_token_binding::test_util::TestPki;
use tower_token_binding::validation::{CnfValidationLayer, JwksSource, JwtValidator};

const SECRET: &str = "correct horse battery staple";

/// A verifier that requires nonces from `nonces`, or the default one.
fn verifier(nonces: Option<&StatelessNonces>) -> DpopVerifier {
    match nonces {
        Some(nonces) => DpopVerifier::builder().nonces(nonces.clone()).build(),
        None => DpopVerifier::new(),
    }
}

/// oidc-provider issues the token to our `ClientCredentials`; our client
/// layer presents it to our server layer, which finds oidc-provider's keys by
/// discovery. With `nonces`, both oidc-provider and our server require them.
async fn oidc_provider_token_through_both_our_layers(nonces: bool) {
    let pki = TestPki::new().unwrap();
    let clients = [InteropClient::client_secret_basic("dpop-secret", SECRET).dpop_bound()];
    let options = OidcProviderOptions {
        dpop_require_nonce: nonces,
        ..Default::default()
    };
    let provider = require_node!(OidcProvider::start_with(&pki, &clients, options));

    let validator = JwtValidator::builder()
        .issuer(provider.issuer())
        .audience(provider.default_resource())
        .jwks(
            JwksSource::discover(provider.issuer())
                .unwrap()
                .root_store(pki.root_store()),
        )
        .build()
        .unwrap();
    let server_nonces = StatelessNonces::random().unwrap();
    let server_nonces = nonces.then_some(&server_nonces);
    let api = start(
        &pki,
        CnfValidationLayer::new(validator).accept_dpop(verifier(server_nonces)),
    )
    .await;

    let source = ClientCredentials::builder()
        .issuer(provider.issuer())
        .root_store(pki.root_store())
        .timeout(Duration::from_secs(10))
        .client_id("dpop-secret")
        .client_secret_basic(SECRET)
        .dpop(ProofKey::generate(Algorithm::Es256).unwrap())
        .build()
        .unwrap();
    let proofs = source.dpop_proofs().unwrap().clone();
    let binding = TokenBindingLayer::dpop(source);
    // What our client layer sent, attempt by attempt: the token and the proof.
    let sent = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(binding.retry_policy()))
        .layer(binding)
        .map_request({
            let sent = sent.clone();
            move |request: Request<Full<Bytes>>| {
                let header = |name| request.headers()[name].to_str().unwrap().to_owned();
                let token = header(header::AUTHORIZATION)
                    .strip_prefix("DPoP ")
                    .expect("the DPoP scheme")
                    .to_owned();
                sent.lock().unwrap().push((token, header(DPOP)));
                request
            }
        })
        .service(https_client(&pki, None));
    let get = || async {
        let request = Request::get(&api).body(Full::default()).unwrap();
        let response = client.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let proof_claims = |proof: &str| CompactJws::parse(proof).unwrap().into_claims();

    let (status, body) = get().await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", provider.log());
    assert_eq!(body, format!("dpop {}", proofs.thumbprint()));
    let token = {
        let sent = sent.lock().unwrap();
        // With nonces, the first proof had none and was refused; the retry
        // carried the one our server gave.
        assert_eq!(sent.len(), if nonces { 2 } else { 1 });
        assert!(proof_claims(&sent[0].1).get("nonce").is_none());
        if nonces {
            assert_eq!(sent[1].0, sent[0].0, "the same token");
            assert!(proof_claims(&sent[1].1)["nonce"].is_string());
        }
        sent[0].0.clone()
    };
    // The token is oidc-provider's, bound to our client's key.
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&token)
        .unwrap()
        .claims;
    assert_eq!(claims["iss"], provider.issuer());
    assert_eq!(claims["cnf"]["jkt"], proofs.thumbprint().to_string());

    // The nonce is remembered: the next request goes through at once.
    let (status, _) = get().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sent.lock().unwrap().len(), if nonces { 3 } else { 2 });

    // The same token with a proof made by another key (with a good nonce, so
    // that only the key is wrong) is refused; a new proof by our key passes.
    let client = https_client(&pki, None);
    let proof = |by: &DpopProofs| {
        let now = SystemTime::now();
        let nonce = server_nonces.map(|n| n.current(now));
        by.proof_at(
            &Method::GET,
            &uri(&api),
            Some(&token),
            nonce.as_deref(),
            now,
        )
        .unwrap()
    };
    let thief = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let answer = send(&client, &Call::dpop(&api, &token, proof(&thief))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(
        answer.challenge.starts_with("DPoP error=\"invalid_token\""),
        "{answer:?}"
    );
    assert_eq!(answer.body, "", "the handler never ran");
    let answer = send(&client, &Call::dpop(&api, &token, proof(&proofs))).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

#[tokio::test]
async fn an_oidc_provider_dpop_token_is_accepted_with_our_proofs_only() {
    oidc_provider_token_through_both_our_layers(false).await;
}

#[tokio::test]
async fn an_oidc_provider_dpop_token_is_accepted_with_our_proofs_only_when_nonces_are_required() {
    oidc_provider_token_through_both_our_layers(true).await;
}
