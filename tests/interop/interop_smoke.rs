//! The oidc-provider interop peer, driven with plain hyper-util + rustls: it
//! authenticates clients with mutual TLS and issues certificate-bound JWT
//! access tokens that verify against its published JWKS.
//!
//! Needs Node.js 20 or later with npm (the support installs the npm packages
//! on first use); without them these tests skip loudly, or fail when `CI` is
//! set.
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::oidc_provider;
use std::time::Duration;

use http::StatusCode;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use oidc_provider::{DEFAULT_RESOURCE, InteropClient, OidcProvider, OidcProviderOptions};
use serde_json::Value;
use support::{get_json, https_client, post_form};
use tower_token_binding::Confirmation;
use tower_token_binding::test_util::{TestCert, TestPki};

const GRANT: (&str, &str) = ("grant_type", "client_credentials");
const SECRET: &str = "correct horse battery staple";

/// Verifies `token` as an RFC 9068 access token from `provider` for
/// `audience`, with the key from the provider's JWKS (fetched over HTTPS), and
/// returns its claims.
async fn verify(pki: &TestPki, provider: &OidcProvider, token: &str, audience: &str) -> Value {
    let header = decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"), "{header:?}");
    assert_eq!(header.alg, Algorithm::ES256);
    let (status, jwks) = get_json(&https_client(pki, None), &provider.jwks_uri()).await;
    assert_eq!(status, StatusCode::OK, "{jwks}");
    let jwks: JwkSet = serde_json::from_value(jwks).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().expect("kid"))
        .expect("kid in the JWKS");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[provider.issuer()]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

/// The three clients, one per RFC 8705 / RFC 6749 authentication method, and
/// the certificate each presents.
struct Clients {
    tls: (InteropClient, TestCert),
    self_signed: (InteropClient, TestCert),
    secret: (InteropClient, TestCert),
}

impl Clients {
    fn new(pki: &TestPki) -> Self {
        let tls_cert = pki.client_cert("tls.example").unwrap();
        let self_signed_cert = TestPki::self_signed_client("self-signed.example").unwrap();
        let secret_cert = pki.client_cert("secret.example").unwrap();
        Self {
            tls: (
                InteropClient::tls_client_auth("tls-client", "tls.example"),
                tls_cert,
            ),
            self_signed: (
                InteropClient::self_signed("self-signed-client", &self_signed_cert),
                self_signed_cert,
            ),
            secret: (
                InteropClient::client_secret_basic("secret-client", SECRET),
                secret_cert,
            ),
        }
    }

    fn all(&self) -> [&(InteropClient, TestCert); 3] {
        [&self.tls, &self.self_signed, &self.secret]
    }

    fn registrations(&self) -> Vec<InteropClient> {
        self.all()
            .iter()
            .map(|(client, _)| client.clone())
            .collect()
    }
}

/// A client credentials request from `client` over mTLS with `cert`, with
/// `extra` form parameters.
async fn request_token(
    pki: &TestPki,
    endpoint: &str,
    client: &InteropClient,
    cert: Option<&TestCert>,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let identity = cert.map(|cert| cert.identity().unwrap());
    let http = https_client(pki, identity.as_ref());
    let mut form = vec![GRANT];
    form.extend_from_slice(extra);
    let basic = if client.auth_method() == "client_secret_basic" {
        Some((client.client_id(), client.client_secret().unwrap()))
    } else {
        form.push(("client_id", client.client_id()));
        None
    };
    post_form(&http, endpoint, &form, basic).await
}

pub(crate) async fn discovery_advertises_certificate_bound_tokens() {
    let pki = TestPki::new().unwrap();
    let clients = Clients::new(&pki);
    let provider = require_node!(OidcProvider::start(&pki, &clients.registrations()));
    assert!(provider.issuer().starts_with("https://127.0.0.1:"));

    let (status, doc) = get_json(&https_client(&pki, None), &provider.discovery_url()).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["issuer"], provider.issuer());
    assert_eq!(doc["token_endpoint"], provider.token_endpoint().as_str());
    assert_eq!(doc["jwks_uri"], provider.jwks_uri().as_str());
    assert_eq!(
        doc["introspection_endpoint"],
        provider.introspection_endpoint().as_str()
    );
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
    let methods = doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    for method in [
        "tls_client_auth",
        "self_signed_tls_client_auth",
        "client_secret_basic",
    ] {
        assert!(methods.contains(&method.into()), "{method} in {methods:?}");
    }
    assert!(
        doc["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&"client_credentials".into())
    );
    // oidc-provider itself never publishes mTLS endpoint aliases.
    assert!(doc.get("mtls_endpoint_aliases").is_none(), "{doc}");
}

