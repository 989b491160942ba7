//! No token over plain HTTP: a request that would carry a token (`Bearer`,
//! `mtls_pop`, `DPoP`, `PoP`) to an `http://` URI is refused before the
//! token is fetched or attached, whatever the binding; a real plain-HTTP
//! server on loopback sees no `Authorization` header, and the token
//! endpoint is not asked. `allow_http_to_loopback` lets such a request
//! through to loopback addresses only.
#![cfg(feature = "test-util")]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tower_token_binding::BoundClient;
use tower_token_binding::binding::{InsecureTransport, Scheme};
use tower_token_binding::client::BoundClientBuilder;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::Token;

const SECRET: &str = "s3cret";

/// What a plain-HTTP server on loopback saw: one entry per request, its
/// `Authorization` header if any.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Option<String>>>>);

async fn plain_server() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let authorization = request
                        .headers()
                        .get(http::header::AUTHORIZATION)
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                    record.0.lock().unwrap().push(authorization);
                    async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok")))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (url, seen)
}

/// A client for each binding: of `issuer`, or (`Bearer`, which client
/// credentials do not give) of a source counting its fetches in `fetched`.
fn clients(
    pki: &TestPki,
    issuer: &TestIssuer,
    fetched: Arc<AtomicUsize>,
) -> Vec<(Scheme, BoundClientBuilder)> {
    let base = || {
        BoundClient::builder()
            .issuer(issuer.issuer())
            .client_id("svc")
            .root_store(pki.root_store())
    };
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    vec![
        (
            Scheme::Bearer,
            BoundClient::builder()
                .token_source(move || {
                    let fetched = fetched.clone();
                    async move {
                        fetched.fetch_add(1, Ordering::SeqCst);
                        Ok(Token::new("plain"))
                    }
                })
                .root_store(pki.root_store())
                .scheme(Scheme::Bearer),
        ),
        (
            Scheme::MtlsPop,
            base()
                .identity(identity)
                .self_signed_tls_client_auth()
                .scheme(Scheme::MtlsPop),
        ),
        (
            Scheme::Dpop,
            base().client_secret_basic(SECRET).scheme(Scheme::Dpop),
        ),
        (
            Scheme::Pop,
            base().client_secret_basic(SECRET).scheme(Scheme::Pop),
        ),
    ]
}

#[tokio::test]
async fn no_binding_sends_a_token_over_plain_http() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", SECRET)
        .start(&pki)
        .await
        .unwrap();
    let (url, seen) = plain_server().await;
    let fetched = Arc::new(AtomicUsize::new(0));
    for (scheme, builder) in clients(&pki, &issuer, fetched.clone()) {
        let client = builder.build().unwrap();
        let error = client.get(&url).await.unwrap_err();
        let refused = error
            .downcast_ref::<InsecureTransport>()
            .unwrap_or_else(|| panic!("{scheme}: {error}"));
        assert_eq!(refused.scheme(), scheme);
        assert_eq!(refused.uri_scheme(), "http");
        assert!(error.to_string().contains("must use https"), "{error}");
        assert_eq!(issuer.token_requests(), 0, "{scheme}: a token was fetched");
        assert_eq!(
            fetched.load(Ordering::SeqCst),
            0,
            "{scheme}: a token was fetched"
        );
    }
    assert!(
        seen.0.lock().unwrap().is_empty(),
        "the server saw a request"
    );
}

#[tokio::test]
async fn http_to_loopback_is_an_explicit_choice() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", SECRET)
        .start(&pki)
        .await
        .unwrap();
    let (url, seen) = plain_server().await;
    let fetched = Arc::new(AtomicUsize::new(0));
    for (scheme, builder) in clients(&pki, &issuer, fetched.clone()) {
        if scheme == Scheme::MtlsPop {
            // A client certificate needs TLS: refused at build.
            let refused = builder.allow_http_to_loopback().build().unwrap_err();
            assert_eq!(
                (refused.kind(), refused.setting()),
                (
                    tower_token_binding::ConfigErrorKind::Conflict,
                    Some("allow_http_to_loopback")
                )
            );
            continue;
        }
        let client = builder.allow_http_to_loopback().build().unwrap();
        let response = client.get(&url).await.unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
    let words: Vec<String> = seen
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.as_deref().unwrap().split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(words, ["Bearer", "DPoP", "PoP"]);
    // Loopback only: another address is still refused.
    let (_, builder) = clients(&pki, &issuer, fetched).remove(2);
    let client = builder.allow_http_to_loopback().build().unwrap();
    let error = client
        .get("http://api.example.invalid/api")
        .await
        .unwrap_err();
    assert!(
        error.downcast_ref::<InsecureTransport>().is_some(),
        "{error}"
    );
}
