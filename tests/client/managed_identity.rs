//! `ManagedIdentity` (Azure IMDS v2) against the embedded IMDS emulator, the
//! test authorization server and the crate's `ResourceServer`, over real
//! HTTP and TLS on loopback: the whole flow, renewal while requests flow,
//! not on Azure, and answers that must be refused.
#![cfg(all(feature = "test-util", feature = "axum", feature = "managed-identity"))]

use crate::support;
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tower_token_binding::ConfigErrorKind;
use tower_token_binding::binding::Scheme;
use tower_token_binding::client::BoundClient;
use tower_token_binding::identity::IdentitySource;
use tower_token_binding::identity::managed::{
    ManagedIdentity, ManagedIdentityError, ManagedIdentityErrorKind as Kind,
};
use tower_token_binding::pool::MtlsClientPool;
use tower_token_binding::server::{PeerCertificate, ResourceServer};
use tower_token_binding::test_util::{Fault, ImdsEmulator, ImdsFault, TestIssuer, TestPki};
use tower_token_binding::token::TokenSource;
use tower_token_binding::validation::VerifiedToken;

const AUDIENCE: &str = "https://api.example";

/// Says who called: the token's client and binding, the connection's
/// certificate.
async fn whoami(token: VerifiedToken, Extension(peer): Extension<PeerCertificate>) -> Json<Value> {
    Json(json!({
        "client_id": token.client_id(),
        "scope": token.scope(),
        "cnf": token.confirmation().and_then(|c| c.thumbprint()).map(ToString::to_string),
        "peer": peer.thumbprint().to_string(),
    }))
}

/// Everything a test needs: the PKI, the authorization server, IMDS, and a
/// resource server (its URL) that accepts tokens of that issuer.
struct World {
    pki: TestPki,
    issuer: TestIssuer,
    imds: ImdsEmulator,
    api: String,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn world(lifetime: Duration) -> World {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .audience(AUDIENCE)
        .start(&pki)
        .await
        .unwrap();
    let imds = ImdsEmulator::builder()
        .certificate_lifetime(lifetime)
        .start(&pki, &issuer)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "server")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!(
        "https://localhost:{}/whoami",
        listener.local_addr().unwrap().port()
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        ResourceServer::builder()
            .issuer(issuer.issuer())
            .audience(AUDIENCE)
            .tls_pem_files(&cert, &key)
            .root_store(pki.root_store())
            .build()
            .unwrap()
            .serve(listener, Router::new().route("/whoami", get(whoami)))
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    World {
        pki,
        issuer,
        imds,
        api,
        dir,
        _stop: stop,
    }
}

async fn managed(imds: &ImdsEmulator) -> Result<ManagedIdentity, ManagedIdentityError> {
    ManagedIdentity::imds_v2()
        .base_url(imds.base_url())
        .probe_timeout(Duration::from_secs(10))
        .scope(format!("{AUDIENCE}/.default"))
        .build()
        .await
}

async fn call(client: &BoundClient, url: &str) -> (StatusCode, Value) {
    let response = client.get(url).await.expect("a response");
    let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    (response.status(), body)
}

#[tokio::test]
async fn the_whole_flow_ends_at_the_resource_server() {
    let w = world(Duration::from_secs(7 * 24 * 3600)).await;
    let identity = managed(&w.imds).await.unwrap();
    assert_eq!(identity.client_id(), w.imds.client_id());
    assert_eq!(identity.tenant_id(), w.imds.tenant_id());
    assert_eq!(identity.identity_type(), "SystemAssigned");
    assert_eq!(
        identity.token_endpoint(),
        w.issuer.tenant_token_endpoint(w.imds.tenant_id())
    );
    assert_eq!(identity.attestation_endpoint(), Some("https://attest.test"));
    assert_eq!(w.imds.probes(), 1);
    assert_eq!(w.imds.metadata_requests(), 1);
    assert_eq!(w.imds.credentials_issued(), 1);
    assert_eq!(w.imds.requests_refused(), 0);
    // The key stays out of Debug.
    let debug = format!("{identity:?}");
    assert!(
        debug.contains(&identity.thumbprint().to_string()),
        "{debug}"
    );
    assert!(!debug.to_lowercase().contains("private"), "{debug}");

    let client = BoundClient::builder()
        .managed_identity(identity.clone())
        .root_store(w.pki.root_store())
        .build()
        .unwrap();
    let thumbprint = identity.thumbprint().to_string();
    for _ in 0..3 {
        let (status, body) = call(&client, &w.api).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["cnf"], thumbprint, "{body}");
        assert_eq!(body["peer"], thumbprint, "{body}");
        assert_eq!(body["client_id"], w.imds.client_id());
        assert_eq!(body["scope"], format!("{AUDIENCE}/.default"));
    }
    assert_eq!(w.issuer.tokens_issued(), 1);
    assert_eq!(client.cache().unwrap().stats().fetches, 1);
    assert_eq!(
        client.identity().unwrap().thumbprint(),
        identity.thumbprint()
    );
    // Nothing more asked of IMDS.
    assert_eq!(w.imds.credentials_issued(), 1);

