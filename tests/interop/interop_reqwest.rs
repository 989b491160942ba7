//! reqwest with bound tokens (`BoundClientBuilder::build_reqwest`) against
//! node `oidc-provider`: it issues a certificate-bound token (discovery,
//! `tls_client_auth`) and a DPoP-bound one (with nonces required), and our
//! resource server accepts each with its certificate or its key's proofs
//! only.
//!
//! Needs Node.js 20 or later with npm, like `tests/interop/interop.rs`;
//! without them these tests skip loudly, or fail when `CI` is set.
#![cfg(all(feature = "test-util", feature = "reqwest"))]

use crate::support::dpop;
use crate::support::oidc_provider;
use std::time::Duration;

use http::StatusCode;
use oidc_provider::{InteropClient, OidcProvider, OidcProviderOptions};
use tower_token_binding::BoundClient;
use tower_token_binding::binding::Scheme;
use tower_token_binding::proof::dpop::{DpopVerifier, StatelessNonces};
use tower_token_binding::test_util::TestPki;
use tower_token_binding::validation::{CnfValidationLayer, JwksSource, JwtValidator};

const SECRET: &str = "correct horse battery staple";

pub(crate) async fn oidc_provider_tokens_through_reqwest_with_their_certificate_or_key() {
    let pki = TestPki::new().unwrap();
    let clients = [
        InteropClient::tls_client_auth("tls-client", "tls.example"),
        InteropClient::client_secret_basic("dpop-secret", SECRET).dpop_bound(),
    ];
    let options = OidcProviderOptions {
        dpop_require_nonce: true,
        ..Default::default()
    };
    let provider = require_node!(OidcProvider::start_with(&pki, &clients, options));

    // Our resource server: oidc-provider's keys by discovery; certificate
    // binding always, DPoP with our own nonces.
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
    let nonces = StatelessNonces::random().unwrap();
    let api = dpop::start(
        &pki,
        CnfValidationLayer::new(validator)
            .accept_dpop(DpopVerifier::builder().nonces(nonces).build()),
    )
    .await;

    // Certificate-bound: the token endpoint found by discovery.
    let identity = pki.client_cert("tls.example").unwrap().identity().unwrap();
    let mtls = BoundClient::builder()
        .issuer(provider.issuer())
        .client_id("tls-client")
        .identity(identity.clone())
        .root_store(pki.root_store())
        .token_timeout(Duration::from_secs(10))
        .build_reqwest()
        .unwrap();
    let response = mtls.get(&api).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", provider.log());
    assert_eq!(
        response.text().await.unwrap(),
        format!("certificate {}", identity.thumbprint())
    );

    // DPoP-bound: oidc-provider and our server each ask for a nonce once.
    let middleware = BoundClient::builder()
        .issuer(provider.issuer())
        .client_id("dpop-secret")
        .client_secret_basic(SECRET)
        .root_store(pki.root_store())
        .token_timeout(Duration::from_secs(10))
        .scheme(Scheme::Dpop)
        .build_reqwest_middleware()
        .unwrap();
    let cache = middleware.cache().unwrap().clone();
    // The reqwest client under it is the user's own: here one that trusts
    // the test CA as reqwest users do.
    let ca = reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap();
    let base = reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap();
    let dpop = reqwest_middleware::ClientBuilder::new(base)
        .with(middleware)
        .build();
    for _ in 0..3 {
        let response = dpop.get(&api).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{}", provider.log());
        let token = cache.get().await.unwrap();
        let jkt = token.token().dpop_proofs().unwrap().thumbprint();
        assert_eq!(response.text().await.unwrap(), format!("dpop {jkt}"));
    }
    assert_eq!(cache.stats().fetches, 1);
}
