//! The server plumbing over real TLS on loopback: `serve` attaches the
//! connection's `PeerCertificate` to every request, survives bad clients and
//! shuts down gracefully; `ServerTlsConfig` client-certificate modes; the
//! trusted-proxy `Client-Cert` layer, with property tests.
#![cfg(feature = "test-util")]

mod support;

use std::convert::Infallible;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proptest::prelude::*;
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tower::{Service, ServiceBuilder, ServiceExt as _};
use tower_token_binding::Thumbprint;
use tower_token_binding::server::forwarded::{
    CLIENT_CERT, ClientCertHeaderError, ForwardedClientCertLayer, client_cert_from_headers,
    parse_client_cert_header,
};
use tower_token_binding::server::{
    self, ClientCertMode, ConnectionInfo, PeerCertificate, ServerTlsConfig, ServerTlsErrorKind,
};
use tower_token_binding::test_util::{TestCert, TestPki};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running server; dropping it aborts it.
struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    fn start<S, B>(
        listener: TcpListener,
        tls: rustls::ServerConfig,
        service: S,
        configure: impl FnOnce(server::Serve<S>) -> server::Serve<S>,
        shutdown_timeout: Option<Duration>,
    ) -> Self
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let mut serve = configure(server::serve(listener, tls, service));
        if let Some(timeout) = shutdown_timeout {
            serve = serve.shutdown_timeout(timeout);
        }
        assert_eq!(serve.local_addr().unwrap(), addr);
        let serve = serve.with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        Self {
            addr,
            stop: Some(stop),
            task: Some(tokio::spawn(serve.into_future())),
        }
    }

    /// Signals a graceful shutdown.
    fn stop(&mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
    }

    fn is_finished(&self) -> bool {
        self.task.as_ref().unwrap().is_finished()
    }

    /// Waits for the serve future to resolve (with a guard against hanging).
    async fn finished(&mut self) {
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the server shuts down")
            .unwrap()
            .unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

fn tls(pki: &TestPki, mode: ClientCertMode) -> rustls::ServerConfig {
    let cert = pki.server_cert().unwrap();
    ServerTlsConfig::new(mode)
        .build(cert.chain(), cert.private_key())
        .unwrap()
}

/// What the echo handler saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// The thumbprint, or "none".
    thumbprint: String,
    /// Where the `PeerCertificate`'s DER lives: equal for the same instance.
    der_at: usize,
    remote_addr: SocketAddr,
}

fn seen(body: &str) -> Seen {
    let mut parts = body.split(' ');
    let seen = Seen {
        thumbprint: parts.next().unwrap().to_owned(),
        der_at: parts.next().unwrap().parse().unwrap(),
        remote_addr: parts.next().unwrap().parse().unwrap(),
    };
    assert_eq!(parts.next(), None);
    seen
}

fn describe<B>(request: &Request<B>) -> String {
    let peer = request.extensions().get::<PeerCertificate>();
    let info = request
        .extensions()
        .get::<ConnectionInfo>()
        .expect("ConnectionInfo");
    format!(
        "{} {} {}",
        peer.map_or("none".to_owned(), |p| p.thumbprint().to_string()),
        peer.and_then(PeerCertificate::certificate)
            .map_or(0, |c| c.as_ref().as_ptr() as usize),
        info.remote_addr(),
    )
}

