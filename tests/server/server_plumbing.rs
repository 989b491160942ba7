//! The server plumbing over real TLS on loopback: `serve` attaches the
//! connection's `PeerCertificate` to every request; `ServerTlsConfig`
//! client-certificate modes; the trusted-proxy `Client-Cert` layer, with
//! property tests. (Bad clients and shutdown: `server_shutdown.rs`.)
#![cfg(feature = "test-util")]

use crate::support::tls_server;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use futures_util::FutureExt as _;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use proptest::prelude::*;
use rustls::pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tls_server::*;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_token_binding::Thumbprint;
use tower_token_binding::server::forwarded::{
    ClientCertHeaderError, ForwardedClientCertLayer, client_cert_from_headers,
    parse_client_cert_header,
};
use tower_token_binding::server::{
    ClientCertMode, ConnectionInfo, PeerCertificate, ServerTlsConfig, ServerTlsErrorKind,
};
use tower_token_binding::test_util::TestPki;

#[tokio::test]
async fn the_peer_certificate_is_read_once_per_connection_over_http1_and_http2() {
    let pki = TestPki::new().unwrap();
    let echo = Echo::default();
    let _server = {
        let listener = listener().await;
        let tls = tls(&pki, ClientCertMode::any_certificate());
        TestServer::start(listener, tls, echo.service(), |s| s, None)
    };
    let addr = _server.addr;
    let cert = pki.client_cert("client.example").unwrap();

    for (alpn, version) in [(H1, Version::HTTP_11), (H2, Version::HTTP_2)] {
        let mut first = connect(addr, client_config(&pki, Some(&cert), alpn))
            .await
            .unwrap();
        let mut second = connect(addr, client_config(&pki, Some(&cert), alpn))
            .await
            .unwrap();
        let mut per_connection = Vec::new();
        for conn in [&mut first, &mut second] {
            let mut seen_here = Vec::new();
            for _ in 0..2 {
                let (status, got_version, body) = conn.get("/").await.unwrap();
                assert_eq!((status, got_version), (StatusCode::OK, version));
                seen_here.push(seen(&body));
            }
            let (a, b) = (&seen_here[0], &seen_here[1]);
            assert_eq!(a.thumbprint, cert.thumbprint().to_string());
            assert_eq!(a.remote_addr, conn.local_addr);
            // The same `PeerCertificate` instance, not one per request.
            assert_eq!(a, b);
            per_connection.push(a.der_at);
        }
        // ...and one per connection.
        assert_ne!(per_connection[0], per_connection[1]);
    }
    assert_eq!(echo.calls(), 8);
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn an_axum_router_is_served_directly() {
    use axum::Router;
    use axum::extract::{ConnectInfo, Extension};
    use axum::routing::get;

    async fn whoami(
        peer: Option<Extension<PeerCertificate>>,
        Extension(info): Extension<ConnectionInfo>,
        ConnectInfo(remote): ConnectInfo<SocketAddr>,
    ) -> String {
        assert_eq!(info.remote_addr(), remote);
        let thumbprint = peer.map_or("none".to_owned(), |Extension(p)| p.thumbprint().to_string());
        format!("{thumbprint} 0 {remote}")
    }

    let pki = TestPki::new().unwrap();
    let app = Router::new().route("/", get(whoami));
    let server = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        app,
        |s| s,
        None,
    );
    let cert = TestPki::self_signed_client("self.example").unwrap();
    for alpn in [H1, H2] {
        let mut conn = connect(server.addr, client_config(&pki, Some(&cert), alpn))
            .await
            .unwrap();
        let (status, _, body) = conn.get("/").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let seen = seen(&body);
        assert_eq!(seen.thumbprint, cert.thumbprint().to_string());
        assert_eq!(seen.remote_addr, conn.local_addr);

        let anonymous = fetch(server.addr, client_config(&pki, None, alpn))
            .await
            .unwrap();
        assert_eq!(anonymous.thumbprint, "none");
    }
}

