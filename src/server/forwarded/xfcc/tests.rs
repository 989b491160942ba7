//! The XFCC parser on Envoy's examples and on malformed headers.

use http::HeaderValue;
use rustls_pki_types::pem::PemObject;

use super::*;

const PEM: &str = include_str!("../../../../tests/data/client.pem");
const X5T: &str = include_str!("../../../../tests/data/client.x5t-s256");
const RSA_PEM: &str = include_str!("../../../../tests/data/rsa.pem");

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn hex(t: Thumbprint) -> String {
    t.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// URL-encoded as Envoy does it.
fn url_pem(pem: &str) -> String {
    let pem = pem.trim_start();
    let start = pem.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = pem.find("-----END CERTIFICATE-----").unwrap() + 25;
    pem[start..end]
        .replace('\n', "%0A")
        .replace(' ', "%20")
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

fn hash() -> String {
    hex(Thumbprint::from_certificate(&der(PEM)))
}

fn kind(value: &str) -> XfccErrorKind {
    match parse_xfcc_header(value) {
        Ok(entries) => panic!("{value:?} was accepted: {entries:?}"),
        Err(e) => e.kind(),
    }
}

#[test]
fn envoy_examples_parse() {
    let expected: Thumbprint = X5T.trim().parse().unwrap();
    let h = hash();
    let cert = url_pem(PEM);
    let value = format!(
        "By=http://frontend.lyft.com;Hash={h};Cert=\"{cert}\";\
         Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client\";\
         URI=http://testclient.lyft.com;DNS=lyft.com;DNS=www.lyft.com"
    );
    let entries = parse_xfcc_header(&value).unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.thumbprint(), expected);
    assert_eq!(e.hash(), Some(expected));
    assert_eq!(e.certificate(), Some(&der(PEM)));
    assert_eq!(e.by(), ["http://frontend.lyft.com"]);
    assert_eq!(
        e.subject(),
        Some("/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client")
    );
    assert_eq!(e.uris(), ["http://testclient.lyft.com"]);
    assert_eq!(e.dns_names(), ["lyft.com", "www.lyft.com"]);
    assert_eq!(e.peer_certificate().certificate(), Some(&der(PEM)));

    // Two elements, Hash only; keys in any case; an empty URI.
    let other = hex(Thumbprint::from_certificate(&der(RSA_PEM)));
    let value = format!("by=a;HASH={h};uri=, By=b;Hash={other};URI=x");
    let entries = parse_xfcc_header(&value).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].thumbprint(), expected);
    assert_eq!(entries[0].uris(), [""]);
    assert!(entries[0].peer_certificate().certificate().is_none());
    assert_eq!(
        entries[1].thumbprint(),
        Thumbprint::from_certificate(&der(RSA_PEM))
    );
    // Upper-case hex is the same digest.
    let entries = parse_xfcc_header(format!("Hash={}", h.to_uppercase())).unwrap();
    assert_eq!(entries[0].thumbprint(), expected);
}

