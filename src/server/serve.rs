//! Serving HTTP over rustls with the client certificate on every request.
//!
//! [`serve`] accepts TCP connections, runs the TLS handshake of each in its own
//! task (with a timeout, so a slow or silent client holds up nobody), and
//! serves HTTP/1.1 and HTTP/2 (by ALPN) with hyper-util. The client
//! certificate is read once per connection: a [`PeerCertificate`] (the leaf's
//! DER and its thumbprint) is made after the handshake and a clone of it is
//! put in the extensions of every request on the connection, with a
//! [`ConnectionInfo`] (the remote and local addresses). A connection without
//! a client certificate gives requests without a `PeerCertificate`.
//!
//! Failed handshakes and broken connections are logged with `tracing` at
//! `debug` and end only their own connection. Any
//! `tower::Service<Request<Incoming>>` can be served, an axum `Router`
//! included.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use hyper::body::Incoming;
//! use tower_token_binding::server::{self, ClientCertMode, PeerCertificate, ServerTlsConfig};
//! # use tower_token_binding::test_util::TestPki;
//!
//! async fn whoami(request: Request<Incoming>) -> Result<Response<String>, Infallible> {
//!     let peer = request.extensions().get::<PeerCertificate>();
//!     let body = peer.map_or("no certificate".to_owned(), |p| p.thumbprint().to_string());
//!     Ok(Response::new(body))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pki = TestPki::new()?;
//! # let cert = pki.server_cert()?;
//! # let (chain, key) = (cert.chain(), cert.private_key());
//! let tls = ServerTlsConfig::new(ClientCertMode::any_certificate()).build(chain, key)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//!
//! let server = tokio::spawn(
//!     server::serve(listener, tls, tower::service_fn(whoami))
//!         .with_graceful_shutdown(async move { let _ = stopped.await; })
//!         .into_future(),
//! );
//!
//! // A client with a certificate.
//! # use http_body_util::BodyExt;
//! let identity = pki.client_cert("client-1")?.identity()?;
//! # let connector = hyper_rustls::HttpsConnectorBuilder::new()
//! #     .with_tls_config(pki.client_config(Some(&identity))?)
//! #     .https_only()
//! #     .enable_http1()
//! #     .build();
//! # let client = hyper_util::client::legacy::Client::builder(
//! #     hyper_util::rt::TokioExecutor::new(),
//! # )
//! # .build::<_, http_body_util::Empty<bytes::Bytes>>(connector);
//! let response = client.get(format!("https://localhost:{}/", addr.port()).parse()?).await?;
//! let body = response.into_body().collect().await?.to_bytes();
//! assert_eq!(body, identity.thumbprint().to_string());
//!
//! # drop(client);
//! stop.send(()).unwrap();
//! server.await??;
//! # Ok(())
//! # }
//! # use std::future::IntoFuture as _;
//! ```

use std::fmt;
use std::future::{Future, IntoFuture, Pending};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::util::Oneshot;
use tower::{Service, ServiceExt as _};
use tracing::Instrument as _;

use super::PeerCertificate;

use crate::BoxError;

