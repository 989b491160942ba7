//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod dpop;
pub mod dpop_api;
#[cfg(feature = "redis")]
pub mod fleet_clients;
#[macro_use]
pub mod harness;
pub mod introspection;
#[macro_use]
pub mod oidc_provider;
pub mod pop_api;
pub mod pop_setup;
pub mod redis;
pub mod server_files;
pub mod tls_server;

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

/// A token from `issuer`'s mTLS token endpoint for client `svc`, bound to
/// `identity`.
pub async fn bound_token(
    pki: &TestPki,
    issuer: &tower_token_binding::test_util::TestIssuer,
    identity: &ClientIdentity,
) -> String {
    let (status, body) = post_form(
        &https_client(pki, Some(identity)),
        &issuer.mtls_token_endpoint(),
        &[("grant_type", "client_credentials"), ("client_id", "svc")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// `JwtValidator` for `issuer`'s tokens, its JWKS fetched over HTTPS.
pub fn jwt_validator(
    pki: &TestPki,
    issuer: &tower_token_binding::test_util::TestIssuer,
    cooldown: std::time::Duration,
) -> tower_token_binding::validation::JwtValidator {
    use tower_token_binding::validation::{JwksSource, JwtValidator};
    JwtValidator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .jwks(
            JwksSource::remote(&issuer.jwks_uri())
                .unwrap()
                .root_store(pki.root_store())
                .unknown_kid_cooldown(cooldown),
        )
        .build()
        .unwrap()
}

/// A handler that says who called, as the server layers saw it.
pub async fn whoami(
    request: Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    use tower_token_binding::server::PeerCertificate;
    use tower_token_binding::validation::VerifiedToken;
    let token = request.extensions().get::<VerifiedToken>();
    let peer = request.extensions().get::<PeerCertificate>();
    let body = serde_json::json!({
        "sub": token.and_then(|t| t.subject()),
        "client_id": token.and_then(|t| t.client_id()),
        "x5t#S256": peer.map(|p| p.thumbprint().to_string()),
    });
    Ok(http::Response::new(Full::new(Bytes::from(
        body.to_string(),
    ))))
}

/// Serves [`whoami`] behind `layer` over TLS (client certificates optional,
/// any accepted) and returns its URL, `https://localhost:PORT/whoami`.
pub async fn start_api(
    pki: &TestPki,
    layer: tower_token_binding::CnfValidationLayer<tower_token_binding::validation::JwtValidator>,
) -> String {
    use std::sync::Arc;
    use tower_token_binding::server::{self, AnyClientCertVerifier};
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = tower::ServiceBuilder::new().layer(layer).service_fn(whoami);
    tokio::spawn(server::serve(listener, tls, service).into_future());
    format!("https://localhost:{port}/whoami")
}

/// The path of an example binary cargo built next to this test (built on
/// demand when missing).
pub fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--all-features", "--example", name])
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

/// Runs the example `name` (no arguments) to its end, asserts that it exits
/// 0 (showing its output if not), and returns what it printed.
pub async fn example_stdout(name: &str) -> String {
    let output = tokio::process::Command::new(example_binary(name))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    stdout
}

/// Runs the example `name` with `args` and waits for its first line,
/// `listening on URL`; returns the process and the URL.
pub async fn spawn_announcing(name: &str, args: &[&str]) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(example_binary(name))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .expect("the process announces itself")
        .unwrap()
        .expect("a line");
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, url)
}

/// Log lines captured from `tracing`, as text.
///
/// One global subscriber per test binary, installed at the first capture
/// and never changed, writes each event into the capture of the thread
/// that emits it, if that thread has one at the event's level. A
/// `#[tokio::test]` runs its tasks on its own thread (a current-thread
/// runtime), so its capture holds its own events and no other test's.
/// (Per-thread subscribers, `set_default`, lost events now and then when
/// tests ran in parallel, as tracing recomputed callsite interest while
/// another test's subscriber came or went.)
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<(Logs, tracing::Level)>> =
        const { std::cell::RefCell::new(None) };
}

/// Captures on this thread until dropped; then the capture it replaced,
/// if any, is this thread's again.
pub struct Capturing(Option<(Logs, tracing::Level)>);

impl Drop for Capturing {
    fn drop(&mut self) {
        let previous = self.0.take();
        CAPTURE.with(|capture| *capture.borrow_mut() = previous);
    }
}

