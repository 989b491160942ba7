//! Envoy's `x-forwarded-client-cert` (XFCC) header.
//!
//! The value is a `,`-separated list of elements, one per proxy that added
//! one; an element is a `;`-separated list of `key=value` pairs. Keys are
//! case-insensitive: `By`, `Hash`, `Cert`, `Chain`, `Subject`, `URI`, `DNS`
//! (the last three, and `By`, may repeat). A value is either plain (no `,`,
//! `;`, `"`, `\`, whitespace or control characters) or double-quoted, where
//! `\` escapes the next character (`\"`, `\\`) and `,`, `;` and `=` are
//! ordinary characters (`Subject="CN=a,OU=b"`).
//!
//! The certificate of an element is its `Cert` (the URL-encoded PEM of the
//! certificate) or its `Hash` (the hex SHA-256 of its DER, which is the
//! certificate's [`Thumbprint`]); when both are there they must agree.
//! `Chain` is read as a value and not decoded.

use std::fmt;

use http::HeaderMap;
use http::header::HeaderName;
use rustls::server::ParsedCertificate;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{PemObject as _, SectionKind};

use super::detail::{Detail, WithDetail};
use super::trim_ows;
use crate::Thumbprint;
use crate::server::PeerCertificate;

/// The `x-forwarded-client-cert` header name (Envoy's XFCC).
pub const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Which element of an XFCC header holds the client's certificate.
///
/// Envoy's `SANITIZE_SET` sends exactly one element (the certificate of the
/// connection it received); `APPEND_FORWARD` adds its element at the end of
/// what the previous proxy sent, so the last element is the one added by
/// the proxy nearest to this server, and the first one by the proxy
/// farthest from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum XfccElement {
    /// Exactly one element. The default. From a header with more, no
    /// certificate is taken (a bound token is then refused with `401`, as
    /// without a certificate), and the [`XfccError`] of kind
    /// [`XfccErrorKind::MultipleElements`] is put in the extensions of the
    /// response.
    #[default]
    Only,
    /// The first element (the proxy farthest from this server). Safe only
    /// when the first proxy removes the header clients send: with
    /// `APPEND_FORWARD` everywhere, the first element may be a client's.
    First,
    /// The last element (the proxy nearest to this server).
    Last,
}

/// One element of an XFCC header, checked: it names a certificate by `Cert`,
/// `Hash` or both (agreeing).
#[derive(Clone)]
pub struct XfccEntry {
    thumbprint: Thumbprint,
    keys: Keys,
}

impl XfccEntry {
    /// The certificate's thumbprint: from `Cert` when present, else `Hash`.
    pub fn thumbprint(&self) -> Thumbprint {
        self.thumbprint
    }

    /// The certificate as a [`PeerCertificate`]: with its DER when the
    /// element has `Cert`, by its thumbprint only
    /// ([`PeerCertificate::from_thumbprint`]) when it has just `Hash`.
    pub fn peer_certificate(&self) -> PeerCertificate {
        match &self.keys.cert {
            Some(cert) => PeerCertificate::new(cert.clone()),
            None => PeerCertificate::from_thumbprint(self.thumbprint()),
        }
    }

    /// The `Cert` value, decoded to DER.
    pub fn certificate(&self) -> Option<&CertificateDer<'static>> {
        self.keys.cert.as_ref()
    }

    /// The `Hash` value.
    pub fn hash(&self) -> Option<Thumbprint> {
        self.keys.hash
    }

    /// The `By` values: the URI SANs of the proxy that added the element.
    pub fn by(&self) -> &[String] {
        &self.keys.by
    }

    /// The `Subject` value, unquoted.
    pub fn subject(&self) -> Option<&str> {
        self.keys.subject.as_deref()
    }

    /// The `URI` values: the certificate's URI SANs.
    pub fn uris(&self) -> &[String] {
        &self.keys.uris
    }

    /// The `DNS` values: the certificate's DNS SANs.
    pub fn dns_names(&self) -> &[String] {
        &self.keys.dns
    }

    /// Whether the element has a `Chain` (which is not decoded).
    pub fn has_chain(&self) -> bool {
        self.keys.chain
    }
}

impl fmt::Debug for XfccEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XfccEntry")
            .field("thumbprint", &self.thumbprint())
            .field("cert", &self.keys.cert.is_some())
            .field("hash", &self.keys.hash.is_some())
            .field("by", &self.keys.by)
            .field("subject", &self.keys.subject)
            .field("uris", &self.keys.uris)
            .field("dns", &self.keys.dns)
            .finish_non_exhaustive()
    }
}

