//! RFC 9440: the client certificate in the `Client-Cert` header, an RFC 8941
//! byte sequence (`:` the DER in standard base64 `:`).

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::HeaderMap;
use http::header::HeaderName;
use rustls::server::ParsedCertificate;
use rustls_pki_types::CertificateDer;

use super::trim_ows;
use crate::server::PeerCertificate;

/// The RFC 9440 `Client-Cert` header name.
pub const CLIENT_CERT: HeaderName = HeaderName::from_static("client-cert");

/// Standard base64; per RFC 8941 section 3.3.5, padding may be left out and
/// unused bits need not be zero (neither changes the decoded bytes).
const BYTE_SEQUENCE_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Reads the client certificate from the `Client-Cert` header of `headers`.
///
/// `Ok(None)` when there is no such header; an error when it is malformed or
/// appears more than once. This is the check
/// [`ForwardedClientCert`](super::ForwardedClientCert) makes for
/// [`ForwardedClientCertLayer::client_cert`](super::ForwardedClientCertLayer::client_cert).
pub fn client_cert_from_headers(
    headers: &HeaderMap,
) -> Result<Option<PeerCertificate>, ClientCertHeaderError> {
    let mut values = headers.get_all(&CLIENT_CERT).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ClientCertHeaderError::new(
            ClientCertHeaderErrorKind::MultipleValues,
        ));
    }
    parse_client_cert_header(value).map(Some)
}

/// Parses one `Client-Cert` field value: an RFC 8941 byte sequence (`:`,
/// standard base64, `:`) holding a DER X.509 certificate.
///
/// Spaces and tabs around the value are allowed (HTTP strips them anyway);
/// anything else is refused: whitespace inside, parameters (`;...`), a list,
/// characters outside the base64 alphabet, and bytes that do not parse as a
/// certificate. As RFC 8941 asks of recipients, base64 padding may be left
/// out. The thumbprint is computed over the decoded DER.
///
/// ```
/// use tower_token_binding::server::forwarded::{parse_client_cert_header, ClientCertHeaderErrorKind};
///
/// let error = parse_client_cert_header(":AAAA:;by=proxy").unwrap_err();
/// assert_eq!(error.kind(), ClientCertHeaderErrorKind::Parameters);
/// ```
pub fn parse_client_cert_header(
    value: impl AsRef<[u8]>,
) -> Result<PeerCertificate, ClientCertHeaderError> {
    use ClientCertHeaderErrorKind as K;
    let fail = |kind| Err(ClientCertHeaderError::new(kind));

    let value = trim_ows(value.as_ref());
    let Some(rest) = value.strip_prefix(b":") else {
        return fail(if value.is_empty() {
            K::Empty
        } else {
            K::NotByteSequence
        });
    };
    let Some(end) = rest.iter().position(|&b| b == b':') else {
        return fail(K::NotByteSequence);
    };
    let (content, after) = (&rest[..end], trim_ows(&rest[end + 1..]));
    match after.first() {
        None => {}
        Some(b';') => return fail(K::Parameters),
        Some(b',') => return fail(K::MultipleValues),
        Some(_) => return fail(K::NotByteSequence),
    }
    if content.is_empty() {
        return fail(K::Empty);
    }
    if content.iter().any(|&b| b == b' ' || b == b'\t') {
        return fail(K::Whitespace);
    }
    let der = BYTE_SEQUENCE_BASE64
        .decode(content)
        .map_err(|e| ClientCertHeaderError::new(K::InvalidBase64).with_source(e))?;
    let der = CertificateDer::from(der);
    if let Err(e) = ParsedCertificate::try_from(&der) {
        return Err(ClientCertHeaderError::new(K::NotCertificate).with_source(e));
    }
    Ok(PeerCertificate::new(der))
}

/// Why a `Client-Cert` header was refused.
///
/// [`ForwardedClientCert`](super::ForwardedClientCert) puts it in the
/// extensions of its `400` responses.
/// Match on [`kind`](Self::kind); the source chain may have the base64 or
/// certificate parsing error.
#[derive(Debug, Clone)]
pub struct ClientCertHeaderError {
    kind: ClientCertHeaderErrorKind,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// What was wrong with a `Client-Cert` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientCertHeaderErrorKind {
    /// The header appears more than once, or holds a list.
    MultipleValues,
    /// The value, or the byte sequence in it, is empty.
    Empty,
    /// The value is not an RFC 8941 byte sequence (`:base64:`).
    NotByteSequence,
    /// The byte sequence has parameters (`;...`).
    Parameters,
    /// There is whitespace inside the byte sequence.
    Whitespace,
    /// The byte sequence is not standard base64.
    InvalidBase64,
    /// The decoded bytes are not an X.509 certificate.
    NotCertificate,
}

