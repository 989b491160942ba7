//! Opaque access tokens from a certified OpenID provider (node
//! `oidc-provider` with `accessTokenFormat: 'opaque'`), checked by
//! `IntrospectionValidator` against its introspection endpoint (RFC 7662):
//! a certificate-bound token is accepted with its certificate only, a
//! DPoP-bound one with a proof by its key only, and a revoked one is
//! refused.
//!
//! Needs Node.js 20 or later with npm (the support installs the npm packages
//! on first use); without them these tests skip loudly, or fail when `CI` is
//! set.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use crate::support::oidc_provider;
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use oidc_provider::{InteropClient, OidcProvider, OidcProviderOptions};
use support::{https_client, post_form};
use tower_token_binding::ClientIdentity;
use tower_token_binding::proof::dpop::{DPOP, DpopProofs, DpopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::source::ClientCredentials;
use tower_token_binding::test_util::TestPki;
use tower_token_binding::token::TokenSource;
use tower_token_binding::validation::{
    CnfValidationLayer, IntrospectionValidator, IntrospectionValidatorBuilder,
};

const SECRET: &str = "correct horse battery staple";

/// Serves `support::whoami` behind `validator`; returns its URL.
async fn start_api(pki: &TestPki, validator: IntrospectionValidator) -> String {
    start_layer(pki, CnfValidationLayer::new(validator)).await
}

/// Serves `support::whoami` behind `layer`; returns its URL.
async fn start_layer(pki: &TestPki, layer: CnfValidationLayer<IntrospectionValidator>) -> String {
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service_fn(support::whoami);
    tokio::spawn(server::serve(listener, tls, service).into_future());
    format!("https://localhost:{port}/whoami")
}

/// `GET url` with the token as `Bearer`, presenting `identity`: the status
/// and the challenge.
async fn call(
    pki: &TestPki,
    url: &str,
    token: &str,
    identity: Option<&ClientIdentity>,
) -> (StatusCode, String) {
    let request = Request::get(url)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = https_client(pki, identity).request(request).await.unwrap();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status(), challenge)
}

/// An opaque token for `client_id`, bound to `identity`, from the provider.
async fn opaque_token(
    pki: &TestPki,
    provider: &OidcProvider,
    client_id: &str,
    identity: &ClientIdentity,
) -> String {
    let source = ClientCredentials::builder()
        .issuer(provider.issuer())
        .client_id(client_id)
        .tls_client_auth(identity.clone())
        .root_store(pki.root_store())
        .token_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let token = source.fetch().await.unwrap();
    let token = token.access_token().secret().to_owned();
    assert_ne!(token.split('.').count(), 3, "an opaque token, not a JWT");
    token
}

/// oidc-provider puts `aud` in an introspection answer only when the
/// token was issued for a resource; the peer runs with resource indicators
/// and a default resource (`getResourceServerInfo` with `audience`), so
/// every opaque token here has one and `aud` stays required (no
/// `allow_missing_audience()`).
fn introspection(pki: &TestPki, provider: &OidcProvider) -> IntrospectionValidatorBuilder {
    IntrospectionValidator::builder()
        .discover(provider.issuer())
        .issuer(provider.issuer())
        .audience(provider.default_resource())
        .require_exp()
        .root_store(pki.root_store())
        .introspection_timeout(Duration::from_secs(10))
}