/// Reads the client certificate from the `x-forwarded-client-cert` headers
/// of `headers`, taking the element `element` says.
///
/// `Ok(None)` when there is no such header. Several header lines are one
/// list, as HTTP says. Every element must be well-formed, not only the one
/// taken. This is the check [`ForwardedClientCert`](super::ForwardedClientCert)
/// makes for [`ForwardedClientCertLayer::xfcc`](super::ForwardedClientCertLayer::xfcc).
pub fn xfcc_from_headers(
    headers: &HeaderMap,
    element: XfccElement,
) -> Result<Option<PeerCertificate>, XfccError> {
    let mut lines = headers.get_all(&X_FORWARDED_CLIENT_CERT).iter().peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let mut entries = Vec::new();
    for line in lines {
        let first = entries.len();
        let parsed = parse_xfcc_header(line).map_err(|e| e.shifted(first))?;
        entries.extend(parsed);
    }
    let entry = match element {
        XfccElement::Only if entries.len() > 1 => {
            return Err(XfccError::new(XfccErrorKind::MultipleElements));
        }
        XfccElement::Only | XfccElement::First => entries.first(),
        XfccElement::Last => entries.last(),
    };
    // Parsing never returns an empty list.
    Ok(entry.map(XfccEntry::peer_certificate))
}

