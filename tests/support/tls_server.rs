//! A TLS server on loopback for the server plumbing tests: `TestServer`
//! (served with `serve`, dropped = aborted), an `Echo` service that reports
//! the connection's peer certificate, and HTTP/1.1 and HTTP/2 clients.
#![allow(dead_code)]
#![cfg(feature = "test-util")]

use std::convert::Infallible;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tower::Service;
use tower_token_binding::server::forwarded::CLIENT_CERT;
use tower_token_binding::server::{
    self, ClientCertMode, ConnectionInfo, PeerCertificate, ServerTlsConfig,
};
use tower_token_binding::test_util::{TestCert, TestPki};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running server; dropping it aborts it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub fn start<S, B>(
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
    pub fn stop(&mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
    }

    pub fn is_finished(&self) -> bool {
        self.task.as_ref().unwrap().is_finished()
    }

    /// Waits for the serve future to resolve (with a guard against hanging).
    pub async fn finished(&mut self) {
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

pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

pub fn tls(pki: &TestPki, mode: ClientCertMode) -> rustls::ServerConfig {
    let cert = pki.server_cert().unwrap();
    ServerTlsConfig::new(mode)
        .build(cert.chain(), cert.private_key())
        .unwrap()
}

/// What the echo handler saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The thumbprint, or "none".
    pub thumbprint: String,
    /// Where the `PeerCertificate`'s DER lives: equal for the same instance.
    pub der_at: usize,
    pub remote_addr: SocketAddr,
}

pub fn seen(body: &str) -> Seen {
    let mut parts = body.split(' ');
    let seen = Seen {
        thumbprint: parts.next().unwrap().to_owned(),
        der_at: parts.next().unwrap().parse().unwrap(),
        remote_addr: parts.next().unwrap().parse().unwrap(),
    };
    assert_eq!(parts.next(), None);
    seen
}

pub fn describe<B>(request: &Request<B>) -> String {
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
pub struct Echo {
    pub calls: Arc<AtomicUsize>,
    pub entered: Arc<Notify>,
    pub release: Arc<Notify>,
}

impl Echo {
    pub fn service(
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

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

pub const H1: &[u8] = b"http/1.1";
pub const H2: &[u8] = b"h2";

pub fn client_config(pki: &TestPki, cert: Option<&TestCert>, alpn: &[u8]) -> ClientConfig {
    let identity = cert.map(|c| c.identity().unwrap());
    let mut config = pki.client_config(identity.as_ref()).unwrap();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

pub enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

/// One client connection, HTTP/1.1 or HTTP/2 as its ALPN says.
pub struct Conn {
    pub sender: Sender,
    pub local_addr: SocketAddr,
}

pub async fn connect(addr: SocketAddr, config: ClientConfig) -> Result<Conn, BoxError> {
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
    pub async fn get(&mut self, path: &str) -> Result<(StatusCode, Version, String), BoxError> {
        self.get_with(path, None).await
    }

    /// `GET path`, with a `Client-Cert` header if given.
    pub async fn get_with(
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
pub async fn fetch(addr: SocketAddr, config: ClientConfig) -> Result<Seen, BoxError> {
    let mut conn = connect(addr, config).await?;
    let (status, _, body) = conn.get("/").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    Ok(seen(&body))
}