/// Echoes what it sees, counting calls; `/slow` waits for `release`, after
/// saying so on `entered`; `/never` never answers.
#[derive(Clone, Default)]
struct Echo {
    calls: Arc<AtomicUsize>,
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

impl Echo {
    fn service(
        &self,
    ) -> impl Service<
        Request<Incoming>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + 'static {
        let echo = self.clone();
        tower::service_fn(move |request: Request<Incoming>| {
            let echo = echo.clone();
            async move {
                echo.calls.fetch_add(1, Ordering::SeqCst);
                let body = describe(&request);
                match request.uri().path() {
                    "/slow" => {
                        echo.entered.notify_one();
                        echo.release.notified().await;
                    }
                    "/never" => {
                        echo.entered.notify_one();
                        std::future::pending::<()>().await;
                    }
                    _ => {}
                }
                Ok::<_, Infallible>(Response::new(body))
            }
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

const H1: &[u8] = b"http/1.1";
const H2: &[u8] = b"h2";

fn client_config(pki: &TestPki, cert: Option<&TestCert>, alpn: &[u8]) -> ClientConfig {
    let identity = cert.map(|c| c.identity().unwrap());
    let mut config = pki.client_config(identity.as_ref()).unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// One client connection, HTTP/1.1 or HTTP/2 as its ALPN says.
struct Conn {
    sender: Sender,
    local_addr: SocketAddr,
}

async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Conn, BoxError> {
    let h2 = config.alpn_protocols == [H2.to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let local_addr = tcp.local_addr()?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let io = TokioIo::new(tls);
    let sender = if h2 {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        Sender::H2(sender)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        Sender::H1(sender)
    };
    Ok(Conn { sender, local_addr })
}

impl Conn {
    async fn get(&mut self, path: &str) -> Result<(StatusCode, Version, String), BoxError> {
        self.get_with(path, None).await
    }

    /// `GET path`, with a `Client-Cert` header if given.
    async fn get_with(
        &mut self,
        path: &str,
        client_cert: Option<&str>,
    ) -> Result<(StatusCode, Version, String), BoxError> {
        let mut request = match &self.sender {
            Sender::H1(_) => Request::get(path).header(http::header::HOST, "localhost"),
            Sender::H2(_) => Request::get(format!("https://localhost{path}")),
        }
        .body(Empty::new())?;
        if let Some(value) = client_cert {
            request
                .headers_mut()
                .insert(CLIENT_CERT, HeaderValue::from_str(value)?);
        }
        let response = match &mut self.sender {
            Sender::H1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Sender::H2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let (status, version) = (response.status(), response.version());
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, version, String::from_utf8(body.to_vec())?))
    }
}

/// Connects and makes one request.
async fn fetch(addr: SocketAddr, config: ClientConfig) -> Result<Seen, BoxError> {
    let mut conn = connect(addr, config).await?;
    let (status, _, body) = conn.get("/").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(seen(&body))
}

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
/// against hanging.
async fn closed_by_server(tcp: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
}

#[tokio::test]
async fn a_silent_client_holds_up_nobody_and_is_dropped_after_the_handshake_timeout() {
    let pki = TestPki::new().unwrap();
    let cert = pki.client_cert("client.example").unwrap();

    // A handshake timeout far longer than the test: the silent client is
    // still waiting while the others are served.
    let patient = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        Echo::default().service(),
        |s| s.handshake_timeout(Duration::from_secs(600)),
        None,
    );
    let _silent = TcpStream::connect(patient.addr).await.unwrap();
    let mut half = TcpStream::connect(patient.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    for alpn in [H1, H2] {
        let seen = fetch(patient.addr, client_config(&pki, Some(&cert), alpn))
            .await
            .unwrap();
        assert_eq!(seen.thumbprint, cert.thumbprint().to_string());
    }

    // A short one: the silent client is dropped, the server goes on. (Not
    // shorter: the real client's handshake must fit in it on a busy machine.)
    let strict = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        Echo::default().service(),
        |s| s.handshake_timeout(Duration::from_secs(1)),
        None,
    );
    let mut silent = TcpStream::connect(strict.addr).await.unwrap();
    closed_by_server(&mut silent).await;
    fetch(strict.addr, client_config(&pki, Some(&cert), H2))
        .await
        .unwrap();
}

#[tokio::test]
async fn garbage_and_broken_handshakes_do_not_stop_the_server() {
    let pki = TestPki::new().unwrap();
    let echo = Echo::default();
    let server = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        echo.service(),
        |s| s,
        None,
    );
    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        &[0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0u8; 4096],
    ];
    for bytes in garbage {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        closed_by_server(&mut tcp).await;
    }
    // Hang up at once, and hang up half-way through the handshake.
    drop(TcpStream::connect(server.addr).await.unwrap());
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    drop(half);
    // Garbage after a good handshake: answered with a 400 (or just closed).
    let mut conn = TlsConnector::from(Arc::new(client_config(&pki, None, H1)))
        .connect(
            ServerName::try_from("localhost").unwrap(),
            TcpStream::connect(server.addr).await.unwrap(),
        )
        .await
        .unwrap();
    conn.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    for alpn in [H1, H2] {
        fetch(server.addr, client_config(&pki, None, alpn))
            .await
            .unwrap();
    }
    assert_eq!(echo.calls(), 2);
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let pki = TestPki::new().unwrap();
    let cert = pki.client_cert("client.example").unwrap();
    for alpn in [H1, H2] {
        let echo = Echo::default();
        let mut server = TestServer::start(
            listener().await,
            tls(&pki, ClientCertMode::any_certificate()),
            echo.service(),
            |s| s,
            None,
        );
        let mut conn = connect(server.addr, client_config(&pki, Some(&cert), alpn))
            .await
            .unwrap();
        let entered = echo.entered.notified();
        let in_flight = tokio::spawn(async move { conn.get("/slow").await });
        entered.await;

        server.stop();
        // Still waiting for the request...
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!server.is_finished());
        assert!(!in_flight.is_finished());

        // ...which finishes normally, and then the server is done.
        echo.release.notify_one();
        let (status, _, body) = in_flight.await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen(&body).thumbprint, cert.thumbprint().to_string());
        server.finished().await;

        // It no longer accepts.
        assert!(
            fetch(server.addr, client_config(&pki, Some(&cert), alpn))
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn the_shutdown_timeout_closes_what_is_left() {
    let pki = TestPki::new().unwrap();
    let echo = Echo::default();
    let mut server = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        echo.service(),
        // A handshake that would take forever is abandoned too.
        |s| s.handshake_timeout(Duration::from_secs(600)),
        Some(Duration::from_millis(200)),
    );
    let mut conn = connect(server.addr, client_config(&pki, None, H2))
        .await
        .unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let entered = echo.entered.notified();
    let in_flight = tokio::spawn(async move { conn.get("/never").await });
    entered.await;

    server.stop();
    server.finished().await;
    assert!(in_flight.await.unwrap().is_err());
    closed_by_server(&mut silent).await;
}

#[tokio::test]
async fn a_shutdown_does_not_wait_for_handshakes() {
    let pki = TestPki::new().unwrap();
    let mut server = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        Echo::default().service(),
        |s| s.handshake_timeout(Duration::from_secs(600)),
        None,
    );
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Make sure the server has accepted it.
    fetch(server.addr, client_config(&pki, None, H1))
        .await
        .unwrap();
    server.stop();
    server.finished().await;
    closed_by_server(&mut silent).await;
}

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
        CertificateDer::from_pem_slice(include_bytes!("data/rsa.pem")).unwrap(),
        CertificateDer::from_pem_slice(include_bytes!("data/client.pem")).unwrap(),
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