pub(crate) async fn certificate_bound_opaque_tokens_and_revocation() {
    let pki = TestPki::new().unwrap();
    let client = pki.client_cert("tls.example").unwrap().identity().unwrap();
    let clients = [
        InteropClient::tls_client_auth("tls-client", "tls.example"),
        InteropClient::client_secret_basic("resource-server", SECRET)
            .with("tls_client_certificate_bound_access_tokens", false),
    ];
    let options = OidcProviderOptions {
        opaque_tokens: true,
        ..Default::default()
    };
    let provider = require_node!(OidcProvider::start_with(&pki, &clients, options));
    let validator = introspection(&pki, &provider)
        .client_id("resource-server")
        .client_secret_basic(SECRET)
        .build()
        .unwrap();
    let api = start_api(&pki, validator).await;

    let token = opaque_token(&pki, &provider, "tls-client", &client).await;
    let (status, challenge) = call(&pki, &api, &token, Some(&client)).await;
    assert_eq!(status, StatusCode::OK, "{challenge}\n{}", provider.log());

    // Another certificate, even with the same name: refused.
    let other = pki.client_cert("tls.example").unwrap().identity().unwrap();
    let (status, challenge) = call(&pki, &api, &token, Some(&other)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.contains("bound to a different client certificate"),
        "{challenge}"
    );
    let (status, _) = call(&pki, &api, &token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A token revoked at the provider (RFC 7009, by its client) is inactive.
    let revoked = opaque_token(&pki, &provider, "tls-client", &client).await;
    let (status, body) = post_form(
        &https_client(&pki, Some(&client)),
        &provider.revocation_endpoint(),
        &[("token", revoked.as_str()), ("client_id", "tls-client")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, challenge) = call(&pki, &api, &revoked, Some(&client)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("not active"), "{challenge}");
    // As is a token the provider never issued.
    let (status, challenge) = call(&pki, &api, "made-up-token", Some(&client)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("not active"), "{challenge}");
}

pub(crate) async fn the_resource_server_introspects_over_mtls_at_the_alias() {
    let pki = TestPki::new().unwrap();
    let client = pki.client_cert("tls.example").unwrap().identity().unwrap();
    let rs = pki.client_cert("rs.example").unwrap().identity().unwrap();
    let clients = [
        InteropClient::tls_client_auth("tls-client", "tls.example"),
        InteropClient::tls_client_auth("resource-server", "rs.example")
            .with("tls_client_certificate_bound_access_tokens", false),
    ];
    let options = OidcProviderOptions {
        opaque_tokens: true,
        mtls_endpoint_aliases: true,
        ..Default::default()
    };
    let provider = require_node!(OidcProvider::start_with(&pki, &clients, options));
    let token = opaque_token(&pki, &provider, "tls-client", &client).await;

    // tls_client_auth works only at the alias, which discovery finds.
    let validator = introspection(&pki, &provider)
        .client_id("resource-server")
        .tls_client_auth(rs)
        .build()
        .unwrap();
    let api = start_api(&pki, validator).await;
    let (status, challenge) = call(&pki, &api, &token, Some(&client)).await;
    assert_eq!(status, StatusCode::OK, "{challenge}\n{}", provider.log());
    let other = pki.client_cert("tls.example").unwrap().identity().unwrap();
    let (status, _) = call(&pki, &api, &token, Some(&other)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Told the plain endpoint, the certificate counts for nothing there:
    // the provider refuses the resource server, which is a 503, not a 401.
    let validator = introspection(&pki, &provider)
        .endpoint(provider.introspection_endpoint())
        .client_id("resource-server")
        .tls_client_auth(pki.client_cert("rs.example").unwrap().identity().unwrap())
        .build()
        .unwrap();
    let api = start_api(&pki, validator).await;
    let (status, _) = call(&pki, &api, &token, Some(&client)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

pub(crate) async fn dpop_bound_opaque_tokens_need_a_proof_by_their_key() {
    let pki = TestPki::new().unwrap();
    let clients = [
        InteropClient::client_secret_basic("dpop-client", SECRET).dpop_bound(),
        InteropClient::client_secret_basic("resource-server", SECRET)
            .with("tls_client_certificate_bound_access_tokens", false),
    ];
    let options = OidcProviderOptions {
        opaque_tokens: true,
        ..Default::default()
    };
    let provider = require_node!(OidcProvider::start_with(&pki, &clients, options));
    let source = ClientCredentials::builder()
        .issuer(provider.issuer())
        .client_id("dpop-client")
        .client_secret_basic(SECRET)
        .dpop(ProofKey::generate(Algorithm::Es256).unwrap())
        .root_store(pki.root_store())
        .token_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let token = source.fetch().await.unwrap();
    assert!(token.token_type().eq_ignore_ascii_case("DPoP"));
    let token = token.access_token().secret().to_owned();
    assert_ne!(token.split('.').count(), 3, "an opaque token, not a JWT");

    let validator = introspection(&pki, &provider)
        .client_id("resource-server")
        .client_secret_basic(SECRET)
        .build()
        .unwrap();
    let api = start_layer(
        &pki,
        CnfValidationLayer::new(validator).accept_dpop(DpopVerifier::new()),
    )
    .await;
    let proofs = source.dpop_proofs().unwrap();
    let dpop = |proofs: &DpopProofs| {
        let proof = proofs
            .proof(&Method::GET, &api.parse().unwrap(), Some(&token))
            .unwrap();
        Request::get(&api)
            .header(header::AUTHORIZATION, format!("DPoP {token}"))
            .header(DPOP, proof)
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let client = https_client(&pki, None);
    let response = client.request(dpop(proofs)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", provider.log());

    // A proof by another key, or none (as a bearer token): refused.
    let other = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let response = client.request(dpop(&other)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, challenge) = call(&pki, &api, &token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("DPoP-bound"), "{challenge}");
}
