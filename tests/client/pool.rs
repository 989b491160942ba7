//! `MtlsClientPool` over real TLS on loopback, against a server that records
//! the client certificate of every connection.
#![cfg(feature = "test-util")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};
use tower_token_binding::TokenBindingLayer;
use tower_token_binding::identity::{IdentitySource, Reload, ReloadingIdentity};
use tower_token_binding::pool::{MtlsClientPool, PoolBuilder};
use tower_token_binding::server::{self, AnyClientCertVerifier, ConnectionInfo, PeerCertificate};
use tower_token_binding::test_util::TestPki;
use tower_token_binding::{ClientIdentity, Thumbprint};

use crate::support;

/// What the server saw: the certificate of each connection, by remote address.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<SocketAddr, Option<Thumbprint>>>>);

impl Seen {
    fn connections(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn connections_of(&self, thumbprint: Thumbprint) -> usize {
        self.0
            .lock()
            .unwrap()
            .values()
            .filter(|t| **t == Some(thumbprint))
            .count()
    }
}

struct Server {
    base: String,
    addr: SocketAddr,
    seen: Seen,
    slow: Slow,
}

/// Holds requests to `/slow` in flight: each says it arrived, then waits
/// until [`Slow::release`].
#[derive(Clone)]
struct Slow {
    arrived: Arc<tokio::sync::Semaphore>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Slow {
    fn new() -> Self {
        Self {
            arrived: Arc::new(tokio::sync::Semaphore::new(0)),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }

    /// Waits until a request to `/slow` is at the server.
    async fn arrived(&self) {
        self.arrived.acquire().await.unwrap().forget();
    }

    /// Lets every held request, and every later one, be answered.
    fn release(&self) {
        self.gate.close();
    }
}

async fn start_server(pki: &TestPki) -> Server {
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("https://localhost:{}", addr.port());
    let seen = Seen::default();
    let record = seen.clone();
    let slow = Slow::new();
    let held = slow.clone();
    let service = tower::service_fn(move |request: Request<Incoming>| {
        let (record, held) = (record.clone(), held.clone());
        async move {
            let peer = request
                .extensions()
                .get::<PeerCertificate>()
                .map(PeerCertificate::thumbprint);
            let remote = request
                .extensions()
                .get::<ConnectionInfo>()
                .unwrap()
                .remote_addr();
            record.0.lock().unwrap().insert(remote, peer);
            if request.uri().path() == "/slow" {
                held.arrived.add_permits(1);
                // Closed by `release`; no permit is ever added.
                let _ = held.gate.acquire().await;
            }
            let body = json!({
                "x5t#S256": peer.map(|t| t.to_string()),
                "connection": remote.to_string(),
                "version": format!("{:?}", request.version()),
            });
            Ok::<_, std::convert::Infallible>(Response::new(body.to_string()))
        }
    });
    tokio::spawn(server::serve(listener, tls, service).into_future());
    Server {
        base,
        addr,
        seen,
        slow,
    }
}

/// A TCP proxy in front of a server, which knows which of the connections
/// it forwards are closed. Each is known by the address the server sees it
/// come from (the proxy's side of the upstream connection).
#[derive(Clone, Default)]
struct Proxy {
    closed: Arc<Mutex<HashMap<SocketAddr, bool>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    /// Told each time a connection closes.
    closing: Arc<tokio::sync::Notify>,
}

impl Proxy {
    /// Starts a proxy to `upstream`; returns it and its URL,
    /// `https://localhost:PORT`.
    async fn start(upstream: SocketAddr) -> (Proxy, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let proxy = Proxy::default();
        let record = proxy.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                record
                    .accepted
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let record = record.clone();
                tokio::spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    let seen_as = outbound.local_addr().unwrap();
                    record.closed.lock().unwrap().insert(seen_as, false);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    record.closed.lock().unwrap().insert(seen_as, true);
                    record.closing.notify_waiters();
                });
            }
        });
        (proxy, url)
    }

    /// How many connections it has accepted.
    fn opened(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the connections the server saw as `addrs` are all closed.
    fn all_closed(&self, addrs: &[SocketAddr]) -> bool {
        let closed = self.closed.lock().unwrap();
        addrs.iter().all(|a| closed.get(a) == Some(&true))
    }

    /// Waits (up to 10 s) until the connections the server saw as `addrs`
    /// are all closed; whether they are.
    async fn until_closed(&self, addrs: &[SocketAddr]) -> bool {
        support::until_rung(&self.closing, || self.all_closed(addrs)).await
    }

    /// Whether any of them is closed.
    fn any_closed(&self, addrs: &[SocketAddr]) -> bool {
        let closed = self.closed.lock().unwrap();
        addrs.iter().any(|a| closed.get(a) == Some(&true))
    }
}

