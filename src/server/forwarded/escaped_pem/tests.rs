//! The encodings nginx, AWS ALB and Traefik send, made from real
//! certificates, and what is refused.

use proptest::prelude::*;
use rustls_pki_types::pem::PemObject;

use super::*;
use crate::Thumbprint;

const CERT: &str = include_str!("../../../../tests/data/client.pem");
const X5T: &str = include_str!("../../../../tests/data/client.x5t-s256");

fn thumbprint() -> Thumbprint {
    X5T.trim().parse().unwrap()
}

/// A second certificate for chains: the test CA's.
fn other_pem() -> String {
    include_str!("../../../../tests/data/ca.pem").to_owned()
}

fn der() -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap()
}

/// Escapes every byte but `keep` and the unreserved characters, as nginx's
/// `$ssl_client_escaped_cert` (keep nothing) and AWS ALB (keep `+=/`) do.
fn escape(text: &str, keep: &[u8]) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(in crate::server::forwarded) fn nginx(pem: &str) -> String {
    escape(pem, b"")
}

fn alb(pem: &str) -> String {
    escape(pem, b"+=/")
}

/// Traefik: the base64 body without armour or line breaks, escaped as Go's
/// `url.QueryEscape` does.
fn traefik(pem: &str) -> String {
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    escape(&body, b"")
}

fn parsed(value: &str) -> Option<Thumbprint> {
    parse_escaped_pem(value).unwrap().map(|p| p.thumbprint())
}

#[test]
fn each_products_encoding_gives_the_leaf() {
    let chain = format!("{CERT}{}", other_pem());
    let cases = [
        ("nginx", nginx(CERT)),
        ("ingress-nginx", nginx(CERT)),
        ("AWS ALB leaf", alb(CERT)),
        ("AWS ALB chain", alb(&chain)),
        ("nginx, a chain", nginx(&chain)),
        ("Traefik", traefik(CERT)),
        (
            "Traefik, a chain",
            format!("{},{}", traefik(CERT), traefik(&other_pem())),
        ),
        ("spaces around", format!(" \t{}\t ", nginx(CERT))),
        ("lowercase escapes", nginx(CERT).replace("%0A", "%0a")),
        ("CRLF line breaks", nginx(&CERT.replace('\n', "\r\n"))),
        ("no final line break", nginx(CERT.trim_end())),
    ];
    for (name, value) in cases {
        assert_eq!(parsed(&value), Some(thumbprint()), "{name}");
    }
    // The chain's other certificate is not the one taken.
    assert_eq!(
        parsed(&alb(&format!("{}{CERT}", other_pem()))).map(|t| t == thumbprint()),
        Some(false)
    );
    assert_eq!(
        parse_escaped_pem(nginx(CERT))
            .unwrap()
            .unwrap()
            .certificate(),
        Some(&der())
    );
}

#[test]
fn an_empty_value_is_no_certificate() {
    assert_eq!(parsed(""), None);
    assert_eq!(parsed("  \t "), None);
    let mut headers = HeaderMap::new();
    assert!(
        escaped_pem_from_headers(&headers, &NGINX)
            .unwrap()
            .is_none()
    );
    headers.insert(&NGINX, http::HeaderValue::from_static(""));
    assert!(
        escaped_pem_from_headers(&headers, &NGINX)
            .unwrap()
            .is_none()
    );
}

#[test]
fn malformed_values_are_refused_with_a_reason() {
    use EscapedPemErrorKind as K;
    let good = nginx(CERT);
    let truncated = &good[..good.find("-----END").unwrap()];
    let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
    let cases = [
        (good.replace("%0A", "%250A"), K::DoubleEscaped),
        (nginx(&good), K::DoubleEscaped),
        (truncated.to_owned(), K::NotPem),
        (traefik(&CERT[..128]), K::NotCertificate),
        (format!("{good}%"), K::InvalidEscape),
        (format!("{good}%0"), K::InvalidEscape),
        (format!("{good}%zz"), K::InvalidEscape),
        (good.replace("%0A", "\n"), K::InvalidCharacter),
        (good.replace("%20", " "), K::InvalidCharacter),
        (format!("\"{good}\""), K::InvalidCharacter),
        (format!("{good};by=proxy"), K::InvalidCharacter),
        (good.replace("%0A", "%3C"), K::NotPem),
        (nginx(key), K::NotPem),
        (nginx(&format!("{CERT}{key}")), K::NotPem),
        (nginx(&format!("junk\n{CERT}")), K::InvalidBase64),
        (format!("{good},"), K::NotPem),
        (format!(",{good}"), K::NotPem),
        (format!("{},,{}", traefik(CERT), traefik(CERT)), K::NotPem),
        ("AAAA".to_owned(), K::NotCertificate),
        ("A%2BB".to_owned(), K::InvalidBase64),
        (nginx(&CERT.replace("MII", "MIJ")), K::NotCertificate),
        ("a".repeat(MAX_ESCAPED_PEM_LENGTH + 1), K::TooLong),
    ];
    for (value, expected) in cases {
        let error = parse_escaped_pem(&value).unwrap_err();
        assert_eq!(error.kind(), expected, "{value:.80}");
        // The error never holds the value.
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("MII"), "{shown}");
    }
    // Bytes outside ASCII.
    assert_eq!(
        parse_escaped_pem(b"\xff\xfe").unwrap_err().kind(),
        K::InvalidCharacter
    );
    // Two headers.
    let mut headers = HeaderMap::new();
    headers.append(&NGINX, good.parse().unwrap());
    headers.append(&NGINX, good.parse().unwrap());
    assert_eq!(
        escaped_pem_from_headers(&headers, &NGINX)
            .unwrap_err()
            .kind(),
        K::MultipleValues
    );
}

#[test]
fn errors_say_why() {
    let error = parse_escaped_pem("%").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("malformed URL-escaped PEM header: a '%' is not followed"),
        "{error}"
    );
    let error = parse_escaped_pem("AAAA").unwrap_err();
    assert!(std::error::Error::source(&error).is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(128)
    ))]

    /// Each byte that may be escaped is escaped or not, in any case: the
    /// leaf reads back the same.
    #[test]
    fn any_escaping_reads_back(choices in proptest::collection::vec(0u8..3, CERT.len())) {
        let value: String = CERT
            .bytes()
            .zip(choices)
            .map(|(b, choice)| {
                let must = !(b.is_ascii_alphanumeric() || b"+/=-".contains(&b));
                match (must, choice) {
                    (false, 0) => char::from(b).to_string(),
                    (_, 1) => format!("%{b:02x}"),
                    _ => format!("%{b:02X}"),
                }
            })
            .collect();
        prop_assert_eq!(parsed(&value), Some(thumbprint()));
    }

    /// Any bytes: an answer, never a panic.
    #[test]
    fn any_bytes_get_an_answer(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_escaped_pem(&bytes);
    }
}