#[tokio::test]
async fn optional_modes_serve_clients_without_a_certificate() {
    let pki = TestPki::new().unwrap();
    for mode in [
        ClientCertMode::any_certificate(),
        ClientCertMode::trusted_roots(pki.root_store()),
    ] {
        let echo = Echo::default();
        let server = TestServer::start(
            listener().await,
            tls(&pki, mode),
            echo.service(),
            |s| s,
            None,
        );
        for alpn in [H1, H2] {
            let seen = fetch(server.addr, client_config(&pki, None, alpn))
                .await
                .unwrap();
            assert_eq!(seen.thumbprint, "none");
            assert_eq!(seen.der_at, 0);
        }
        assert_eq!(echo.calls(), 2);
    }
}

#[tokio::test]
async fn required_modes_refuse_clients_without_a_certificate() {
    let pki = TestPki::new().unwrap();
    let cert = pki.client_cert("client.example").unwrap();
    for mode in [
        ClientCertMode::any_certificate().required(),
        ClientCertMode::trusted_roots(pki.root_store()).required(),
    ] {
        let echo = Echo::default();
        let server = TestServer::start(
            listener().await,
            tls(&pki, mode),
            echo.service(),
            |s| s,
            None,
        );
        for alpn in [H1, H2] {
            // With TLS 1.3 the client may finish its side of the handshake
            // before the server refuses it: the request fails then.
            assert!(
                fetch(server.addr, client_config(&pki, None, alpn))
                    .await
                    .is_err()
            );
            let seen = fetch(server.addr, client_config(&pki, Some(&cert), alpn))
                .await
                .unwrap();
            assert_eq!(seen.thumbprint, cert.thumbprint().to_string());
        }
        assert_eq!(echo.calls(), 2);
    }
}

#[tokio::test]
async fn trusted_roots_check_the_issuer_and_any_certificate_takes_self_signed_ones() {
    let pki = TestPki::new().unwrap();
    let other_pki = TestPki::new().unwrap();
    let ours = pki.client_cert("ours.example").unwrap();
    let theirs = other_pki.client_cert("theirs.example").unwrap();
    let self_signed = TestPki::self_signed_client("self.example").unwrap();

    let echo = Echo::default();
    let ca_mode = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::trusted_roots(pki.root_store())),
        echo.service(),
        |s| s,
        None,
    );
    let seen = fetch(ca_mode.addr, client_config(&pki, Some(&ours), H2))
        .await
        .unwrap();
    assert_eq!(seen.thumbprint, ours.thumbprint().to_string());
    for stranger in [&theirs, &self_signed] {
        for alpn in [H1, H2] {
            assert!(
                fetch(ca_mode.addr, client_config(&pki, Some(stranger), alpn))
                    .await
                    .is_err()
            );
        }
    }
    assert_eq!(echo.calls(), 1);

    let any_mode = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate().required()),
        echo.service(),
        |s| s,
        None,
    );
    for cert in [&ours, &theirs, &self_signed] {
        let seen = fetch(any_mode.addr, client_config(&pki, Some(cert), H1))
            .await
            .unwrap();
        assert_eq!(seen.thumbprint, cert.thumbprint().to_string());
    }
}

/// Waits until the server closes `tcp` (EOF or an error), with a guard

#[tokio::test]
async fn trusted_proxy_mode_believes_the_header_and_nothing_else() {
    let pki = TestPki::new().unwrap();
    let proxy = pki.client_cert("proxy.example").unwrap();
    let client = TestPki::self_signed_client("client.example").unwrap();
    let echo = Echo::default();
    // The proxy is known by the certificate it connects with.
    let service = ServiceBuilder::new()
        .layer(
            ForwardedClientCertLayer::client_cert()
                .trusted_proxy_certificate(proxy.thumbprint())
                .build()
                .unwrap(),
        )
        .service(echo.service());
    let server = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        service,
        |s| s,
        None,
    );
    let header = format!(":{}:", STANDARD.encode(client.cert()));

    for alpn in [H1, H2] {
        // The proxy connects with a certificate of its own.
        let mut conn = connect(server.addr, client_config(&pki, Some(&proxy), alpn))
            .await
            .unwrap();

        // The proxy's certificate is not the client's.
        let (status, _, body) = conn.get_with("/", None).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen(&body).thumbprint, "none");

        let (status, _, body) = conn.get_with("/", Some(&header)).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen(&body).thumbprint, client.thumbprint().to_string());

        let (status, _, body) = conn
            .get_with("/", Some(":bm90IGEgY2VydGlmaWNhdGU=:"))
            .await
            .unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::BAD_REQUEST, ""));
    }
    assert_eq!(echo.calls(), 4);
}

