//! The client certificate as a URL-escaped PEM, in a header the proxy's
//! operator names: what nginx (`$ssl_client_escaped_cert`), Kubernetes
//! ingress-nginx, AWS Application Load Balancers and Traefik send.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderMap;
use http::header::HeaderName;
use rustls::server::ParsedCertificate;
use rustls_pki_types::CertificateDer;

use super::detail::{Detail, WithDetail};
use super::trim_ows;
use crate::server::PeerCertificate;

/// The longest value read, in bytes: 64 KiB, room for a chain of several
/// escaped certificates (one is about 2 KB escaped). Longer is refused
/// before it is decoded.
pub const MAX_ESCAPED_PEM_LENGTH: usize = 64 * 1024;

/// nginx, where the operator names the header; this is the name most
/// configurations use, with `$ssl_client_escaped_cert` (the client's
/// certificate as a URL-escaped PEM, empty when it sent none):
///
/// ```text
/// ssl_verify_client optional;              # or on
/// ssl_client_certificate /etc/nginx/client-ca.pem;
/// location / {
///     # Replaces a header of this name from the client; an empty value
///     # (no client certificate) sends none at all.
///     proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
///     proxy_pass http://app;
/// }
/// ```
pub const NGINX: HeaderName = HeaderName::from_static("x-ssl-client-cert");

/// Kubernetes ingress-nginx with client certificate authentication
/// (annotations `nginx.ingress.kubernetes.io/auth-tls-secret` and
/// `auth-tls-pass-certificate-to-upstream: "true"`): `ssl-client-cert`,
/// the URL-escaped PEM, which the controller sets (replacing the client's).
pub const INGRESS_NGINX: HeaderName = HeaderName::from_static("ssl-client-cert");

/// AWS Application Load Balancer in mutual TLS verify mode: the leaf
/// certificate, a URL-escaped PEM (`+`, `=` and `/` left as they are).
/// The load balancer removes `X-Amzn-Mtls-*` headers that clients send.
pub const AWS_ALB_LEAF: HeaderName = HeaderName::from_static("x-amzn-mtls-clientcert-leaf");

/// AWS Application Load Balancer in mutual TLS passthrough mode: every
/// certificate of the client's chain, leaf first, as one URL-escaped PEM.
/// The load balancer does not verify the chain in this mode, but its TLS
/// handshake still proves that the client holds the leaf's key, which is
/// what a certificate-bound token needs. The leaf is taken.
pub const AWS_ALB_CHAIN: HeaderName = HeaderName::from_static("x-amzn-mtls-clientcert");

/// Traefik's `passTLSClientCert` middleware with `pem: true`: the PEM body
/// of each certificate without its armour lines or line breaks, escaped,
/// several separated by commas, leaf first. The middleware sets the header
/// only when the client presented a certificate; a header of that name
/// sent by the client is removed by the entry point's forwarded-headers
/// handling, and only when `forwardedHeaders.insecure` is off and the
/// client is not in `forwardedHeaders.trustedIPs` (an L4 load balancer in
/// front that hides the clients' addresses puts every client there).
///
/// ```text
/// http:
///   middlewares:
///     client-cert:
///       passTLSClientCert:
///         pem: true
/// ```
pub const TRAEFIK: HeaderName = HeaderName::from_static("x-forwarded-tls-client-cert");

/// Standard base64 (Traefik's armour-less form, PEM bodies), padding
/// optional.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Reads the client certificate from the header `name` of `headers`, a
/// URL-escaped PEM ([`parse_escaped_pem`]).
///
/// `Ok(None)` when there is no such header or its value is empty (nginx's
/// `$ssl_client_escaped_cert` is empty when the client sent no
/// certificate); an error when it is malformed or appears more than once.
/// This is the check [`ForwardedClientCert`](super::ForwardedClientCert)
/// makes for
/// [`ForwardedClientCertLayer::escaped_pem`](super::ForwardedClientCertLayer::escaped_pem).
pub fn escaped_pem_from_headers(
    headers: &HeaderMap,
    name: &HeaderName,
) -> Result<Option<PeerCertificate>, EscapedPemError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(EscapedPemError::new(EscapedPemErrorKind::MultipleValues));
    }
    parse_escaped_pem(value)
}

