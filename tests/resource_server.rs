//! `ResourceServer`: the one-expression resource server, against the test
//! authorization server (discovery, JWKS, mTLS token endpoint) over real TLS
//! on loopback; every misconfiguration of its builder; and JWKS discovery
//! against a hand-made metadata server.
#![cfg(all(feature = "test-util", feature = "axum"))]

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::IntoFuture as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use support::{HttpsClient, https_client, post_form};
use tower::{Layer as _, ServiceExt as _};
use tower_token_binding::server::{
    self, AnyClientCertVerifier, ClientCertMode, PeerCertificate, ResourceServer,
    ResourceServerBuilder, ResourceServerErrorKind as Kind, ServerTlsConfig,
};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{
    JwksSource, JwtValidator, TokenErrorKind, ValidateToken, VerifiedToken,
};
use tower_token_binding::{ClientIdentity, Thumbprint};

/// Says who called: the verified token and the connection's certificate.
async fn whoami(token: VerifiedToken, Extension(peer): Extension<PeerCertificate>) -> Json<Value> {
    Json(json!({
        "sub": token.subject(),
        "client_id": token.client_id(),
        "scope": token.scope(),
        "cnf": token.confirmation().and_then(|c| c.thumbprint()).map(ToString::to_string),
        "peer": peer.thumbprint().to_string(),
    }))
}

/// A token from the issuer's mTLS token endpoint, bound to `identity`.
async fn bound_token(pki: &TestPki, issuer: &TestIssuer, identity: &ClientIdentity) -> String {
    let (status, body) = post_form(
        &https_client(pki, Some(identity)),
        &issuer.mtls_token_endpoint(),
        &[("grant_type", "client_credentials"), ("client_id", "svc")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// `GET url` with `token`, if any: status, challenge, body.
async fn call(
    client: &HttpsClient,
    url: &str,
    token: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::get(url);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = client
        .request(request.body(Full::default()).unwrap())
        .await
        .expect("request");
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, challenge, json)
}

#[tokio::test]
async fn one_expression_serves_a_router_that_accepts_bound_tokens_only() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .audience("https://api.example")
        .default_scope("read")
        .start(&pki)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "server")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/whoami",
        listener.local_addr().unwrap().port()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();

    // The whole server, from the issuer URL on.
    let running = tokio::spawn(
        ResourceServer::builder()
            .issuer(issuer.issuer())
            .audience("https://api.example")
            .tls_pem_files(&cert, &key)
            .issuer_root_store(pki.root_store())
            .required_scope("read")
            .handshake_timeout(Duration::from_secs(5))
            .build()
            .unwrap()
            .serve(listener, Router::new().route("/whoami", get(whoami)))
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    assert_eq!(
        issuer.jwks_fetches(),
        0,
        "nothing is fetched before a token"
    );

    // A self-signed client (RFC 8705 section 2.2): the default mode lets it
    // in, and its token is bound to it.
    let identity = TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let token = bound_token(&pki, &issuer, &identity).await;
    let client = https_client(&pki, Some(&identity));
    let (status, challenge, body) = call(&client, &url, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{challenge:?} {body}");
    assert_eq!(body["sub"], "svc");
    assert_eq!(body["client_id"], "svc");
    assert_eq!(body["scope"], "read");
    assert_eq!(body["cnf"], identity.thumbprint().to_string());
    assert_eq!(body["peer"], identity.thumbprint().to_string());
    // The keys came from the JWKS URL found in the issuer's metadata.
    assert_eq!(issuer.jwks_fetches(), 1);

    // The same token from another certificate (a CA-issued one): refused.
    let other = pki
        .client_cert("other.example")
        .unwrap()
        .identity()
        .unwrap();
    let (status, challenge, _) = call(&https_client(&pki, Some(&other)), &url, Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer error=\"invalid_token\"")),
        "{challenge:?}"
    );

    // The same token with no certificate at all: refused.
    let (status, challenge, _) = call(&https_client(&pki, None), &url, Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.unwrap().contains("invalid_token"));

    // No token: a bare challenge.
    let (status, challenge, _) = call(&client, &url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer"));

    // Validated tokens are cached, and the keys are still fresh.
    assert_eq!(issuer.jwks_fetches(), 1);

    drop(client);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("graceful shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_client_ca_file_admits_issued_certificates_only() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "server")
        .unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let issuer_ca = write(dir.path(), "issuer-ca.pem", &pki.ca_pem());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/whoami",
        listener.local_addr().unwrap().port()
    );
    let server = ResourceServer::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .tls_pem_files(&cert, &key)
        .client_ca_file(&ca)
        .issuer_root_ca_file(&issuer_ca)
        .build()
        .unwrap();
    tokio::spawn(
        server
            .serve(listener, Router::new().route("/whoami", get(whoami)))
            .into_future(),
    );

    let issued = pki
        .client_cert("issued.example")
        .unwrap()
        .identity()
        .unwrap();
    let token = bound_token(&pki, &issuer, &issued).await;
    let (status, _, body) = call(&https_client(&pki, Some(&issued)), &url, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["peer"], issued.thumbprint().to_string());

    // A self-signed certificate does not chain to the CA: no handshake.
    let self_signed = TestPki::self_signed_client("self.example")
        .unwrap()
        .identity()
        .unwrap();
    let token = bound_token(&pki, &issuer, &self_signed).await;
    let refused = https_client(&pki, Some(&self_signed))
        .request(
            Request::get(&url)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Every way `build` can be misconfigured, with the files it reads.
struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    other_key: PathBuf,
    ca: PathBuf,
    not_pem: PathBuf,
    missing: PathBuf,
    roots: rustls::RootCertStore,
}

fn files() -> Files {
    let pki = TestPki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "server")
        .unwrap();
    let (_, other_key) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "other")
        .unwrap();
    Files {
        cert,
        key,
        other_key,
        ca: write(dir.path(), "ca.pem", &pki.ca_pem()),
        not_pem: write(dir.path(), "notes.txt", "not a certificate\n"),
        missing: dir.path().join("missing.pem"),
        roots: pki.root_store(),
        _dir: dir,
    }
}