impl ClientCertHeaderError {
    fn new(kind: ClientCertHeaderErrorKind) -> Self {
        Self { kind, source: None }
    }

    fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// What was wrong with the header.
    pub fn kind(&self) -> ClientCertHeaderErrorKind {
        self.kind
    }
}

impl fmt::Display for ClientCertHeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ClientCertHeaderErrorKind as K;
        let why = match self.kind {
            K::MultipleValues => "it has more than one value",
            K::Empty => "it is empty",
            K::NotByteSequence => "it is not a byte sequence (':' base64 ':')",
            K::Parameters => "it has parameters",
            K::Whitespace => "it has whitespace inside the byte sequence",
            K::InvalidBase64 => "it is not standard base64",
            K::NotCertificate => "it does not hold an X.509 certificate",
        };
        write!(f, "malformed Client-Cert header: {why}")?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ClientCertHeaderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use rustls_pki_types::pem::PemObject;

    use super::*;
    use crate::Thumbprint;

    /// The test client certificate, as PEM.
    pub(in crate::server::forwarded) const CERT: &[u8] =
        include_bytes!("../../../tests/data/client.pem");
    /// Its thumbprint, as `cnf.x5t#S256` carries it.
    pub(in crate::server::forwarded) const X5T: &str =
        include_str!("../../../tests/data/client.x5t-s256");

    /// The test client certificate.
    pub(in crate::server::forwarded) fn der() -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(CERT).unwrap()
    }

    /// Its `Client-Cert` header value.
    pub(in crate::server::forwarded) fn header() -> String {
        format!(":{}:", STANDARD.encode(der()))
    }

    fn kind(value: &str) -> ClientCertHeaderErrorKind {
        parse_client_cert_header(value).unwrap_err().kind()
    }

    #[test]
    fn a_certificate_parses_to_its_thumbprint() {
        let expected: Thumbprint = X5T.trim().parse().unwrap();
        for value in [
            header(),
            format!("  {}\t", header()),
            format!(":{}:", STANDARD_NO_PAD.encode(der())),
        ] {
            let peer = parse_client_cert_header(&value).unwrap();
            assert_eq!(peer.thumbprint(), expected, "{value}");
            assert_eq!(peer.certificate(), Some(&der()));
        }
    }

    #[test]
    fn malformed_values_are_refused_with_a_reason() {
        use ClientCertHeaderErrorKind as K;
        let b64 = STANDARD.encode(der());
        let (head, tail) = b64.split_at(20);
        let cases = [
            (String::new(), K::Empty),
            ("   ".to_owned(), K::Empty),
            ("::".to_owned(), K::Empty),
            (b64.clone(), K::NotByteSequence),
            (format!(":{b64}"), K::NotByteSequence),
            (format!("{b64}:"), K::NotByteSequence),
            (format!("\"{b64}\""), K::NotByteSequence),
            (format!(":{b64}:x"), K::NotByteSequence),
            (format!(":{b64}::"), K::NotByteSequence),
            (format!(":{b64}:;a=1"), K::Parameters),
            (format!(":{b64}: ;a"), K::Parameters),
            (format!(":{b64}:, :{b64}:"), K::MultipleValues),
            (format!(":{head} {tail}:"), K::Whitespace),
            (format!(":{head}\t{tail}:"), K::Whitespace),
            (
                format!(":{}:", URL_SAFE_NO_PAD.encode(der())),
                K::InvalidBase64,
            ),
            (format!(":{head}={tail}:"), K::InvalidBase64),
            (format!(":{b64}==:"), K::InvalidBase64),
            (":AAAA:".to_owned(), K::NotCertificate),
            (
                format!(":{}:", STANDARD.encode(b"not a certificate")),
                K::NotCertificate,
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(kind(&value), expected, "{value:?}");
        }
        // Trailing bytes after the certificate: not the same DER, refused.
        let mut longer = der().to_vec();
        longer.push(0);
        assert_eq!(
            kind(&format!(":{}:", STANDARD.encode(longer))),
            K::NotCertificate
        );
        // Bytes outside ASCII.
        assert_eq!(
            parse_client_cert_header(b":\xff\xfe:").unwrap_err().kind(),
            K::InvalidBase64
        );
    }

    #[test]
    fn errors_say_why() {
        let error = parse_client_cert_header(":AAAA:").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("malformed Client-Cert header: it does not hold an X.509 certificate")
        );
        assert!(std::error::Error::source(&error).is_some());
    }
}
