//! Forwarded client certificates over real TLS and HTTP: Envoy's
//! `x-forwarded-client-cert` and RFC 9440 `Client-Cert` in front of
//! `CnfValidationLayer`, believed only from trusted proxies.
#![cfg(feature = "test-util")]

use crate::support;
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use serde_json::Value;
use support::HttpsClient;
use tower::ServiceBuilder;
use tower_token_binding::server::forwarded::{
    CLIENT_CERT, ForwardedClientCertBuilder, ForwardedClientCertLayer, X_FORWARDED_CLIENT_CERT,
    XfccElement,
};
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::test_util::{TestCert, TestIssuer, TestPki};
use tower_token_binding::{CnfValidationLayer, Thumbprint};

/// The issuer, and a resource server behind `forwarded` over TLS (client
/// certificates optional, any accepted); returns the issuer and the URL.
struct Api {
    pki: TestPki,
    issuer: TestIssuer,
    url: String,
}

async fn start(forwarded: ForwardedClientCertBuilder) -> Api {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let validation = CnfValidationLayer::new(support::jwt_validator(
        &pki,
        &issuer,
        Duration::from_secs(10),
    ));
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = ServiceBuilder::new()
        .layer(forwarded.build().unwrap())
        .layer(validation)
        .service_fn(support::whoami);
    tokio::spawn(server::serve(listener, tls, service).into_future());
    Api {
        pki,
        issuer,
        url: format!("https://localhost:{port}/whoami"),
    }
}

impl Api {
    /// A token bound to `cert`.
    fn token_for(&self, cert: &TestCert) -> String {
        let claims = self
            .issuer
            .claims("svc", Some(Thumbprint::from_certificate(cert.cert())));
        self.issuer.sign(&claims).unwrap()
    }

    /// A client over TLS, presenting `cert` when given.
    fn client(&self, cert: Option<&TestCert>) -> HttpsClient {
        let identity = cert.map(|c| c.identity().unwrap());
        support::https_client(&self.pki, identity.as_ref())
    }
}

/// `GET` with the token and these header lines; status, headers, body.
async fn call(
    client: &HttpsClient,
    url: &str,
    token: &str,
    name: &http::HeaderName,
    values: &[&str],
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::get(url)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    for value in values {
        request.headers_mut().append(name, value.parse().unwrap());
    }
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (parts.status, parts.headers, json)
}

