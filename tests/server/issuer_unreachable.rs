//! An issuer the server cannot reach (here: its certificate chains to a
//! root the server was not given): every request with a token is answered
//! `503`, whose body names the class of fault, and the warning in the log
//! names the root cause.

#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Empty, Full};
use tower::{ServiceBuilder, ServiceExt as _};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{
    CnfValidationLayer, JwksSource, JwtValidator, Rejection, RejectionKind,
};

/// A layer whose validator discovers `issuer`'s keys, trusting only the
/// root of another PKI than the issuer's.
fn wrongly_rooted_layer(issuer: &TestIssuer) -> CnfValidationLayer<JwtValidator> {
    let other = TestPki::new().unwrap();
    let validator = JwtValidator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .jwks(
            JwksSource::discover(issuer.issuer())
                .unwrap()
                .root_store(other.root_store()),
        )
        .build()
        .unwrap();
    CnfValidationLayer::new(validator)
}

fn request(token: &str) -> Request<Empty<Bytes>> {
    Request::get("https://api.example/hello")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn an_issuer_with_an_unknown_root_gets_a_503_and_a_warning_naming_the_cause() {
    let (logs, _capturing) = support::Logs::capture(tracing::Level::WARN);

    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let token = issuer.sign(&issuer.claims("svc", None)).unwrap();

    let response = ServiceBuilder::new()
        .layer(wrongly_rooted_layer(&issuer))
        .service_fn(|_: Request<Empty<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(axum::body::Body::from("reached")))
        })
        .oneshot(request(&token))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().kind(),
        RejectionKind::KeysUnavailable
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(body, "the token issuer's keys are unavailable\n");
    assert!(!body.contains("127.0.0.1"), "the body names no URL: {body}");

    let logs = logs.text();
    assert!(logs.contains("JWKS discovery failed"), "{logs}");
    // (UnknownIssuer or, as the test PKIs name their roots alike,
    // BadSignature.)
    assert!(
        logs.contains("client error (Connect): invalid peer certificate: "),
        "the warning drops the root cause: {logs}"
    );
    assert!(logs.contains("no keys yet"), "{logs}");
    assert!(!logs.contains("last good keys"), "{logs}");
    assert!(!logs.contains(&token), "the token is logged: {logs}");
}

#[tokio::test]
async fn a_terse_layer_answers_the_503_with_an_empty_body() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let token = issuer.sign(&issuer.claims("svc", None)).unwrap();

    let response = ServiceBuilder::new()
        .layer(wrongly_rooted_layer(&issuer).terse())
        .service_fn(|_: Request<Empty<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::from("reached")))
        })
        .oneshot(request(&token))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get(header::CONTENT_TYPE).is_none());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty(), "{body:?}");
}

#[tokio::test]
async fn a_body_type_that_cannot_hold_text_keeps_an_empty_503() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let token = issuer.sign(&issuer.claims("svc", None)).unwrap();

    let response = ServiceBuilder::new()
        .layer(wrongly_rooted_layer(&issuer))
        .service_fn(|_: Request<Empty<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Empty::<Bytes>::new()))
        })
        .oneshot(request(&token))
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get(header::CONTENT_TYPE).is_none());
}
