//! JWKS discovery for `ResourceServer` and `JwksSource::discover`, against a
//! hand-made HTTPS metadata server: metadata of another issuer is refused,
//! an issuer with a path is looked up at its well-known URLs, and a failed
//! discovery is retried after the cooldown.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use crate::support::server_files;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use server_files::files;
use tower::{Layer as _, ServiceExt as _};
use tower_token_binding::Thumbprint;
use tower_token_binding::server::{self, AnyClientCertVerifier, ResourceServer};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{JwksSource, JwtValidator, TokenErrorKind, ValidateToken};

/// A hand-made HTTPS metadata server: fixed answers per path, hits counted.
struct MetadataServer {
    base: String,
    routes: Arc<Mutex<HashMap<String, (StatusCode, String)>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetadataServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MetadataServer {
    async fn start(pki: &TestPki) -> Self {
        let tls = pki
            .server_config(Arc::new(AnyClientCertVerifier::optional()))
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let routes: Arc<Mutex<HashMap<String, (StatusCode, String)>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let service = {
            let (routes, hits) = (routes.clone(), hits.clone());
            tower::service_fn(move |request: Request<hyper::body::Incoming>| {
                let path = request.uri().path().to_owned();
                *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                let (status, body) = routes
                    .lock()
                    .unwrap()
                    .get(&path)
                    .cloned()
                    .unwrap_or((StatusCode::NOT_FOUND, "{}".to_owned()));
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() = status;
                async move { Ok::<_, Infallible>(response) }
            })
        };
        let task = tokio::spawn(async move {
            let _ = server::serve(listener, tls, service).await;
        });
        Self {
            base,
            routes,
            hits,
            task,
        }
    }

    fn set(&self, path: &str, status: StatusCode, body: &Value) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body.to_string()));
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// A validator for tokens of `issuer` (with the test issuer's audience),
/// keys discovered from `issuer`'s metadata.
fn discovering_validator(pki: &TestPki, issuer: &str, cooldown: Duration) -> JwtValidator {
    JwtValidator::builder()
        .issuer(issuer)
        .audience("https://api.test")
        .jwks(
            JwksSource::discover(issuer)
                .unwrap()
                .root_store(pki.root_store())
                .unknown_kid_cooldown(cooldown),
        )
        .build()
        .unwrap()
}

/// A token signed by `signer`, claiming to be from `iss`.
fn token_from(signer: &TestIssuer, iss: &str) -> String {
    let mut claims = signer.claims("svc", Some(Thumbprint::from_der(b"client cert")));
    claims["iss"] = json!(iss);
    signer.sign(&claims).unwrap()
}

#[tokio::test]
async fn metadata_of_another_issuer_is_refused() {
    let pki = TestPki::new().unwrap();
    let signer = TestIssuer::start(&pki).await.unwrap();
    let metadata = MetadataServer::start(&pki).await;
    let iss = metadata.base.clone();
    metadata.set("/jwks", StatusCode::OK, &signer.jwks());
    // It names a JWKS that would verify the token, but it is the metadata of
    // another issuer.
    let claims_other = json!({
        "issuer": "https://login.evil.example",
        "jwks_uri": format!("{iss}/jwks"),
    });
    metadata.set(
        "/.well-known/oauth-authorization-server",
        StatusCode::OK,
        &claims_other,
    );
    metadata.set(
        "/.well-known/openid-configuration",
        StatusCode::OK,
        &claims_other,
    );

    let validator = discovering_validator(&pki, &iss, Duration::from_secs(3600));
    let refused = validator.validate(&token_from(&signer, &iss)).await;
    assert_eq!(refused.unwrap_err().kind(), TokenErrorKind::KeysUnavailable);
    assert_eq!(metadata.hits("/.well-known/oauth-authorization-server"), 1);
    // Refused, not passed over for the next URL.
    assert_eq!(metadata.hits("/.well-known/openid-configuration"), 0);
    assert_eq!(metadata.hits("/jwks"), 0);

    // The same through a ResourceServer: 503, the server cannot check tokens.
    let f = files();
    let server = ResourceServer::builder()
        .issuer(&iss)
        .audience("https://api.test")
        .tls_pem_files(&f.cert, &f.key)
        .root_store(pki.root_store())
        .build()
        .unwrap();
    let service = server
        .layer()
        .layer(tower::service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let mut request = Request::new(String::new());
    request.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {}", token_from(&signer, &iss))
            .parse()
            .unwrap(),
    );
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(metadata.hits("/jwks"), 0);
}

