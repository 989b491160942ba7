//! `ResourceServer`: the one-expression resource server, against the test
//! authorization server (discovery, JWKS, mTLS token endpoint) over real TLS
//! on loopback; every misconfiguration of its builder
//! (JWKS discovery against a hand-made metadata server is in
//! `resource_server_discovery.rs`).
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use crate::support::server_files;
use std::convert::Infallible;
use std::future::IntoFuture as _;
use std::path::Path;
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Json, Router};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use server_files::{Files, files, write};
use support::{HttpsClient, bound_token, https_client};
use tower::{Layer as _, ServiceExt as _};
use tower_token_binding::ConfigErrorKind as Kind;
use tower_token_binding::proof::Algorithm;
use tower_token_binding::server::{
    ClientCertMode, PeerCertificate, ResourceServer, ResourceServerBuilder, ServerTlsConfig,
};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::VerifiedToken;

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
            .root_store(pki.root_store())
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
        .root_ca_file(&issuer_ca)
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

fn good(files: &Files) -> ResourceServerBuilder {
    ResourceServer::builder()
        .issuer("https://login.example.com/tenant")
        .audience("https://api.example.com")
        .tls_pem_files(&files.cert, &files.key)
        .root_store(files.roots.clone())
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
        (
            (e.kind(), e.setting()),
            e.path().map(Path::to_owned),
            e.to_string(),
        )
    };
    let builder = || {
        ResourceServer::builder()
            .audience("https://api.example.com")
            .tls_pem_files(&f.cert, &f.key)
            .root_store(f.roots.clone())
    };

    // The issuer.
    assert_eq!(kind(builder()).0, (Kind::Missing, Some("issuer")));
    for bad in [
        "http://login.example.com",
        "login.example.com",
        "https://login.example.com/?tenant=1",
        "https://user:pw@login.example.com",
        "",
    ] {
        let (k, _, message) = kind(builder().issuer(bad));
        assert_eq!(k, (Kind::Invalid, Some("issuer")), "{bad:?}");
        assert!(message.contains("issuer"), "{message}");
    }

    // The audience.
    let no_audience = ResourceServer::builder()
        .issuer("https://login.example.com")
        .tls_pem_files(&f.cert, &f.key)
        .root_store(f.roots.clone());
    assert_eq!(
        kind(no_audience.clone()).0,
        (Kind::Missing, Some("audience"))
    );
    assert_eq!(
        kind(no_audience.clone().audience("")).0,
        (Kind::Invalid, Some("audience"))
    );
    assert_eq!(
        kind(good(&f).audience("  ")).0,
        (Kind::Invalid, Some("audience")),
        "one blank audience among good ones"
    );

    // Scopes and algorithms.
    for bad in ["", "two words", "quote\"d"] {
        assert_eq!(
            kind(good(&f).required_scope(bad)).0,
            (Kind::Invalid, Some("required_scope"))
        );
    }
    assert!(good(&f).required_scope("read:all").build().is_ok());
    assert_eq!(
        kind(good(&f).algorithms([])).0,
        (Kind::Invalid, Some("algorithms"))
    );
    assert!(
        good(&f)
            .algorithms([Algorithm::Es256, Algorithm::Es512])
            .build()
            .is_ok()
    );
    assert!(
        good(&f)
            .algorithms([Algorithm::Rs256, Algorithm::Es256])
            .build()
            .is_ok()
    );

    // Claims: only sub, client_id, iat and jti may be allowed to be missing.
    assert!(
        good(&f)
            .allow_missing_claims(["jti", "iat"])
            .build()
            .is_ok()
    );
    for always in ["iss", "aud", "exp", "cnf"] {
        let (k, _, message) = kind(good(&f).allow_missing_claims([always]));
        assert_eq!(k, (Kind::Invalid, Some("allow_missing_claims")));
        assert!(message.contains(always), "{message}");
    }

    // TLS.
    let no_tls = ResourceServer::builder()
        .issuer("https://login.example.com")
        .audience("https://api.example.com")
        .root_store(f.roots.clone());
    assert_eq!(kind(no_tls).0, (Kind::Missing, Some("tls_pem_files")));
    let (k, path, message) = kind(good(&f).tls_pem_files(&f.missing, &f.key));
    let tls = (Kind::Unreadable, Some("tls_pem_files"));
    assert_eq!((k, path.as_deref()), (tls, Some(f.missing.as_path())));
    assert!(message.contains("missing.pem"), "{message}");
    let (k, path, message) = kind(good(&f).tls_pem_files(&f.cert, &f.missing));
    assert_eq!((k, path.as_deref()), (tls, Some(f.missing.as_path())));
    assert!(message.contains("missing.pem"), "{message}");
    let (k, path, message) = kind(good(&f).tls_pem_files(&f.cert, &f.other_key));
    assert_eq!((k, path.as_deref()), (tls, Some(f.other_key.as_path())));
    assert!(message.contains("other.key"), "{message}");
    let (k, path, _) = kind(good(&f).tls_pem_files(&f.not_pem, &f.key));
    assert_eq!((k, path.as_deref()), (tls, Some(f.not_pem.as_path())));

    // Client certificates.
    let (k, path, message) = kind(good(&f).client_ca_file(&f.missing));
    assert_eq!(
        (k, path.as_deref()),
        (
            (Kind::Unreadable, Some("client_ca_file")),
            Some(f.missing.as_path())
        )
    );
    assert!(message.contains("missing.pem"), "{message}");
    let (k, path, _) = kind(good(&f).client_ca_file(&f.not_pem));
    assert_eq!(
        (k, path.as_deref()),
        (
            (Kind::Unreadable, Some("client_ca_file")),
            Some(f.not_pem.as_path())
        )
    );
    assert_eq!(
        kind(
            good(&f)
                .client_cert_mode(ClientCertMode::trusted_roots(rustls::RootCertStore::empty()))
        )
        .0,
        (Kind::Invalid, Some("client_cert_mode"))
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
    assert_eq!(k, (Kind::Conflict, Some("tls_config")));
    assert!(message.contains("tls_config"), "{message}");

    // Trust for the issuer.
    let (k, path, message) = kind(good(&f).root_ca_file(&f.missing));
    assert_eq!(
        (k, path.as_deref()),
        (
            (Kind::Unreadable, Some("root_ca_file")),
            Some(f.missing.as_path())
        )
    );
    assert!(message.contains("missing.pem"), "{message}");
    assert!(good(&f).root_ca_file(&f.ca).build().is_ok());
    // The old spelling forwards to the same setting; the last call wins,
    // as with any setter called twice.
    #[allow(deprecated)]
    {
        let (k, _, _) = kind(good(&f).root_ca_file(&f.missing));
        assert_eq!(k, (Kind::Unreadable, Some("root_ca_file")));
        assert!(
            good(&f)
                .root_ca_file(&f.missing)
                .root_ca_file(&f.ca)
                .build()
                .is_ok()
        );
    }
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

/// The server's certificate and key in memory (`tls_identity`): the same
/// server as with files, none on disk; a chain whose key is another's, or
/// an empty chain, is a `Tls` error at build.
#[tokio::test]
async fn an_in_memory_identity_serves_without_files() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/whoami",
        listener.local_addr().unwrap().port()
    );
    let (chain, key) = pki.server_identity().unwrap();
    let builder = ResourceServer::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .tls_identity(chain, key)
        .root_store(pki.root_store());
    let shown = format!("{builder:?}");
    assert!(shown.contains("a certificate chain in memory"), "{shown}");
    assert!(!shown.contains("PRIVATE"), "{shown}");
    let server = builder.build().unwrap();
    tokio::spawn(
        server
            .serve(listener, Router::new().route("/whoami", get(whoami)))
            .into_future(),
    );

    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let token = bound_token(&pki, &issuer, &identity).await;
    let (status, challenge, body) =
        call(&https_client(&pki, Some(&identity)), &url, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{challenge:?} {body}");
    assert_eq!(body["peer"], identity.thumbprint().to_string());

    // Another certificate's key: refused at build, not at the first handshake.
    let (chain, _) = pki.server_identity().unwrap();
    let (_, other_key) = pki.server_identity().unwrap();
    let refused = |builder: ResourceServerBuilder| {
        let e = builder.build().unwrap_err();
        (e.kind(), e.setting())
    };
    let base = || {
        ResourceServer::builder()
            .issuer(issuer.issuer())
            .audience(issuer.audience())
            .root_store(pki.root_store())
    };
    let tls = (Kind::Invalid, Some("tls_identity"));
    assert_eq!(refused(base().tls_identity(chain, other_key)), tls);
    let (_, key) = pki.server_identity().unwrap();
    assert_eq!(refused(base().tls_identity(Vec::new(), key)), tls);
}
