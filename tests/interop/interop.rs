//! The crate against a certified OpenID provider (node `oidc-provider`):
//! `ClientCredentials` gets bound tokens with each client authentication
//! method, `CnfValidationLayer` accepts them with their certificate only, and
//! the example client runs against the example resource server.
//!
//! Needs Node.js 20 or later with npm (the support installs the npm packages
//! on first use); without them these tests skip loudly, or fail when `CI` is
//! set.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use crate::support::oidc_provider;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use oidc_provider::{DEFAULT_RESOURCE, InteropClient, OidcProvider};
use serde_json::Value;
use support::https_client;
use tower_token_binding::ClientIdentity;
use tower_token_binding::source::{
    ClientCredentials, ClientCredentialsBuilder, TokenEndpointError, TokenEndpointErrorKind,
};
use tower_token_binding::test_util::{TestCert, TestPki};
use tower_token_binding::token::{Token, TokenSource};
use tower_token_binding::validation::{CnfValidationLayer, JwksSource, JwtValidator};

const SECRET: &str = "correct horse battery staple";

struct Peer {
    pki: TestPki,
    provider: OidcProvider,
    tls: TestCert,
    self_signed: TestCert,
    secret: TestCert,
}

/// Starts oidc-provider with one client per authentication method; `None`
/// when the test is skipped (no Node outside CI).
async fn peer() -> Option<Peer> {
    let pki = TestPki::new().unwrap();
    let tls = pki.client_cert("tls.example").unwrap();
    let self_signed = TestPki::self_signed_client("self-signed.example").unwrap();
    let secret = pki.client_cert("secret.example").unwrap();
    let clients = [
        InteropClient::tls_client_auth("tls-client", "tls.example"),
        InteropClient::self_signed("self-signed-client", &self_signed),
        InteropClient::client_secret_basic("secret-client", SECRET),
    ];
    let provider = match OidcProvider::start(&pki, &clients).await {
        Ok(provider) => provider,
        Err(e) => {
            oidc_provider::skip_or_fail(&e);
            return None;
        }
    };
    Some(Peer {
        pki,
        provider,
        tls,
        self_signed,
        secret,
    })
}

impl Peer {
    fn builder(&self) -> ClientCredentialsBuilder {
        ClientCredentials::builder()
            .root_store(self.pki.root_store())
            .token_timeout(Duration::from_secs(10))
    }

    /// The three sources, by discovery from the issuer.
    fn sources(&self) -> Vec<(&'static str, ClientCredentials, ClientIdentity)> {
        let id = |c: &TestCert| c.identity().unwrap();
        vec![
            (
                "tls_client_auth",
                self.builder()
                    .issuer(self.provider.issuer())
                    .client_id("tls-client")
                    .tls_client_auth(id(&self.tls))
                    .build()
                    .unwrap(),
                id(&self.tls),
            ),
            (
                "self_signed_tls_client_auth",
                self.builder()
                    .issuer(self.provider.issuer())
                    .client_id("self-signed-client")
                    .self_signed_tls_client_auth(id(&self.self_signed))
                    .build()
                    .unwrap(),
                id(&self.self_signed),
            ),
            (
                "client_secret_basic",
                self.builder()
                    .issuer(self.provider.issuer())
                    .client_id("secret-client")
                    .identity(id(&self.secret))
                    .client_secret_basic(SECRET)
                    .build()
                    .unwrap(),
                id(&self.secret),
            ),
        ]
    }
}

async fn fetch(source: &ClientCredentials) -> Result<Token, TokenEndpointError> {
    source
        .fetch()
        .await
        .map_err(|e| *e.downcast::<TokenEndpointError>().unwrap())
}