pub(crate) async fn every_client_auth_method_gets_a_certificate_bound_jwt() {
    let pki = TestPki::new().unwrap();
    let clients = Clients::new(&pki);
    let provider = require_node!(OidcProvider::start(&pki, &clients.registrations()));

    for (client, cert) in clients.all() {
        let id = client.client_id();
        let (status, body) = request_token(
            &pki,
            &provider.token_endpoint(),
            client,
            Some(cert),
            &[("scope", "read write")],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{id}: {body}\n{}", provider.log());
        assert_eq!(body["token_type"], "Bearer", "{id}: {body}");
        assert_eq!(body["expires_in"], 600, "{id}: {body}");
        assert_eq!(body["scope"], "read write", "{id}: {body}");
        assert!(body.get("refresh_token").is_none(), "{id}: {body}");

        let token = body["access_token"].as_str().unwrap();
        let claims = verify(&pki, &provider, token, DEFAULT_RESOURCE).await;
        assert_eq!(
            claims["cnf"]["x5t#S256"].as_str(),
            Some(cert.thumbprint().to_string().as_str()),
            "{id}: {claims}"
        );
        let cnf = Confirmation::from_claims(&claims).unwrap().expect("cnf");
        assert_eq!(cnf.thumbprint(), Some(&cert.thumbprint()), "{id}");
        assert_eq!(claims["sub"], id);
        assert_eq!(claims["client_id"], id);
        assert_eq!(claims["aud"], DEFAULT_RESOURCE);
        assert_eq!(claims["scope"], "read write");
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 600, "{id}: {claims}");
    }
}