    // Without a BoundClient: the client credentials, ready to build.
    let source = identity
        .client_credentials()
        .root_store(w.pki.root_store())
        .build()
        .unwrap();
    let token = source.fetch().await.unwrap();
    assert_eq!(
        token.identity().map(|i| i.thumbprint()),
        Some(identity.thumbprint())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_before_expiry_fails_no_request() {
    // The first certificate lives six seconds: renewed after three.
    let w = world(Duration::from_secs(6)).await;
    let identity = managed(&w.imds).await.unwrap();
    let first = identity.current();
    // The renewed one lives long, so there is exactly one renewal to see.
    w.imds
        .set_certificate_lifetime(Duration::from_secs(7 * 24 * 3600));
    let client = BoundClient::builder()
        .managed_identity(identity.clone())
        .root_store(w.pki.root_store())
        .pool(MtlsClientPool::builder().http2_only())
        .build()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let seen = support::Seen::default();
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (client, api, stop, failures, seen) = (
            client.clone(),
            w.api.clone(),
            stop.clone(),
            failures.clone(),
            seen.clone(),
        );
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(&api).await {
                    Ok(response) if response.status() == StatusCode::OK => {
                        let body: Value = serde_json::from_slice(response.body()).unwrap();
                        assert_eq!(body["cnf"], body["peer"]);
                        let x5t = body["peer"].as_str().unwrap().to_owned();
                        seen.push(x5t);
                    }
                    _ => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let first_x5t = first.thumbprint().to_string();
    assert!(seen.until(|| seen.contains(&first_x5t)).await);
    assert!(
        seen.until(|| identity.stats().renewals == 1).await,
        "never renewed: {:?}",
        identity.stats()
    );
    let renewed = identity.current();
    assert_ne!(renewed.thumbprint(), first.thumbprint());
    let renewed_x5t = renewed.thumbprint().to_string();
    assert!(
        seen.until(|| seen.contains(&renewed_x5t)).await,
        "the renewed certificate was never used"
    );
    let switched = seen.len();
    assert!(seen.until(|| seen.len() > switched + 40).await);
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.unwrap();
    }

    assert_eq!(failures.load(Ordering::Relaxed), 0, "requests failed");
    let seen = seen.entries();
    assert!(seen[seen.len() - 10..].iter().all(|x| *x == renewed_x5t));
    assert!(seen.iter().all(|x| *x == first_x5t || *x == renewed_x5t));
    // The old identity was retired, its connections dropped.
    assert!(first.is_retired());
    assert!(!renewed.is_retired());
    assert!(!client.pool().holds(&first.thumbprint()));
    assert!(client.pool().holds(&renewed.thumbprint()));
    assert_eq!(client.pool().stats().retired, 1);
    // A new key, a new certificate, a new token.
    assert_eq!(w.imds.credentials_issued(), 2);
    assert_eq!(w.imds.metadata_requests(), 2, "read again for the renewal");
    assert_eq!(w.issuer.tokens_issued(), 2);
    assert_eq!(client.cache().unwrap().stats().fetches, 2);
    assert_eq!(identity.stats().failures, 0);
}

#[tokio::test]
async fn never_falls_back_to_unbound_tokens() {
    let w = world(Duration::from_secs(3600)).await;
    let identity = managed(&w.imds).await.unwrap();
    // A client (and token cache) of its own for each case.
    let client = || {
        BoundClient::builder()
            .managed_identity(identity.clone())
            .root_store(w.pki.root_store())
            .build()
            .unwrap()
    };

    // A Bearer answer to an mtls_pop request is an error, not a token.
    w.issuer
        .set_fault(Some(Fault::TokenType("Bearer".to_owned())));
    let error = client().get(&w.api).await.unwrap_err();
    assert!(error.to_string().contains("access token"), "{error}");
    // A token without cnf is not sent either.
    w.issuer.set_fault(Some(Fault::Unbound));
    let error = client().get(&w.api).await.unwrap_err();
    assert!(error.to_string().contains("not bound"), "{error}");

    w.issuer.set_fault(None);
    let (status, body) = call(&client(), &w.api).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn off_azure_the_build_fails_at_once_with_not_available() {
    let w = world(Duration::from_secs(3600)).await;
    let build = |url: String| async move {
        // A hang is a failure of its own, not a timing assertion.
        tokio::time::timeout(
            Duration::from_secs(30),
            ManagedIdentity::imds_v2()
                .base_url(url)
                .probe_timeout(Duration::from_millis(200))
                .build(),
        )
        .await
        .expect("the build hung")
        .unwrap_err()
    };

    // Nothing listens.
    let (_held, closed) = support::refusing_address();
    let error = build(format!("http://{closed}")).await;
    assert_eq!(error.kind(), Kind::NotAvailable, "{error}");
    assert!(error.is_not_available());

    // A 404.
    w.imds.set_fault(Some(ImdsFault::NotFound));
    let error = build(w.imds.base_url()).await;
    assert_eq!(error.kind(), Kind::NotAvailable, "{error}");
    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));

    // Another server, which refuses with 400 but is not IMDS.
    w.imds.set_fault(Some(ImdsFault::NotImds));
    let error = build(w.imds.base_url()).await;
    assert_eq!(error.kind(), Kind::NotAvailable, "{error}");
    assert!(error.to_string().contains("not by IMDS"), "{error}");

    // No answer within the probe timeout.
    w.imds.set_fault(Some(ImdsFault::Silent));
    let error = build(w.imds.base_url()).await;
    assert_eq!(error.kind(), Kind::NotAvailable, "{error}");
    assert!(error.to_string().contains("within"), "{error}");

    assert_eq!(w.imds.credentials_issued(), 0);
}

#[tokio::test]
async fn garbage_answers_are_refused() {
    let w = world(Duration::from_secs(3600)).await;

    w.imds.set_fault(Some(ImdsFault::GarbageMetadata));
    let error = managed(&w.imds).await.unwrap_err();
    assert_eq!(error.kind(), Kind::InvalidResponse, "{error}");
    assert!(error.to_string().contains("platform metadata"), "{error}");

    w.imds.set_fault(Some(ImdsFault::GarbageCredential));
    let error = managed(&w.imds).await.unwrap_err();
    assert_eq!(error.kind(), Kind::InvalidResponse, "{error}");
    assert!(error.to_string().contains("credential"), "{error}");

    w.imds.set_fault(Some(ImdsFault::CredentialUnavailable));
    let error = managed(&w.imds).await.unwrap_err();
    assert_eq!(error.kind(), Kind::Status, "{error}");
    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));

    assert_eq!(w.imds.credentials_issued(), 0);
    assert_eq!(
        w.imds.requests_refused(),
        0,
        "our requests passed its checks"
    );
}