/// Parses one `x-forwarded-client-cert` field value into its elements,
/// checking each.
///
/// Spaces and tabs are allowed around the value and around the `,`
/// between elements, nowhere else outside quotes. Refused: an empty value
/// or element, a pair without `=` or with an empty key, an unknown key,
/// `Hash`, `Cert`, `Chain` or `Subject` twice in an element, an unterminated
/// quote, characters not allowed where they are, a `Hash` that is not 64
/// hex digits, a `Cert` that is not one URL-encoded PEM certificate, `Cert`
/// and `Hash` that disagree, and an element with neither.
///
/// ```
/// use tower_token_binding::server::forwarded::{XfccErrorKind, parse_xfcc_header};
///
/// let hash = "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688";
/// let header = format!(
///     r#"By=spiffe://proxy;Hash={hash};Subject="CN=a,OU=b \"x\"";URI=spiffe://client"#
/// );
/// let entries = parse_xfcc_header(&header).unwrap();
/// assert_eq!(entries.len(), 1);
/// assert_eq!(entries[0].subject(), Some(r#"CN=a,OU=b "x""#));
/// assert_eq!(entries[0].uris(), ["spiffe://client"]);
///
/// let error = parse_xfcc_header(format!(r#"Hash={hash};Subject="CN=a"#)).unwrap_err();
/// assert_eq!(error.kind(), XfccErrorKind::UnterminatedQuote);
/// let error = parse_xfcc_header("Hash=abc").unwrap_err();
/// assert_eq!(error.kind(), XfccErrorKind::InvalidHash);
/// ```
pub fn parse_xfcc_header(value: impl AsRef<[u8]>) -> Result<Vec<XfccEntry>, XfccError> {
    let s = trim_ows(value.as_ref());
    if s.is_empty() {
        return Err(XfccError::new(XfccErrorKind::Empty));
    }
    let mut parser = Parser {
        s,
        i: 0,
        element: 0,
    };
    let mut entries = Vec::new();
    loop {
        let (entry, more) = parser.element()?;
        entries.push(entry);
        if !more {
            return Ok(entries);
        }
        parser.element += 1;
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// The index of the element being read.
    element: usize,
}

/// The keys of one element, as read.
#[derive(Clone, Default)]
struct Keys {
    by: Vec<String>,
    hash: Option<Thumbprint>,
    cert: Option<CertificateDer<'static>>,
    chain: bool,
    subject: Option<String>,
    uris: Vec<String>,
    dns: Vec<String>,
}

impl Parser<'_> {
    fn fail<T>(&self, kind: XfccErrorKind) -> Result<T, XfccError> {
        Err(XfccError::new(kind).at(self.element))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ows(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i - start
    }

    /// Reads one element; says whether another follows.
    fn element(&mut self) -> Result<(XfccEntry, bool), XfccError> {
        use XfccErrorKind as K;
        let mut entry = Keys::default();
        let mut first = true;
        loop {
            let start = self.i;
            while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            {
                self.i += 1;
            }
            let key = &self.s[start..self.i];
            match self.peek() {
                Some(b'=') if !key.is_empty() => self.i += 1,
                None | Some(b',') if key.is_empty() && first => {
                    return self.fail(K::EmptyElement);
                }
                Some(b'=') | Some(b',' | b';') | None => return self.fail(K::MalformedPair),
                Some(_) => return self.fail(K::InvalidCharacter),
            }
            let value = self.value()?;
            self.set(&mut entry, key, value)?;
            let space = self.skip_ows();
            match self.peek() {
                None => return Ok((self.finish(entry)?, false)),
                Some(b',') => {
                    self.i += 1;
                    self.skip_ows();
                    let entry = self.finish(entry)?;
                    if self.peek().is_none() {
                        return Err(XfccError::new(K::EmptyElement).at(self.element + 1));
                    }
                    return Ok((entry, true));
                }
                Some(b';') if space == 0 => self.i += 1,
                Some(_) => return self.fail(K::InvalidCharacter),
            }
            first = false;
        }
    }

    /// Reads a plain or quoted value, unescaped.
    fn value(&mut self) -> Result<Vec<u8>, XfccError> {
        use XfccErrorKind as K;
        let mut out = Vec::new();
        if self.peek() == Some(b'"') {
            self.i += 1;
            loop {
                match self.peek() {
                    None => return self.fail(K::UnterminatedQuote),
                    Some(b'"') => {
                        self.i += 1;
                        return Ok(out);
                    }
                    Some(b'\\') => {
                        self.i += 1;
                        match self.peek() {
                            None => return self.fail(K::UnterminatedQuote),
                            Some(c) if is_ctl(c) => return self.fail(K::InvalidCharacter),
                            Some(c) => out.push(c),
                        }
                    }
                    Some(c) if is_ctl(c) => return self.fail(K::InvalidCharacter),
                    Some(c) => out.push(c),
                }
                self.i += 1;
            }
        }
        while let Some(c) = self.peek() {
            match c {
                b',' | b';' | b' ' | b'\t' => break,
                b'"' | b'\\' => return self.fail(K::InvalidCharacter),
                c if is_ctl(c) => return self.fail(K::InvalidCharacter),
                c => out.push(c),
            }
            self.i += 1;
        }
        Ok(out)
    }

    fn set(&self, entry: &mut Keys, key: &[u8], value: Vec<u8>) -> Result<(), XfccError> {
        use XfccErrorKind as K;
        let is = |name: &str| key.eq_ignore_ascii_case(name.as_bytes());
        let text =
            |value: Vec<u8>| String::from_utf8(value).or_else(|_| self.fail(K::InvalidCharacter));
        if is("By") {
            entry.by.push(text(value)?);
        } else if is("URI") {
            entry.uris.push(text(value)?);
        } else if is("DNS") {
            entry.dns.push(text(value)?);
        } else if is("Subject") {
            if entry.subject.is_some() {
                return self.fail(K::DuplicateKey);
            }
            entry.subject = Some(text(value)?);
        } else if is("Chain") {
            if entry.chain {
                return self.fail(K::DuplicateKey);
            }
            entry.chain = true;
        } else if is("Hash") {
            if entry.hash.is_some() {
                return self.fail(K::DuplicateKey);
            }
            let digest = decode_hex_digest(&value).map_or_else(|| self.fail(K::InvalidHash), Ok)?;
            entry.hash = Some(Thumbprint::from_digest(digest));
        } else if is("Cert") {
            if entry.cert.is_some() {
                return self.fail(K::DuplicateKey);
            }
            entry.cert = Some(decode_cert(&value).map_err(|e| e.at(self.element))?);
        } else {
            return self.fail(K::UnknownKey);
        }
        Ok(())
    }

    fn finish(&self, entry: Keys) -> Result<XfccEntry, XfccError> {
        use XfccErrorKind as K;
        let thumbprint = match (&entry.cert, entry.hash) {
            (None, None) => return self.fail(K::NoCertificate),
            (Some(cert), hash) => {
                let thumbprint = Thumbprint::from_certificate(cert);
                if hash.is_some_and(|hash| !thumbprint.matches(&hash)) {
                    return self.fail(K::HashMismatch);
                }
                thumbprint
            }
            (None, Some(hash)) => hash,
        };
        Ok(XfccEntry {
            thumbprint,
            keys: entry,
        })
    }
}

fn is_ctl(c: u8) -> bool {
    (c < 0x20 && c != b'\t') || c == 0x7f
}

/// 64 hex digits (either case) to 32 bytes.
fn decode_hex_digest(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = super::hex_value(pair[0])? << 4 | super::hex_value(pair[1])?;
    }
    Some(out)
}

/// A `Cert` value: URL-encoded PEM of exactly one certificate, and nothing
/// around it but whitespace.
fn decode_cert(value: &[u8]) -> Result<CertificateDer<'static>, XfccError> {
    use XfccErrorKind as K;
    let invalid = |why: &'static str| Err(XfccError::new(K::InvalidCert).with_message(why));
    let Some(pem) = super::percent_decode(value) else {
        return invalid("a '%' is not followed by two hex digits");
    };
    let pem = pem.trim_ascii();
    if !pem.starts_with(b"-----BEGIN CERTIFICATE-----")
        || !pem.ends_with(b"-----END CERTIFICATE-----")
    {
        return invalid("it is not one PEM certificate");
    }
    let mut sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(pem);
    let der = match (sections.next(), sections.next()) {
        (Some(Ok((SectionKind::Certificate, der))), None) => der,
        (Some(Err(e)), _) => {
            return Err(XfccError::new(K::InvalidCert).with_source(e));
        }
        _ => return invalid("it is not one PEM certificate"),
    };
    let der = CertificateDer::from(der);
    if let Err(e) = ParsedCertificate::try_from(&der) {
        return Err(XfccError::new(K::NotCertificate).with_source(e));
    }
    Ok(der)
}