pub(crate) async fn the_token_is_bound_to_the_certificate_of_the_request() {
    // A client_secret_basic client may present any certificate; each token is
    // bound to the one on its own connection.
    let pki = TestPki::new().unwrap();
    let clients = Clients::new(&pki);
    let provider = require_node!(OidcProvider::start(&pki, &clients.registrations()));
    let (client, _) = &clients.secret;
    for cert in [
        pki.client_cert("one.example").unwrap(),
        TestPki::self_signed_client("two.example").unwrap(),
    ] {
        let (status, body) =
            request_token(&pki, &provider.token_endpoint(), client, Some(&cert), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        // Without `scope` the response and the token carry none.
        assert!(body.get("scope").is_none(), "{body}");
        let token = body["access_token"].as_str().unwrap();
        let claims = verify(&pki, &provider, token, DEFAULT_RESOURCE).await;
        assert_eq!(
            claims["cnf"]["x5t#S256"].as_str(),
            Some(cert.thumbprint().to_string().as_str())
        );
        assert!(claims.get("scope").is_none(), "{claims}");
    }
}

pub(crate) async fn an_unregistered_certificate_is_an_invalid_client() {
    let pki = TestPki::new().unwrap();
    let clients = Clients::new(&pki);
    let provider = require_node!(OidcProvider::start(&pki, &clients.registrations()));
    let endpoint = provider.token_endpoint();

    let other_ca_issued = pki.client_cert("other.example").unwrap();
    let other_self_signed = TestPki::self_signed_client("tls.example").unwrap();
    let other_pki = TestPki::new().unwrap();
    let foreign_ca_issued = other_pki.client_cert("tls.example").unwrap();
    let cases: [(&str, &InteropClient, Option<&TestCert>); 6] = [
        (
            "tls_client_auth, CA-issued with another SAN",
            &clients.tls.0,
            Some(&other_ca_issued),
        ),
        (
            "tls_client_auth, self-signed with the registered SAN",
            &clients.tls.0,
            Some(&other_self_signed),
        ),
        (
            "tls_client_auth, another CA with the registered SAN",
            &clients.tls.0,
            Some(&foreign_ca_issued),
        ),
        ("tls_client_auth, no certificate", &clients.tls.0, None),
        (
            "self_signed_tls_client_auth, another self-signed certificate",
            &clients.self_signed.0,
            Some(&other_self_signed),
        ),
        (
            "self_signed_tls_client_auth, no certificate",
            &clients.self_signed.0,
            None,
        ),
    ];
    for (case, client, cert) in cases {
        let (status, body) = request_token(&pki, &endpoint, client, cert, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["error"], "invalid_client", "{case}: {body}");
    }

    // Another client's registered certificate does not authenticate as this one.
    let (status, body) = request_token(
        &pki,
        &endpoint,
        &clients.tls.0,
        Some(&clients.secret.1),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");

    // A wrong secret, with a good certificate.
    let wrong = InteropClient::client_secret_basic("secret-client", "wrong");
    let (status, body) = request_token(&pki, &endpoint, &wrong, Some(&clients.secret.1), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");

    // The right secret but no certificate to bind the token to.
    let (status, body) = request_token(&pki, &endpoint, &clients.secret.0, None, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");

    let log = provider.log();
    assert!(log.contains("client certificate was not verified"), "{log}");
    assert!(
        log.contains("certificate subject value does not match the registered one"),
        "{log}"
    );
    assert!(
        log.contains("unregistered client certificate provided"),
        "{log}"
    );
    assert!(
        log.contains("mutual TLS client certificate not provided"),
        "{log}"
    );
}

pub(crate) async fn a_resource_indicator_sets_the_audience() {
    let pki = TestPki::new().unwrap();
    let clients = Clients::new(&pki);
    let options = OidcProviderOptions {
        token_ttl: Some(Duration::from_secs(42)),
        default_resource: Some("https://default.test".into()),
        ..Default::default()
    };
    let provider = require_node!(OidcProvider::start_with(
        &pki,
        &clients.registrations(),
        options
    ));
    assert_eq!(provider.default_resource(), "https://default.test");
    let (client, cert) = &clients.tls;
    for (resource, audience) in [
        (None, "https://default.test"),
        (Some("https://orders.test/api"), "https://orders.test/api"),
    ] {
        let extra: Vec<(&str, &str)> = resource.map(|r| ("resource", r)).into_iter().collect();
        let (status, body) =
            request_token(&pki, &provider.token_endpoint(), client, Some(cert), &extra).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["expires_in"], 42, "{body}");
        let token = body["access_token"].as_str().unwrap();
        let claims = verify(&pki, &provider, token, audience).await;
        assert_eq!(claims["aud"], audience);
        assert_eq!(
            claims["cnf"]["x5t#S256"].as_str(),
            Some(cert.thumbprint().to_string().as_str())
        );
    }

    // A resource indicator must be an absolute URI.
    let (status, body) = request_token(
        &pki,
        &provider.token_endpoint(),
        client,
        Some(cert),
        &[("resource", "not a uri")],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_target", "{body}");
}

pub(crate) async fn jwt_access_tokens_are_not_introspectable() {
    // oidc-provider refuses to introspect its structured (JWT) access tokens:
    // a resource server must validate them itself.
    let pki = TestPki::new().unwrap();
    let clients = Clients::new(&pki);
    let provider = require_node!(OidcProvider::start(&pki, &clients.registrations()));
    let (client, cert) = &clients.self_signed;
    let (status, body) =
        request_token(&pki, &provider.token_endpoint(), client, Some(cert), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();

    let identity = cert.identity().unwrap();
    let http = https_client(&pki, Some(&identity));
    let (status, body) = post_form(
        &http,
        &provider.introspection_endpoint(),
        &[("token", token), ("client_id", client.client_id())],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "unsupported_token_type", "{body}");
}

pub(crate) async fn mtls_endpoint_aliases_when_asked_for() {
    let pki = TestPki::new().unwrap();
    let clients = Clients::new(&pki);
    let options = OidcProviderOptions {
        mtls_endpoint_aliases: true,
        ..Default::default()
    };
    let provider = require_node!(OidcProvider::start_with(
        &pki,
        &clients.registrations(),
        options
    ));
    assert_ne!(provider.mtls_token_endpoint(), provider.token_endpoint());

    let (status, doc) = get_json(&https_client(&pki, None), &provider.discovery_url()).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["token_endpoint"], provider.token_endpoint().as_str());
    assert_eq!(
        doc["mtls_endpoint_aliases"]["token_endpoint"],
        provider.mtls_token_endpoint().as_str()
    );
    assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);

    for (client, cert) in clients.all() {
        let id = client.client_id();
        // The regular endpoint does not see client certificates.
        let (status, body) =
            request_token(&pki, &provider.token_endpoint(), client, Some(cert), &[]).await;
        assert!(status.is_client_error(), "{id}: {status} {body}");
        let expected = if id == "secret-client" {
            "invalid_grant"
        } else {
            "invalid_client"
        };
        assert_eq!(body["error"], expected, "{id}: {body}");

        // The alias does.
        let (status, body) = request_token(
            &pki,
            &provider.mtls_token_endpoint(),
            client,
            Some(cert),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{id}: {body}\n{}", provider.log());
        let token = body["access_token"].as_str().unwrap();
        let claims = verify(&pki, &provider, token, DEFAULT_RESOURCE).await;
        assert_eq!(
            claims["cnf"]["x5t#S256"].as_str(),
            Some(cert.thumbprint().to_string().as_str())
        );
    }
}

pub(crate) async fn bad_client_metadata_fails_the_start_with_the_reason() {
    require_node!();
    let pki = TestPki::new().unwrap();
    // tls_client_auth needs one tls_client_auth_* subject field.
    let client = InteropClient::tls_client_auth("tls-client", "tls.example")
        .with("tls_client_auth_san_dns", Value::Null);
    let error = OidcProvider::start(&pki, &[client]).await.unwrap_err();
    assert!(error.contains("exited before listening"), "{error}");
    assert!(error.contains("client tls-client is invalid"), "{error}");
    assert!(error.contains("invalid_client_metadata"), "{error}");
}