impl Seen {
    /// The connections that presented `thumbprint`.
    fn addrs_of(&self, thumbprint: Thumbprint) -> Vec<SocketAddr> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|(_, t)| **t == Some(thumbprint))
            .map(|(a, _)| *a)
            .collect()
    }
}

type Pool = MtlsClientPool<Empty<Bytes>>;

fn pool(pki: &TestPki, configure: impl FnOnce(PoolBuilder) -> PoolBuilder) -> Pool {
    configure(MtlsClientPool::builder().root_store(pki.root_store()))
        .build()
        .unwrap()
}

/// Sends `GET url` with `identity`, returns what the server said.
async fn get(pool: &Pool, url: &str, identity: Option<&ClientIdentity>) -> Value {
    let mut request = Request::get(url).body(Empty::new()).unwrap();
    if let Some(identity) = identity {
        request.extensions_mut().insert(identity.clone());
    }
    let response = pool.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

fn identities(pki: &TestPki, n: usize) -> Vec<ClientIdentity> {
    (0..n)
        .map(|i| {
            pki.client_cert(&format!("client-{i}.example"))
                .unwrap()
                .identity()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_thousand_sequential_requests_with_one_identity_make_one_handshake() {
    let pki = TestPki::new().unwrap();
    let server = start_server(&pki).await;
    let pool = pool(&pki, |b| b);
    let identity = &identities(&pki, 1)[0];
    let url = format!("{}/", server.base);
    for _ in 0..1000 {
        let seen = get(&pool, &url, Some(identity)).await;
        assert_eq!(seen["x5t#S256"], identity.thumbprint().to_string());
    }
    assert_eq!(server.seen.connections(), 1);
    assert_eq!(pool.stats().clients_built, 1);
}

#[tokio::test]
async fn alternating_identities_make_two_handshakes_and_never_mix() {
    let pki = TestPki::new().unwrap();
    let server = start_server(&pki).await;
    let pool = pool(&pki, |b| b);
    let ids = identities(&pki, 2);
    let url = format!("{}/", server.base);
    for i in 0..200 {
        let identity = &ids[i % 2];
        let seen = get(&pool, &url, Some(identity)).await;
        assert_eq!(
            seen["x5t#S256"],
            identity.thumbprint().to_string(),
            "request {i}"
        );
    }
    assert_eq!(server.seen.connections(), 2);
    assert_eq!(server.seen.connections_of(ids[0].thumbprint()), 1);
    assert_eq!(server.seen.connections_of(ids[1].thumbprint()), 1);
}

async fn concurrent_over_ten_identities(http2: bool) {
    let pki = TestPki::new().unwrap();
    let server = start_server(&pki).await;
    let pool = pool(&pki, |b| {
        if http2 {
            b.http2_only()
        } else {
            b.http1_only()
        }
    });
    let ids = identities(&pki, 10);
    // Through the proxy, which sees every TCP connection the pool opens.
    let (proxy, base) = Proxy::start(server.addr).await;
    let url = format!("{base}/");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (pool, url, identity) = (pool.clone(), url.clone(), ids[i % 10].clone());
        tasks.spawn(async move {
            let seen = get(&pool, &url, Some(&identity)).await;
            (identity.thumbprint(), seen)
        });
    }
    let mut cross = 0;
    while let Some(result) = tasks.join_next().await {
        let (mine, seen) = result.unwrap();
        if seen["x5t#S256"] != mine.to_string() {
            cross += 1;
        }
        assert_eq!(seen["version"], if http2 { "HTTP/2.0" } else { "HTTP/1.1" });
    }
    assert_eq!(cross, 0, "requests that went out with another identity");
    assert_eq!(pool.stats().clients_built, 10, "one client per identity");
    if http2 {
        assert_eq!(
            server.seen.connections(),
            10,
            "one HTTP/2 connection per identity"
        );
    } else {
        for identity in &ids {
            let n = server.seen.connections_of(identity.thumbprint());
            assert!(
                (1..=20).contains(&n),
                "{n} HTTP/1.1 connections for 20 concurrent requests"
            );
        }
    }
    // Sequential requests afterwards reuse the connections. Counted as TCP
    // connections opened (at the proxy), not as connections that carried a
    // request: hyper-util finishes a connect that the burst started but no
    // longer needed in the background and pools it, so a later request may
    // be the first over it. A round of requests lets the proxy see the
    // burst's last connects; the next round must open none.
    for identity in &ids {
        get(&pool, &url, Some(identity)).await;
    }
    let opened = proxy.opened();
    for identity in &ids {
        get(&pool, &url, Some(identity)).await;
    }
    assert_eq!(
        proxy.opened(),
        opened,
        "sequential requests opened connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_over_ten_identities_http1() {
    concurrent_over_ten_identities(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_over_ten_identities_http2() {
    concurrent_over_ten_identities(true).await;
}

#[tokio::test]
async fn a_rotated_certificate_is_presented_on_the_next_request() {
    let pki = TestPki::new().unwrap();
    let server = start_server(&pki).await;
    let pool = pool(&pki, |b| b);
    let old = pki.client_cert("svc.example").unwrap();
    let renewed = pki.reissue(&old).unwrap();
    let url = format!("{}/", server.base);

    let seen = get(&pool, &url, Some(&old.identity().unwrap())).await;
    assert_eq!(seen["x5t#S256"], old.thumbprint().to_string());
    let seen = get(&pool, &url, Some(&renewed.identity().unwrap())).await;
    assert_eq!(seen["x5t#S256"], renewed.thumbprint().to_string());
    assert_eq!(
        server.seen.connections(),
        2,
        "a new connection for the new certificate"
    );
}

#[tokio::test]
async fn the_pool_is_bounded_and_hot_identities_keep_their_connections() {
    let pki = TestPki::new().unwrap();
    let server = start_server(&pki).await;
    let pool = pool(&pki, |b| b.max_identities(4));
    let ids = identities(&pki, 10);
    let url = format!("{}/", server.base);

    // Four identities within the cap: no eviction, four connections.
    for _ in 0..25 {
        for identity in &ids[..4] {
            get(&pool, &url, Some(identity)).await;
            assert!(pool.stats().identities <= 4);
        }
    }
    assert_eq!(server.seen.connections(), 4);
    assert_eq!(pool.stats().evicted, 0);

    // Ten cycling, with a hot one in between: never more than four held, the
    // least recently used goes, and the hot identity keeps its connection.
    let hot = &ids[0];
    for round in 0..3 {
        for cold in &ids[1..] {
            get(&pool, &url, Some(hot)).await;
            let seen = get(&pool, &url, Some(cold)).await;
            assert_eq!(seen["x5t#S256"], cold.thumbprint().to_string());
            let stats = pool.stats();
            assert!(stats.identities <= 4, "round {round}: {stats:?}");
            assert!(pool.holds(&hot.thumbprint()));
        }
    }
    assert_eq!(server.seen.connections_of(hot.thumbprint()), 1);
    assert!(pool.stats().evicted > 0);
}

#[tokio::test]
async fn eviction_does_not_disturb_a_request_in_flight() {
    let pki = TestPki::new().unwrap();
    let server = start_server(&pki).await;
    let pool = pool(&pki, |b| b.max_identities(2));
    let ids = identities(&pki, 5);
    let slow = {
        let (pool, url, identity) = (
            pool.clone(),
            format!("{}/slow", server.base),
            ids[0].clone(),
        );
        tokio::spawn(async move { get(&pool, &url, Some(&identity)).await })
    };
    server.slow.arrived().await;
    for identity in &ids[1..] {
        get(&pool, &format!("{}/", server.base), Some(identity)).await;
    }
    assert!(
        !pool.holds(&ids[0].thumbprint()),
        "evicted while its request ran"
    );
    server.slow.release();
    let seen = slow.await.unwrap();
    assert_eq!(seen["x5t#S256"], ids[0].thumbprint().to_string());
}

#[tokio::test]
async fn idle_identities_are_dropped() {
    let pki = TestPki::new().unwrap();
    let server = start_server(&pki).await;
    let pool = pool(&pki, |b| {
        b.identity_idle_timeout(Duration::from_millis(200))
    });
    let ids = identities(&pki, 3);
    let url = format!("{}/", server.base);
    get(&pool, &url, Some(&ids[0])).await;
    get(&pool, &url, Some(&ids[1])).await;
    support::advance(Duration::from_millis(300)).await;
    get(&pool, &url, Some(&ids[2])).await;
    assert_eq!(pool.stats().identities, 1);
    assert_eq!(pool.stats().evicted, 2);
}

#[tokio::test]
async fn requests_without_identity_and_the_errors() {
    let pki = TestPki::new().unwrap();
    let server = start_server(&pki).await;
    let url = format!("{}/", server.base);
    let identity = &identities(&pki, 1)[0];

    // Without identity: no client certificate.
    let plain = pool(&pki, |b| b);
    let seen = get(&plain, &url, None).await;
    assert_eq!(seen["x5t#S256"], Value::Null);
    assert_eq!(plain.stats().identities, 0);

    // Refused when the pool says so.
    let strict = pool(&pki, |b| b.refuse_unidentified());
    let error = strict
        .clone()
        .oneshot(Request::get(&url).body(Empty::new()).unwrap())
        .await
        .unwrap_err();
    assert!(error.is_no_identity(), "{error}");

    // An identity never goes out over plain HTTP.
    let mut request = Request::get(url.replace("https://", "http://"))
        .body(Empty::new())
        .unwrap();
    request.extensions_mut().insert(identity.clone());
    let error = plain.clone().oneshot(request).await.unwrap_err();
    assert!(error.is_config(), "{error}");

    // A server whose certificate we do not trust: a TLS connect error.
    let other = TestPki::new().unwrap();
    let untrusting = pool(&other, |b| b);
    let mut request = Request::get(&url).body(Empty::new()).unwrap();
    request.extensions_mut().insert(identity.clone());
    let error = untrusting.clone().oneshot(request).await.unwrap_err();
    assert!(error.is_connect() && error.is_tls(), "{error:?}");

    // Nobody listening: a connect error, not TLS.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut request = Request::get(format!("https://localhost:{closed}/"))
        .body(Empty::new())
        .unwrap();
    request.extensions_mut().insert(identity.clone());
    let error = plain.clone().oneshot(request).await.unwrap_err();
    assert!(error.is_connect() && !error.is_tls(), "{error:?}");
}

#[tokio::test]
async fn a_replaced_identity_loses_its_connections_on_the_next_request() {
    let pki = TestPki::new().unwrap();
    let server = start_server(&pki).await;
    let (proxy, base) = Proxy::start(server.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let old = pki.client_cert("svc.example").unwrap();
    let renewed = pki.reissue(&old).unwrap();
    let (cert, key) = old.write_pem_files(dir.path(), "client").unwrap();
    // Polled rarely: the test reloads itself.
    let identity = ReloadingIdentity::builder(&cert, &key)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap();

    // Stacked by hand: the layer puts the current identity on each request,
    // the pool presents it. Default timeouts: nothing ages out during the
    // test.
    let pool = pool(&pki, |b| b);
    let client = ServiceBuilder::new()
        .layer(TokenBindingLayer::mtls_only(identity.clone()))
        .service(pool.clone());
    let get = |path: &str| {
        let request = Request::get(format!("{base}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let client = client.clone();
        async move {
            let response = client.oneshot(request).await.expect("response");
            assert_eq!(response.status(), StatusCode::OK);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&body).unwrap()
        }
    };

    let seen = get("/").await;
    assert_eq!(seen["x5t#S256"], old.thumbprint().to_string());
    let old_connections = server.seen.addrs_of(old.thumbprint());
    assert_eq!(old_connections.len(), 1);

    // A request with the old identity is in flight when the files are
    // renewed.
    let in_flight = tokio::spawn(get("/slow"));
    server.slow.arrived().await;
    std::fs::write(&cert, renewed.cert_pem()).unwrap();
    assert!(matches!(identity.reload_now().await, Reload::Reloaded(_)));
    assert_eq!(identity.current().thumbprint(), renewed.thumbprint());

    // The next request presents the new certificate, and drops the old
    // identity's client at once: not after the 10-minute idle bound.
    let seen = get("/").await;
    assert_eq!(seen["x5t#S256"], renewed.thumbprint().to_string());
    assert!(!pool.holds(&old.thumbprint()));
    assert!(pool.holds(&renewed.thumbprint()));
    let stats = pool.stats();
    assert_eq!((stats.identities, stats.retired), (1, 1), "{stats:?}");

    // The request in flight finishes, with the old certificate.
    server.slow.release();
    let seen = in_flight.await.unwrap();
    assert_eq!(seen["x5t#S256"], old.thumbprint().to_string());

    // Then the old identity's connections close; the new one's stays open.
    let old_connections = server.seen.addrs_of(old.thumbprint());
    assert!(
        proxy.until_closed(&old_connections).await,
        "a connection with the old certificate is still open"
    );
    let new_connections = server.seen.addrs_of(renewed.thumbprint());
    assert_eq!(new_connections.len(), 1);
    assert!(!proxy.any_closed(&new_connections));
    let seen = get("/").await;
    assert_eq!(seen["x5t#S256"], renewed.thumbprint().to_string());
    assert_eq!(server.seen.addrs_of(renewed.thumbprint()).len(), 1);
}

#[tokio::test]
async fn a_request_that_still_carries_a_replaced_identity_keeps_no_connection() {
    let pki = TestPki::new().unwrap();
    let server = start_server(&pki).await;
    let (proxy, base) = Proxy::start(server.addr).await;
    let url = format!("{base}/");
    let pool = pool(&pki, |b| b);
    let old = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let renewed = pki.client_cert("svc.example").unwrap().identity().unwrap();

    get(&pool, &url, Some(&old)).await;
    // Replaced by hand, as an `IdentitySource` that swaps identities does.
    let renewed = renewed.replacing(&old);
    assert!(old.is_retired() && !renewed.is_retired());

    // A request whose token was bound to the old identity before the swap
    // still goes out with it, over the client it had; that client is not
    // kept, and its connection closes after the request.
    let seen = get(&pool, &url, Some(&old)).await;
    assert_eq!(seen["x5t#S256"], old.thumbprint().to_string());
    assert!(!pool.holds(&old.thumbprint()));
    assert_eq!(pool.stats().retired, 1);
    let old_connections = server.seen.addrs_of(old.thumbprint());
    assert_eq!(old_connections.len(), 1, "the old connection was reused");
    assert!(proxy.until_closed(&old_connections).await);

    // Another late one: a connection of its own, closed after it.
    let seen = get(&pool, &url, Some(&old)).await;
    assert_eq!(seen["x5t#S256"], old.thumbprint().to_string());
    assert!(!pool.holds(&old.thumbprint()));
    let old_connections = server.seen.addrs_of(old.thumbprint());
    assert_eq!(old_connections.len(), 2);
    assert!(proxy.until_closed(&old_connections).await);

    // The new identity gets a client that is kept.
    get(&pool, &url, Some(&renewed)).await;
    assert!(pool.holds(&renewed.thumbprint()));
    assert_eq!(pool.stats().identities, 1);
}
