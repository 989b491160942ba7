//! `Thumbprint` against values computed outside this crate.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tower_token_binding::Thumbprint;
use tower_token_binding::thumbprint::ParseThumbprintErrorKind as Kind;

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn leaf(name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(data(name).as_bytes()).unwrap()
}

/// The thumbprints in `tests/data/*.x5t-s256` were computed with
/// `openssl x509 -outform DER | openssl dgst -sha256 -binary | basenc --base64url | tr -d '='`.
#[test]
fn matches_openssl_for_fixed_certificates() {
    for name in ["client", "rsa", "leaf", "ca"] {
        let expected = data(&format!("{name}.x5t-s256"));
        let expected = expected.trim();
        let computed = Thumbprint::from_certificate(&leaf(&format!("{name}.pem")));
        assert_eq!(computed.to_string(), expected, "{name}.pem");
        assert_eq!(expected.parse::<Thumbprint>().unwrap(), computed);
    }
}

#[test]
fn the_chain_does_not_change_the_thumbprint() {
    // chain.pem is leaf.pem followed by ca.pem: the first certificate counts.
    let first = CertificateDer::pem_slice_iter(data("chain.pem").as_bytes())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(
        Thumbprint::from_certificate(&first).to_string(),
        data("leaf.x5t-s256").trim()
    );
}

#[test]
fn other_encodings_of_the_same_certificate_are_not_thumbprints() {
    let good = data("client.x5t-s256").trim().to_owned();
    let kind = |s: &str| s.parse::<Thumbprint>().unwrap_err().kind();

    // The same digest, padded.
    assert_eq!(kind(&format!("{good}=")), Kind::Padding);
    // The same digest in hex, lower and upper case.
    let hex = data("client.sha256-hex").trim().to_owned();
    assert_eq!(kind(&hex), Kind::Hex);
    assert_eq!(kind(&hex.to_uppercase()), Kind::Hex);
    // The same digest in standard base64 (this one has '+' or '/' in it, or
    // else it would equal the base64url form; the fixture was checked for it).
    let standard = good.replace('-', "+").replace('_', "/");
    assert_ne!(standard, good);
    assert_eq!(kind(&standard), Kind::StandardBase64);
    assert_eq!(kind(&format!("{standard}=")), Kind::Padding);
    // The SHA-1 x5t of the certificate, padded and unpadded.
    let sha1 = data("client.x5t-sha1").trim().to_owned();
    assert_eq!(kind(&sha1), Kind::Padding);
    assert_eq!(kind(sha1.trim_end_matches('=')), Kind::Sha1);
    // Whitespace around or inside.
    assert_eq!(kind(&format!("{good}\n")), Kind::Whitespace);
    assert_eq!(
        kind(&format!("{} {}", &good[..20], &good[20..])),
        Kind::Whitespace
    );
}

/// Cross-checks against the `openssl` command on certificates made at run
/// time, when `openssl` is installed.
#[cfg(feature = "test-util")]
#[test]
fn matches_openssl_for_generated_certificates() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    use tower_token_binding::test_util::TestPki;

    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("SKIPPED: openssl is not installed; the fixed vectors still ran");
        return;
    }
    let pki = TestPki::new().unwrap();
    for cert in [
        pki.client_cert("a.example").unwrap(),
        TestPki::self_signed_client("b.example").unwrap(),
        pki.server_cert().unwrap(),
    ] {
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-binary"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(cert.cert()).unwrap();
        let digest = child.wait_with_output().unwrap().stdout;
        assert_eq!(digest.len(), 32);
        let expected = Thumbprint::from_digest(digest.try_into().unwrap());
        assert_eq!(cert.thumbprint(), expected);
        assert_eq!(Thumbprint::from_certificate(cert.cert()), expected);
    }
}
