//! `examples/client.rs` against `examples/resource_server.rs` and the test
//! authorization server, all as separate processes talking over loopback.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use crate::support::dpop_api;
use std::path::Path;

use std::sync::atomic::Ordering;

use tokio::process::Command;
use tower_token_binding::proof::ProofKey;
use tower_token_binding::test_util::{TestIssuer, TestPki};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn client(args: &[&str]) -> Run {
    let output = Command::new(support::example_binary("client"))
        .args(args)
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn fifty_requests_one_token() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = pki.server_cert().unwrap();
    let (cert, key) = server.write_pem_files(dir.path(), "server").unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let (cert, key) = (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
    );
    let (_server, url) = support::spawn_announcing(
        "resource_server",
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--any-client-cert",
            "--issuer",
            issuer.issuer(),
            "--audience",
            issuer.audience(),
            "--issuer-ca",
            &ca,
        ],
    )
    .await;
    let whoami = format!("{url}/whoami");

    let me = pki.client_cert("svc.example").unwrap();
    let (my_cert, my_key) = me.write_pem_files(dir.path(), "client").unwrap();
    let (my_cert, my_key) = (my_cert.to_str().unwrap(), my_key.to_str().unwrap());

    let run = client(&[
        "--issuer",
        issuer.issuer(),
        "--client-id",
        "svc",
        "--cert",
        my_cert,
        "--key",
        my_key,
        "--ca",
        &ca,
        "--requests",
        "50",
        "--concurrency",
        "5",
        &whoami,
    ])
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout.matches("status=200").count(),
        50,
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&me.thumbprint().to_string()),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .trim_end()
            .ends_with("requests=50 ok=50 token_fetches=1"),
        "{}",
        run.stdout
    );
    assert_eq!(issuer.tokens_issued(), 1);

    // Sending bound tokens without the certificate cannot work: refused at
    // start, before any token is asked for.
    let issued = issuer.tokens_issued();
    let run = client(&[
        "--token-url",
        &issuer.token_endpoint(),
        "--client-id",
        "svc",
        "--cert",
        my_cert,
        "--key",
        my_key,
        "--ca",
        &ca,
        "--scheme",
        "bearer",
        "--requests",
        "2",
        &whoami,
    ])
    .await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("status="), "{}", run.stdout);
    assert!(run.stderr.contains("Scheme::Bearer"), "{}", run.stderr);
    assert_eq!(issuer.tokens_issued(), issued);

    // A clear message when the token endpoint cannot be reached.
    let run = client(&[
        "--token-url",
        "https://127.0.0.1:1/token",
        "--client-id",
        "svc",
        "--cert",
        my_cert,
        "--key",
        my_key,
        "--ca",
        &ca,
        &whoami,
    ])
    .await;
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("client: cannot get an access token"),
        "{}",
        run.stderr
    );

    // Bad arguments.
    let run = client(&["--client-id", "svc", &whoami]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("required") || run.stderr.contains("usage"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn dpop_with_a_client_secret_and_a_key_file() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", "s3cret")
        .require_dpop_nonce()
        .start(&pki)
        .await
        .unwrap();
    let api = dpop_api::start_api(&pki, dpop_api::Nonces::Required).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let key_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client-pkcs8.key");
    let jkt = ProofKey::from_pem_file(key_file).unwrap().thumbprint();
    let url = format!("{}/orders?page=1", api.base);

    let run = client(&[
        "--issuer",
        issuer.issuer(),
        "--client-id",
        "svc",
        "--client-secret",
        "s3cret",
        "--ca",
        &ca,
        "--scheme",
        "dpop",
        "--dpop-key",
        key_file,
        "--requests",
        "20",
        "--concurrency",
        "4",
        &url,
    ])
    .await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout.matches("status=200").count(),
        20,
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&jkt.to_string()), "{}", run.stdout);
    assert!(
        run.stdout
            .trim_end()
            .ends_with("requests=20 ok=20 token_fetches=1"),
        "{}",
        run.stdout
    );
    assert_eq!(issuer.dpop_tokens_issued(), 1);
    // Every request carried its own proof (plus at most one retry for the
    // nonce per request in flight when it was learned).
    let requests = api.requests.load(Ordering::SeqCst);
    assert!((21..=24).contains(&requests), "{requests}");

    // --dpop-key without --scheme dpop, and a header word with DPoP.
    for args in [
        &[
            "--token-url",
            "https://as.example/token",
            "--client-id",
            "svc",
            "--client-secret",
            "s",
            "--dpop-key",
            key_file,
            &url,
        ][..],
        &[
            "--token-url",
            "https://as.example/token",
            "--client-id",
            "svc",
            "--client-secret",
            "s",
            "--scheme",
            "dpop",
            "--header-word",
            "mtls_pop",
            &url,
        ][..],
    ] {
        let run = client(args).await;
        assert_ne!(run.code, 0, "{}", run.stdout);
        assert!(!run.stdout.contains("status="), "{}", run.stdout);
    }
}
