//! `BoundClient` in one expression, against the test authorization server and
//! a `CnfValidationLayer` API over real mTLS; identity rotation from files
//! while requests flow; every `build()` misconfiguration.
#![cfg(feature = "test-util")]

use crate::support;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;
use tower::ServiceBuilder;
use tower_token_binding::ConfigErrorKind;
use tower_token_binding::binding::{HeaderWord, Scheme};
use tower_token_binding::client::BoundClient;
use tower_token_binding::identity::{IdentitySource, ReloadingIdentity};
use tower_token_binding::pool::MtlsClientPool;
use tower_token_binding::server::{self, AnyClientCertVerifier, ConnectionInfo, PeerCertificate};
use tower_token_binding::test_util::{TestCert, TestIssuer, TestPki};
use tower_token_binding::{CnfValidationLayer, Thumbprint};

/// The client certificate of every connection the API accepted.
#[derive(Clone, Default)]
struct Connections(Arc<Mutex<HashMap<SocketAddr, Option<Thumbprint>>>>);

impl Connections {
    fn of(&self, thumbprint: Thumbprint) -> usize {
        let seen = self.0.lock().unwrap();
        seen.values().filter(|t| **t == Some(thumbprint)).count()
    }
}

/// An API behind `CnfValidationLayer` that answers who called and records
/// each connection's certificate. Returns its URL.
async fn start_api(pki: &TestPki, issuer: &TestIssuer, connections: Connections) -> String {
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let record = ServiceBuilder::new()
        .map_request(move |request: Request<Incoming>| {
            let peer = request
                .extensions()
                .get::<PeerCertificate>()
                .map(PeerCertificate::thumbprint);
            let remote = request
                .extensions()
                .get::<ConnectionInfo>()
                .unwrap()
                .remote_addr();
            connections.0.lock().unwrap().insert(remote, peer);
            request
        })
        .layer(CnfValidationLayer::new(support::jwt_validator(
            pki,
            issuer,
            Duration::from_secs(1),
        )))
        .service_fn(support::whoami);
    tokio::spawn(server::serve(listener, tls, record).into_future());
    format!("https://localhost:{port}/whoami")
}

fn write_ca(pki: &TestPki, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, pki.ca_pem()).unwrap();
    path
}

async fn call(client: &BoundClient, url: &str) -> (StatusCode, Value) {
    let response = client.get(url).await.expect("a response");
    let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    (response.status(), body)
}

#[tokio::test]
async fn one_expression_gives_a_bound_client() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let connections = Connections::default();
    let api = start_api(&pki, &issuer, connections.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let cert = pki.client_cert("svc.example").unwrap();
    let (cert_path, key_path) = cert.write_pem_files(dir.path(), "client").unwrap();
    let ca = write_ca(&pki, dir.path());

    let client = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .identity_files(&cert_path, &key_path)
        .root_ca_file(&ca)
        .build()
        .unwrap();

    let thumbprint = cert.thumbprint();
    for _ in 0..3 {
        let (status, body) = call(&client, &api).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["x5t#S256"], thumbprint.to_string());
        assert_eq!(body["client_id"], "svc");
    }
    assert_eq!(issuer.tokens_issued(), 1);
    assert_eq!(client.cache().unwrap().stats().fetches, 1);
    assert_eq!(connections.of(thumbprint), 1);
    assert_eq!(client.identity().unwrap().thumbprint(), thumbprint);

    // A clone shares the token and the connections.
    let clone = client.clone();
    assert_eq!(call(&clone, &api).await.0, StatusCode::OK);
    assert_eq!(issuer.tokens_issued(), 1);
    assert_eq!(connections.of(thumbprint), 1);
}

#[tokio::test]
async fn entra_flavour_sends_mtls_pop_tokens() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let api = start_api(&pki, &issuer, Connections::default()).await;
    let cert = pki.client_cert("svc.example").unwrap();

    let client = BoundClient::builder()
        .token_endpoint(issuer.mtls_token_endpoint())
        .client_id("svc")
        .identity(cert.identity().unwrap())
        .entra_mtls_pop()
        .root_store(pki.root_store())
        .build()
        .unwrap();
    let (status, body) = call(&client, &api).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["x5t#S256"], cert.thumbprint().to_string());
}