/// How long a client may take over its TLS handshake unless told otherwise.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first pause after a failed `accept()` (such as `EMFILE`); it doubles
/// on every further failure, up to [`MAX_ACCEPT_BACKOFF`].
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `service` over TLS on `listener`, with the client certificate of
/// each connection in the extensions of its requests.
///
/// `tls_config` is usually built with
/// [`ServerTlsConfig`](super::ServerTlsConfig); any rustls `ServerConfig`
/// works, and its ALPN protocols decide between HTTP/2 (`h2`) and HTTP/1.1.
///
/// The returned [`Serve`] is configured with
/// [`handshake_timeout`](Serve::handshake_timeout) and
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown), and runs when
/// awaited. Each request carries a [`ConnectionInfo`] extension and, when the
/// client presented a certificate, a [`PeerCertificate`] extension shared by
/// all requests on the connection. With the `axum` feature, requests also
/// carry `axum::extract::ConnectInfo<SocketAddr>`, so axum's `ConnectInfo`
/// extractor works.
///
/// The service is cloned for each connection, and each clone is called with
/// `oneshot` (made ready, then called) for each request.
///
/// Serving an axum `Router`, which is a `Service<Request<Incoming>>`:
///
#[cfg_attr(feature = "axum", doc = "```no_run")]
#[cfg_attr(not(feature = "axum"), doc = "```ignore")]
/// use axum::{Extension, Router, routing::get};
/// use tower_token_binding::server::{self, ClientCertMode, PeerCertificate, ServerTlsConfig};
///
/// async fn whoami(peer: Option<Extension<PeerCertificate>>) -> String {
///     peer.map_or("anonymous".to_owned(), |Extension(p)| p.thumbprint().to_string())
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let tls = ServerTlsConfig::new(ClientCertMode::any_certificate())
///     .build_from_pem_files("server.pem", "server.key")?;
/// let app = Router::new().route("/whoami", get(whoami));
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// server::serve(listener, tls, app)
///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// # Ok(())
/// # }
/// ```
pub fn serve<S, B>(
    listener: TcpListener,
    tls_config: impl Into<Arc<ServerConfig>>,
    service: S,
) -> Serve<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Serve {
        listener,
        acceptor: TlsAcceptor::from(tls_config.into()),
        service,
        signal: std::future::pending(),
        settings: Settings {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            shutdown_timeout: None,
        },
    }
}

/// A server being set up by [`serve`]; await it to run it.
///
/// Without a shutdown signal, it runs until dropped. Dropping it (or aborting
/// the task it runs in) stops accepting and closes every connection at once.
#[must_use = "a server does nothing unless awaited"]
pub struct Serve<S, F = Pending<()>> {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    service: S,
    signal: F,
    settings: Settings,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    handshake_timeout: Duration,
    shutdown_timeout: Option<Duration>,
}

impl<S, F> Serve<S, F> {
    /// How long a client may take over its TLS handshake, from the accepted
    /// TCP connection to the finished handshake. A client that takes longer
    /// is disconnected. Default 10 seconds.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// Shuts down gracefully when `signal` completes: stops accepting,
    /// abandons TLS handshakes in progress, tells every connection to finish
    /// (HTTP/1.1 closes after the current response, HTTP/2 sends `GOAWAY`),
    /// waits for in-flight requests, and then the server future resolves.
    ///
    /// Without a [`shutdown_timeout`](Self::shutdown_timeout) it waits as
    /// long as the requests take.
    pub fn with_graceful_shutdown<G>(self, signal: G) -> Serve<S, G>
    where
        G: Future<Output = ()> + Send + 'static,
    {
        Serve {
            listener: self.listener,
            acceptor: self.acceptor,
            service: self.service,
            signal,
            settings: self.settings,
        }
    }

    /// The most a graceful shutdown waits for connections to finish; the
    /// connections still open then are closed. Default: no limit. Only
    /// meaningful with [`with_graceful_shutdown`](Self::with_graceful_shutdown).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = Some(timeout);
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl<S, F> fmt::Debug for Serve<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("handshake_timeout", &self.settings.handshake_timeout)
            .field("shutdown_timeout", &self.settings.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl<S, B, F> IntoFuture for Serve<S, F>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()> + Send + 'static,
{
    /// Never an error today: failed `accept()` calls are retried after a
    /// pause, failed connections are logged and dropped. It resolves only
    /// after a graceful shutdown.
    type Output = io::Result<()>;
    type IntoFuture = ServeFuture;

    fn into_future(self) -> Self::IntoFuture {
        ServeFuture(Box::pin(async move {
            run(
                self.listener,
                self.acceptor,
                self.service,
                self.signal,
                self.settings,
            )
            .await;
            Ok(())
        }))
    }
}

/// The future of a running [`Serve`].
#[must_use = "futures do nothing unless polled"]
pub struct ServeFuture(Pin<Box<dyn Future<Output = io::Result<()>> + Send>>);

impl Future for ServeFuture {
    type Output = io::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for ServeFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeFuture").finish_non_exhaustive()
    }
}

/// The addresses of the connection a request came on, in the request's
/// extensions when it is served by [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnectionInfo {
    remote_addr: SocketAddr,
    local_addr: SocketAddr,
}

