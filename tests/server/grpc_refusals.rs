//! A gRPC call refused by `CnfValidationLayer`, over real TLS and HTTP/2 on
//! loopback: the answer is a gRPC status a gRPC client reads (HTTP `200`,
//! `grpc-status` in the headers, no body: "Trailers-Only"), with the
//! `WWW-Authenticate` challenge as metadata; the same refusal to a plain
//! HTTP request stays an HTTP `401`.
#![cfg(feature = "test-util")]

use crate::support;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use support::{HttpsClient, https_client_http2};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::CnfValidationLayer;

struct Answer {
    status: StatusCode,
    grpc_status: Option<String>,
    grpc_message: Option<String>,
    challenge: Option<String>,
    body: Bytes,
}

async fn call(client: &HttpsClient, api: &str, token: Option<&str>, grpc: bool) -> Answer {
    let mut request = Request::post(api.to_owned()).header("te", "trailers");
    if grpc {
        request = request.header(header::CONTENT_TYPE, "application/grpc+proto");
    }
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    // An empty unary message: the compressed flag and a zero length.
    let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
    let response = client.request(request.body(body).unwrap()).await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (status, grpc_status, grpc_message, challenge) = (
        response.status(),
        header("grpc-status"),
        header("grpc-message"),
        header("www-authenticate"),
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        grpc_status,
        grpc_message,
        challenge,
        body,
    }
}

#[tokio::test]
async fn refusals_of_grpc_calls_are_grpc_statuses_with_their_challenge() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let layer = CnfValidationLayer::new(support::jwt_validator(
        &pki,
        &issuer,
        Duration::from_secs(3600),
    ));
    let api = support::start_api(&pki, layer).await;
    let owner = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let thief = pki
        .client_cert("thief.example")
        .unwrap()
        .identity()
        .unwrap();
    let token = support::bound_token(&pki, &issuer, &owner).await;

    // No token: UNAUTHENTICATED, the challenge as metadata, no body.
    let anonymous = https_client_http2(&pki, None);
    let answer = call(&anonymous, &api, None, true).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.grpc_status.as_deref(), Some("16"));
    assert!(answer.challenge.as_deref().unwrap().starts_with("Bearer"));
    assert!(answer.grpc_message.is_some());
    assert!(answer.body.is_empty(), "Trailers-Only: no body");

    // The token over another client's certificate: UNAUTHENTICATED,
    // `invalid_token` in the challenge.
    let stolen = call(
        &https_client_http2(&pki, Some(&thief)),
        &api,
        Some(&token),
        true,
    )
    .await;
    assert_eq!(stolen.status, StatusCode::OK);
    assert_eq!(stolen.grpc_status.as_deref(), Some("16"));
    assert!(
        stolen
            .challenge
            .as_deref()
            .unwrap()
            .contains("invalid_token"),
        "{:?}",
        stolen.challenge
    );

    // The same refusal to a plain HTTP request is an HTTP 401.
    let plain = call(
        &https_client_http2(&pki, Some(&thief)),
        &api,
        Some(&token),
        false,
    )
    .await;
    assert_eq!(plain.status, StatusCode::UNAUTHORIZED);
    assert_eq!(plain.grpc_status, None);

    // Its owner's call goes through to the service.
    let owned = call(
        &https_client_http2(&pki, Some(&owner)),
        &api,
        Some(&token),
        true,
    )
    .await;
    assert_eq!(owned.status, StatusCode::OK);
    assert_eq!(owned.grpc_status, None, "not refused: the service answered");
    assert!(!owned.body.is_empty());
}