#[tokio::test]
async fn certificate_only_sends_no_token() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let api = start_api(&pki, &issuer, Connections::default()).await;
    let cert = pki.client_cert("svc.example").unwrap();

    let client = BoundClient::builder()
        .scheme(Scheme::MtlsOnly)
        .identity(cert.identity().unwrap())
        .root_store(pki.root_store())
        .build()
        .unwrap();
    assert!(client.cache().is_none());
    let response = client.get(&api).await.unwrap();
    // The API wants a token; the certificate went out without one.
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.tokens_issued(), 0);
}

/// Writes `cert`'s certificate and key over the files at `paths`, each
/// through a temporary file and a rename, as renewal agents do.
fn replace(
    paths: &(std::path::PathBuf, std::path::PathBuf),
    cert: Option<&TestCert>,
    key: Option<&TestCert>,
) {
    let write = |path: &Path, contents: &str| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, contents).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    };
    if let Some(cert) = cert {
        write(&paths.0, cert.cert_pem());
    }
    if let Some(key) = key {
        write(&paths.1, key.key_pem());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_files_rotate_while_requests_flow() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let connections = Connections::default();
    let api = start_api(&pki, &issuer, connections.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let a = pki.client_cert("svc.example").unwrap();
    let b = pki.client_cert("svc.example").unwrap();
    let c = pki.client_cert("svc.example").unwrap();
    let paths = a.write_pem_files(dir.path(), "client").unwrap();

    let interval = Duration::from_millis(100);
    let identity = ReloadingIdentity::builder(&paths.0, &paths.1)
        .poll_interval(interval)
        .build()
        .unwrap();
    let client = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .identity(identity.clone())
        .root_store(pki.root_store())
        // One connection per identity, so handshakes can be counted.
        .pool(MtlsClientPool::builder().http2_only())
        .build()
        .unwrap();

    // Four callers, without pause, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let seen = support::Seen::default();
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (client, api, stop, failures, seen) = (
            client.clone(),
            api.clone(),
            stop.clone(),
            failures.clone(),
            seen.clone(),
        );
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(&api).await {
                    Ok(response) if response.status() == StatusCode::OK => {
                        let body: Value = serde_json::from_slice(response.body()).unwrap();
                        let x5t = body["x5t#S256"].as_str().unwrap().to_owned();
                        seen.push(x5t);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let saw = |t: Thumbprint| {
        let seen = seen.clone();
        move || seen.contains(&t.to_string())
    };
    assert!(seen.until(saw(a.thumbprint())).await);
    assert_eq!(issuer.tokens_issued(), 1);

    // The renewal: a new certificate and key.
    replace(&paths, Some(&b), Some(&b));
    assert!(
        seen.until(saw(b.thumbprint())).await,
        "the new certificate was never used"
    );
    // From now on, every request presents B.
    let switched = seen.len();
    assert!(seen.until(|| seen.len() > switched + 50).await);
    let after: Vec<String> = seen.entries()[switched..].to_vec();
    // Requests already in flight when B arrived may still finish with A;
    // once one caller saw B, at most the other three callers' in-flight ones.
    let late_a = after
        .iter()
        .filter(|x| **x == a.thumbprint().to_string())
        .count();
    assert!(late_a <= 3, "{late_a} requests with A after the switch");
    assert!(
        after[after.len() - 10..]
            .iter()
            .all(|x| *x == b.thumbprint().to_string())
    );
    assert_eq!(identity.current().thumbprint(), b.thumbprint());
    // A's client went with the first request that saw B replace it, not
    // after the pool's idle bound.
    assert!(!client.pool().holds(&a.thumbprint()));
    assert!(client.pool().holds(&b.thumbprint()));
    assert_eq!(client.pool().stats().retired, 1);

    // A half-written pair: C's certificate with B's key. Refused; B goes on.
    let refused_before = identity.stats().refused;
    replace(&paths, Some(&c), None);
    assert!(
        seen.until(|| identity.stats().refused > refused_before)
            .await
    );
    let count = seen.len();
    assert!(seen.until(|| seen.len() > count + 20).await);
    assert!(
        seen.entries()[count..]
            .iter()
            .all(|x| *x == b.thumbprint().to_string())
    );
    assert_eq!(identity.current().thumbprint(), b.thumbprint());

    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }

    assert_eq!(failures.load(Ordering::Relaxed), 0, "requests failed");
    // A renewal, a rotation attempt that was refused: two tokens in all, one
    // connection per certificate.
    assert_eq!(issuer.tokens_issued(), 2);
    assert_eq!(client.cache().unwrap().stats().fetches, 2);
    assert_eq!(connections.of(a.thumbprint()), 1);
    assert_eq!(connections.of(b.thumbprint()), 1);
    assert_eq!(connections.of(c.thumbprint()), 0);
    let stats = identity.stats();
    assert_eq!(stats.reloads, 1);
    // The renewal itself may have been seen half-way (new certificate, old
    // key) once; the broken pair was refused once.
    assert!((1..=2).contains(&stats.refused), "{stats:?}");
}

fn identity() -> tower_token_binding::ClientIdentity {
    TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap()
}

/// What `build()` refused: the kind, the builder and the setting.
type Refusal = (ConfigErrorKind, &'static str, Option<&'static str>);

fn refused(builder: tower_token_binding::client::BoundClientBuilder) -> (Refusal, String) {
    match builder.build() {
        Ok(_) => panic!("build() accepted a misconfiguration"),
        Err(e) => ((e.kind(), e.builder(), e.setting()), format!("{e} / {e:?}")),
    }
}

#[test]
fn build_refuses_each_misconfiguration() {
    use ConfigErrorKind as K;
    const CLIENT: &str = "BoundClientBuilder";
    const CREDENTIALS: &str = "ClientCredentialsBuilder";
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new().unwrap();
    let a = pki.client_cert("a.example").unwrap();
    let b = pki.client_cert("b.example").unwrap();
    let (a_cert, _) = a.write_pem_files(dir.path(), "a").unwrap();
    let (_, b_key) = b.write_pem_files(dir.path(), "b").unwrap();
    let client = || {
        BoundClient::builder()
            .issuer("https://login.example")
            .client_id("svc")
            .root_store(pki.root_store())
    };

    // Nowhere to get tokens from.
    let (kind, _) = refused(BoundClient::builder().identity(identity()));
    assert_eq!(kind, (K::Missing, CLIENT, Some("issuer")));
    // An mTLS scheme without a certificate.
    let (kind, message) = refused(client());
    assert_eq!(kind, (K::Missing, CLIENT, Some("identity_files")));
    assert!(message.contains("identity_files"), "{message}");
    let (kind, _) = refused(BoundClient::builder().scheme(Scheme::MtlsOnly));
    assert_eq!(kind, (K::Missing, CLIENT, Some("identity_files")));
    let (kind, message) = refused(client().client_secret_basic("s3cret"));
    assert_eq!(kind, (K::Missing, CLIENT, Some("identity_files")));
    assert!(
        message.contains("client secret") && !message.contains("s3cret"),
        "{message}"
    );
    // A client secret over http://.
    let (kind, message) = refused(
        BoundClient::builder()
            .token_endpoint("http://login.example/token")
            .client_id("svc")
            .client_secret_post("s3cret")
            .identity(identity()),
    );
    assert_eq!(kind, (K::Invalid, CREDENTIALS, Some("token_endpoint")));
    assert!(
        message.contains("https://") && !message.contains("s3cret"),
        "{message}"
    );
    // An http:// issuer, and no client id.
    let (kind, _) = refused(
        BoundClient::builder()
            .issuer("http://login.example")
            .client_id("svc")
            .identity(identity()),
    );
    assert_eq!(kind, (K::Invalid, CREDENTIALS, Some("issuer")));
    let (kind, message) = refused(
        BoundClient::builder()
            .issuer("https://login.example")
            .identity(identity()),
    );
    assert_eq!(kind, (K::Missing, CREDENTIALS, Some("client_id")));
    assert!(message.contains("client_id"), "{message}");
    // Issuers with user info, a query or a fragment (RFC 8414 section 2);
    // the message names what is wrong and never repeats a password.
    for (issuer, hint) in [
        ("https://svc:s3cret@login.example", "user info"),
        ("https://login.example/?tenant=s3cret", "query"),
        ("https://login.example/t#s3cret", "fragment"),
    ] {
        let (kind, message) = refused(client().issuer(issuer).identity(identity()));
        assert_eq!(
            kind,
            (K::Invalid, CREDENTIALS, Some("issuer")),
            "{issuer}: {message}"
        );
        assert!(message.contains(hint), "{issuer}: {message}");
        assert!(!message.contains("s3cret"), "{issuer}: {message}");
    }
    // Settings that cannot go together.
    for (builder, hint) in [
        (
            client().token_endpoint("https://login.example/token"),
            "not both",
        ),
        (
            client().token_source(|| async { Ok(tower_token_binding::token::Token::new("t")) }),
            "token_source",
        ),
        (
            client().identity(identity()).scheme(Scheme::MtlsOnly),
            "MtlsOnly",
        ),
        (
            client().identity(identity()).scheme(Scheme::Bearer),
            "Bearer",
        ),
        (
            BoundClient::builder()
                .token_source(|| async { Ok(tower_token_binding::token::Token::new("t")) })
                .scheme(Scheme::Bearer)
                .header_word(HeaderWord::MtlsPop),
            "mtls_pop",
        ),
        (
            client()
                .identity(identity())
                .client_secret_basic("x")
                .self_signed_tls_client_auth(),
            "one client authentication",
        ),
    ] {
        let ((kind, _, setting), message) = refused(builder);
        assert_eq!(kind, K::Conflict, "{message}");
        assert!(setting.is_some(), "{message}");
        assert!(message.contains(hint), "{message}");
    }
    // Identity files that are missing, or do not make a pair.
    let (kind, message) =
        refused(client().identity_files(dir.path().join("nope.pem"), dir.path().join("nope.key")));
    // Said of the setting the user called, whatever builds the identity.
    assert_eq!(kind, (K::Unreadable, CLIENT, Some("identity_files")));
    assert!(message.contains("nope.pem"), "{message}");
    let (kind, message) = refused(client().identity_files(&a_cert, &b_key));
    assert_eq!(kind, (K::Unreadable, CLIENT, Some("identity_files")));
    assert!(message.contains("KeyMismatch"), "{message}");
    // Roots that cannot be read.
    let (kind, message) = refused(
        client()
            .identity(identity())
            .root_ca_file(dir.path().join("no-ca.pem")),
    );
    assert_eq!(kind, (K::Unreadable, CLIENT, Some("root_ca_file")));
    assert!(message.contains("no-ca.pem"), "{message}");
    // And a good configuration builds without a runtime.
    client().identity(identity()).build().unwrap();
}

#[test]
fn builder_debug_hides_the_secret() {
    let builder = BoundClient::builder().client_secret_basic("s3cret-value");
    assert!(!format!("{builder:?}").contains("s3cret"));
}

#[tokio::test]
async fn a_token_source_with_bound_tokens_needs_no_identity() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let api = start_api(&pki, &issuer, Connections::default()).await;
    let cert = pki.client_cert("svc.example").unwrap();
    let source = tower_token_binding::source::ClientCredentials::builder()
        .token_endpoint(issuer.mtls_token_endpoint())
        .client_id("svc")
        .tls_client_auth(cert.identity().unwrap())
        .root_store(pki.root_store())
        .build()
        .unwrap();
    let client = BoundClient::builder()
        .token_source(source)
        .root_store(pki.root_store())
        .build()
        .unwrap();
    let (status, body) = call(&client, &api).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["x5t#S256"], cert.thumbprint().to_string());
    assert!(client.identity().is_none());
}