impl ConnectionInfo {
    /// The addresses of a connection, for servers other than [`serve`] to
    /// put in the extensions of its requests (for
    /// [`ForwardedClientCertLayer`](super::forwarded::ForwardedClientCertLayer)'s
    /// trusted-proxy networks, say).
    pub fn new(remote_addr: SocketAddr, local_addr: SocketAddr) -> Self {
        Self {
            remote_addr,
            local_addr,
        }
    }

    /// The client's address (the peer of the TCP connection).
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// The server's address the client connected to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Where connections come from: a `TcpListener`, or a stand-in in tests.
trait Accept: Send + 'static {
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

async fn run<L, S, B, F>(
    mut listener: L,
    acceptor: TlsAcceptor,
    service: S,
    signal: F,
    settings: Settings,
) where
    L: Accept,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    F: Future<Output = ()>,
{
    let mut signal = std::pin::pin!(signal);
    let http = Arc::new(http_builder());
    let graceful = GracefulShutdown::new();
    let (stop_handshakes, handshakes_stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accept_failures = 0u32;
    let mut resume_accepting: Option<Instant> = None;

    loop {
        tokio::select! {
            biased;
            () = &mut signal => break,
            // Reap finished connections so the set does not grow.
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined {
                    tracing::debug!(error = %e, "connection task failed");
                }
            }
            () = tokio::time::sleep_until(resume_accepting.unwrap_or_else(Instant::now)),
                if resume_accepting.is_some() =>
            {
                resume_accepting = None;
            }
            accepted = listener.accept(), if resume_accepting.is_none() => match accepted {
                Ok((tcp, remote_addr)) => {
                    accept_failures = 0;
                    let span = tracing::debug_span!("connection", %remote_addr);
                    connections.spawn(
                        connection(
                            tcp,
                            remote_addr,
                            acceptor.clone(),
                            settings.handshake_timeout,
                            handshakes_stopped.clone(),
                            // Made here, not in the task, so that a shutdown
                            // right after this accept still sees the task.
                            graceful.watcher(),
                            http.clone(),
                            service.clone(),
                        )
                        .instrument(span),
                    );
                }
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(error = %e, "accept: connection failed before it was accepted");
                }
                Err(e) => {
                    // Most likely out of file descriptors (EMFILE, ENFILE):
                    // pause, while finished connections are reaped, and retry.
                    let pause = MIN_ACCEPT_BACKOFF
                        .saturating_mul(1 << accept_failures.min(10))
                        .min(MAX_ACCEPT_BACKOFF);
                    accept_failures = accept_failures.saturating_add(1);
                    tracing::error!(error = %e, ?pause, "accept failed; retrying after a pause");
                    resume_accepting = Some(Instant::now() + pause);
                }
            },
        }
    }