#[tokio::test]
async fn server_config_from_pem_files() {
    let pki = TestPki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server_cert = pki.server_cert().unwrap();
    let (cert_path, key_path) = server_cert.write_pem_files(dir.path(), "server").unwrap();
    let (_, other_key_path) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "other")
        .unwrap();
    let config = ServerTlsConfig::new(ClientCertMode::any_certificate().required());

    let tls = config.build_from_pem_files(&cert_path, &key_path).unwrap();
    let server = TestServer::start(
        listener().await,
        tls,
        Echo::default().service(),
        |s| s,
        None,
    );
    let cert = TestPki::self_signed_client("client.example").unwrap();
    let seen = fetch(server.addr, client_config(&pki, Some(&cert), H2))
        .await
        .unwrap();
    assert_eq!(seen.thumbprint, cert.thumbprint().to_string());

    let missing = dir.path().join("missing.pem");
    let cases = [
        (&missing, &key_path, ServerTlsErrorKind::Io, &missing),
        (
            &key_path,
            &key_path,
            ServerTlsErrorKind::NoCertificate,
            &key_path,
        ),
        (
            &cert_path,
            &cert_path,
            ServerTlsErrorKind::NoPrivateKey,
            &cert_path,
        ),
        (
            &cert_path,
            &other_key_path,
            ServerTlsErrorKind::KeyMismatch,
            &other_key_path,
        ),
    ];
    for (cert, key, kind, blamed) in cases {
        let error = config.build_from_pem_files(cert, key).unwrap_err();
        assert_eq!(error.kind(), kind, "{error}");
        assert_eq!(error.path(), Some(blamed.as_path()));
        assert!(error.to_string().contains(&*blamed.to_string_lossy()));
    }
}

// Property tests: the `Client-Cert` parser and the layer never panic, and
// agree with each other.

/// Real certificates of several kinds: CA-issued and self-signed P-256, RSA.
static CERTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(|| {
    let pki = TestPki::new().unwrap();
    vec![
        pki.client_cert("a.example").unwrap().cert().clone(),
        TestPki::self_signed_client("b.example")
            .unwrap()
            .cert()
            .clone(),
        CertificateDer::from_pem_slice(include_bytes!("../data/rsa.pem")).unwrap(),
        CertificateDer::from_pem_slice(include_bytes!("../data/client.pem")).unwrap(),
    ]
});

async fn echo_peer(request: Request<()>) -> Result<Response<String>, Infallible> {
    let peer = request.extensions().get::<PeerCertificate>();
    Ok(Response::new(
        peer.map_or("none".to_owned(), |p| p.thumbprint().to_string()),
    ))
}