/// Parses one URL-escaped PEM value: the client's certificate, or its chain
/// with the leaf first, whose leaf is returned.
///
/// Accepted, after optional spaces and tabs around the value:
///
/// - nothing: no certificate (`Ok(None)`);
/// - an armoured PEM, escaped (`-----BEGIN%20CERTIFICATE-----%0AMIIB...`),
///   with one `CERTIFICATE` section or several (a chain, leaf first), as
///   nginx, ingress-nginx and AWS ALB send it; `+`, `/` and `=` may be
///   escaped or not;
/// - Traefik's form: the base64 of each certificate without armour or line
///   breaks, escaped, several separated by `,`.
///
/// Refused, each with its [`EscapedPemErrorKind`], before any certificate
/// is parsed: a value longer than [`MAX_ESCAPED_PEM_LENGTH`]; a character
/// other than the base64 alphabet, `-`, `,` and `%` escapes; a `%` without
/// two hex digits; a value escaped twice (`%25...`); a PEM that is not only
/// certificates; base64 that is not; and a leaf that does not parse as an
/// X.509 certificate. The error never holds the value.
///
/// ```
/// use tower_token_binding::server::forwarded::{parse_escaped_pem, EscapedPemErrorKind};
///
/// assert!(parse_escaped_pem("").unwrap().is_none());
/// let error = parse_escaped_pem("-----BEGIN%20CERTIFICATE-----%0A<script>").unwrap_err();
/// assert_eq!(error.kind(), EscapedPemErrorKind::InvalidCharacter);
/// ```
pub fn parse_escaped_pem(
    value: impl AsRef<[u8]>,
) -> Result<Option<PeerCertificate>, EscapedPemError> {
    use EscapedPemErrorKind as K;
    let value = trim_ows(value.as_ref());
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > MAX_ESCAPED_PEM_LENGTH {
        return Err(EscapedPemError::new(K::TooLong));
    }
    check_alphabet(value)?;
    // Traefik separates certificates with commas (an escaped PEM has none).
    let elements: Vec<&[u8]> = value.split(|&b| b == b',').collect();
    let leaf = elements[0];
    if elements.iter().any(|element| element.is_empty()) {
        return Err(EscapedPemError::new(K::NotPem).with_message("an empty element in a list"));
    }
    let decoded =
        super::percent_decode(leaf).ok_or_else(|| EscapedPemError::new(K::InvalidEscape))?;
    if decoded.contains(&b'%') {
        return Err(EscapedPemError::new(K::DoubleEscaped));
    }
    // What PEM is made of: base64, the armour's dashes, capitals and
    // spaces, line breaks.
    if !decoded
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"+/=- \r\n".contains(&b))
    {
        return Err(EscapedPemError::new(K::NotPem).with_message("it holds more than PEM"));
    }
    let decoded = decoded.trim_ascii();
    let der = if decoded.starts_with(b"-----") {
        if elements.len() > 1 {
            return Err(EscapedPemError::new(K::NotPem)
                .with_message("armoured certificates are not separated by commas"));
        }
        armoured_leaf(decoded)?
    } else {
        BASE64
            .decode(decoded)
            .map_err(|e| EscapedPemError::new(K::InvalidBase64).with_source(e))?
    };
    let der = CertificateDer::from(der);
    if let Err(e) = ParsedCertificate::try_from(&der) {
        return Err(EscapedPemError::new(K::NotCertificate).with_source(e));
    }
    Ok(Some(PeerCertificate::new(der)))
}

/// Every byte is of the base64 alphabet, `-`, `,` or a `%` escape.
fn check_alphabet(value: &[u8]) -> Result<(), EscapedPemError> {
    use EscapedPemErrorKind as K;
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'%' => {
                let hex = value.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return Err(EscapedPemError::new(K::InvalidEscape));
                }
                i += 3;
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' | b'-' | b',' => i += 1,
            _ => return Err(EscapedPemError::new(K::InvalidCharacter)),
        }
    }
    Ok(())
}