async fn call(
    pki: &TestPki,
    api: &str,
    identity: Option<&ClientIdentity>,
    token: &str,
) -> (StatusCode, Option<String>, Value) {
    let request = Request::get(api)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = https_client(pki, identity).request(request).await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        challenge,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

pub(crate) async fn every_auth_method_gets_a_bound_token_that_our_server_accepts_only_with_its_certificate()
 {
    let Some(peer) = peer().await else { return };
    // A resource server that trusts oidc-provider's keys, fetched from its jwks_uri.
    let validator = JwtValidator::builder()
        .issuer(peer.provider.issuer())
        .audience(DEFAULT_RESOURCE)
        .jwks(
            JwksSource::remote(&peer.provider.jwks_uri())
                .unwrap()
                .root_store(peer.pki.root_store()),
        )
        .build()
        .unwrap();
    let api = support::start_api(&peer.pki, CnfValidationLayer::new(validator)).await;
    let stranger = peer
        .pki
        .client_cert("stranger.example")
        .unwrap()
        .identity()
        .unwrap();

    for (method, source, identity) in peer.sources() {
        let token = fetch(&source)
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}\n{}", peer.provider.log()));
        assert_eq!(token.token_type(), "Bearer", "{method}");
        assert_eq!(
            token.identity().map(ClientIdentity::thumbprint),
            Some(identity.thumbprint()),
            "{method}"
        );
        let claims = crate::support::unverified_claims(token.access_token().secret());
        assert_eq!(
            claims["cnf"]["x5t#S256"],
            identity.thumbprint().to_string(),
            "{method}"
        );
        let header = crate::support::unverified_header(token.access_token().secret());
        assert_eq!(header["typ"], "at+jwt", "{method}");

        let secret = token.access_token().secret();
        let (status, _, body) = call(&peer.pki, &api, Some(&identity), secret).await;
        assert_eq!(status, StatusCode::OK, "{method}: {body}");
        assert_eq!(body["x5t#S256"], identity.thumbprint().to_string());

        let (status, challenge, _) = call(&peer.pki, &api, Some(&stranger), secret).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method}");
        assert!(
            challenge.unwrap().contains("error=\"invalid_token\""),
            "{method}"
        );
        let (status, _, _) = call(&peer.pki, &api, None, secret).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method}");
    }
}

pub(crate) async fn discovery_finds_the_token_endpoint() {
    let Some(peer) = peer().await else { return };
    let by_discovery = peer.sources().remove(0).1;
    let by_url = peer
        .builder()
        .token_endpoint(peer.provider.token_endpoint())
        .client_id("tls-client")
        .tls_client_auth(peer.tls.identity().unwrap())
        .build()
        .unwrap();
    fetch(&by_discovery).await.unwrap();
    fetch(&by_url).await.unwrap();
}

pub(crate) async fn an_unregistered_certificate_is_a_typed_invalid_client() {
    let Some(peer) = peer().await else { return };
    for identity in [
        peer.pki
            .client_cert("other.example")
            .unwrap()
            .identity()
            .unwrap(),
        TestPki::self_signed_client("tls.example")
            .unwrap()
            .identity()
            .unwrap(),
    ] {
        let source = peer
            .builder()
            .issuer(peer.provider.issuer())
            .client_id("tls-client")
            .tls_client_auth(identity)
            .build()
            .unwrap();
        let e = fetch(&source).await.unwrap_err();
        assert_eq!(e.kind(), TokenEndpointErrorKind::OAuth, "{e}");
        assert_eq!(e.oauth_error(), Some("invalid_client"), "{e}");
        assert_eq!(e.http_status(), Some(StatusCode::UNAUTHORIZED));
    }
}

pub(crate) async fn the_example_client_against_the_example_server_and_oidc_provider() {
    let Some(peer) = peer().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = |p: std::path::PathBuf| p.to_str().unwrap().to_owned();
    let server = peer.pki.server_cert().unwrap();
    let (cert, key) = server.write_pem_files(dir.path(), "server").unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, peer.pki.ca_pem()).unwrap();
    let (cert, key, ca) = (path(cert), path(key), path(ca));
    let (_server, url) = support::spawn_announcing(
        "resource_server",
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--client-ca",
            &ca,
            "--issuer",
            peer.provider.issuer(),
            "--audience",
            DEFAULT_RESOURCE,
            "--issuer-ca",
            &ca,
        ],
    )
    .await;
    let (client_cert, client_key) = peer.tls.write_pem_files(dir.path(), "client").unwrap();
    let (client_cert, client_key) = (path(client_cert), path(client_key));
    let output = tokio::process::Command::new(support::example_binary("client"))
        .args([
            "--issuer",
            peer.provider.issuer(),
            "--client-id",
            "tls-client",
            "--auth",
            "tls_client_auth",
            "--cert",
            &client_cert,
            "--key",
            &client_key,
            "--ca",
            &ca,
            "--requests",
            "50",
            "--concurrency",
            "4",
            &format!("{url}/whoami"),
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{stdout}\n{stderr}\n{}",
        peer.provider.log()
    );
    assert_eq!(stdout.matches("status=200").count(), 50);
    assert!(
        stdout
            .trim_end()
            .ends_with("requests=50 ok=50 token_fetches=1"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&peer.tls.thumbprint().to_string()),
        "{stdout}"
    );
}
