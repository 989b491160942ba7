//! Drives `examples/explain.rs` as a separate process, the way an operator
//! would: tokens from the test issuer, its keys found through its metadata.
#![cfg(feature = "test-util")]

use crate::support;
use std::path::Path;
use std::process::Stdio;

use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;
use tower_token_binding::test_util::{TestIssuer, TestPki};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The line of the check named `check`: `OUTCOME CHECK WHY`.
    fn line(&self, check: &str) -> &str {
        self.stdout
            .lines()
            .find(|line| {
                let mut words = line.split_whitespace();
                let outcome = words.next().unwrap_or_default();
                ["PASS", "FAIL", "SKIPPED"].contains(&outcome) && words.next() == Some(check)
            })
            .unwrap_or_else(|| panic!("no {check} check in\n{}", self.stdout))
    }

    /// The outcome (`PASS`, `FAIL`, `SKIPPED`) of the check named `check`.
    fn outcome(&self, check: &str) -> &str {
        self.line(check).split_whitespace().next().unwrap()
    }

    fn assert_no_panic(&self) {
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
    }
}

/// Runs the example with `args`, `stdin` written to its standard input.
async fn explain(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(support::example_binary("explain"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // The example stops reading after its limit: a broken pipe is fine.
        let _ = pipe.write_all(text.as_bytes()).await;
        drop(pipe);
    }
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("explain finishes")
        .unwrap();
    let run = Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    run.assert_no_panic();
    run
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn assert_not_shown(run: &Run, token: &str) {
    let signature = token.rsplit('.').next().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(token), "the token is shown:\n{text}");
        assert!(!text.contains(signature), "the signature is shown:\n{text}");
        assert!(!text.contains(payload), "the payload is shown:\n{text}");
    }
}