/// The DER of the first of the `CERTIFICATE` sections `pem` holds, which
/// must be nothing else: each section exactly a `-----BEGIN CERTIFICATE-----`
/// line, lines of base64, and a `-----END CERTIFICATE-----` line; only line
/// breaks between sections. The sections after the first are checked for
/// their shape and alphabet, not decoded.
fn armoured_leaf(pem: &[u8]) -> Result<Vec<u8>, EscapedPemError> {
    use EscapedPemErrorKind as K;
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let not_pem = |why: &'static str| EscapedPemError::new(K::NotPem).with_message(why);
    let mut leaf: Option<Vec<u8>> = None;
    let mut body: Option<Vec<u8>> = None;
    for line in pem.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match (&mut body, line) {
            (None, b"") => {}
            (None, BEGIN) => body = Some(Vec::new()),
            (None, _) => return Err(not_pem("a line outside a certificate section")),
            (Some(text), END) => {
                if text.is_empty() {
                    return Err(not_pem("an empty certificate section"));
                }
                if leaf.is_none() {
                    leaf = Some(
                        BASE64
                            .decode(&text[..])
                            .map_err(|e| EscapedPemError::new(K::InvalidBase64).with_source(e))?,
                    );
                }
                body = None;
            }
            (Some(text), line) => {
                if !line
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
                {
                    return Err(not_pem(
                        "a line in a certificate section that is not base64",
                    ));
                }
                if leaf.is_none() {
                    text.extend_from_slice(line);
                } else if text.is_empty() {
                    // Only whether the section has anything is kept.
                    text.push(b'A');
                }
            }
        }
    }
    if body.is_some() {
        return Err(not_pem("a certificate section without its END line"));
    }
    leaf.ok_or_else(|| not_pem("no certificate"))
}

/// Why a URL-escaped PEM header was refused.
///
/// [`ForwardedClientCert`](super::ForwardedClientCert) puts it in the
/// extensions of its `400` responses. Match on [`kind`](Self::kind); it
/// never holds the header's value.
#[derive(Debug, Clone)]
pub struct EscapedPemError {
    kind: EscapedPemErrorKind,
    detail: Detail,
}

/// What was wrong with a URL-escaped PEM header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EscapedPemErrorKind {
    /// The header appears more than once.
    MultipleValues,
    /// Longer than [`MAX_ESCAPED_PEM_LENGTH`].
    TooLong,
    /// A character other than the base64 alphabet, `-`, `,` and `%`
    /// escapes.
    InvalidCharacter,
    /// A `%` not followed by two hex digits.
    InvalidEscape,
    /// Escaped twice: the decoded text still holds `%` escapes.
    DoubleEscaped,
    /// Not PEM certificates: broken armour, a section that is not a
    /// certificate, an empty element of a list.
    NotPem,
    /// The certificate's base64 is not base64.
    InvalidBase64,
    /// The leaf does not parse as an X.509 certificate.
    NotCertificate,
}

impl EscapedPemError {
    fn new(kind: EscapedPemErrorKind) -> Self {
        Self {
            kind,
            detail: Detail::default(),
        }
    }

    /// What was wrong with the header.
    pub fn kind(&self) -> EscapedPemErrorKind {
        self.kind
    }
}

impl fmt::Display for EscapedPemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use EscapedPemErrorKind as K;
        let why = match self.kind {
            K::MultipleValues => "it appears more than once",
            K::TooLong => "it is longer than 64 KiB",
            K::InvalidCharacter => {
                "it holds a character other than base64, '-', ',' and '%' escapes"
            }
            K::InvalidEscape => "a '%' is not followed by two hex digits",
            K::DoubleEscaped => "it is escaped twice",
            K::NotPem => "it is not PEM certificates",
            K::InvalidBase64 => "the certificate is not base64",
            K::NotCertificate => "the leaf is not an X.509 certificate",
        };
        write!(f, "malformed URL-escaped PEM header: {why}")?;
        if let Some(message) = self.detail.message {
            write!(f, " ({message})")?;
        }
        self.detail.fmt_source(f)
    }
}

impl WithDetail for EscapedPemError {
    fn detail_mut(&mut self) -> &mut Detail {
        &mut self.detail
    }
}

impl std::error::Error for EscapedPemError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.detail.source()
    }
}

#[cfg(test)]
pub(super) mod tests;
