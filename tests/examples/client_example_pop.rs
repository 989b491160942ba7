//! `examples/client.rs --scheme pop` against the test issuer and a resource
//! that checks every signed HTTP request, over loopback TLS.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use crate::support::pop_api;
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

async fn client(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(support::example_binary("client"))
        .args(args)
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn pop_with_a_generated_key_and_with_a_key_file() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", "s3cret")
        .start(&pki)
        .await
        .unwrap();
    let api = pop_api::start_api(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let url = format!("{}/orders?page=1", api.base);
    let base = [
        "--issuer",
        issuer.issuer(),
        "--client-id",
        "svc",
        "--client-secret",
        "s3cret",
        "--ca",
        &ca,
        "--scheme",
        "pop",
    ];

    // A new RSA-2048 key, PS256.
    let args = [&base[..], &["--requests", "10", "--concurrency", "3", &url]].concat();
    let (code, stdout, stderr) = client(&args).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("status=200").count(), 10, "{stdout}");
    assert!(stdout.contains(r#""alg":"PS256""#), "{stdout}");
    assert!(
        stderr.contains("PoP key kid=") && stderr.contains("alg=PS256"),
        "{stderr}"
    );
    assert!(
        stdout
            .trim_end()
            .ends_with("requests=10 ok=10 token_fetches=1"),
        "{stdout}"
    );
    assert_eq!(api.requests.load(Ordering::SeqCst), 10);

    // An ES256 key from a file.
    let key_file = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/client-pkcs8.key");
    let kid = ProofKey::from_pem_file(key_file).unwrap().thumbprint();
    let args = [&base[..], &["--pop-key", key_file, &url]].concat();
    let (code, stdout, stderr) = client(&args).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains(&kid.to_string()), "{stdout}");

    // --pop-key without --scheme pop, and a header word with PoP.
    for args in [
        vec![
            "--token-url",
            "https://as.example/token",
            "--client-id",
            "svc",
            "--client-secret",
            "s",
            "--pop-key",
            key_file,
            &url,
        ],
        [&base[..], &["--header-word", "mtls_pop", &url]].concat(),
    ] {
        let (code, stdout, _) = client(&args).await;
        assert_ne!(code, 0, "{stdout}");
        assert!(!stdout.contains("status="), "{stdout}");
    }
}
