//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower_token_binding::ClientIdentity;
use tower_token_binding::test_util::TestPki;

pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A hyper-util client that trusts `pki`'s CA and presents `identity`, if any.
pub fn https_client(pki: &TestPki, identity: Option<&ClientIdentity>) -> HttpsClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(pki.client_config(identity).expect("client config"))
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends `request` and returns the status and the body parsed as JSON.
pub async fn send(client: &HttpsClient, request: Request<Full<Bytes>>) -> (StatusCode, Value) {
    let response = client.request(request).await.expect("request");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, json)
}

/// `GET url`, JSON back.
pub async fn get_json(client: &HttpsClient, url: &str) -> (StatusCode, Value) {
    let request = Request::get(url).body(Full::default()).unwrap();
    send(client, request).await
}

/// `POST url` with a form body, JSON back.
pub async fn post_form(
    client: &HttpsClient,
    url: &str,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = Request::post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    if let Some((id, secret)) = basic {
        use base64::Engine as _;
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(id),
            enc(secret)
        ));
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Basic {credentials}").parse().unwrap(),
        );
    }
    send(client, request).await
}

/// Like [`https_client`], HTTP/1.1 only.
pub fn https_client_http1(pki: &TestPki, identity: Option<&ClientIdentity>) -> HttpsClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(pki.client_config(identity).expect("client config"))
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Like [`https_client`], HTTP/2 only.
pub fn https_client_http2(pki: &TestPki, identity: Option<&ClientIdentity>) -> HttpsClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(pki.client_config(identity).expect("client config"))
        .https_only()
        .enable_http2()
        .build();
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector)
}