impl Logs {
    /// Captures the events at `level` and above emitted on this thread
    /// until the guard drops.
    pub fn capture(level: tracing::Level) -> (Logs, Capturing) {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            use tracing_subscriber::Layer as _;
            use tracing_subscriber::layer::SubscriberExt as _;
            // Asked at every event (a plain `filter_fn` is asked once per
            // callsite, its answer kept for every thread).
            let enabled = tracing_subscriber::filter::dynamic_filter_fn(|meta, _| {
                CAPTURE.with(|capture| {
                    capture
                        .borrow()
                        .as_ref()
                        .is_some_and(|(_, level)| meta.level() <= level)
                })
            });
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| ThisThread)
                .with_filter(enabled);
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("the only global subscriber of this test binary");
        });
        let logs = Logs::default();
        let previous = CAPTURE.with(|capture| capture.replace(Some((logs.clone(), level))));
        (logs, Capturing(previous))
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines captured so far.
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }

    /// The lines captured so far that contain `text`.
    pub fn with(&self, text: &str) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|line| line.contains(text))
            .collect()
    }

    /// Forgets what was captured so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// Writes into the capture of the thread that writes, if it has one.
struct ThisThread;

impl std::io::Write for ThisThread {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some((logs, _)) = capture.borrow().as_ref() {
                logs.0.lock().unwrap().extend_from_slice(bytes);
            }
        });
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `request` as it is on a TLS connection to `127.0.0.1:port` and
/// returns the raw answer.
pub async fn raw_tls(pki: &TestPki, port: u16, request: String) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let config = std::sync::Arc::new(pki.client_config(None).unwrap());
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A proxy's binary (`haproxy`, `nginx`), or `None`, said on stderr, when
/// it is not installed; under `CI=true` a missing binary fails the test
/// (`.ci/run` installs both from Debian).
pub fn proxy_binary(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is not installed: .ci/run installs it (apt-get install {name})"
        );
        // Straight to the process's stderr: libtest would swallow
        // `eprintln!` from a passing test.
        use std::io::Write as _;
        let test = std::thread::current().name().unwrap_or("?").to_owned();
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n{test}: SKIPPED: {name} is not installed (apt-get install {name}); this test did not run\n"
        );
    }
    found
}

/// A loopback port nothing listens on now (another process may bind it
/// before the caller does: see [`start_on_a_free_port`]).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback address where every connection is refused for as long as
/// the returned socket lives: it holds the port, bound and never
/// listening, so no other test's server can take it meanwhile.
pub fn refusing_address() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let address = socket.local_addr().unwrap();
    (socket, address)
}

