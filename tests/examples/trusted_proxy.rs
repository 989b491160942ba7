//! `examples/resource_server.rs` behind a proxy, as a separate process:
//! `--forwarded xfcc|client-cert` with the `--trusted-proxy` allow-list.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use std::process::Stdio;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::Command;
use tower_token_binding::Thumbprint;
use tower_token_binding::test_util::{TestCert, TestIssuer, TestPki};

type Plain = Client<HttpConnector, Full<Bytes>>;

struct Setup {
    _dir: tempfile::TempDir,
    issuer: TestIssuer,
    jwks: String,
    client_cert: TestCert,
    other: TestCert,
}

async fn setup() -> Setup {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    Setup {
        jwks: jwks.to_str().unwrap().to_owned(),
        _dir: dir,
        issuer,
        client_cert: TestPki::self_signed_client("svc.example").unwrap(),
        other: TestPki::self_signed_client("other.example").unwrap(),
    }
}

impl Setup {
    /// The example's arguments, with `more`.
    fn args<'a>(&'a self, more: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--issuer",
            self.issuer.issuer(),
            "--audience",
            self.issuer.audience(),
            "--jwks-file",
            &self.jwks,
        ];
        args.extend_from_slice(more);
        args
    }

    fn token(&self) -> String {
        let thumbprint = Thumbprint::from_certificate(self.client_cert.cert());
        let claims = self.issuer.claims("svc", Some(thumbprint));
        self.issuer.sign(&claims).unwrap()
    }
}

