//! Any retry layer composes with the client: `TokenBindingLayer` drops a
//! token the server rejects with `401 invalid_token` itself, once per
//! token, so a user's own `tower::retry` policy around `BoundClient` (one
//! that knows nothing of tokens) gets a fresh token on its next attempt;
//! and a server that rejects every token drives the token endpoint at the
//! pace of the cache's backoff, not at the request rate. Real TLS, the
//! embedded issuer, a real resource server; and a request timeout.
#![cfg(feature = "test-util")]

use crate::support;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::retry::{Policy, RetryLayer};
use tower::{ServiceBuilder, ServiceExt};
use tower_token_binding::BoundClient;
use tower_token_binding::CnfValidationLayer;
use tower_token_binding::binding::Scheme;
use tower_token_binding::client::BoundClientBuilder;
use tower_token_binding::proof::dpop::DpopVerifier;
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::test_util::{TestIssuer, TestPki};

const SECRET: &str = "s3cret";

/// The retry policy everyone writes: retry a 401, up to `left` times.
#[derive(Clone)]
struct RetryOn401 {
    left: usize,
}

impl<B: Clone, ResBody, E> Policy<Request<B>, Response<ResBody>, E> for RetryOn401 {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _request: &mut Request<B>,
        result: &mut Result<Response<ResBody>, E>,
    ) -> Option<Self::Future> {
        let unauthorized = result
            .as_ref()
            .is_ok_and(|r| r.status() == StatusCode::UNAUTHORIZED);
        if unauthorized && self.left > 0 {
            self.left -= 1;
            Some(ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.headers_mut() = request.headers().clone();
        Some(clone)
    }
}

async fn issuer(pki: &TestPki) -> TestIssuer {
    TestIssuer::builder()
        .client_secret("svc", SECRET)
        .start(pki)
        .await
        .unwrap()
}

/// A DPoP client of `issuer` with its own retry off.
fn client(pki: &TestPki, issuer: &TestIssuer) -> BoundClientBuilder {
    BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .client_secret_basic(SECRET)
        .root_store(pki.root_store())
        .scheme(Scheme::Dpop)
        .retries(0)
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

#[tokio::test]
async fn a_plain_401_retry_gets_a_new_token_after_the_issuer_rotates_its_key() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let client = client(&pki, &issuer).build().unwrap();
    // A token signed with the key of today.
    client.cache().unwrap().get().await.unwrap();
    assert_eq!(issuer.token_requests(), 1);
    // The issuer rotates its key and retires the old one; the API (started
    // now) knows only the new key, so the cached token is refused.
    issuer.rotate_signing_key().unwrap();
    issuer.retire_old_keys();
    let layer = CnfValidationLayer::new(support::jwt_validator(&pki, &issuer, Duration::ZERO))
        .accept_dpop(DpopVerifier::new());
    let api = support::start_api(&pki, layer).await;

    let stack = ServiceBuilder::new()
        .timeout(Duration::from_secs(30))
        .layer(RetryLayer::new(RetryOn401 { left: 3 }))
        .service(client.clone());
    let response = stack.oneshot(get(&api)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(issuer.token_requests(), 2, "exactly one new token");

    // And the next call, without any retry layer, uses it.
    let response = client.get(&api).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(issuer.token_requests(), 2);
}

/// A TLS API that answers every request `401` with a DPoP `invalid_token`
/// challenge; returns its URL and a count of the requests it saw.
async fn refusing_api(pki: &TestPki) -> (String, Arc<AtomicUsize>) {
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    let service = tower::service_fn(move |_request: Request<hyper::body::Incoming>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async {
            let response = Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(
                    http::header::WWW_AUTHENTICATE,
                    "DPoP error=\"invalid_token\", algs=\"ES256\"",
                )
                .body(Full::<Bytes>::default())
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    tokio::spawn(std::future::IntoFuture::into_future(server::serve(
        listener, tls, service,
    )));
    (format!("https://localhost:{port}/api"), seen)
}

#[tokio::test]
async fn a_server_that_refuses_everything_costs_at_most_one_extra_fetch() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let (api, seen) = refusing_api(&pki).await;
    let client = client(&pki, &issuer).build().unwrap();
    let stack = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryOn401 { left: 2 }))
        .service(client.clone());
    // Three attempts: token 1 refused (dropped, refetched at once), token 2
    // refused within the backoff (kept), token 2 again: the 401 is the
    // answer.
    let response = stack.oneshot(get(&api)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.token_requests(), 2, "at most one extra fetch");
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn twenty_requests_to_a_server_that_refuses_everything_make_a_handful_of_fetches() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let (api, seen) = refusing_api(&pki).await;
    // The client's own retry, as built by default.
    let client = client(&pki, &issuer).retries(1).build().unwrap();
    for _ in 0..20 {
        let response = client.get(&api).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let fetches = issuer.token_requests();
    assert!(fetches <= 4, "{fetches} token fetches for 20 requests");
    assert!(seen.load(Ordering::SeqCst) <= 40);
}

#[tokio::test]
async fn a_rejection_within_the_backoff_keeps_the_token_another_api_accepts() {
    // One client, two APIs: one refuses every token, one accepts them.
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let (refusing, _) = refusing_api(&pki).await;
    let layer = CnfValidationLayer::new(support::jwt_validator(&pki, &issuer, Duration::ZERO))
        .accept_dpop(DpopVerifier::new());
    let accepting = support::start_api(&pki, layer).await;
    let client = client(&pki, &issuer).build().unwrap();
    let cache = client.cache().unwrap().clone();

    // The first refusal drops the token (a revoked one, say) ...
    assert_eq!(client.get(&refusing).await.unwrap().status(), 401);
    assert_eq!(client.get(&accepting).await.unwrap().status(), 200);
    // ... the next, within the backoff, keeps it: the API that accepts it
    // goes on with it, and the token endpoint is not asked again.
    for _ in 0..5 {
        assert_eq!(client.get(&refusing).await.unwrap().status(), 401);
        assert_eq!(client.get(&accepting).await.unwrap().status(), 200);
    }
    assert_eq!(issuer.token_requests(), 2);
    assert_eq!(cache.stats().fetches, 2);
}

/// A TLS API that sends its head and one byte of body, then nothing more.
async fn stalling_api(pki: &TestPki) -> String {
    use futures_util::StreamExt as _;
    use http_body_util::StreamBody;
    use hyper::body::Frame;

    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = tower::service_fn(|_request: Request<hyper::body::Incoming>| async {
        let chunks = futures_util::stream::once(async {
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x")))
        })
        .chain(futures_util::stream::pending());
        Ok::<_, std::convert::Infallible>(Response::new(StreamBody::new(chunks)))
    });
    tokio::spawn(std::future::IntoFuture::into_future(server::serve(
        listener, tls, service,
    )));
    format!("https://localhost:{port}/api")
}

#[tokio::test]
async fn a_server_that_never_finishes_its_answer_is_cut_off_at_the_request_timeout() {
    let pki = TestPki::new().unwrap();
    let issuer = issuer(&pki).await;
    let api = stalling_api(&pki).await;
    let client = client(&pki, &issuer)
        .request_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let error = client.get(&api).await.unwrap_err();
    assert!(
        error.is::<tower::timeout::error::Elapsed>(),
        "{error}: not a timeout"
    );
    // Through the Service too: the head came, so the call itself ends in
    // time; the body is the caller's to read.
    let response = client.clone().oneshot(get(&api)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