/// Starts an outside server on a loopback port found free and waits until
/// the one answering there is that server, as `ours(port)` tells: the
/// process and its port.
///
/// `spawn(port)` starts the process and names its log. A port found free
/// may be bound by another test's server before this one binds it: then
/// the process exits, unable to bind, and this tries another port. Hence
/// `ours` and not a bare connect, which the other server would answer.
pub fn start_on_a_free_port(
    mut spawn: impl FnMut(u16) -> (tokio::process::Child, std::path::PathBuf),
    ours: impl Fn(u16) -> bool,
) -> (tokio::process::Child, u16) {
    use std::ops::ControlFlow::{Break, Continue};
    let every = std::time::Duration::from_millis(50);
    let mut exits = Vec::new();
    for _ in 0..5 {
        let port = free_port();
        let (mut process, log) = spawn(port);
        let ready = poll_outside(std::time::Duration::from_secs(10), every, || {
            if ours(port) {
                return Break(Ok(()));
            }
            match process.try_wait() {
                Ok(Some(status)) => Break(Err(format!(
                    "port {port}: the process exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ))),
                _ => Continue(()),
            }
        });
        match ready {
            Some(Ok(())) => return (process, port),
            Some(Err(exit)) => exits.push(exit),
            None => panic!(
                "port {port}: not serving within 10 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    }
    panic!("the process never started: {}", exits.join("\n"));
}

/// Whether 127.0.0.1:`port` completes a TLS handshake with a certificate
/// for `localhost` that chains to `pki`'s CA: a server of this test's, as
/// no other test's server holds a certificate from this CA.
pub fn serves_tls_from(pki: &TestPki, port: u16) -> bool {
    use std::time::Duration;
    let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(2)));
    let config = std::sync::Arc::new(pki.client_config(None).unwrap());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = rustls::ClientConnection::new(config, name).unwrap();
    while tls.is_handshaking() {
        if tls.complete_io(&mut tcp).is_err() {
            return false;
        }
    }
    true
}

/// Asks `ready` every `every` until it breaks, for at most `limit`: `None`
/// if it never did. For an outside process (`redis-server`, nginx,
/// HAProxy, another test binary's npm install) that this process can
/// neither hurry nor hear from. It is the one place where the tests wait
/// in real time: such a process runs on the machine's clock, which no test
/// can advance, and says nothing when it is ready. (It blocks the thread:
/// only for setting up, before the test's own tasks run.)
pub fn poll_outside<T>(
    limit: std::time::Duration,
    every: std::time::Duration,
    mut ready: impl FnMut() -> std::ops::ControlFlow<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let std::ops::ControlFlow::Break(done) = ready() {
            return Some(done);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// `text` with every byte but the unreserved ones percent-escaped, as
/// nginx's `$ssl_client_escaped_cert` writes a PEM.
pub fn nginx_escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Moves tokio's clock `by` ahead at once. The crate reads the time
/// through tokio's clock (monotonic and wall clock alike), so a test waits
/// for an expiry, a backoff or a cooldown with this, not in real time.
/// In a test that runs with time paused (`start_paused = true`) the clock
/// stays paused; otherwise it is paused for the jump and runs on after it,
/// from the new time, so the real I/O that follows is not cut short by
/// timers jumping ahead. Needs a current-thread runtime (a plain
/// `#[tokio::test]`).
pub async fn advance(by: std::time::Duration) {
    if paused() {
        tokio::time::advance(by).await;
    } else {
        tokio::time::pause();
        tokio::time::advance(by).await;
        tokio::time::resume();
    }
}

/// Whether tokio's clock is paused: it does not move while the real one
/// does (two microseconds, spun, not slept).
fn paused() -> bool {
    let before = tokio::time::Instant::now();
    let real = std::time::Instant::now();
    while real.elapsed() < std::time::Duration::from_micros(2) {
        std::hint::spin_loop();
    }
    tokio::time::Instant::now() == before
}

/// Waits until `done()` holds, letting the runtime's other tasks run and
/// tokio's clock move on in 10 ms steps (paused, so no step takes real
/// time); panics once both tokio's clock and the real one have moved
/// `limit` without it (real I/O in the tasks it waits for takes real
/// time). For a test whose tasks need time to pass (a refresh, a backoff)
/// before the state it waits for; on a current-thread runtime.
pub async fn until(limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let step = std::time::Duration::from_millis(10);
    let started = std::time::Instant::now();
    let mut waited = std::time::Duration::ZERO;
    while !done() {
        assert!(
            waited < limit || started.elapsed() < limit,
            "still not done after {limit:?}"
        );
        advance(step).await;
        waited += step;
    }
}

/// What a test's callers saw, in order, and a bell rung at each entry: a
/// test waits for what it expects (or for anything else that changes while
/// the callers go on) by waking at each entry, not by polling on a timer.
#[derive(Clone, Default)]
pub struct Seen {
    entries: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    bell: std::sync::Arc<tokio::sync::Notify>,
}

impl Seen {
    /// Records `entry` and wakes whoever waits.
    pub fn push(&self, entry: String) {
        self.entries.lock().unwrap().push(entry);
        self.bell.notify_waiters();
    }

    /// Everything seen so far.
    pub fn entries(&self) -> Vec<String> {
        self.entries.lock().unwrap().clone()
    }

    /// How many entries so far.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }

    /// Whether `entry` was seen.
    pub fn contains(&self, entry: &str) -> bool {
        self.entries.lock().unwrap().iter().any(|e| e == entry)
    }

    /// Waits until `done()` holds, checking it at each new entry; false if
    /// ten seconds pass without it.
    pub async fn until(&self, done: impl FnMut() -> bool) -> bool {
        until_rung(&self.bell, done).await
    }
}

/// Waits until `done()` holds, checking it each time `bell` is rung
/// (`notify_waiters`); false if ten seconds pass without it.
pub async fn until_rung(bell: &tokio::sync::Notify, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rung = bell.notified();
        if done() {
            return true;
        }
        if tokio::time::timeout_at(deadline, rung).await.is_err() {
            return done();
        }
    }
}

/// The claims of a JWT, read without verifying it: what a test asserts a
/// token says.
pub fn unverified_claims(token: &str) -> serde_json::Value {
    let jws = tower_token_binding::proof::jws::CompactJws::parse(token).expect("a JWT");
    serde_json::Value::Object(jws.into_claims())
}

/// The header of a JWT, read without verifying it.
pub fn unverified_header(token: &str) -> serde_json::Value {
    let jws = tower_token_binding::proof::jws::CompactJws::parse(token).expect("a JWT");
    serde_json::Value::Object(jws.header().clone())
}