#[tokio::test]
async fn a_certificate_bound_token_checked_against_the_issuer() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let client = pki.client_cert("svc.example").unwrap();
    let cert = write(dir.path(), "svc.pem", client.cert_pem());
    let thief = pki.client_cert("thief.example").unwrap();
    let other = write(dir.path(), "thief.pem", thief.cert_pem());
    let token = issuer
        .sign(&issuer.claims("svc", Some(client.thumbprint())))
        .unwrap();
    let with_cert = |cert: &str| {
        vec![
            "-".to_owned(),
            "--cert".to_owned(),
            cert.to_owned(),
            "--issuer".to_owned(),
            issuer.issuer().to_owned(),
            "--audience".to_owned(),
            issuer.audience().to_owned(),
            "--issuer-ca".to_owned(),
            ca.clone(),
        ]
    };

    // The token on stdin, as it would be pasted.
    let args = with_cert(&cert);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = explain(&args, Some(&format!("{token}\n"))).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outcome("signature"), "PASS");
    assert_eq!(run.outcome("validator"), "PASS");
    assert_eq!(run.outcome("binding"), "PASS");
    for check in ["members", "alg", "shape", "exp", "iat", "iss", "aud", "cnf"] {
        assert_eq!(run.outcome(check), "PASS", "{check}");
    }
    assert!(
        run.stdout
            .contains(&format!("cnf.x5t#S256 {}", client.thumbprint())),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the shape fits: rfc9068"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("client \"svc\""), "{}", run.stdout);
    assert_not_shown(&run, &token);
    println!("{}", run.stdout);

    // Another client's certificate.
    let args = with_cert(&other);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args[0] = &token;
    let run = explain(&args, None).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outcome("binding"), "FAIL");
    assert_eq!(run.outcome("signature"), "PASS");
    assert!(
        run.line("binding")
            .contains(&thief.thumbprint().to_string()),
        "{}",
        run.stdout
    );
    assert_not_shown(&run, &token);

    // Another audience: refused by the aud check and by the validator,
    // after the signature.
    let run = explain(
        &[
            &token,
            "--issuer",
            issuer.issuer(),
            "--audience",
            "https://elsewhere.example",
            "--issuer-ca",
            &ca,
        ],
        None,
    )
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert_eq!(run.outcome("aud"), "FAIL");
    assert_eq!(run.outcome("signature"), "PASS");
    assert_eq!(run.outcome("validator"), "FAIL");
    assert!(
        run.line("validator").contains("WrongAudience"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn an_entra_shaped_token_fits_the_entra_profile() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let client = pki.client_cert("app.example").unwrap();
    let cert = write(dir.path(), "app.pem", client.cert_pem());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "aud": issuer.audience(),
        "iss": issuer.issuer(),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "azp": "00000000-0000-0000-0000-00000000abcd",
        "azpacr": "2",
        "oid": "00000000-0000-0000-0000-000000000001",
        "sub": "00000000-0000-0000-0000-000000000001",
        "tid": "00000000-0000-0000-0000-000000000002",
        "uti": "AbCdEf",
        "ver": "2.0",
        "roles": ["Orders.Read"],
        "cnf": { "x5t#S256": client.thumbprint().to_string() },
    });
    let token = issuer.sign_with_typ(Some("JWT"), &claims).unwrap();
    let args = [
        token.as_str(),
        "--cert",
        &cert,
        "--issuer",
        issuer.issuer(),
        "--audience",
        issuer.audience(),
        "--issuer-ca",
        &ca,
    ];

    // Under the default profile: refused for its shape, before the
    // signature, and the profile that fits is named.
    let run = explain(&args, None).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outcome("shape"), "FAIL");
    assert!(
        run.line("shape").contains("try --token-profile entra"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the shape fits: entra"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "client \"00000000-0000-0000-0000-00000000abcd\"; permissions \"Orders.Read\""
        ),
        "{}",
        run.stdout
    );
    assert_eq!(run.outcome("validator"), "FAIL");
    assert!(
        run.line("validator").contains("WrongType"),
        "{}",
        run.stdout
    );
    assert_eq!(run.outcome("binding"), "PASS");
    assert_not_shown(&run, &token);

    // Under the entra profile: accepted.
    let mut entra = args.to_vec();
    entra.extend(["--token-profile", "entra"]);
    let run = explain(&entra, None).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outcome("shape"), "PASS");
    assert_eq!(run.outcome("signature"), "PASS");
    assert_eq!(run.outcome("validator"), "PASS");
    assert!(
        run.stdout.contains("checks (token profile entra"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn without_an_issuer_the_signature_is_skipped() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let token = issuer.sign(&issuer.claims("svc", None)).unwrap();

    let run = explain(&[&token], None).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outcome("signature"), "SKIPPED");
    assert!(
        run.line("signature").contains("no --issuer"),
        "{}",
        run.stdout
    );
    assert_eq!(run.outcome("iss"), "SKIPPED");
    assert_eq!(run.outcome("aud"), "SKIPPED");
    // Unbound, and no certificate to compare with.
    assert!(run.stdout.contains("nothing: no cnf"), "{}", run.stdout);
    assert_eq!(run.outcome("binding"), "SKIPPED");
    assert_not_shown(&run, &token);

    // A certificate given for an unbound token: the binding fails.
    let dir = tempfile::tempdir().unwrap();
    let cert = pki.client_cert("svc.example").unwrap();
    let cert = write(dir.path(), "svc.pem", cert.cert_pem());
    let run = explain(&[&token, "--cert", &cert], None).await;
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    assert_eq!(run.outcome("binding"), "FAIL");
    // A certificate file that is not there.
    let run = explain(&[&token, "--cert", "/nonexistent.pem"], None).await;
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert!(run.stderr.contains("/nonexistent.pem"), "{}", run.stderr);
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_skip_the_signature() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let token = issuer.sign(&issuer.claims("svc", None)).unwrap();
    issuer.set_down(true);

    let run = explain(
        &[
            &token,
            "--issuer",
            issuer.issuer(),
            "--audience",
            issuer.audience(),
            "--issuer-ca",
            &ca,
        ],
        None,
    )
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.outcome("signature"), "SKIPPED");
    assert!(
        run.line("signature").contains("keys unavailable"),
        "{}",
        run.stdout
    );
    assert_eq!(run.outcome("validator"), "SKIPPED");
    assert_eq!(run.outcome("iss"), "PASS");
}

#[tokio::test]
async fn garbage_and_bad_arguments_are_refused_with_a_message() {
    let run = explain(&["not-a-jwt"], None).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("not a JWT"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    for garbage in [
        "a.b.c",
        "e30.e30",
        "!!!.@@@.###",
        "eyJhbGciOiJFUzI1NiJ9.W10.c2ln",
        "",
        "a.b.c.d.e",
    ] {
        let run = explain(&["-"], Some(garbage)).await;
        assert_eq!(run.code, Some(1), "{garbage:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("explain: "),
            "{garbage:?}: {}",
            run.stderr
        );
    }
    let huge = "a".repeat(100_000);
    let run = explain(&["-"], Some(&huge)).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("more than 65536 bytes"),
        "{}",
        run.stderr
    );

    let run = explain(&["--help"], None).await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.starts_with("usage: explain"), "{}", run.stderr);
    let run = explain(&[], None).await;
    assert_eq!(run.code, Some(2));
    let run = explain(&["x.y.z", "--token-profile", "google"], None).await;
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("rfc9068, entra"), "{}", run.stderr);
    let run = explain(&["x.y.z", "--issuer", "https://issuer.example"], None).await;
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("--issuer needs --audience"),
        "{}",
        run.stderr
    );
}