fn good(files: &Files) -> ResourceServerBuilder {
    ResourceServer::builder()
        .issuer("https://login.example.com/tenant")
        .audience("https://api.example.com")
        .tls_pem_files(&files.cert, &files.key)
        .issuer_root_store(files.roots.clone())
}

#[test]
fn every_misconfiguration_is_a_typed_error() {
    let f = files();
    // The good one builds, without a runtime and without a request.
    let server = good(&f).build().unwrap();
    assert!(format!("{server:?}").contains("https://login.example.com/tenant"));
    assert!(!format!("{server:?}").contains("PRIVATE KEY"));

    let kind = |builder: ResourceServerBuilder| {
        let e = builder.build().unwrap_err();
        assert!(!e.to_string().is_empty());
        (e.kind(), e.path().map(Path::to_owned), e.to_string())
    };
    let builder = || {
        ResourceServer::builder()
            .audience("https://api.example.com")
            .tls_pem_files(&f.cert, &f.key)
            .issuer_root_store(f.roots.clone())
    };

    // The issuer.
    assert_eq!(kind(builder()).0, Kind::MissingIssuer);
    for bad in [
        "http://login.example.com",
        "login.example.com",
        "https://login.example.com/?tenant=1",
        "https://user:pw@login.example.com",
        "",
    ] {
        let (k, _, message) = kind(builder().issuer(bad));
        assert_eq!(k, Kind::InvalidIssuer, "{bad:?}");
        assert!(message.contains("issuer"), "{message}");
    }

    // The audience.
    let no_audience = ResourceServer::builder()
        .issuer("https://login.example.com")
        .tls_pem_files(&f.cert, &f.key)
        .issuer_root_store(f.roots.clone());
    assert_eq!(kind(no_audience.clone()).0, Kind::MissingAudience);
    assert_eq!(
        kind(no_audience.clone().audience("")).0,
        Kind::EmptyAudience
    );
    assert_eq!(
        kind(good(&f).audience("  ")).0,
        Kind::EmptyAudience,
        "one blank audience among good ones"
    );

    // Scopes and algorithms.
    for bad in ["", "two words", "quote\"d"] {
        assert_eq!(kind(good(&f).required_scope(bad)).0, Kind::InvalidScope);
    }
    assert!(good(&f).required_scope("read:all").build().is_ok());
    assert_eq!(kind(good(&f).algorithms([])).0, Kind::NoAlgorithms);

    // Claims: only sub, client_id, iat and jti may be allowed to be missing.
    assert!(
        good(&f)
            .allow_missing_claims(["jti", "iat"])
            .build()
            .is_ok()
    );
    for always in ["iss", "aud", "exp", "cnf"] {
        let (k, _, message) = kind(good(&f).allow_missing_claims([always]));
        assert_eq!(k, Kind::ClaimAlwaysRequired);
        assert!(message.contains(always), "{message}");
    }

    // TLS.
    let no_tls = ResourceServer::builder()
        .issuer("https://login.example.com")
        .audience("https://api.example.com")
        .issuer_root_store(f.roots.clone());
    assert_eq!(kind(no_tls).0, Kind::MissingTls);
    let (k, path, message) = kind(good(&f).tls_pem_files(&f.missing, &f.key));
    assert_eq!((k, path.as_deref()), (Kind::Tls, Some(f.missing.as_path())));
    assert!(message.contains("missing.pem"), "{message}");
    let (k, path, message) = kind(good(&f).tls_pem_files(&f.cert, &f.missing));
    assert_eq!((k, path.as_deref()), (Kind::Tls, Some(f.missing.as_path())));
    assert!(message.contains("missing.pem"), "{message}");
    let (k, path, message) = kind(good(&f).tls_pem_files(&f.cert, &f.other_key));
    assert_eq!(
        (k, path.as_deref()),
        (Kind::Tls, Some(f.other_key.as_path()))
    );
    assert!(message.contains("other.key"), "{message}");
    assert!(message.contains("does not belong"), "{message}");
    let (k, path, _) = kind(good(&f).tls_pem_files(&f.not_pem, &f.key));
    assert_eq!((k, path.as_deref()), (Kind::Tls, Some(f.not_pem.as_path())));

    // Client certificates.
    let (k, path, message) = kind(good(&f).client_ca_file(&f.missing));
    assert_eq!(
        (k, path.as_deref()),
        (Kind::ClientCa, Some(f.missing.as_path()))
    );
    assert!(message.contains("missing.pem"), "{message}");
    let (k, path, _) = kind(good(&f).client_ca_file(&f.not_pem));
    assert_eq!(
        (k, path.as_deref()),
        (Kind::ClientCa, Some(f.not_pem.as_path()))
    );
    assert_eq!(
        kind(
            good(&f)
                .client_cert_mode(ClientCertMode::trusted_roots(rustls::RootCertStore::empty()))
        )
        .0,
        Kind::ClientCa
    );
    assert!(good(&f).client_ca_file(&f.ca).build().is_ok());
    assert!(
        good(&f)
            .client_cert_mode(ClientCertMode::any_certificate().required())
            .build()
            .is_ok()
    );

    // A ready TLS config decides client certificates by itself.
    let pki = TestPki::new().unwrap();
    let cert = pki.server_cert().unwrap();
    let config = ServerTlsConfig::new(ClientCertMode::any_certificate())
        .build(cert.chain(), cert.private_key())
        .unwrap();
    let with_config = good(&f).tls_config(config);
    assert!(with_config.clone().build().is_ok());
    let (k, _, message) = kind(with_config.client_ca_file(&f.ca));
    assert_eq!(k, Kind::ConflictingOptions);
    assert!(message.contains("tls_config"), "{message}");

    // Trust for the issuer.
    let (k, path, message) = kind(good(&f).issuer_root_ca_file(&f.missing));
    assert_eq!(
        (k, path.as_deref()),
        (Kind::IssuerTls, Some(f.missing.as_path()))
    );
    assert!(message.contains("missing.pem"), "{message}");
    assert!(good(&f).issuer_root_ca_file(&f.ca).build().is_ok());
}

#[tokio::test]
async fn the_layer_and_tls_config_are_there_to_compose() {
    let f = files();
    let server = good(&f).terse().build().unwrap();
    assert_eq!(
        server.tls_config().alpn_protocols,
        [b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    let service = server
        .layer()
        .layer(tower::service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::from("through")))
        }));
    let mut request = Request::new(String::new());
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, "Bearer a b".parse().unwrap());
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    // Terse: no error_description.
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_request\""
    );
}

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
        .issuer_root_store(pki.root_store())
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
    tokio::time::sleep(cooldown).await;
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
    tokio::time::sleep(cooldown).await;
    let rotated = token_from(&signer, &iss);
    let moved = validator.validate(&rotated).await;
    assert_eq!(moved.unwrap_err().kind(), TokenErrorKind::UnknownKey);
    assert_eq!(metadata.hits("/jwks"), 2);
    validator.validate(&token).await.unwrap();

    tokio::time::sleep(cooldown).await;
    validator.validate(&rotated).await.unwrap();
    assert_eq!(metadata.hits("/.well-known/oauth-authorization-server"), 3);
    assert_eq!(metadata.hits("/keys-v2"), 1);
}