/// Why an `x-forwarded-client-cert` header was refused.
///
/// [`ForwardedClientCert`](super::ForwardedClientCert) puts it in the
/// extensions of its `400` responses. Match on [`kind`](Self::kind);
/// [`element`](Self::element) says which element was wrong, and the source
/// chain may have the PEM or certificate parsing error. It never holds the
/// header's value.
#[derive(Debug, Clone)]
pub struct XfccError {
    kind: XfccErrorKind,
    element: Option<usize>,
    detail: Detail,
}

/// What was wrong with an `x-forwarded-client-cert` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum XfccErrorKind {
    /// The value is empty.
    Empty,
    /// An element is empty (`a=1,,b=2`, or a `,` at either end).
    EmptyElement,
    /// A pair is not `key=value`, or is empty (`;;`).
    MalformedPair,
    /// A key other than `By`, `Hash`, `Cert`, `Chain`, `Subject`, `URI` and
    /// `DNS`.
    UnknownKey,
    /// `Hash`, `Cert`, `Chain` or `Subject` twice in one element.
    DuplicateKey,
    /// A quoted value does not end.
    UnterminatedQuote,
    /// A character that is not allowed where it is: a quote, backslash or
    /// whitespace in a plain value, a control character, text after a
    /// closing quote, a value that is not UTF-8.
    InvalidCharacter,
    /// `Hash` is not 64 hex digits.
    InvalidHash,
    /// `Cert` is not one URL-encoded PEM certificate.
    InvalidCert,
    /// The DER in `Cert` is not an X.509 certificate.
    NotCertificate,
    /// `Cert` and `Hash` name different certificates.
    HashMismatch,
    /// An element has neither `Cert` nor `Hash`.
    NoCertificate,
    /// More than one element, where exactly one is expected
    /// ([`XfccElement::Only`]). Not a malformed header:
    /// [`ForwardedClientCert`](super::ForwardedClientCert) takes no
    /// certificate from it rather than answering `400`.
    MultipleElements,
}

impl XfccError {
    fn new(kind: XfccErrorKind) -> Self {
        Self {
            kind,
            element: None,
            detail: Detail::default(),
        }
    }

    fn at(mut self, element: usize) -> Self {
        self.element = Some(element);
        self
    }

    /// Element indices count from the start of the whole list, over
    /// several header lines.
    fn shifted(mut self, by: usize) -> Self {
        self.element = self.element.map(|e| e + by);
        self
    }

    /// What was wrong with the header.
    pub fn kind(&self) -> XfccErrorKind {
        self.kind
    }

    /// The index (from 0) of the element that was wrong, when one was.
    pub fn element(&self) -> Option<usize> {
        self.element
    }
}

impl fmt::Display for XfccError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use XfccErrorKind as K;
        let why = match self.kind {
            K::Empty => "it is empty",
            K::EmptyElement => "an element is empty",
            K::MalformedPair => "a pair is not key=value",
            K::UnknownKey => "a key is not By, Hash, Cert, Chain, Subject, URI or DNS",
            K::DuplicateKey => "Hash, Cert, Chain or Subject appears twice",
            K::UnterminatedQuote => "a quoted value does not end",
            K::InvalidCharacter => "a character is not allowed where it is",
            K::InvalidHash => "Hash is not 64 hex digits",
            K::InvalidCert => "Cert is not a URL-encoded PEM certificate",
            K::NotCertificate => "Cert does not hold an X.509 certificate",
            K::HashMismatch => "Cert and Hash name different certificates",
            K::NoCertificate => "an element has neither Cert nor Hash",
            K::MultipleElements => "it has more than one element",
        };
        write!(f, "malformed x-forwarded-client-cert header: ")?;
        if let Some(element) = self.element {
            write!(f, "element {element}: ")?;
        }
        f.write_str(why)?;
        if let Some(message) = self.detail.message {
            write!(f, ": {message}")?;
        }
        self.detail.fmt_source(f)
    }
}

impl WithDetail for XfccError {
    fn detail_mut(&mut self) -> &mut Detail {
        &mut self.detail
    }
}

impl std::error::Error for XfccError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.detail.source()
    }
}

#[cfg(test)]
mod tests;