fn hash(cert: &TestCert) -> String {
    Thumbprint::from_certificate(cert.cert())
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `GET /whoami` with the token and these headers; the status.
async fn status(client: &Plain, url: &str, token: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut request = Request::get(format!("{url}/whoami"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    client.request(request).await.unwrap().status()
}

fn plain() -> Plain {
    Client::builder(TokioExecutor::new()).build_http()
}

#[tokio::test]
async fn xfcc_from_a_trusted_network() {
    let setup = setup().await;
    let args = setup.args(&["--forwarded", "xfcc", "--trusted-proxy", "127.0.0.1/32"]);
    let (mut child, url) = support::spawn_announcing("resource_server", &args).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let token = setup.token();
    let client = plain();
    let xfcc = "x-forwarded-client-cert";
    let mine = format!(
        r#"By=spiffe://proxy;Hash={};Subject="CN=svc,O=\"Example, Inc.\"";URI="#,
        hash(&setup.client_cert)
    );
    let theirs = format!("Hash={}", hash(&setup.other));

    assert_eq!(
        status(&client, &url, &token, &[(xfcc, &mine)]).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&client, &url, &token, &[(xfcc, &theirs)]).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&client, &url, &token, &[]).await,
        StatusCode::UNAUTHORIZED
    );
    for bad in ["Hash=abc", "Subject=\"open", "By=spiffe://proxy"] {
        assert_eq!(
            status(&client, &url, &token, &[(xfcc, bad)]).await,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    // Two elements where one is expected: no certificate.
    assert_eq!(
        status(
            &client,
            &url,
            &token,
            &[(xfcc, &format!("{mine},{theirs}"))]
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    // RFC 9440's header means nothing in XFCC mode.
    let client_cert = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(setup.client_cert.cert())
    );
    assert_eq!(
        status(&client, &url, &token, &[("client-cert", &client_cert)]).await,
        StatusCode::UNAUTHORIZED
    );
    child.kill().await.unwrap();

    // With --xfcc-element last, the nearest proxy's element is taken.
    let args = setup.args(&[
        "--forwarded",
        "xfcc",
        "--trusted-proxy",
        "10.0.0.0/8",
        "--trusted-proxy",
        "127.0.0.0/8",
        "--xfcc-element",
        "last",
    ]);
    let (mut child, url) = support::spawn_announcing("resource_server", &args).await;
    let two = format!("{theirs},{mine}");
    assert_eq!(
        status(&client, &url, &token, &[(xfcc, &two)]).await,
        StatusCode::OK
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_header_from_elsewhere_is_ignored_and_logged() {
    let setup = setup().await;
    let args = setup.args(&["--forwarded", "xfcc", "--trusted-proxy", "10.0.0.0/8"]);
    let mut child = Command::new(support::example_binary("resource_server"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let url = line.strip_prefix("listening on ").unwrap().to_owned();

    let value = format!("Hash={}", hash(&setup.client_cert));
    let got = status(
        &plain(),
        &url,
        &setup.token(),
        &[("x-forwarded-client-cert", &value)],
    )
    .await;
    assert_eq!(got, StatusCode::UNAUTHORIZED, "no certificate");

    child.kill().await.unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.lines().any(|l| l.contains("WARN")
            && l.contains("not a trusted proxy")
            && l.contains("127.0.0.1")),
        "{stderr}"
    );
    assert!(!stderr.contains(&hash(&setup.client_cert)), "{stderr}");
}

#[tokio::test]
async fn client_cert_mode_and_trusting_any_peer() {
    let setup = setup().await;
    let token = setup.token();
    let value = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(setup.client_cert.cert())
    );
    for (more, expected) in [
        (
            &[
                "--forwarded",
                "client-cert",
                "--trusted-proxy",
                "::1/128",
                "--trusted-proxy",
                "127.0.0.1",
            ][..],
            StatusCode::OK,
        ),
        (
            &["--forwarded", "client-cert", "--trust-any-peer"],
            StatusCode::OK,
        ),
        // Several networks after one flag, or comma-separated.
        (
            &[
                "--forwarded",
                "client-cert",
                "--trusted-proxy",
                "10.0.0.0/8",
                "127.0.0.1/32",
            ],
            StatusCode::OK,
        ),
        (
            &[
                "--trusted-proxy",
                "10.0.0.0/8,127.0.0.0/8",
                "--forwarded",
                "client-cert",
            ],
            StatusCode::OK,
        ),
        (
            &[
                "--trust-client-cert-header",
                "--trusted-proxy",
                "192.0.2.0/24",
            ],
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let (mut child, url) =
            support::spawn_announcing("resource_server", &setup.args(more)).await;
        let got = status(&plain(), &url, &token, &[("client-cert", &value)]).await;
        assert_eq!(got, expected, "{more:?}");
        child.kill().await.unwrap();
    }
}

/// Runs the example with `args`, expecting it to fail at once; its stderr.
async fn refused(args: &[&str]) -> String {
    let output = Command::new(support::example_binary("resource_server"))
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn the_forwarded_mode_needs_its_allow_list() {
    let base = [
        "--listen",
        "127.0.0.1:0",
        "--issuer",
        "https://x",
        "--audience",
        "y",
        "--jwks-file",
        "/nonexistent.json",
    ];
    let with = |more: &[&'static str]| [&base[..], more].concat();
    let cases: [(&[&str], &str); 15] = [
        (
            &["--forwarded", "xfcc"],
            "--forwarded needs --trusted-proxy",
        ),
        (
            &["--forwarded", "xfcc", "--trusted-proxy"],
            "--trusted-proxy needs a value",
        ),
        (
            &["--trust-client-cert-header"],
            "--forwarded needs --trusted-proxy",
        ),
        (
            &["--forwarded", "xfcc", "--trusted-proxy", "10.1.0.0/8"],
            "bits set past the prefix",
        ),
        (
            &["--forwarded", "xfcc", "--trusted-proxy", "proxy.internal"],
            "invalid IP network",
        ),
        (
            &["--forwarded", "envoy", "--trust-any-peer"],
            "--forwarded takes xfcc, client-cert or escaped-pem",
        ),
        (
            &["--forwarded", "escaped-pem", "--trust-any-peer"],
            "--forwarded escaped-pem needs --forwarded-header",
        ),
        (
            &[
                "--forwarded",
                "xfcc",
                "--forwarded-header",
                "nginx",
                "--trust-any-peer",
            ],
            "--forwarded-header is for --forwarded escaped-pem",
        ),
        (
            &[
                "--forwarded",
                "escaped-pem",
                "--forwarded-header",
                "x ssl",
                "--trust-any-peer",
            ],
            "is not a header name",
        ),
        (
            &["--forwarded", "escaped-pem", "--forwarded-header", "nginx"],
            "--forwarded needs --trusted-proxy",
        ),
        (
            &[
                "--tls-cert",
                "a.pem",
                "--tls-key",
                "a.key",
                "--forwarded-header",
                "nginx",
            ],
            "work with --forwarded only",
        ),
        (
            &[
                "--forwarded",
                "xfcc",
                "--trust-any-peer",
                "--trusted-proxy",
                "10.0.0.0/8",
            ],
            "--trust-any-peer cannot be combined",
        ),
        (
            &[
                "--forwarded",
                "client-cert",
                "--trust-any-peer",
                "--xfcc-element",
                "last",
            ],
            "--xfcc-element is for --forwarded xfcc",
        ),
        (
            &[
                "--forwarded",
                "xfcc",
                "--trust-any-peer",
                "--xfcc-element",
                "middle",
            ],
            "--xfcc-element takes only, first or last",
        ),
        (
            &[
                "--tls-cert",
                "a.pem",
                "--tls-key",
                "a.key",
                "--trusted-proxy",
                "10.0.0.0/8",
            ],
            "work with --forwarded only",
        ),
    ];
    for (more, message) in cases {
        let stderr = refused(&with(more)).await;
        assert!(stderr.contains(message), "{more:?}: {stderr}");
    }
    // With its allow-list, it gets as far as the missing key file.
    let stderr = refused(&with(&[
        "--forwarded",
        "xfcc",
        "--trusted-proxy",
        "10.0.0.0/8",
    ]))
    .await;
    assert!(stderr.contains("/nonexistent.json"), "{stderr}");
}