#[test]
fn quoted_values_hold_separators_and_escapes() {
    let h = hash();
    let cases = [
        (r#""CN=a,OU=b""#, "CN=a,OU=b"),
        (r#""CN=a;OU=b=c""#, "CN=a;OU=b=c"),
        (r#""CN=\"quoted\", O=x""#, r#"CN="quoted", O=x"#),
        (r#""CN=a\\""#, r"CN=a\"),
        (r#""CN=a\,b""#, "CN=a,b"),
        (r#""""#, ""),
        ("\"CN=\u{e9}t\u{e9}\"", "CN=\u{e9}t\u{e9}"),
    ];
    for (quoted, subject) in cases {
        for value in [
            format!("Hash={h};Subject={quoted}"),
            format!("Subject={quoted};Hash={h}"),
        ] {
            let entries = parse_xfcc_header(&value).unwrap();
            assert_eq!(entries.len(), 1, "{value}");
            assert_eq!(entries[0].subject(), Some(subject), "{value}");
        }
    }
    // A comma inside quotes does not split elements; one outside does.
    let value = format!(r#"Subject="a,b";Hash={h}, Hash={h};Subject="c;d""#);
    let entries = parse_xfcc_header(&value).unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].subject(), Some("c;d"));
}

#[test]
fn malformed_headers_are_refused_with_a_reason() {
    use XfccErrorKind as K;
    let h = hash();
    let cert = url_pem(PEM);
    let rsa = url_pem(RSA_PEM);
    let cases: Vec<(String, XfccErrorKind)> = vec![
        (String::new(), K::Empty),
        (" \t ".into(), K::Empty),
        (format!("Hash={h},"), K::EmptyElement),
        (format!("Hash={h}, "), K::EmptyElement),
        (format!(",Hash={h}"), K::EmptyElement),
        (format!("Hash={h},,Hash={h}"), K::EmptyElement),
        (format!("Hash={h}, ,Hash={h}"), K::EmptyElement),
        (format!("Hash={h};"), K::MalformedPair),
        (format!("Hash={h};;URI=a"), K::MalformedPair),
        (format!(";Hash={h}"), K::MalformedPair),
        (format!("Hash={h};URI"), K::MalformedPair),
        (format!("Hash={h};=a"), K::MalformedPair),
        (format!("Hash={h};URI,Hash={h}"), K::MalformedPair),
        ("garbage".into(), K::MalformedPair),
        (format!("Hash={h};Foo=bar"), K::UnknownKey),
        (format!("Hashes={h}"), K::UnknownKey),
        (format!("Hash={h};Hash={h}"), K::DuplicateKey),
        (
            format!("Hash={h};Subject=\"a\";Subject=\"a\""),
            K::DuplicateKey,
        ),
        (
            format!("Hash={h};Cert=\"{cert}\";Cert=\"{cert}\""),
            K::DuplicateKey,
        ),
        (
            format!("Hash={h};Chain=\"{cert}\";Chain=\"{cert}\""),
            K::DuplicateKey,
        ),
        (format!("Hash={h};Subject=\"CN=a"), K::UnterminatedQuote),
        (format!("Hash={h};Subject=\"CN=a\\\""), K::UnterminatedQuote),
        (format!("Hash={h};Subject=\"CN=a\\"), K::UnterminatedQuote),
        (format!("Hash={h};Subject=\"a\"b"), K::InvalidCharacter),
        (
            format!("Hash={h};Subject=\"a\" ;URI=b"),
            K::InvalidCharacter,
        ),
        (format!("Hash={h} ;URI=b"), K::InvalidCharacter),
        (format!("Hash={h};URI=a b"), K::InvalidCharacter),
        (format!("Hash={h};URI=a\"b"), K::InvalidCharacter),
        (format!("Hash={h};URI=a\\b"), K::InvalidCharacter),
        (format!("Hash={h};Subject=\"a\x01\""), K::InvalidCharacter),
        (format!("Hash={h};URI=\x7f"), K::InvalidCharacter),
        (format!("Hash={h};Ha sh=1"), K::InvalidCharacter),
        (format!("Hash={h};Subj\u{e9}ct=1"), K::InvalidCharacter),
        ("Hash=".into(), K::InvalidHash),
        (format!("Hash={}", &h[1..]), K::InvalidHash),
        (format!("Hash={h}0"), K::InvalidHash),
        (format!("Hash={}g", &h[1..]), K::InvalidHash),
        (format!("Hash=\"{}\"", X5T.trim()), K::InvalidHash),
        (format!("Hash=+{}", &h[1..]), K::InvalidHash),
        ("Cert=\"\"".into(), K::InvalidCert),
        (
            format!("Cert=\"{}\"", cert.replace("%0A", "%0")),
            K::InvalidCert,
        ),
        (format!("Cert=\"{}%\"", cert), K::InvalidCert),
        (format!("Cert=\"{}%zz\"", cert), K::InvalidCert),
        (format!("Cert=\"{cert}%0A{cert}\""), K::InvalidCert),
        (format!("Cert=\"junk{cert}\""), K::InvalidCert),
        (format!("Cert=\"{cert}junk\""), K::InvalidCert),
        (
            format!("Cert=\"{}\"", cert.replace("CERTIFICATE", "PUBLIC%20KEY")),
            K::InvalidCert,
        ),
        (
            "Cert=\"-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----\"".into(),
            K::NotCertificate,
        ),
        (format!("Hash={h};Cert=\"{rsa}\""), K::HashMismatch),
        (format!("Cert=\"{rsa}\";Hash={h}"), K::HashMismatch),
        ("By=a;URI=b".into(), K::NoCertificate),
        ("Subject=\"CN=a,Hash=b\"".into(), K::NoCertificate),
        (format!("Hash={h},By=a"), K::NoCertificate),
        (format!("Chain=\"{cert}\""), K::NoCertificate),
    ];
    for (value, expected) in cases {
        assert_eq!(kind(&value), expected, "{value:?}");
    }
    // Bytes outside UTF-8 in a value.
    let mut bytes = format!("Hash={h};URI=").into_bytes();
    bytes.push(0xff);
    assert_eq!(
        parse_xfcc_header(&bytes).unwrap_err().kind(),
        K::InvalidCharacter
    );
}

#[test]
fn whitespace_is_allowed_around_elements_only() {
    let h = hash();
    for value in [
        format!("  Hash={h}\t"),
        format!("Hash={h} ,\tHash={h}"),
        format!("Hash={h};Subject=\"a\" , Hash={h};Subject=\"b\""),
    ] {
        let entries = parse_xfcc_header(&value);
        assert!(entries.is_ok(), "{value:?}: {entries:?}");
    }
    // Unquoted Cert, as some proxies send it: allowed (no separator in it).
    let value = format!("Cert={};Hash={h}", url_pem(PEM));
    assert!(parse_xfcc_header(&value).is_ok());
}

fn headers(values: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for value in values {
        map.append(
            X_FORWARDED_CLIENT_CERT,
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn the_configured_element_is_taken() {
    use XfccElement as E;
    let h = hash();
    let other = hex(Thumbprint::from_certificate(&der(RSA_PEM)));
    let first: Thumbprint = X5T.trim().parse().unwrap();
    let last = Thumbprint::from_certificate(&der(RSA_PEM));
    let two = format!("Hash={h},Hash={other}");

    assert!(xfcc_from_headers(&headers(&[]), E::Only).unwrap().is_none());
    for element in [E::Only, E::First, E::Last] {
        let one = xfcc_from_headers(&headers(&[&format!("Hash={h}")]), element);
        assert_eq!(one.unwrap().unwrap().thumbprint(), first);
    }
    let error = xfcc_from_headers(&headers(&[&two]), E::Only).unwrap_err();
    assert_eq!(error.kind(), XfccErrorKind::MultipleElements);
    let pick = |element, values: &[&str]| {
        xfcc_from_headers(&headers(values), element)
            .unwrap()
            .unwrap()
            .thumbprint()
    };
    assert_eq!(pick(E::First, &[&two]), first);
    assert_eq!(pick(E::Last, &[&two]), last);
    // Two header lines are one list.
    let (a, b) = (format!("Hash={h}"), format!("Hash={other}"));
    assert_eq!(pick(E::Last, &[&a, &b]), last);
    assert_eq!(pick(E::First, &[&a, &b]), first);
    let error = xfcc_from_headers(&headers(&[&a, &b]), E::Only).unwrap_err();
    assert_eq!(error.kind(), XfccErrorKind::MultipleElements);
    // Every element is checked, not only the one taken; indices count
    // over header lines.
    let error = xfcc_from_headers(&headers(&[&a, "By=x"]), E::First).unwrap_err();
    assert_eq!(error.kind(), XfccErrorKind::NoCertificate);
    assert_eq!(error.element(), Some(1));
}

#[test]
fn errors_say_why_without_the_value() {
    let error = parse_xfcc_header("Hash=abc;Secret=hunter2").unwrap_err();
    let text = error.to_string();
    assert_eq!(
        text,
        "malformed x-forwarded-client-cert header: element 0: Hash is not 64 hex digits"
    );
    let error = parse_xfcc_header(format!("Hash={};By=a,By=hunter2", hash())).unwrap_err();
    assert_eq!(error.element(), Some(1));
    assert!(!error.to_string().contains("hunter2"));
    assert!(!format!("{error:?}").contains("hunter2"));
}

/// `value` as a quoted XFCC value.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `key` with its letters' case flipped where `mask` has a bit set.
fn recase(key: &str, mask: u32) -> String {
    key.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 32) & 1 == 1 {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let _ = parse_xfcc_header(&bytes);
    }

    #[test]
    fn lookalikes_never_panic_and_what_is_accepted_is_consistent(
        s in "[ \t]?([A-Za-z]{0,7}=?(\"[^\"]{0,20}\"?|[a-f0-9%A-Z/:.-]{0,70})[;,]?[ ]?){0,6}",
    ) {
        if let Ok(entries) = parse_xfcc_header(&s) {
            proptest::prop_assert!(!entries.is_empty());
            for entry in entries {
                if let Some(cert) = entry.certificate() {
                    proptest::prop_assert_eq!(entry.thumbprint(), Thumbprint::from_certificate(cert));
                }
                if let Some(hash) = entry.hash() {
                    proptest::prop_assert_eq!(entry.thumbprint(), hash);
                }
            }
        }
    }

    #[test]
    fn generated_elements_round_trip(
        form in 0..3u8,
        mask in proptest::prelude::any::<u32>(),
        subject in proptest::option::of("[ -~]{0,40}"),
        uris in proptest::collection::vec("[a-z:/.]{0,20}", 0..3),
        dns in proptest::collection::vec("[a-z.]{1,20}", 0..3),
        count in 1..4usize,
    ) {
        let pem = url_pem(PEM);
        let mut pairs = vec![format!("{}=spiffe://proxy", recase("By", mask))];
        if form != 1 {
            pairs.push(format!("{}={}", recase("Hash", mask), hash()));
        }
        if form != 0 {
            pairs.push(format!("{}=\"{pem}\"", recase("Cert", mask)));
        }
        if let Some(subject) = &subject {
            pairs.push(format!("{}={}", recase("Subject", mask), quote(subject)));
        }
        for uri in &uris {
            pairs.push(format!("{}={uri}", recase("URI", mask)));
        }
        for name in &dns {
            pairs.push(format!("{}={}", recase("DNS", mask), quote(name)));
        }
        let element = pairs.join(";");
        let value = vec![element; count].join(",");
        let entries = parse_xfcc_header(&value).unwrap();
        proptest::prop_assert_eq!(entries.len(), count);
        let expected: Thumbprint = X5T.trim().parse().unwrap();
        for entry in &entries {
            proptest::prop_assert_eq!(entry.thumbprint(), expected);
            proptest::prop_assert_eq!(entry.certificate().is_some(), form != 0);
            proptest::prop_assert_eq!(entry.subject(), subject.as_deref());
            proptest::prop_assert_eq!(entry.uris(), uris.as_slice());
            proptest::prop_assert_eq!(entry.dns_names(), dns.as_slice());
            proptest::prop_assert_eq!(entry.by(), ["spiffe://proxy"]);
        }
    }

    #[test]
    fn a_changed_character_is_refused_or_read_consistently(
        at in proptest::prelude::any::<proptest::sample::Index>(),
        byte in proptest::prelude::any::<u8>(),
    ) {
        let mut value = format!(
            "Hash={};Cert=\"{}\";Subject=\"CN=a,O=\\\"b\\\"\"",
            hash(),
            url_pem(PEM)
        )
        .into_bytes();
        let i = at.index(value.len());
        value[i] = byte;
        if let Ok(entries) = parse_xfcc_header(&value) {
            for entry in entries {
                if let (Some(cert), Some(hash)) = (entry.certificate(), entry.hash()) {
                    proptest::prop_assert_eq!(Thumbprint::from_certificate(cert), hash);
                }
            }
        }
    }
}
