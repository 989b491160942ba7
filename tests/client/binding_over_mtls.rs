//! The client layer against the real thing: tokens from the test
//! authorization server over mTLS, requests over mTLS to a resource server
//! behind `CnfValidationLayer`, and the retry policy when the server rejects
//! a token.
#![cfg(feature = "test-util")]

use crate::support;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;
use support::{HttpsClient, https_client, post_form};
use tower::retry::RetryLayer;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::{BoxError, Token};
use tower_token_binding::validation::CnfValidationLayer;
use tower_token_binding::{ClientIdentity, Thumbprint, TokenBindingLayer};

/// Test scaffolding for the inner service: sends each request with a client
/// that presents the request's identity (one client per thumbprint).
#[derive(Clone)]
struct PresentIdentity {
    pki: Arc<TestPki>,
    clients: Arc<Mutex<HashMap<Thumbprint, HttpsClient>>>,
    calls: Arc<AtomicUsize>,
}

impl Service<Request<Full<Bytes>>> for PresentIdentity {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let identity = request.extensions().get::<ClientIdentity>().cloned();
        let client = match &identity {
            Some(identity) => self
                .clients
                .lock()
                .unwrap()
                .entry(identity.thumbprint())
                .or_insert_with(|| https_client(&self.pki, Some(identity)))
                .clone(),
            None => https_client(&self.pki, None),
        };
        Box::pin(async move { Ok(client.request(request).await?) })
    }
}

/// A resource server behind `CnfValidationLayer`; returns its URL.
async fn resource_server(pki: &TestPki, issuer: &TestIssuer) -> String {
    let validator = support::jwt_validator(pki, issuer, Duration::ZERO);
    support::start_api(pki, CnfValidationLayer::new(validator)).await
}

/// Client credentials over mTLS, written out by hand (the crate's own
/// client-credentials source is a separate piece).
fn source(
    pki: Arc<TestPki>,
    token_endpoint: String,
    identity: ClientIdentity,
    fetches: Arc<AtomicUsize>,
) -> impl Fn() -> Pin<Box<dyn Future<Output = Result<Token, BoxError>> + Send>> + Send + Sync + 'static
{
    move || {
        let (pki, url, identity, fetches) = (
            pki.clone(),
            token_endpoint.clone(),
            identity.clone(),
            fetches.clone(),
        );
        Box::pin(async move {
            fetches.fetch_add(1, Ordering::SeqCst);
            let client = https_client(&pki, Some(&identity));
            let (status, body) = post_form(
                &client,
                &url,
                &[("grant_type", "client_credentials"), ("client_id", "svc")],
                None,
            )
            .await;
            if status != StatusCode::OK {
                return Err(format!("token endpoint answered {status}: {body}").into());
            }
            let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(60));
            Ok(
                Token::new(body["access_token"].as_str().unwrap_or_default())
                    .with_token_type(body["token_type"].as_str().unwrap_or("Bearer"))
                    .expires_in(lifetime)
                    .bound_to(identity),
            )
        })
    }
}

async fn body_json(response: Response<Incoming>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_rejected_token_is_replaced_and_the_retry_succeeds() {
    let pki = Arc::new(TestPki::new().unwrap());
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let fetches = Arc::new(AtomicUsize::new(0));
    let binding = TokenBindingLayer::bound(source(
        pki.clone(),
        issuer.token_endpoint(),
        identity.clone(),
        fetches.clone(),
    ));
    let inner = PresentIdentity {
        pki: pki.clone(),
        clients: Arc::default(),
        calls: Arc::new(AtomicUsize::new(0)),
    };
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(binding.retry_policy()))
        .layer(binding.clone())
        .service(inner.clone());

    // The client holds a token signed with the issuer's first key...
    binding.cache().unwrap().get().await.unwrap();
    // ...which the issuer then stops publishing, before the resource server
    // ever loads the keys.
    issuer.rotate_signing_key().unwrap();
    issuer.retire_old_keys();
    let api = resource_server(&pki, &issuer).await;

    let request = Request::get(&api).body(Full::default()).unwrap();
    let response = client.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response).await;
    assert_eq!(body["x5t#S256"], identity.thumbprint().to_string());
    assert_eq!(body["sub"], "svc");

    assert_eq!(inner.calls.load(Ordering::SeqCst), 2, "one retry");
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "two token fetches");
    assert_eq!(issuer.tokens_issued(), 2);

    // From now on: the cached token, no more fetches, no retries.
    for _ in 0..10 {
        let request = Request::get(&api).body(Full::default()).unwrap();
        let response = client.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(inner.calls.load(Ordering::SeqCst), 12);
}

#[tokio::test]
async fn a_bound_token_without_its_certificate_is_refused_and_not_retried_forever() {
    // A misconfigured stack: the inner client presents no certificate. The
    // server says invalid_token; the retry fetches once more and gives up.
    let pki = Arc::new(TestPki::new().unwrap());
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let identity = TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let fetches = Arc::new(AtomicUsize::new(0));
    let binding = TokenBindingLayer::bound(source(
        pki.clone(),
        issuer.token_endpoint(),
        identity,
        fetches.clone(),
    ));
    let api = resource_server(&pki, &issuer).await;
    let anonymous = https_client(&pki, None);
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(binding.retry_policy()))
        .layer(binding)
        .service_fn(move |request: Request<Full<Bytes>>| {
            let anonymous = anonymous.clone();
            async move { anonymous.request(request).await }
        });
    let response = client
        .oneshot(Request::get(&api).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}