#[tokio::test]
async fn a_path_issuer_is_looked_up_at_its_well_known_urls() {
    let pki = TestPki::new().unwrap();
    let signer = TestIssuer::start(&pki).await.unwrap();
    let metadata = MetadataServer::start(&pki).await;
    let iss = format!("{}/tenant/v2", metadata.base);
    metadata.set("/keys/tenant", StatusCode::OK, &signer.jwks());
    let document = json!({
        // Exactly the issuer configured (RFC 8414 section 3.3).
        "issuer": iss,
        "jwks_uri": format!("{}/keys/tenant", metadata.base),
    });

    // RFC 8414: the well-known part between the host and the path.
    metadata.set(
        "/.well-known/oauth-authorization-server/tenant/v2",
        StatusCode::OK,
        &document,
    );
    let validator = discovering_validator(&pki, &iss, Duration::ZERO);
    let verified = validator
        .validate(&token_from(&signer, &iss))
        .await
        .unwrap();
    assert_eq!(verified.issuer(), Some(iss.as_str()));
    assert_eq!(
        metadata.hits("/.well-known/oauth-authorization-server/tenant/v2"),
        1
    );
    assert_eq!(
        metadata.hits("/tenant/v2/.well-known/openid-configuration"),
        0
    );
    assert_eq!(metadata.hits("/keys/tenant"), 1);

    // A new key: the JWKS is fetched again, the metadata is not.
    signer.rotate_signing_key().unwrap();
    metadata.set("/keys/tenant", StatusCode::OK, &signer.jwks());
    validator
        .validate(&token_from(&signer, &iss))
        .await
        .unwrap();
    assert_eq!(metadata.hits("/keys/tenant"), 2);
    assert_eq!(
        metadata.hits("/.well-known/oauth-authorization-server/tenant/v2"),
        1
    );

    // Without RFC 8414 metadata: OpenID Connect Discovery, appended.
    let oidc = MetadataServer::start(&pki).await;
    let iss = format!("{}/tenant/v2", oidc.base);
    oidc.set("/jwks", StatusCode::OK, &signer.jwks());
    oidc.set(
        "/tenant/v2/.well-known/openid-configuration",
        StatusCode::OK,
        &json!({ "issuer": iss, "jwks_uri": format!("{}/jwks", oidc.base) }),
    );
    let validator = discovering_validator(&pki, &iss, Duration::ZERO);
    validator
        .validate(&token_from(&signer, &iss))
        .await
        .unwrap();
    assert_eq!(
        oidc.hits("/.well-known/oauth-authorization-server/tenant/v2"),
        1
    );
    assert_eq!(oidc.hits("/tenant/v2/.well-known/openid-configuration"), 1);
    assert_eq!(oidc.hits("/jwks"), 1);
}

#[tokio::test]
async fn failed_discovery_is_retried_after_the_cooldown_and_a_moved_jwks_found_again() {
    let pki = TestPki::new().unwrap();
    let signer = TestIssuer::start(&pki).await.unwrap();
    let metadata = MetadataServer::start(&pki).await;
    let iss = metadata.base.clone();
    // Long enough for the first two requests (a discovery each way, over
    // TLS) to fall within it even on a busy machine.
    let cooldown = Duration::from_secs(2);
    let validator = discovering_validator(&pki, &iss, cooldown);
    let token = token_from(&signer, &iss);

    // No metadata yet: no keys, and no second try within the cooldown.
    let first = validator.validate(&token).await;
    assert_eq!(first.unwrap_err().kind(), TokenErrorKind::KeysUnavailable);
    let again = validator.validate(&token).await;
    assert_eq!(again.unwrap_err().kind(), TokenErrorKind::KeysUnavailable);
    assert_eq!(metadata.hits("/.well-known/oauth-authorization-server"), 1);

    // The metadata appears; after the cooldown it is found.
    metadata.set("/jwks", StatusCode::OK, &signer.jwks());
    metadata.set(
        "/.well-known/oauth-authorization-server",
        StatusCode::OK,
        &json!({ "issuer": iss, "jwks_uri": format!("{iss}/jwks") }),
    );
    support::advance(cooldown).await;
    validator.validate(&token).await.unwrap();
    assert_eq!(metadata.hits("/.well-known/oauth-authorization-server"), 2);
    assert_eq!(metadata.hits("/jwks"), 1);

    // The issuer moves its keys: the old URL answers 404, so the next fetch
    // looks at the metadata again. The last good keys stay in use meanwhile.
    signer.rotate_signing_key().unwrap();
    metadata.set("/jwks", StatusCode::NOT_FOUND, &json!({}));
    metadata.set("/keys-v2", StatusCode::OK, &signer.jwks());
    metadata.set(
        "/.well-known/oauth-authorization-server",
        StatusCode::OK,
        &json!({ "issuer": iss, "jwks_uri": format!("{iss}/keys-v2") }),
    );
    support::advance(cooldown).await;
    let rotated = token_from(&signer, &iss);
    let moved = validator.validate(&rotated).await;
    assert_eq!(moved.unwrap_err().kind(), TokenErrorKind::UnknownKey);
    assert_eq!(metadata.hits("/jwks"), 2);
    validator.validate(&token).await.unwrap();

    support::advance(cooldown).await;
    validator.validate(&rotated).await.unwrap();
    assert_eq!(metadata.hits("/.well-known/oauth-authorization-server"), 3);
    assert_eq!(metadata.hits("/keys-v2"), 1);
}
