//! Trusted-proxy mode: the client certificate from the RFC 9440 `Client-Cert`
//! header.
//!
//! Behind a TLS-terminating reverse proxy, the application never sees the
//! client's TLS handshake. A proxy that implements [RFC 9440] forwards the
//! client certificate in the `Client-Cert` header as an RFC 8941 byte
//! sequence: `:` the DER in standard base64 `:`.
//!
//! [`ForwardedClientCertLayer`] turns that header into the
//! [`PeerCertificate`] extension the rest of the crate reads. It is the only
//! place this crate reads the header, and then the header is the only source:
//! for every request the layer first removes any `PeerCertificate` extension
//! (such as the proxy's own certificate, when the proxy connects with mTLS
//! through [`serve`](super::serve())), then adds one made from the header if
//! there is one. A malformed header is answered with `400 Bad Request`, and
//! the reason ([`ClientCertHeaderError`]) is in the response's extensions.
//!
//! **Use it only where every request comes through a proxy that you
//! control** and that removes or overwrites any `Client-Cert` header sent by
//! clients: whoever can reach the application directly can claim any
//! certificate with this header.
//!
//! ```
//! use std::convert::Infallible;
//! use base64::Engine as _;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt as _};
//! use tower_token_binding::server::PeerCertificate;
//! use tower_token_binding::server::forwarded::{
//!     CLIENT_CERT, ClientCertHeaderError, ClientCertHeaderErrorKind, ForwardedClientCertLayer,
//! };
//! # use tower_token_binding::test_util::TestPki;
//!
//! async fn whoami(request: Request<String>) -> Result<Response<String>, Infallible> {
//!     let peer = request.extensions().get::<PeerCertificate>();
//!     Ok(Response::new(peer.map_or(String::new(), |p| p.thumbprint().to_string())))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .layer(ForwardedClientCertLayer::new())
//!     .service_fn(whoami);
//!
//! # let cert = TestPki::self_signed_client("client.example")?;
//! // What the proxy sends: the client's certificate as an RFC 8941 byte sequence.
//! let header = format!(":{}:", base64::engine::general_purpose::STANDARD.encode(cert.cert()));
//! let request = Request::get("/").header(CLIENT_CERT, header).body(String::new())?;
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.into_body(), cert.thumbprint().to_string());
//!
//! // A malformed header is a 400, with the reason in the response's extensions.
//! let request = Request::get("/").header(CLIENT_CERT, "not base64").body(String::new())?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::BAD_REQUEST);
//! let error = response.extensions().get::<ClientCertHeaderError>().unwrap();
//! assert_eq!(error.kind(), ClientCertHeaderErrorKind::NotByteSequence);
//! # Ok(())
//! # }
//! ```
//!
//! [RFC 9440]: https://www.rfc-editor.org/rfc/rfc9440

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http::header::HeaderName;
use http::{HeaderMap, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use rustls::server::ParsedCertificate;
use rustls_pki_types::CertificateDer;
use tower::{Layer, Service};

use super::PeerCertificate;

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
/// appears more than once. This is the check [`ForwardedClientCert`] makes.
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

fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Why a `Client-Cert` header was refused.
///
/// [`ForwardedClientCert`] puts it in the extensions of its `400` responses.
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

/// Layer that applies [`ForwardedClientCert`]: takes the client certificate
/// from the RFC 9440 `Client-Cert` header, and from nowhere else.
///
/// See the [module docs](self) for when it is safe to use.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardedClientCertLayer {
    _priv: (),
}

impl ForwardedClientCertLayer {
    /// Creates the layer.
    pub fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for ForwardedClientCertLayer {
    type Service = ForwardedClientCert<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardedClientCert::new(inner)
    }
}

/// Middleware that replaces the request's [`PeerCertificate`] with the one in
/// the RFC 9440 `Client-Cert` header (or with none, when there is no header),
/// and answers a malformed header with `400 Bad Request`.
///
/// See the [module docs](self) for an example and for when it is safe to use.
#[derive(Debug, Clone)]
pub struct ForwardedClientCert<S> {
    inner: S,
}

impl<S> ForwardedClientCert<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A [`ForwardedClientCertLayer`].
    pub fn layer() -> ForwardedClientCertLayer {
        ForwardedClientCertLayer::new()
    }

    /// Gets a reference to the underlying service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the underlying service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the underlying service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ForwardedClientCert<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        request.extensions_mut().remove::<PeerCertificate>();
        match client_cert_from_headers(request.headers()) {
            Ok(peer) => {
                if let Some(peer) = peer {
                    request.extensions_mut().insert(peer);
                }
                ResponseFuture::future(self.inner.call(request))
            }
            Err(error) => {
                tracing::debug!(%error, "refusing the request");
                let mut response = Response::new(ResBody::default());
                *response.status_mut() = StatusCode::BAD_REQUEST;
                response.extensions_mut().insert(error);
                ResponseFuture::rejected(response)
            }
        }
    }
}

pin_project! {
    /// Response future for [`ForwardedClientCert`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn future(future: F) -> Self {
        Self {
            kind: Kind::Future { future },
        }
    }

    fn rejected(response: Response<B>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Future {
            #[pin]
            future: F,
        },
        Rejected {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Future { future } => future.poll(cx),
            KindProj::Rejected { response } => {
                Poll::Ready(Ok(response.take().expect("future polled after completion")))
            }
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    use http::HeaderValue;
    use rustls_pki_types::pem::PemObject;
    use tower::{ServiceBuilder, ServiceExt as _};

    use super::*;
    use crate::Thumbprint;

    const CERT: &[u8] = include_bytes!("../../tests/data/client.pem");
    const X5T: &str = include_str!("../../tests/data/client.x5t-s256");

    fn der() -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(CERT).unwrap()
    }

    fn header() -> String {
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
            assert_eq!(peer.certificate(), &der());
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

    async fn echo(request: Request<String>) -> Result<Response<String>, Infallible> {
        let peer = request.extensions().get::<PeerCertificate>();
        Ok(Response::new(
            peer.map_or("none".to_owned(), |p| p.thumbprint().to_string()),
        ))
    }

    fn request(values: &[&str]) -> Request<String> {
        let mut request = Request::new(String::new());
        // A certificate from somewhere else (the proxy's own, say).
        request
            .extensions_mut()
            .insert(PeerCertificate::new(CertificateDer::from(
                b"proxy".to_vec(),
            )));
        for value in values {
            request
                .headers_mut()
                .append(CLIENT_CERT, HeaderValue::from_str(value).unwrap());
        }
        request
    }

    #[tokio::test]
    async fn the_header_is_the_only_source() {
        let service = ServiceBuilder::new()
            .layer(ForwardedClientCertLayer::new())
            .service_fn(echo);

        let response = service.clone().oneshot(request(&[])).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.into_body(), "none");

        let response = service
            .clone()
            .oneshot(request(&[&header()]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.into_body(), X5T.trim());

        for values in [&["garbage"][..], &[&header(), &header()]] {
            let response = service.clone().oneshot(request(values)).await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert!(
                response
                    .extensions()
                    .get::<ClientCertHeaderError>()
                    .is_some()
            );
            assert_eq!(response.into_body(), "");
        }
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
