//! Loading client identities: the formats that work and the errors that don't.

use std::path::PathBuf;

use base64::Engine as _;
use tower_token_binding::{ClientIdentity, IdentityErrorKind as Kind, Thumbprint};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap()
}

fn expected(name: &str) -> Thumbprint {
    String::from_utf8(data(&format!("{name}.x5t-s256")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn loads_every_supported_key_format() {
    for (cert, key, name) in [
        ("client.pem", "client-pkcs8.key", "client"),
        ("client.pem", "client-sec1.key", "client"),
        ("rsa.pem", "rsa-pkcs1.key", "rsa"),
        ("rsa.pem", "rsa-pkcs8.key", "rsa"),
        ("leaf.pem", "leaf.key", "leaf"),
    ] {
        let identity = ClientIdentity::from_pem_files(path(cert), path(key))
            .unwrap_or_else(|e| panic!("{cert} + {key}: {e}"));
        assert_eq!(identity.thumbprint(), expected(name), "{cert} + {key}");
        assert_eq!(identity.chain().len(), 1);
        let from_bytes = ClientIdentity::from_pem(data(cert), data(key)).unwrap();
        assert_eq!(from_bytes.thumbprint(), identity.thumbprint());
    }
}

#[test]
fn the_leaf_is_the_first_certificate_of_a_chain() {
    let identity = ClientIdentity::from_pem_files(path("chain.pem"), path("leaf.key")).unwrap();
    assert_eq!(identity.chain().len(), 2);
    assert_eq!(identity.thumbprint(), expected("leaf"));
    assert_eq!(
        Thumbprint::from_certificate(identity.leaf()),
        expected("leaf")
    );
}

#[test]
fn a_combined_file_can_be_passed_as_both() {
    let mut combined = data("client.pem");
    combined.extend(data("client-pkcs8.key"));
    let identity = ClientIdentity::from_pem(&combined, &combined).unwrap();
    assert_eq!(identity.thumbprint(), expected("client"));
}

#[test]
fn a_missing_file_names_the_file() {
    let err =
        ClientIdentity::from_pem_files(path("absent.pem"), path("client-pkcs8.key")).unwrap_err();
    assert_eq!(err.kind(), Kind::Io);
    assert_eq!(err.path(), Some(path("absent.pem").as_path()));
    let msg = err.to_string();
    assert!(
        msg.contains("absent.pem") && msg.contains("cannot read"),
        "{msg}"
    );
    assert!(std::error::Error::source(&err).is_some());

    let err = ClientIdentity::from_pem_files(path("client.pem"), path("absent.key")).unwrap_err();
    assert_eq!(err.kind(), Kind::Io);
    assert!(err.to_string().contains("absent.key"), "{err}");
}

#[test]
fn no_certificate() {
    // A key file where the certificate should be.
    let err = ClientIdentity::from_pem_files(path("client-pkcs8.key"), path("client-pkcs8.key"))
        .unwrap_err();
    assert_eq!(err.kind(), Kind::NoCertificate);
    let msg = err.to_string();
    assert!(
        msg.contains("client-pkcs8.key") && msg.contains("no certificate"),
        "{msg}"
    );

    let err = ClientIdentity::from_pem(b"", data("client-pkcs8.key")).unwrap_err();
    assert_eq!(err.kind(), Kind::NoCertificate);
    let err = ClientIdentity::from_der(
        Vec::new(),
        rustls_pki_types::PrivateKeyDer::Pkcs8(Vec::new().into()),
    )
    .unwrap_err();
    assert_eq!(err.kind(), Kind::NoCertificate);
}

#[test]
fn no_private_key() {
    let err = ClientIdentity::from_pem_files(path("client.pem"), path("client.pem")).unwrap_err();
    assert_eq!(err.kind(), Kind::NoPrivateKey);
    let msg = err.to_string();
    assert!(
        msg.contains("client.pem") && msg.contains("no private key"),
        "{msg}"
    );
}

#[test]
fn a_key_that_does_not_belong_to_the_certificate() {
    for (cert, key) in [
        ("client.pem", "other.key"),
        ("client.pem", "rsa-pkcs8.key"),
        ("rsa.pem", "client-sec1.key"),
        ("leaf.pem", "client-pkcs8.key"),
    ] {
        let err = ClientIdentity::from_pem_files(path(cert), path(key)).unwrap_err();
        assert_eq!(err.kind(), Kind::KeyMismatch, "{cert} + {key}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(key) && msg.contains("does not belong to the certificate"),
            "{msg}"
        );
    }
}

#[test]
fn an_encrypted_key_is_refused_clearly() {
    let err = ClientIdentity::from_pem_files(path("client.pem"), path("client-encrypted.key"))
        .unwrap_err();
    assert_eq!(err.kind(), Kind::EncryptedKey);
    assert!(err.to_string().contains("encrypted"), "{err}");
}

#[test]
fn more_than_one_key_is_refused() {
    let mut two = data("client-pkcs8.key");
    two.extend(data("other.key"));
    let err = ClientIdentity::from_pem(data("client.pem"), &two).unwrap_err();
    assert_eq!(err.kind(), Kind::MultipleKeys);
}

#[test]
fn malformed_pem_is_an_error_not_a_panic() {
    let cert = data("client.pem");
    let truncated = &cert[..cert.len() / 2];
    let err = ClientIdentity::from_pem(truncated, data("client-pkcs8.key")).unwrap_err();
    assert_eq!(err.kind(), Kind::MalformedPem, "{err}");

    let garbled = String::from_utf8(cert.clone())
        .unwrap()
        .replacen("MII", "!!!", 1);
    let err = ClientIdentity::from_pem(garbled, data("client-pkcs8.key")).unwrap_err();
    assert_eq!(err.kind(), Kind::MalformedPem, "{err}");

    // A PEM section that is not DER of a certificate.
    let fake = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let err = ClientIdentity::from_pem(fake, data("client-pkcs8.key")).unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidCertificate, "{err}");

    // A key section that is not a key.
    let fake = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let err = ClientIdentity::from_pem(data("client.pem"), fake).unwrap_err();
    assert_eq!(err.kind(), Kind::UnsupportedKey, "{err}");
}

#[test]
fn debug_output_holds_no_key_material() {
    for (cert, key) in [
        ("client.pem", "client-pkcs8.key"),
        ("client.pem", "client-sec1.key"),
        ("rsa.pem", "rsa-pkcs1.key"),
    ] {
        let identity = ClientIdentity::from_pem_files(path(cert), path(key)).unwrap();
        let debug = format!("{identity:?} {identity:#?}");
        assert!(
            debug.contains(&identity.thumbprint().to_string()),
            "{debug}"
        );
        assert!(debug.contains("redacted"), "{debug}");

        let key_pem = String::from_utf8(data(key)).unwrap();
        let body: String = key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(&body)
            .unwrap();
        // No line of the PEM, no run of the DER in any usual rendering.
        for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!debug.contains(&line[..16.min(line.len())]), "{debug}");
        }
        let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
        for window in hex.as_bytes().chunks(16) {
            assert!(!debug.contains(std::str::from_utf8(window).unwrap()));
        }
        let bytes_debug = format!("{:?}", &der[..8]);
        assert!(
            !debug.contains(bytes_debug.trim_matches(['[', ']'])),
            "{debug}"
        );

        // Errors carry no key material either.
        let err = ClientIdentity::from_pem(data("client.pem"), data("other.key")).unwrap_err();
        let text = format!("{err:?} {err}");
        let other = String::from_utf8(data("other.key")).unwrap();
        for line in other.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "{text}");
        }
    }
}

#[test]
fn clones_share_the_loaded_identity() {
    let identity =
        ClientIdentity::from_pem_files(path("client.pem"), path("client-pkcs8.key")).unwrap();
    let clone = identity.clone();
    assert!(std::sync::Arc::ptr_eq(
        identity.certified_key(),
        clone.certified_key()
    ));
}

#[test]
fn root_stores_from_pem_files() {
    use tower_token_binding::identity::root_store_from_pem_file;
    assert_eq!(
        root_store_from_pem_file(path("chain.pem")).unwrap().len(),
        2
    );
    assert_eq!(root_store_from_pem_file(path("ca.pem")).unwrap().len(), 1);
    let err = root_store_from_pem_file(path("client-pkcs8.key")).unwrap_err();
    assert_eq!(err.kind(), Kind::NoCertificate);
    assert!(err.to_string().contains("client-pkcs8.key"), "{err}");
    let err = root_store_from_pem_file(path("absent.pem")).unwrap_err();
    assert_eq!(err.kind(), Kind::Io);
}
