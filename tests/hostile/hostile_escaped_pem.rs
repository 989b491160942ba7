//! A hostile review of the URL-escaped PEM forwarded-certificate format
//! (`ForwardedClientCertLayer::escaped_pem`, `parse_escaped_pem`): nginx's
//! `$ssl_client_escaped_cert`, ingress-nginx, AWS ALB and Traefik.
//!
//! The first tests each pin a weakness the review found, now fixed; the
//! others confirm defences that held (and one documents a limitation of
//! address allow-lists on loopback that no parser can fix).
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use std::convert::Infallible;
use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tower::{ServiceBuilder, ServiceExt as _};
use tower_token_binding::Thumbprint;
use tower_token_binding::server::forwarded::{
    self, CLIENT_CERT, EscapedPemError, EscapedPemErrorKind, ForwardedClientCertLayer, IpNetwork,
    MAX_ESCAPED_PEM_LENGTH, NGINX, X_FORWARDED_CLIENT_CERT, escaped_pem_from_headers,
    parse_escaped_pem,
};
use tower_token_binding::server::{ConnectionInfo, PeerCertificate};

const CERT: &str = include_str!("../data/client.pem");
const CA: &str = include_str!("../data/ca.pem");
const CERT_X5T: &str = include_str!("../data/client.x5t-s256");
const CA_X5T: &str = include_str!("../data/ca.x5t-s256");

fn cert_x5t() -> Thumbprint {
    CERT_X5T.trim().parse().unwrap()
}

