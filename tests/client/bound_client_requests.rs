//! `BoundClient` as a client is expected to be: `post`, `request` with any
//! method, headers and a body, and `current_token`, against a
//! `ResourceServer` on loopback (no files).
#![cfg(all(feature = "test-util", feature = "axum"))]

use std::future::IntoFuture as _;

use axum::Router;
use axum::routing::any;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use tower_token_binding::BoundClient;
use tower_token_binding::server::ResourceServer;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::VerifiedToken;

/// Echoes the method, the `x-note` header, the body and the token's subject.
async fn echo(token: VerifiedToken, method: Method, headers: HeaderMap, body: Bytes) -> String {
    format!(
        "{method} {} {} {}",
        headers
            .get("x-note")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
        String::from_utf8_lossy(&body),
        token.subject().unwrap_or("?"),
    )
}

async fn setup() -> (TestPki, TestIssuer, String, BoundClient) {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/echo",
        listener.local_addr().unwrap().port()
    );
    let (chain, key) = pki.server_identity().unwrap();
    let server = ResourceServer::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .tls_identity(chain, key)
        .root_store(pki.root_store())
        .build()
        .unwrap();
    tokio::spawn(
        server
            .serve(listener, Router::new().route("/echo", any(echo)))
            .into_future(),
    );
    let client = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .identity(pki.client_cert("svc.example").unwrap().identity().unwrap())
        .root_store(pki.root_store())
        .build()
        .unwrap();
    (pki, issuer, url, client)
}

#[tokio::test]
async fn post_and_request_send_a_body_and_headers_with_a_bound_token() {
    let (_pki, issuer, url, client) = setup().await;

    let response = client.post(&url, "order 42").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "POST - order 42 svc");

    let response = client
        .request(Method::PUT, &url)
        .header("x-note", "again")
        .body(Bytes::from_static(b"order 43"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), "PUT again order 43 svc");

    let response = client.request(Method::DELETE, &url).send().await.unwrap();
    assert_eq!(response.body(), "DELETE -  svc");

    // One token for all of them.
    assert_eq!(issuer.tokens_issued(), 1);
}

#[tokio::test]
async fn a_bad_url_or_header_is_an_error_not_a_panic() {
    let (_pki, issuer, url, client) = setup().await;

    let error = client
        .request(Method::GET, "https://bad host/")
        .send()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid request URL"), "{error}");
    let error = client
        .request(Method::GET, &url)
        .header("x-note", "line\nbreak")
        .send()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid request"), "{error}");
    assert_eq!(
        issuer.tokens_issued(),
        0,
        "no token for a request never sent"
    );

    let shown = format!(
        "{:?}",
        client.request(Method::GET, "https://u:pw@api.example/x?key=s3cret")
    );
    assert!(shown.contains("https://api.example/x"), "{shown}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("pw"),
        "{shown}"
    );
}

#[tokio::test]
async fn current_token_is_the_token_requests_carry_and_its_debug_is_redacted() {
    let (_pki, issuer, url, client) = setup().await;

    let token = client.current_token().await.unwrap();
    assert_eq!(issuer.tokens_issued(), 1);
    let secret = token.access_token().secret().to_owned();
    assert!(!format!("{token:?}").contains(&secret));
    assert!(!format!("{client:?}").contains(&secret));

    // The request that follows carries the same token: no new fetch.
    assert_eq!(
        client.post(&url, "x").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(issuer.tokens_issued(), 1);
    assert_eq!(
        client.current_token().await.unwrap().access_token(),
        token.access_token()
    );
}