#[tokio::test]
async fn a_certificate_for_another_key_is_refused() {
    let w = world(Duration::from_secs(3600)).await;
    w.imds.set_fault(Some(ImdsFault::ForeignCertificate));
    let error = managed(&w.imds).await.unwrap_err();
    assert_eq!(error.kind(), Kind::CertificateMismatch, "{error}");
    assert!(error.to_string().contains("not for the key"), "{error}");
}

#[tokio::test]
async fn a_credential_for_another_identity_is_refused() {
    let w = world(Duration::from_secs(3600)).await;
    w.imds.set_fault(Some(ImdsFault::ForeignIdentity));
    let error = managed(&w.imds).await.unwrap_err();
    assert_eq!(error.kind(), Kind::InvalidResponse, "{error}");
    let message = error.to_string();
    assert!(message.contains(ImdsFault::FOREIGN_CLIENT_ID), "{message}");
    assert!(message.contains(w.imds.client_id()), "{message}");

    // Nor taken at a renewal.
    w.imds.set_fault(None);
    let identity = managed(&w.imds).await.unwrap();
    let first = identity.thumbprint();
    w.imds.set_fault(Some(ImdsFault::ForeignIdentity));
    let error = identity.renew_now().await.unwrap_err();
    assert_eq!(error.kind(), Kind::InvalidResponse, "{error}");
    assert_eq!(identity.thumbprint(), first);
    assert_eq!(identity.client_id(), w.imds.client_id());
}

#[tokio::test]
async fn a_failed_renewal_keeps_the_current_certificate() {
    let w = world(Duration::from_secs(3600)).await;
    let identity = managed(&w.imds).await.unwrap();
    let first = identity.current();

    w.imds.set_fault(Some(ImdsFault::ForeignCertificate));
    let error = identity.renew_now().await.unwrap_err();
    assert_eq!(error.kind(), Kind::CertificateMismatch);
    assert_eq!(identity.thumbprint(), first.thumbprint());
    assert!(!first.is_retired());
    assert_eq!(identity.stats().failures, 1);

    w.imds.set_fault(Some(ImdsFault::GarbageMetadata));
    let error = identity.renew_now().await.unwrap_err();
    assert_eq!(error.kind(), Kind::InvalidResponse);
    assert_eq!(identity.thumbprint(), first.thumbprint());
    assert_eq!(identity.stats().failures, 2);

    w.imds.set_fault(None);
    let renewed = identity.renew_now().await.unwrap();
    assert_ne!(renewed.thumbprint(), first.thumbprint());
    assert_eq!(identity.thumbprint(), renewed.thumbprint());
    assert!(first.is_retired());
    assert_eq!(identity.stats().renewals, 1);
}