    drop(listener);
    let _ = stop_handshakes.send(true);
    tracing::debug!(
        connections = graceful.count(),
        "shutting down: no longer accepting; waiting for connections to finish"
    );
    match settings.shutdown_timeout {
        None => graceful.shutdown().await,
        Some(deadline) => {
            if tokio::time::timeout(deadline, graceful.shutdown())
                .await
                .is_err()
            {
                tracing::debug!(
                    remaining = connections.len(),
                    "shutdown deadline passed; closing the remaining connections"
                );
                connections.shutdown().await;
            }
        }
    }
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A timer turns on hyper's HTTP/1 header read timeout (30 s by default).
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        // As axum::serve does, for WebSockets over HTTP/2.
        .enable_connect_protocol();
    builder
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[allow(clippy::too_many_arguments)]
async fn connection<S, B>(
    tcp: TcpStream,
    remote_addr: SocketAddr,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    mut shutting_down: watch::Receiver<bool>,
    watcher: Watcher,
    http: Arc<auto::Builder<TokioExecutor>>,
    service: S,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    // Small responses go out at once rather than waiting on Nagle's
    // algorithm and the client's delayed ACK (40 ms stalls on keep-alive).
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let local_addr = match tcp.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            tracing::debug!(error = %e, "connection lost before the TLS handshake");
            return;
        }
    };
    let handshake = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp));
    let tls = tokio::select! {
        outcome = handshake => match outcome {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(?handshake_timeout, "TLS handshake timed out");
                return;
            }
        },
        // Also when the server is gone (the sender dropped).
        _ = shutting_down.wait_for(|stop| *stop) => {
            tracing::debug!("TLS handshake abandoned: shutting down");
            return;
        }
    };

    let peer = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| PeerCertificate::new(leaf.clone().into_owned()));
    tracing::trace!(peer = ?peer, "TLS handshake done");

    let service = ConnectionService {
        inner: service,
        peer,
        info: ConnectionInfo {
            remote_addr,
            local_addr,
        },
    };
    let conn = http.serve_connection_with_upgrades(TokioIo::new(tls), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection error");
    }
}

/// The per-connection hyper service: adds the connection's extensions and
/// calls a clone of the user's service.
#[derive(Clone)]
struct ConnectionService<S> {
    inner: S,
    peer: Option<PeerCertificate>,
    info: ConnectionInfo,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnectionService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Oneshot<S, Request<Incoming>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let extensions = request.extensions_mut();
        if let Some(peer) = &self.peer {
            extensions.insert(peer.clone());
        }
        extensions.insert(self.info);
        #[cfg(feature = "axum")]
        extensions.insert(axum::extract::ConnectInfo(self.info.remote_addr));
        self.inner.clone().oneshot(request)
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::TlsConnector;

    use super::*;
    use crate::server::{ClientCertMode, ServerTlsConfig};
    use crate::test_util::TestPki;

    /// Fails its first `failures` accepts as a process out of file
    /// descriptors would, then accepts for real.
    struct OutOfFiles {
        listener: TcpListener,
        failures: Arc<AtomicUsize>,
    }

    impl Accept for OutOfFiles {
        async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                // EMFILE
                return Err(io::Error::from_raw_os_error(24));
            }
            self.listener.accept().await
        }
    }

    #[tokio::test]
    async fn accept_errors_do_not_stop_the_server() {
        let pki = TestPki::new().unwrap();
        let cert = pki.server_cert().unwrap();
        let tls = ServerTlsConfig::new(ClientCertMode::any_certificate())
            .build(cert.chain(), cert.private_key())
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let failures = Arc::new(AtomicUsize::new(3));
        let service = tower::service_fn(|request: Request<Incoming>| async move {
            let seen = request.extensions().get::<PeerCertificate>().is_some();
            Ok::<_, Infallible>(Response::new(format!("peer: {seen}")))
        });
        let settings = Settings {
            handshake_timeout: Duration::from_secs(5),
            shutdown_timeout: None,
        };
        let server = tokio::spawn(run(
            OutOfFiles {
                listener,
                failures: failures.clone(),
            },
            TlsAcceptor::from(Arc::new(tls)),
            service,
            std::future::pending::<()>(),
            settings,
        ));

        let connector = TlsConnector::from(Arc::new(pki.client_config(None).unwrap()));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("peer: false"), "{response}");
        assert_eq!(failures.load(Ordering::SeqCst), 0);
        server.abort();
    }

    #[test]
    fn connection_errors_are_not_resource_errors() {
        assert!(is_connection_error(
            &io::ErrorKind::ConnectionAborted.into()
        ));
        assert!(!is_connection_error(&io::Error::from_raw_os_error(24)));
    }
}