fn ca_x5t() -> Thumbprint {
    CA_X5T.trim().parse().unwrap()
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// Every byte but the unreserved ones escaped, as nginx's
/// `$ssl_client_escaped_cert` does.
fn escape(text: &str) -> String {
    support::nginx_escape(text)
}

/// The base64 body of a PEM, one line, no armour (Traefik's element).
fn body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

fn leaf_of(value: &str) -> Result<Option<Thumbprint>, EscapedPemError> {
    parse_escaped_pem(value).map(|p| p.map(|p| p.thumbprint()))
}

// ---------------------------------------------------------------------------
// Weaknesses found, and fixed
// ---------------------------------------------------------------------------

/// `armoured_leaf` (escaped_pem/mod.rs:220) trusts `pem_slice_iter`, which
/// silently skips sections whose label it does not know and drops a section
/// that a new `BEGIN` line interrupts. Two values that start with
/// `-----BEGIN CERTIFICATE-----` and end with `-----END CERTIFICATE-----`
/// then yield the *second* certificate as "the leaf", contrary to "the leaf
/// first" and "must be nothing else".
#[test]
fn the_first_certificate_section_is_always_the_leaf() {
    let ca = body(CA);
    let cases = [
        (
            "a first BEGIN line whose label only starts with CERTIFICATE",
            format!(
                "-----BEGIN CERTIFICATE-----A-----\n{ca}\n-----END CERTIFICATE-----A-----\n{CERT}"
            ),
        ),
        (
            "a first section cut short by an unknown section",
            format!(
                "-----BEGIN CERTIFICATE-----\n{ca}\n-----BEGIN X-----\n-----END X-----\n{CERT}"
            ),
        ),
    ];
    for (name, pem) in cases {
        let got = leaf_of(&escape(&pem));
        assert!(
            got.is_err(),
            "{name}: taken as {:?} (the second section's certificate), not refused",
            got.map(|t| t.map(|t| t.to_string()))
        );
    }
}

/// The parser's contract says a PEM that is not only certificates is
/// refused, and that sections "must be nothing else (line breaks between
/// them aside)". Unknown-label sections, text lines between sections and
/// text after an END marker are all accepted.
#[test]
fn only_certificate_sections_are_accepted() {
    let ca = body(CA);
    let cert = body(CERT);
    let cases = [
        (
            "an X509 CERTIFICATE section between certificates",
            format!(
                "{CERT}-----BEGIN X509 CERTIFICATE-----\n{ca}\n-----END X509 CERTIFICATE-----\n{CA}"
            ),
        ),
        (
            "a TRUSTED CERTIFICATE section between certificates",
            format!(
                "{CERT}-----BEGIN TRUSTED CERTIFICATE-----\n{ca}\n-----END TRUSTED CERTIFICATE-----\n{CA}"
            ),
        ),
        (
            "a text line between certificates",
            format!("{CERT}junk line\n{CA}"),
        ),
        (
            "text after an END marker",
            format!("-----BEGIN CERTIFICATE-----\n{cert}\n-----END CERTIFICATE-----XYZ\n{CA}"),
        ),
    ];
    for (name, pem) in cases {
        let got = leaf_of(&escape(&pem));
        assert!(
            got.is_err(),
            "{name}: accepted as {:?}",
            got.map(|t| t.map(|t| t.to_string()))
        );
    }
}

/// An escaped PEM has no raw comma (mod.rs:140 says so), yet any value is
/// split on commas and the first element taken, armour or not, whatever the
/// header. A hop that joins a client-sent copy of the header with the
/// proxy's one (`a,b`, as appending proxies and header-merging HTTP stacks
/// do) puts the client's certificate first, and it is believed.
#[test]
fn armoured_pems_joined_by_commas_are_refused() {
    // The client's injected copy first, the proxy's own second.
    let joined = format!("{},{}", escape(CA), escape(CERT));
    let got = leaf_of(&joined);
    assert!(
        got.is_err(),
        "two armoured PEMs joined by a comma: the first ({}) taken",
        got.unwrap().unwrap()
    );
    // Anything at all after the comma is never looked at.
    let tail = format!("{},AAAA", escape(CERT));
    assert!(leaf_of(&tail).is_err(), "armour then ',AAAA' accepted");
}

/// "The error never holds the value" (mod.rs:119, :250): the `source` of a
/// `NotPem` error is rustls-pki-types' PEM error, whose Display prints the
/// offending BEGIN line or section label as a byte list. That is part of
/// the header, in the `debug` log line and the 400's extensions, and it is
/// about five times the size of what it quotes: a 40 KB label makes a
/// 160 KB message.
#[test]
fn errors_never_quote_the_header_value() {
    let label = "A".repeat(40_000);
    let cases = [
        // IllegalSectionStart { line }: the whole certificate body on the
        // BEGIN line.
        format!("-----BEGIN CERTIFICATE-----{}\n{CERT}", body(CERT)),
        // MissingSectionEnd { end_marker }: an unterminated section's label.
        format!("{CERT}-----BEGIN {label}-----\n-----END CERTIFICATE-----"),
    ];
    for pem in cases {
        let error = parse_escaped_pem(escape(&pem)).unwrap_err();
        assert_eq!(error.kind(), EscapedPemErrorKind::NotPem);
        for shown in [format!("{error}"), format!("{error:?}")] {
            assert!(
                shown.len() < 1024,
                "{} bytes of error for a {}-byte value: {:.160}...",
                shown.len(),
                pem.len(),
                shown
            );
            // "MII" and "AAAA" as the byte list pki-types prints.
            assert!(
                !shown.contains("77, 73, 73") && !shown.contains("65, 65, 65, 65"),
                "the value, quoted: {shown:.160}..."
            );
        }
    }
}

/// `trusted_proxy("0.0.0.0/0")` (or `::/0`, or `--trusted-proxy 0.0.0.0/0`
/// in the example) builds without complaint: an allow-list that believes
/// every peer, which is what `trust_any_peer` exists to make explicit (and
/// which cannot be combined with a list). `IpNetwork` parses `/0`
/// (trusted.rs:113) and `build` (layer.rs:216) does not look.
#[test]
fn a_zero_length_prefix_is_refused() {
    for network in ["0.0.0.0/0", "::/0"] {
        let built = ForwardedClientCertLayer::escaped_pem(NGINX)
            .trusted_proxy(network.parse::<IpNetwork>().unwrap())
            .build();
        assert!(
            built.is_err(),
            "trusted_proxy({network}) built a layer that believes every peer"
        );
    }
}

/// Two forwarded-certificate layers stacked (say `escaped_pem(NGINX)` and
/// `client_cert()`, while moving from one proxy to another) each remove
/// the `PeerCertificate` before reading their own header, so the inner one
/// silently replaces what the outer one took. Behind nginx, which strips
/// only `X-SSL-Client-Cert`, a client's own `Client-Cert` header then wins
/// over the certificate nginx proved. Nothing warns about the stacking.
#[tokio::test]
async fn a_second_forwarded_layer_changes_nothing() {
    let outer = ForwardedClientCertLayer::escaped_pem(NGINX)
        .trusted_proxy("10.0.0.0/8".parse().unwrap())
        .build()
        .unwrap();
    let inner = ForwardedClientCertLayer::client_cert()
        .trusted_proxy("10.0.0.0/8".parse().unwrap())
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(outer)
        .layer(inner)
        .service_fn(echo);
    let mut request = from("10.1.2.3:5000", &NGINX, &[&escape(CERT)]);
    // Injected by the client; nginx passes it on untouched.
    request.headers_mut().insert(
        CLIENT_CERT,
        HeaderValue::from_str(&format!(":{}:", STANDARD.encode(der(CA)))).unwrap(),
    );
    let response = service.oneshot(request).await.unwrap();
    let seen = response.into_body();
    assert!(
        !seen.starts_with(&ca_x5t().to_string()),
        "the client's Client-Cert replaced the certificate nginx proved: {seen}"
    );
}

/// The README's Traefik entry says "the middleware removes the client's
/// header before it sets its own", and `TRAEFIK`'s doc says "Traefik
/// removes the header a client sends before setting it". Traefik's
/// `passTLSClientCert` only *sets* the header, and only when the client
/// presented a certificate; the client's copy is removed by the entry
/// point's forwarded-headers handling, and not at all under
/// `forwardedHeaders.insecure` or from a peer in
/// `forwardedHeaders.trustedIPs` (an L4 load balancer in front, say). There
/// a client without a certificate sends `X-Forwarded-Tls-Client-Cert` with
/// someone else's certificate and is believed.
#[test]
fn the_traefik_docs_name_what_strips_the_header() {
    let readme = include_str!("../../README.md");
    let source = include_str!("../../src/server/forwarded/escaped_pem/mod.rs");
    assert!(
        !readme.contains("the middleware removes the client's header"),
        "README: passTLSClientCert does not remove a client's header"
    );
    assert!(
        !source.contains("Traefik removes the header a"),
        "TRAEFIK's doc: passTLSClientCert does not remove a client's header"
    );
    assert!(
        readme.contains("forwardedHeaders"),
        "README: say that the entry point's forwardedHeaders (no `insecure`, no \
         trustedIPs covering client traffic) is what removes it"
    );
}

/// The README and `AWS_ALB_CHAIN` say the chain header comes with mutual TLS
/// in *verify* mode. AWS sends `X-Amzn-Mtls-Clientcert` (the whole chain)
/// in *passthrough* mode, where the load balancer does not verify the
/// chain; verify mode sends `X-Amzn-Mtls-Clientcert-Leaf`.
#[test]
fn the_alb_chain_header_is_documented_under_passthrough() {
    let source = include_str!("../../src/server/forwarded/escaped_pem/mod.rs");
    let doc = source
        .split("pub const AWS_ALB_LEAF")
        .nth(1)
        .and_then(|rest| rest.split("pub const AWS_ALB_CHAIN").next())
        .unwrap();
    assert!(
        !doc.contains("verify mode, the chain form"),
        "AWS_ALB_CHAIN: X-Amzn-Mtls-Clientcert is the passthrough-mode header"
    );
}

// ---------------------------------------------------------------------------
// Defences that held
// ---------------------------------------------------------------------------

/// The thumbprint covers exactly the bytes that parse: trailing bytes after
/// the outer SEQUENCE, two certificates' DER in one base64 blob, two padded
/// blobs in one section, all refused by webpki's `read_all`.
#[test]
fn the_der_taken_is_exactly_one_certificate() {
    let one = STANDARD.decode(body(CERT)).unwrap();
    let two = STANDARD.decode(body(CA)).unwrap();
    let encode = |bytes: &[u8]| STANDARD.encode(bytes);
    let armour =
        |b64: &str| format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
    let mut trailing = one.clone();
    trailing.push(0);
    let mut trailing_seq = one.clone();
    trailing_seq.extend_from_slice(&[0x30, 0x00]);
    let both = [one.clone(), two.clone()].concat();
    let cases = [
        ("trailing 00, Traefik form", escape(&encode(&trailing))),
        ("trailing 00, armoured", escape(&armour(&encode(&trailing)))),
        (
            "an empty SEQUENCE after it",
            escape(&armour(&encode(&trailing_seq))),
        ),
        ("two DERs in one blob", escape(&encode(&both))),
        ("two DERs in one armour", escape(&armour(&encode(&both)))),
        (
            "two padded blobs in one section",
            escape(&armour(&format!("{}\n{}", body(CERT), body(CA)))),
        ),
        (
            "a BEGIN line inside a section (two bodies concatenated)",
            escape(&format!(
                "-----BEGIN CERTIFICATE-----\n{}\n{CERT}",
                body(CA)
            )),
        ),
    ];
    for (name, value) in cases {
        let error = parse_escaped_pem(&value).unwrap_err();
        assert!(
            matches!(
                error.kind(),
                EscapedPemErrorKind::NotCertificate
                    | EscapedPemErrorKind::InvalidBase64
                    | EscapedPemErrorKind::NotPem
            ),
            "{name}: {error}"
        );
    }
    let peer = parse_escaped_pem(escape(CERT)).unwrap().unwrap();
    assert_eq!(peer.certificate(), Some(&der(CERT)));
    assert_eq!(peer.thumbprint(), cert_x5t());
    assert_eq!(peer.thumbprint(), Thumbprint::from_der(&one));
}

/// Armour that is not exactly `-----BEGIN CERTIFICATE-----` at the start,
/// encapsulated headers, and leaves labelled otherwise are refused.
#[test]
fn armour_variants_are_refused() {
    let cases = [
        ("lowercase", CERT.replace("CERTIFICATE", "certificate")),
        (
            "six dashes before",
            CERT.replacen("-----BEGIN", "------BEGIN", 1),
        ),
        (
            "six dashes after",
            CERT.replacen("CERTIFICATE-----", "CERTIFICATE------", 1),
        ),
        (
            "two spaces",
            CERT.replacen("BEGIN CERTIFICATE", "BEGIN  CERTIFICATE", 1),
        ),
        (
            "a space before the dashes",
            CERT.replacen("BEGIN CERTIFICATE-", "BEGIN CERTIFICATE -", 1),
        ),
        (
            "X509 CERTIFICATE",
            CERT.replace("CERTIFICATE", "X509 CERTIFICATE"),
        ),
        (
            "TRUSTED CERTIFICATE",
            CERT.replace("CERTIFICATE", "TRUSTED CERTIFICATE"),
        ),
        (
            "Proc-Type and DEK-Info",
            CERT.replacen(
                "-----\n",
                "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\n",
                1,
            ),
        ),
        (
            "a key after the certificate",
            format!(
                "{CERT}-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n"
            ),
        ),
        ("text before", format!("x\n{CERT}")),
        ("no END", CERT.replace("-----END CERTIFICATE-----", "")),
    ];
    for (name, pem) in cases {
        assert!(leaf_of(&escape(&pem)).is_err(), "{name}: accepted");
    }
}

/// Escapes: NUL, CR-only line breaks, overlong UTF-8, a smuggled comma, a
/// double escape, `+` (never a space: AWS leaves it raw), whitespace inside
/// the Traefik form.
#[test]
fn escapes_are_decoded_once_and_narrowly() {
    use EscapedPemErrorKind as K;
    let good = escape(CERT);
    let refused = [
        ("%00 at the end", format!("{good}%00"), K::NotPem),
        (
            "%00 in the armour",
            good.replacen("BEGIN", "BEG%00IN", 1),
            K::NotPem,
        ),
        ("overlong '/'", format!("{good}%C0%AF"), K::NotPem),
        ("a tab", good.replacen("%0A", "%09", 1), K::NotPem),
        (
            "%2C, an escaped comma",
            good.replacen("%0A", "%2C", 1),
            K::NotPem,
        ),
        (
            "%25, escaped twice",
            good.replacen("%0A", "%250A", 1),
            K::DoubleEscaped,
        ),
        (
            "a raw space",
            good.replacen("%20", " ", 1),
            K::InvalidCharacter,
        ),
        (
            "a raw line break",
            good.replacen("%0A", "\n", 1),
            K::InvalidCharacter,
        ),
        (
            "%u escapes",
            good.replacen("%0A", "%u000A", 1),
            K::InvalidEscape,
        ),
        (
            "spaces inside Traefik's base64",
            escape(&body(CERT).replacen("MII", "M I I", 1)),
            K::InvalidBase64,
        ),
        (
            "'+' read as a space would break it",
            escape(&body(CERT)).replace("%2B", "%20"),
            K::InvalidBase64,
        ),
        (
            "URL-safe base64",
            body(CERT).replace('+', "-").replace('/', "_"),
            K::InvalidCharacter,
        ),
    ];
    for (name, value, kind) in refused {
        let error = parse_escaped_pem(&value).unwrap_err();
        assert_eq!(error.kind(), kind, "{name}: {error}");
    }
    // CR-only line breaks are no PEM anyone sends: refused.
    assert_eq!(
        parse_escaped_pem(escape(&CERT.replace('\n', "\r")))
            .unwrap_err()
            .kind(),
        K::NotPem
    );
    // A raw '+', '/' and '=' read back the same certificate.
    let raw = good
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    assert_eq!(leaf_of(&raw).unwrap(), Some(cert_x5t()));
    // Nothing but escaped whitespace is malformed, not "no certificate".
    for value in ["%20", "%0A%0A", "%0D%0A"] {
        assert!(parse_escaped_pem(value).is_err(), "{value:?}");
    }
}

/// The cap counts the value without its surrounding spaces: exactly 64 KiB
/// is read, one byte more is refused before any decoding.
#[test]
fn the_cap_is_exact() {
    let at = "A".repeat(MAX_ESCAPED_PEM_LENGTH);
    assert_ne!(
        parse_escaped_pem(&at).unwrap_err().kind(),
        EscapedPemErrorKind::TooLong
    );
    assert_ne!(
        parse_escaped_pem(format!("  {at}\t")).unwrap_err().kind(),
        EscapedPemErrorKind::TooLong
    );
    assert_eq!(
        parse_escaped_pem(format!("{at}A")).unwrap_err().kind(),
        EscapedPemErrorKind::TooLong
    );
    // A real chain padded with line breaks to exactly the cap still reads.
    let mut value = escape(CERT);
    let end = value.rfind("-----END").unwrap();
    let pad = "%0A".repeat((MAX_ESCAPED_PEM_LENGTH - value.len()) / 3);
    value.insert_str(end, &pad);
    assert!(value.len() <= MAX_ESCAPED_PEM_LENGTH);
    assert_eq!(leaf_of(&value).unwrap(), Some(cert_x5t()));
}

/// Inputs shaped to be slow within the cap (many tiny sections, many line
/// breaks, commas, one long line, all escapes) each get an answer.
#[test]
fn hostile_shapes_within_the_cap_get_an_answer() {
    let fill = |head: &str, unit: &str, tail: &str| {
        let n = (MAX_ESCAPED_PEM_LENGTH - head.len() - tail.len()) / unit.len();
        format!("{head}{}{tail}", unit.repeat(n))
    };
    let cert = escape(CERT);
    let shapes = [
        (
            "unknown sections",
            fill(&cert, "-----BEGIN%20A-----%0A-----END%20A-----%0A", &cert),
        ),
        (
            "empty certificate sections",
            fill(
                "",
                "-----BEGIN%20CERTIFICATE-----%0A-----END%20CERTIFICATE-----%0A",
                "-----BEGIN%20CERTIFICATE-----%0A-----END%20CERTIFICATE-----",
            ),
        ),
        (
            "certificates",
            fill("", &escape(CERT), "")
                .trim_end_matches("%0A")
                .to_owned(),
        ),
        ("line breaks", fill(&cert, "%0A", &cert)),
        ("bare CRs", fill(&cert, "%0D", &cert)),
        ("commas", fill(&escape(&body(CERT)), ",A", "")),
        ("commas after armour", fill(&cert, ",A", "")),
        (
            "one long BEGIN line",
            fill(
                "-----BEGIN%20CERTIFICATE-----",
                "A",
                "%0A-----END%20CERTIFICATE-----",
            ),
        ),
        (
            "one long body line",
            fill(
                "-----BEGIN%20CERTIFICATE-----%0A",
                "A",
                "%0A-----END%20CERTIFICATE-----",
            ),
        ),
        ("dashes", fill("-----", "-", "")),
        ("escapes", fill("", "%41", "")),
        ("double escapes", fill("", "%2541", "")),
    ];
    // Each gets an answer; what each costs is `benches/hostile_input.rs`'s
    // to say (its worst case there is a row in BENCHMARKS.md).
    for (name, value) in shapes {
        assert!(value.len() <= MAX_ESCAPED_PEM_LENGTH, "{name}");
        let _ = std::hint::black_box(parse_escaped_pem(&value));
    }
}

proptest::proptest! {
    /// PEM-shaped fragments in any order never panic, and what parses is a
    /// certificate whose thumbprint is that of the DER returned.
    #[test]
    fn fragments_in_any_order_never_panic(
        parts in proptest::collection::vec(0usize..16, 0..24),
    ) {
        let fragments = [
            "-----BEGIN%20CERTIFICATE-----",
            "-----END%20CERTIFICATE-----",
            "-----BEGIN%20X-----",
            "-----END%20X-----",
            "-----BEGIN%20-----",
            "-----BEGIN%20CERTIFICATE------",
            "%0A",
            "%0D",
            "%20",
            ",",
            "-",
            "=",
            "MIIB",
            "AAAA",
            "%2",
            "%25",
        ];
        let cert = escape(CERT);
        let mut value = String::new();
        for (i, part) in parts.iter().enumerate() {
            if i == parts.len() / 2 {
                value.push_str(&cert);
            }
            value.push_str(fragments[*part]);
        }
        if let Ok(Some(peer)) = parse_escaped_pem(&value) {
            let der = peer.certificate().unwrap();
            proptest::prop_assert_eq!(peer.thumbprint(), Thumbprint::from_der(der));
        }
    }
}

async fn echo(request: Request<String>) -> Result<Response<String>, Infallible> {
    let peer = request.extensions().get::<PeerCertificate>();
    let names: Vec<String> = request
        .headers()
        .keys()
        .map(|k| k.as_str().to_owned())
        .collect();
    Ok(Response::new(format!(
        "{} {}",
        peer.map_or("none".to_owned(), |p| p.thumbprint().to_string()),
        names.join(",")
    )))
}

/// A request from `remote` with the proxy's own certificate on the
/// connection, and `values` under `name`.
fn from(remote: &str, name: &HeaderName, values: &[&str]) -> Request<String> {
    let mut request = Request::new(String::new());
    let remote: SocketAddr = remote.parse().unwrap();
    request
        .extensions_mut()
        .insert(ConnectionInfo::new(remote, "10.0.0.1:443".parse().unwrap()));
    request
        .extensions_mut()
        .insert(PeerCertificate::new(CertificateDer::from(
            b"proxy".to_vec(),
        )));
    for value in values {
        request
            .headers_mut()
            .append(name, HeaderValue::from_str(value).unwrap());
    }
    request
}

fn nginx_layer() -> ForwardedClientCertLayer {
    ForwardedClientCertLayer::escaped_pem(NGINX)
        .trusted_proxy("10.0.0.0/8".parse().unwrap())
        .build()
        .unwrap()
}

/// Header spellings and duplicates: http normalises case, so one empty copy
/// and one full copy in any case are two values (400); a name with
/// underscores is another header, never read (and never removed); the
/// proxy's own certificate never survives an empty, absent or malformed
/// header; a peer not listed keeps its own certificate and loses the
/// header.
#[tokio::test]
async fn header_spellings_and_the_proxys_own_certificate() {
    let service = ServiceBuilder::new().layer(nginx_layer()).service_fn(echo);
    let call = |request: Request<String>| {
        let service = service.clone();
        async move { service.oneshot(request).await.unwrap() }
    };
    let proxy = "10.1.2.3:5000";
    let own = Thumbprint::from_der(b"proxy").to_string();
    let pem = escape(CERT);

    // Two copies across case, one of them empty, either order: 400.
    for (first, second) in [
        ("X-SSL-Client-Cert", "x-ssl-client-cert"),
        ("x-ssl-client-cert", "X-Ssl-Client-Cert"),
    ] {
        for (a, b) in [("", pem.as_str()), (pem.as_str(), ""), (" ", pem.as_str())] {
            let mut request = from(proxy, &NGINX, &[]);
            request.headers_mut().append(
                HeaderName::from_bytes(first.as_bytes()).unwrap(),
                HeaderValue::from_str(a).unwrap(),
            );
            request.headers_mut().append(
                HeaderName::from_bytes(second.as_bytes()).unwrap(),
                HeaderValue::from_str(b).unwrap(),
            );
            let response = call(request).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert_eq!(
                response
                    .extensions()
                    .get::<EscapedPemError>()
                    .unwrap()
                    .kind(),
                EscapedPemErrorKind::MultipleValues
            );
        }
    }

    // Underscores: another header, not read, from the proxy or anyone.
    let underscored = HeaderName::from_static("x_ssl_client_cert");
    for remote in [proxy, "192.0.2.1:5000"] {
        let response = call(from(remote, &underscored, &[&pem])).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body();
        assert!(!body.contains(CERT_X5T.trim()), "{remote}: {body}");
    }

    // From the proxy: empty, absent, blank, malformed, two: never the
    // proxy's own certificate.
    for values in [
        vec![""],
        vec![],
        vec!["  \t"],
        vec!["garbage!"],
        vec![&pem, &pem],
    ] {
        let response = call(from(proxy, &NGINX, &values)).await;
        let status = response.status();
        let body = response.into_body();
        assert!(!body.contains(&own), "{values:?}: {status} {body}");
        if status == StatusCode::OK {
            assert!(body.starts_with("none"), "{values:?}: {body}");
        }
    }

    // From anyone else: the header removed, its own certificate kept.
    for value in [pem.as_str(), "", "garbage!"] {
        let response = call(from("192.0.2.1:5000", &NGINX, &[value])).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body();
        assert!(body.starts_with(&own), "{body}");
        assert!(!body.contains("x-ssl-client-cert"), "{body}");
    }

    // The public helper agrees on two values.
    let mut headers = http::HeaderMap::new();
    headers.append(&NGINX, HeaderValue::from_static(""));
    headers.append(&NGINX, HeaderValue::from_str(&pem).unwrap());
    assert_eq!(
        escaped_pem_from_headers(&headers, &NGINX)
            .unwrap_err()
            .kind(),
        EscapedPemErrorKind::MultipleValues
    );
}

/// A layer named after another format's header does not misread that
/// format: an RFC 9440 `Client-Cert` value or an XFCC value under an
/// escaped-PEM layer is a 400, never a certificate.
#[tokio::test]
async fn other_formats_under_an_escaped_pem_name_are_refused() {
    let client_cert = format!(":{}:", STANDARD.encode(der(CERT)));
    let xfcc = format!("Hash=00;Cert=\"{}\"", escape(CERT));
    for (name, value) in [
        (CLIENT_CERT, client_cert.as_str()),
        (X_FORWARDED_CLIENT_CERT, xfcc.as_str()),
        (forwarded::TRAEFIK, client_cert.as_str()),
    ] {
        let layer = ForwardedClientCertLayer::escaped_pem(name.clone())
            .trusted_proxy("10.0.0.0/8".parse().unwrap())
            .build()
            .unwrap();
        let service = ServiceBuilder::new().layer(layer).service_fn(echo);
        let response = service
            .oneshot(from("10.9.9.9:1", &name, &[value]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
    }
}

/// Not a defence: with the allow-list the README's tested setup uses
/// (`--trusted-proxy 127.0.0.1`, the app on loopback next to nginx), every
/// local process, and anything that can make the host send a request to the
/// app's port with a chosen header, *is* the trusted proxy and claims any
/// certificate. An address list cannot tell nginx from them; only a proxy
/// that connects with its own mTLS certificate
/// (`trusted_proxy_certificate`) or a Unix socket can.
#[tokio::test]
async fn limitation_on_loopback_every_local_process_is_the_proxy() {
    let layer = ForwardedClientCertLayer::escaped_pem(NGINX)
        .trusted_proxy("127.0.0.1".parse().unwrap())
        .build()
        .unwrap();
    let service = ServiceBuilder::new().layer(layer).service_fn(echo);
    let response = service
        .oneshot(from("127.0.0.1:40000", &NGINX, &[&escape(CERT)]))
        .await
        .unwrap();
    assert!(response.into_body().starts_with(CERT_X5T.trim()));
}

// ---------------------------------------------------------------------------
// Against a real nginx
// ---------------------------------------------------------------------------

/// The README's nginx configuration in front of the example (believing
/// 127.0.0.1, accepting unbound tokens so `/whoami` says which certificate
/// the app saw), and a client without a certificate that tries every
/// spelling of `X-SSL-Client-Cert`: hyphens in any case, twice, with
/// underscores (nginx drops those by default; with `underscores_in_headers
/// on` it passes them and the app does not read them), an empty copy beside
/// a full one, over HTTP/1.1 and HTTP/2. The app never sees the forged
/// certificate.
#[tokio::test]
async fn real_nginx_strips_every_client_spelling() {
    use http_body_util::{BodyExt as _, Full};
    use tower_token_binding::test_util::{TestIssuer, TestPki};

    let Some(nginx) = support::proxy_binary("nginx") else {
        return;
    };
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let (_app, url) = support::spawn_announcing(
        "resource_server",
        &[
            "--listen",
            "127.0.0.1:0",
            "--issuer",
            issuer.issuer(),
            "--audience",
            issuer.audience(),
            "--jwks-file",
            jwks.to_str().unwrap(),
            "--allow-unbound",
            "--forwarded",
            "escaped-pem",
            "--forwarded-header",
            "nginx",
            "--trusted-proxy",
            "127.0.0.1",
        ],
    )
    .await;
    let app_port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let victim = pki.client_cert("victim.example").unwrap();
    let forged = escape(victim.cert_pem());
    let victim_x5t = victim.thumbprint().to_string();
    let token = issuer.sign(&issuer.claims("svc", None)).unwrap();

    let server = pki.server_cert().unwrap();
    server.write_pem_files(dir.path(), "server").unwrap();
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();

    for underscores in ["off", "on"] {
        let d = dir.path().display().to_string();
        let (proxy, port) = support::start_on_a_free_port(
            |port| {
                let config = format!(
                    "daemon off;
master_process off;
pid {d}/nginx-{underscores}.pid;
error_log {d}/nginx-{underscores}.err info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    underscores_in_headers {underscores};
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        ssl_client_certificate {d}/ca.pem;
        ssl_verify_client optional;
        location / {{
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_pass http://127.0.0.1:{app_port};
        }}
    }}
}}
"
                );
                let conf = dir.path().join(format!("nginx-{underscores}.conf"));
                std::fs::write(&conf, config).unwrap();
                let proxy = tokio::process::Command::new(&nginx)
                    .arg("-p")
                    .arg(dir.path())
                    .arg("-c")
                    .arg(&conf)
                    .arg("-e")
                    .arg(dir.path().join(format!("nginx-{underscores}.err")))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .unwrap();
                (proxy, dir.path().join(format!("nginx-{underscores}.err")))
            },
            |port| support::serves_tls_from(&pki, port),
        );

        // HTTP/1.1, raw, so names and duplicates go out exactly as written.
        let spellings: Vec<Vec<String>> = vec![
            vec![format!("X-SSL-Client-Cert: {forged}")],
            vec![format!("x-ssl-client-cert: {forged}")],
            vec![
                format!("X-SSL-Client-Cert: {forged}"),
                format!("X-Ssl-Client-Cert: {forged}"),
            ],
            vec![
                "X-SSL-Client-Cert: ".to_owned(),
                format!("X-SSL-Client-Cert: {forged}"),
            ],
            vec![format!("X_SSL_Client_Cert: {forged}")],
            vec![format!("x_ssl_client_cert: {forged}")],
            vec![format!("X-SSL-Client-Cert:{forged}")],
            vec![format!("X-SSL-Client-Cert:\t{forged}\t")],
        ];
        for headers in &spellings {
            let request = format!(
                "GET /whoami HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n{}\r\nConnection: close\r\n\r\n",
                headers.join("\r\n")
            );
            let answer = support::raw_tls(&pki, port, request).await;
            let names: Vec<&str> = headers.iter().filter_map(|h| h.split(':').next()).collect();
            eprintln!(
                "underscores_in_headers {underscores}, {names:?}: {:?}",
                answer.lines().next()
            );
            assert!(
                !answer.contains(&victim_x5t),
                "underscores_in_headers {underscores}: the forged certificate was believed: {answer}"
            );
            assert!(
                answer.starts_with("HTTP/1.1 200") && answer.contains("\"x5t#S256\":null")
                    || answer.starts_with("HTTP/1.1 400"),
                "underscores_in_headers {underscores}: {answer}"
            );
        }

        // HTTP/2.
        let client = support::https_client_http2(&pki, None);
        for name in ["x-ssl-client-cert", "x_ssl_client_cert"] {
            let request = Request::get(format!("https://localhost:{port}/whoami"))
                .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                .header(name, &forged)
                .body(Full::<bytes::Bytes>::default())
                .unwrap();
            let response = client.request(request).await.unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert_eq!(status, StatusCode::OK, "h2 {name}: {body}");
            assert!(body.contains("\"x5t#S256\":null"), "h2 {name}: {body}");
        }

        // The victim's own request through nginx is seen as the victim's.
        let identity = victim.identity().unwrap();
        let client = support::https_client_http1(&pki, Some(&identity));
        let request = Request::get(format!("https://localhost:{port}/whoami"))
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::<bytes::Bytes>::default())
            .unwrap();
        let response = client.request(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains(&victim_x5t));
        drop(proxy);
    }

    // Straight to the app on loopback, as any local process can: believed
    // (the limitation above, end to end).
    let request = format!(
        "GET /whoami HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nX-SSL-Client-Cert: {forged}\r\nConnection: close\r\n\r\n"
    );
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", app_port))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.contains(&victim_x5t),
        "a local process bypassing nginx: {answer}"
    );
}
