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

/// Log lines captured from a `tracing` subscriber, as text.
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Captures events at `level` and above on this thread (the thread of
    /// a `#[tokio::test]` on its current-thread runtime) until the guard
    /// drops.
    pub fn capture(level: tracing::Level) -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let guard = tracing::subscriber::set_default(logs.subscriber(level));
        (logs, guard)
    }

    /// Captures events at `level` and above from every thread of this test
    /// binary, from the first call on (one global subscriber, shared by
    /// the callers): for a test whose events may be emitted where a
    /// thread's own subscriber would miss them.
    pub fn global(level: tracing::Level) -> Logs {
        static GLOBAL: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let logs = Logs::default();
                tracing::subscriber::set_global_default(logs.subscriber(level))
                    .expect("the only global subscriber of this test binary");
                logs
            })
            .clone()
    }

    /// A subscriber writing here, without colours, at `level` and above.
    pub fn subscriber(&self, level: tracing::Level) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::fmt()
            .with_writer(self.clone())
            .with_ansi(false)
            .with_max_level(level)
            .finish()
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Forgets what was captured so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
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

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port` of 127.0.0.1,
/// failing with `log`'s text if `process` exits first.
pub async fn until_listening(
    port: u16,
    process: &mut tokio::process::Child,
    log: &std::path::Path,
) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = process.try_wait() {
            panic!(
                "the process exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
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