fn hex_hash(cert: &TestCert) -> String {
    Thumbprint::from_certificate(cert.cert())
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The PEM URL-encoded as Envoy does it.
fn url_pem(cert: &TestCert) -> String {
    cert.cert_pem()
        .trim()
        .replace('\n', "%0A")
        .replace(' ', "%20")
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

fn loopback() -> ForwardedClientCertBuilder {
    ForwardedClientCertLayer::xfcc().trusted_proxy(
        "127.0.0.0/8"
            .parse::<server::forwarded::IpNetwork>()
            .unwrap(),
    )
}

fn invalid_token(headers: &HeaderMap) -> bool {
    headers
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("error=\"invalid_token\""))
}

#[tokio::test]
async fn xfcc_cert_and_hash_forms_bind_the_token() {
    let api = start(loopback()).await;
    let client_cert = api.pki.client_cert("svc.example").unwrap();
    let other = TestPki::self_signed_client("other.example").unwrap();
    let token = api.token_for(&client_cert);
    let proxy = api.client(None);
    let (hash, pem) = (hex_hash(&client_cert), url_pem(&client_cert));
    let subject = r#"Subject="CN=svc.example,OU=a \"quoted\" unit;O=Example""#;

    for value in [
        format!("By=spiffe://proxy;Hash={hash};{subject};URI=spiffe://svc;DNS=svc.example"),
        format!("Cert=\"{pem}\";{subject}"),
        format!("By=spiffe://proxy;Hash={hash};Cert=\"{pem}\";{subject};URI="),
        format!("hash={}", hash.to_uppercase()),
    ] {
        let (status, _, body) = call(
            &proxy,
            &api.url,
            &token,
            &X_FORWARDED_CLIENT_CERT,
            &[&value],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{value}: {body}");
        assert_eq!(
            body["x5t#S256"],
            client_cert.thumbprint().to_string(),
            "{value}"
        );
    }

    // Another certificate, by either form: the token is not bound to it.
    for value in [
        format!("Hash={};{subject}", hex_hash(&other)),
        format!("Cert=\"{}\"", url_pem(&other)),
    ] {
        let (status, headers, _) = call(
            &proxy,
            &api.url,
            &token,
            &X_FORWARDED_CLIENT_CERT,
            &[&value],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
        assert!(invalid_token(&headers), "{headers:?}");
    }
    // No header: no certificate.
    let (status, headers, _) = call(&proxy, &api.url, &token, &X_FORWARDED_CLIENT_CERT, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(invalid_token(&headers));
}

#[tokio::test]
async fn several_elements_give_no_certificate_unless_one_is_chosen() {
    let client_cert = TestPki::self_signed_client("svc.example").unwrap();
    let other = TestPki::self_signed_client("other.example").unwrap();
    let two = format!("Hash={},Hash={}", hex_hash(&other), hex_hash(&client_cert));
    let lines = [
        format!("Hash={}", hex_hash(&other)),
        format!("Hash={}", hex_hash(&client_cert)),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();

    let api = start(loopback()).await;
    let token = api.token_for(&client_cert);
    let proxy = api.client(None);
    // By default, which element names the client is ambiguous: none is
    // taken, so the bound token has no certificate.
    for values in [&[two.as_str()][..], &lines] {
        let (status, headers, _) =
            call(&proxy, &api.url, &token, &X_FORWARDED_CLIENT_CERT, values).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(invalid_token(&headers), "{headers:?}");
    }
    // Even when one of them is the client's, and the first: never guessed.
    let mine_first = format!("Hash={},Hash={}", hex_hash(&client_cert), hex_hash(&other));
    let (status, _, _) = call(
        &proxy,
        &api.url,
        &token,
        &X_FORWARDED_CLIENT_CERT,
        &[&mine_first],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The last element, the one the nearest proxy added, names the client.
    let api = start(loopback().xfcc_element(XfccElement::Last)).await;
    let token = api.token_for(&client_cert);
    let proxy = api.client(None);
    for values in [&[two.as_str()][..], &lines] {
        let (status, _, body) =
            call(&proxy, &api.url, &token, &X_FORWARDED_CLIENT_CERT, values).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["x5t#S256"], client_cert.thumbprint().to_string());
    }

    // The first one is another certificate.
    let api = start(loopback().xfcc_element(XfccElement::First)).await;
    let token = api.token_for(&client_cert);
    let (status, _, _) = call(
        &api.client(None),
        &api.url,
        &token,
        &X_FORWARDED_CLIENT_CERT,
        &[&two],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_headers_are_answered_400() {
    let api = start(loopback()).await;
    let client_cert = api.pki.client_cert("svc.example").unwrap();
    let other = api.pki.client_cert("other.example").unwrap();
    let token = api.token_for(&client_cert);
    let proxy = api.client(None);
    let (h, pem) = (hex_hash(&client_cert), url_pem(&client_cert));
    let cases = [
        String::new(),
        format!("Hash={h},"),
        format!("Hash={h};"),
        format!("Hash={h};Subject=\"CN=a,OU=b"),
        format!("Hash={h};Subject=\"CN=a\"x"),
        format!("Hash={h};URI=a b"),
        format!("Hash={h};Unknown=1"),
        format!("Hash={h};Hash={h}"),
        format!("Hash={}", &h[2..]),
        format!("Hash={}", client_cert.thumbprint()),
        format!("Cert=\"{}\"", &pem[..pem.len() - 10]),
        format!("Cert=\"{pem}\";Hash={}", hex_hash(&other)),
        format!("Cert=\"{pem}%zz\""),
        "By=spiffe://proxy;URI=spiffe://svc".to_owned(),
        format!("Subject=\"CN=a,Hash={h}\""),
        "Cert=\"-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----\"".to_owned(),
    ];
    for value in &cases {
        let (status, _, body) =
            call(&proxy, &api.url, &token, &X_FORWARDED_CLIENT_CERT, &[value]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value:?}: {body}");
        assert_eq!(body, Value::from(""), "{value:?}");
    }
    // One bad line among good ones.
    let good = format!("Hash={h}");
    let (status, _, _) = call(
        &proxy,
        &api.url,
        &token,
        &X_FORWARDED_CLIENT_CERT,
        &[&good, "junk"],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_header_from_a_peer_not_listed_is_ignored_and_logged() {
    let (logs, _capturing) = support::Logs::capture(tracing::Level::WARN);
    let api = start(ForwardedClientCertLayer::xfcc().trusted_proxies(
        ["10.0.0.0/8", "fd00::/8"].map(|n| n.parse::<server::forwarded::IpNetwork>().unwrap()),
    ))
    .await;
    let client_cert = TestPki::self_signed_client("svc.example").unwrap();
    let token = api.token_for(&client_cert);
    let hash = hex_hash(&client_cert);
    let value = format!("Hash={hash};Subject=\"CN=svc,O=x\"");

    // From loopback, not listed: the header is not believed, so there is
    // no certificate; even a malformed header is no 400.
    let stranger = api.client(None);
    for value in [value.as_str(), "junk"] {
        let (status, headers, _) = call(
            &stranger,
            &api.url,
            &token,
            &X_FORWARDED_CLIENT_CERT,
            &[value],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
        assert!(invalid_token(&headers));
    }
    let logs = logs.text();
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("not a trusted proxy")
            && l.contains("remote_addr=127.0.0.1:")),
        "{logs}"
    );
    assert!(!logs.contains(&hash), "the header's value is not logged");

    // A client that connects directly over mutual TLS keeps the
    // certificate of its handshake, whatever header it adds.
    let direct = api.client(Some(&client_cert));
    let other = TestPki::self_signed_client("other.example").unwrap();
    let claim = format!("Hash={}", hex_hash(&other));
    let (status, _, body) = call(
        &direct,
        &api.url,
        &token,
        &X_FORWARDED_CLIENT_CERT,
        &[&claim],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["x5t#S256"], client_cert.thumbprint().to_string());
}

#[tokio::test]
async fn a_proxy_is_known_by_its_client_certificate() {
    let proxy_cert = TestPki::self_signed_client("proxy.example").unwrap();
    let client_cert = TestPki::self_signed_client("svc.example").unwrap();
    for (builder, name, value) in [
        (
            ForwardedClientCertLayer::xfcc(),
            X_FORWARDED_CLIENT_CERT,
            format!("Cert=\"{}\"", url_pem(&client_cert)),
        ),
        (
            ForwardedClientCertLayer::client_cert(),
            CLIENT_CERT,
            format!(
                ":{}:",
                base64::engine::general_purpose::STANDARD.encode(client_cert.cert())
            ),
        ),
    ] {
        let api = start(builder.trusted_proxy_certificate(proxy_cert.thumbprint())).await;
        let token = api.token_for(&client_cert);

        // The proxy, over mTLS with its listed certificate: the header is
        // the client's certificate, never the proxy's own.
        let proxy = api.client(Some(&proxy_cert));
        let (status, _, body) = call(&proxy, &api.url, &token, &name, &[&value]).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        assert_eq!(body["x5t#S256"], client_cert.thumbprint().to_string());
        let (status, _, _) = call(&proxy, &api.url, &token, &name, &[]).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{name}: not the proxy's own"
        );
        let (status, _, _) = call(&proxy, &api.url, &token, &name, &["junk"]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");

        // Another peer with a certificate of its own: its header is ignored.
        let impostor = TestPki::self_signed_client("impostor.example").unwrap();
        let (status, headers, _) = call(
            &api.client(Some(&impostor)),
            &api.url,
            &token,
            &name,
            &[&value],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
        assert!(invalid_token(&headers));
        // And one without.
        let (status, _, _) = call(&api.client(None), &api.url, &token, &name, &[&value]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}");
    }
}

#[tokio::test]
async fn rfc_9440_client_cert_is_believed_from_listed_networks_only() {
    let client_cert = TestPki::self_signed_client("svc.example").unwrap();
    let value = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(client_cert.cert())
    );
    let net = |s: &str| s.parse::<server::forwarded::IpNetwork>().unwrap();

    let api = start(ForwardedClientCertLayer::client_cert().trusted_proxy(net("127.0.0.1"))).await;
    let token = api.token_for(&client_cert);
    let (status, _, body) =
        call(&api.client(None), &api.url, &token, &CLIENT_CERT, &[&value]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["x5t#S256"], client_cert.thumbprint().to_string());

    let api =
        start(ForwardedClientCertLayer::client_cert().trusted_proxy(net("192.0.2.0/24"))).await;
    let token = api.token_for(&client_cert);
    let (status, _, _) = call(&api.client(None), &api.url, &token, &CLIENT_CERT, &[&value]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Trusting any peer: the old behaviour, by explicit choice.
    let api = start(ForwardedClientCertLayer::client_cert().trust_any_peer()).await;
    let token = api.token_for(&client_cert);
    let (status, _, _) = call(&api.client(None), &api.url, &token, &CLIENT_CERT, &[&value]).await;
    assert_eq!(status, StatusCode::OK);
}