#[tokio::test]
async fn the_emulator_refuses_requests_that_are_not_right() {
    let w = world(Duration::from_secs(3600)).await;
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url = format!(
        "{}/metadata/identity/issuecredential?cred-api-version=2.0",
        w.imds.base_url()
    );
    for body in [
        json!({ "csr": "not base64!" }),
        json!({ "csr": "MAMCAQE=" }),
        json!({ "nothing": true }),
    ] {
        let request = Request::post(&url)
            .header("Metadata", "true")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = http.request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(
            response.headers()["server"]
                .to_str()
                .unwrap()
                .contains("IMDS")
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "invalid_request");
    }
    assert_eq!(w.imds.requests_refused(), 3);
    assert_eq!(w.imds.credentials_issued(), 0);
}

#[tokio::test]
async fn a_managed_identity_brings_its_own_settings() {
    let w = world(Duration::from_secs(3600)).await;
    let identity = managed(&w.imds).await.unwrap();
    let refused = |builder: tower_token_binding::client::BoundClientBuilder| {
        let error = builder.build().unwrap_err();
        (error.kind(), error.to_string())
    };
    let base = || {
        BoundClient::builder()
            .managed_identity(identity.clone())
            .root_store(w.pki.root_store())
    };
    let (kind, message) = refused(base().client_id("other"));
    assert_eq!(kind, ConfigErrorKind::Conflict);
    assert!(message.contains("client_id"), "{message}");
    let (kind, _) = refused(base().token_endpoint("https://login.example/token"));
    assert_eq!(kind, ConfigErrorKind::Conflict);
    let (kind, _) = refused(base().identity(identity.current()));
    assert_eq!(kind, ConfigErrorKind::Conflict);
    let (kind, message) = refused(base().scheme(Scheme::Dpop));
    assert_eq!(kind, ConfigErrorKind::Conflict);
    assert!(message.contains("MtlsPop"), "{message}");
    // There is no fallback to unbound tokens.
    let (kind, message) = refused(base().allow_unbound_fallback());
    assert_eq!(kind, ConfigErrorKind::Conflict);
    assert!(message.contains("allow_unbound_fallback"), "{message}");
    // More scope is fine.
    assert!(base().resource(AUDIENCE).build().is_ok());
}

#[tokio::test]
async fn more_scope_joins_the_managed_identity_scope() {
    let w = world(Duration::from_secs(3600)).await;
    let identity = managed(&w.imds).await.unwrap();
    let client = BoundClient::builder()
        .managed_identity(identity)
        .scope("extra")
        .root_store(w.pki.root_store())
        .build()
        .unwrap();
    // One scope parameter (the test issuer refuses a repeated one).
    let (status, body) = call(&client, &w.api).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], format!("{AUDIENCE}/.default extra"));
    assert_eq!(w.issuer.tokens_issued(), 1);
}

#[tokio::test]
async fn the_client_example_runs_on_a_managed_identity() {
    let w = world(Duration::from_secs(3600)).await;
    let ca = w.dir.path().join("ca.pem");
    std::fs::write(&ca, w.pki.ca_pem()).unwrap();
    let run = |imds: String| {
        let ca = ca.clone();
        let api = w.api.clone();
        async move {
            tokio::process::Command::new(support::example_binary("client"))
                .arg("--managed-identity")
                .args(["--imds-url", &imds])
                .arg("--ca")
                .arg(&ca)
                .args(["--scope", "https://api.example/.default"])
                .args(["--requests", "5", "--concurrency", "2", &api])
                .output()
                .await
                .unwrap()
        }
    };

    let output = run(w.imds.base_url()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("requests=5 ok=5 token_fetches=1"),
        "{stdout}"
    );
    assert!(stderr.contains("managed identity client_id="), "{stderr}");
    assert_eq!(w.imds.credentials_issued(), 1);

    // Off Azure: nothing listens where IMDS should be.
    let (_held, closed) = support::refusing_address();
    let output = run(format!("http://{closed}")).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no IMDS v2"), "{stderr}");
}

#[tokio::test]
async fn renewal_stops_with_the_last_handle() {
    // Due for renewal after a second.
    let w = world(Duration::from_secs(2)).await;
    let identity = managed(&w.imds).await.unwrap();
    let renewals = identity.subscribe();
    drop(identity);
    // The identity is gone with its last handle (the subscription does not
    // keep it), and nothing renews it any more.
    assert!(renewals.has_changed().is_err());
    // Past the renewal's due time, on tokio's clock, which the renewal
    // reads: a renewal still scheduled would have woken.
    support::advance(Duration::from_secs(3)).await;
    tokio::task::yield_now().await;
    assert_eq!(w.imds.credentials_issued(), 1);
}