/// Runs one request through `ForwardedClientCertLayer` trusting any peer
/// (with a stale `PeerCertificate` already on it) and returns the response.
fn through_layer(headers: &[(&str, HeaderValue)]) -> Response<String> {
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(PeerCertificate::new(CERTS[0].clone()));
    for (name, value) in headers {
        request.headers_mut().append(
            http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.clone(),
        );
    }
    ServiceBuilder::new()
        .layer(
            ForwardedClientCertLayer::client_cert()
                .trust_any_peer()
                .build()
                .unwrap(),
        )
        .service_fn(echo_peer)
        .oneshot(request)
        .now_or_never()
        .expect("the layer does not wait")
        .unwrap()
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,300}") {
        let _ = parse_client_cert_header(&s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_client_cert_header(&bytes);
    }

    #[test]
    fn byte_sequence_lookalikes_never_panic(
        s in "[ \t]{0,2}:?[A-Za-z0-9+/=_ ;,:\t-]{0,160}:?[ ;,=a-z0-9]{0,8}",
    ) {
        let _ = parse_client_cert_header(&s);
    }

    #[test]
    fn real_certificates_round_trip(
        index in 0..4usize,
        padded in any::<bool>(),
        before in "[ \t]{0,3}",
        after in "[ \t]{0,3}",
    ) {
        let der = &CERTS[index];
        let b64 = if padded { STANDARD.encode(der) } else { STANDARD_NO_PAD.encode(der) };
        let value = format!("{before}:{b64}:{after}");
        let peer = parse_client_cert_header(&value).unwrap();
        prop_assert_eq!(peer.thumbprint(), Thumbprint::from_certificate(der));
        prop_assert_eq!(peer.certificate(), Some(der));
    }

    #[test]
    fn mutated_certificates_are_refused_or_read_exactly(
        index in 0..4usize,
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        // A changed byte in the DER: refused, or read as exactly those bytes.
        let mut der = CERTS[index].to_vec();
        let i = at.index(der.len());
        der[i] = byte;
        let value = format!(":{}:", STANDARD.encode(&der));
        if let Ok(peer) = parse_client_cert_header(&value) {
            prop_assert_eq!(peer.certificate().unwrap().as_ref(), der.as_slice());
            prop_assert_eq!(peer.thumbprint(), Thumbprint::from_der(&der));
        }

        // A changed byte in the text: whatever is accepted is a certificate
        // whose thumbprint is of the bytes it holds.
        let mut text = format!(":{}:", STANDARD.encode(&CERTS[index])).into_bytes();
        let i = at.index(text.len());
        text[i] = byte;
        if let Ok(peer) = parse_client_cert_header(&text) {
            prop_assert_eq!(peer.thumbprint(), Thumbprint::from_certificate(peer.certificate().unwrap()));
        }
    }

    #[test]
    fn the_layer_answers_400_exactly_when_the_header_is_malformed(
        value in proptest::collection::vec(any::<u8>(), 0..200),
        index in 0..4usize,
        wrap in any::<bool>(),
    ) {
        // Either arbitrary bytes or a real certificate.
        let value = if wrap {
            format!(":{}:", STANDARD.encode(&CERTS[index])).into_bytes()
        } else {
            value
        };
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            return Ok(());
        };
        let response = through_layer(&[("client-cert", value.clone())]);
        match parse_client_cert_header(&value) {
            Ok(peer) => {
                prop_assert_eq!(response.status(), StatusCode::OK);
                prop_assert_eq!(response.into_body(), peer.thumbprint().to_string());
            }
            Err(error) => {
                prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST);
                let seen = response.extensions().get::<ClientCertHeaderError>().unwrap();
                prop_assert_eq!(seen.kind(), error.kind());
                prop_assert_eq!(response.into_body(), "");
            }
        }
    }

    #[test]
    fn without_the_header_the_layer_strips_the_peer_certificate(
        headers in proptest::collection::vec(("x-[a-z]{1,10}", "[ -~]{0,40}"), 0..4),
    ) {
        let headers: Vec<(&str, HeaderValue)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), HeaderValue::from_str(v).unwrap()))
            .collect();
        let response = through_layer(&headers);
        prop_assert_eq!(response.status(), StatusCode::OK);
        prop_assert_eq!(response.into_body(), "none");
        let map = http::HeaderMap::new();
        prop_assert!(client_cert_from_headers(&map).unwrap().is_none());
    }

    #[test]
    fn a_repeated_header_is_refused(index in 0..4usize, copies in 2..5usize) {
        let value = HeaderValue::from_str(&format!(":{}:", STANDARD.encode(&CERTS[index]))).unwrap();
        let headers: Vec<_> = (0..copies).map(|_| ("client-cert", value.clone())).collect();
        let response = through_layer(&headers);
        prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }
}
