//! `ClientCredentials` with DPoP (RFC 9449) against a certified OpenID
//! provider (node `oidc-provider`, `features.dPoP`): with each client
//! authentication, a `DPoP` token bound to our key (`cnf.jkt`), with and
//! without nonces required.
//!
//! Needs Node.js 20 or later with npm, like `tests/interop/interop.rs`; without them
//! these tests skip loudly, or fail when `CI` is set.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support::oidc_provider;
use std::time::Duration;

use http::Uri;
use oidc_provider::{InteropClient, OidcProvider, OidcProviderOptions};
use tower_token_binding::proof::dpop::DpopProofs;
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::source::{ClientCredentials, TokenEndpointError};
use tower_token_binding::test_util::{TestCert, TestPki};
use tower_token_binding::token::{Token, TokenSource};

const SECRET: &str = "correct horse battery staple";

async fn fetch(source: &ClientCredentials) -> Result<Token, TokenEndpointError> {
    source
        .fetch()
        .await
        .map_err(|e| *e.downcast::<TokenEndpointError>().unwrap())
}

/// Starts the peer with one DPoP client per authentication method, and
/// gets a token with each.
async fn every_auth_method_gets_a_dpop_token(require_nonce: bool) {
    let pki = TestPki::new().unwrap();
    let tls: TestCert = pki.client_cert("tls.example").unwrap();
    let self_signed = TestPki::self_signed_client("self-signed.example").unwrap();
    let clients = [
        InteropClient::client_secret_basic("dpop-secret", SECRET).dpop_bound(),
        InteropClient::tls_client_auth("dpop-tls", "tls.example").dpop_bound(),
        InteropClient::self_signed("dpop-self-signed", &self_signed).dpop_bound(),
    ];
    let options = OidcProviderOptions {
        dpop_require_nonce: require_nonce,
        ..Default::default()
    };
    let provider = require_node!(OidcProvider::start_with(&pki, &clients, options));
    let builder = || {
        ClientCredentials::builder()
            .issuer(provider.issuer())
            .root_store(pki.root_store())
            .token_timeout(Duration::from_secs(10))
    };
    let sources = [
        (
            "client_secret_basic",
            builder()
                .client_id("dpop-secret")
                .client_secret_basic(SECRET),
        ),
        (
            "tls_client_auth",
            builder()
                .client_id("dpop-tls")
                .tls_client_auth(tls.identity().unwrap()),
        ),
        (
            "self_signed_tls_client_auth",
            builder()
                .client_id("dpop-self-signed")
                .self_signed_tls_client_auth(self_signed.identity().unwrap()),
        ),
    ];
    let endpoint: Uri = provider.token_endpoint().parse().unwrap();
    for (method, builder) in sources {
        let key = ProofKey::generate(Algorithm::Es256).unwrap();
        let jkt = key.thumbprint();
        let source = builder.dpop(key).build().unwrap();
        let token = fetch(&source)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}\n{}", provider.log()));
        assert!(token.token_type().eq_ignore_ascii_case("DPoP"), "{method}");
        assert_eq!(
            token.dpop_proofs().map(DpopProofs::thumbprint),
            Some(jkt),
            "{method}"
        );
        let claims = crate::support::unverified_claims(token.access_token().secret());
        assert_eq!(claims["cnf"]["jkt"], jkt.to_string(), "{method}");
        assert!(claims["cnf"].get("x5t#S256").is_none(), "{method}");
        let header = crate::support::unverified_header(token.access_token().secret());
        assert_eq!(header["typ"], "at+jwt", "{method}");

        // With nonces required the first request was refused with one,
        // which is remembered for the next.
        let nonce = source.dpop_proofs().unwrap().nonces().get(&endpoint);
        assert_eq!(nonce.is_some(), require_nonce, "{method}");
        let again = fetch(&source)
            .await
            .unwrap_or_else(|e| panic!("{method}, again: {e}\n{}", provider.log()));
        assert_ne!(again.access_token().secret(), token.access_token().secret());
    }
}

pub(crate) async fn every_auth_method_gets_a_dpop_token_bound_to_our_key() {
    every_auth_method_gets_a_dpop_token(false).await;
}

pub(crate) async fn every_auth_method_gets_a_dpop_token_when_nonces_are_required() {
    every_auth_method_gets_a_dpop_token(true).await;
}

pub(crate) async fn a_dpop_client_without_a_proof_is_refused() {
    let pki = TestPki::new().unwrap();
    let clients = [InteropClient::client_secret_basic("dpop-secret", SECRET).dpop_bound()];
    let provider = require_node!(OidcProvider::start(&pki, &clients));
    let identity = pki.client_cert("x.example").unwrap().identity().unwrap();
    // Without DPoP the source asks for a certificate-bound token, which this
    // client may not have.
    let source = ClientCredentials::builder()
        .issuer(provider.issuer())
        .root_store(pki.root_store())
        .client_id("dpop-secret")
        .client_secret_basic(SECRET)
        .identity(identity)
        .build()
        .unwrap();
    let e = fetch(&source).await.unwrap_err();
    assert_eq!(e.oauth_error(), Some("invalid_grant"), "{e}");
}
