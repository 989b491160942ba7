use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};

use super::layer::Settings;
use super::{TokenError, TokenErrorKind};
use crate::proof::dpop::{DPOP_NONCE, DpopError, DpopErrorKind};
use crate::proof::shr::{ShrError, ShrErrorKind};
use crate::replay::ReplayError;

/// The `Retry-After` of a `503` (no signing keys, no introspection answer,
/// or a replay store that could not answer), in seconds.
const RETRY_AFTER: &str = "5";

/// Why [`CnfValidationLayer`](super::CnfValidationLayer) refused a request.
///
/// The layer answers with the RFC 6750 response for it and puts a clone of
/// the `Rejection` into that response's extensions, for logging or metrics
/// further out. It is also logged with `tracing` at debug level (never with
/// the token).
#[derive(Clone)]
pub struct Rejection {
    inner: Arc<Inner>,
}

struct Inner {
    kind: RejectionKind,
    token_error: Option<TokenError>,
    dpop_error: Option<DpopError>,
    shr_error: Option<ShrError>,
    replay_error: Option<ReplayError>,
    scheme: Scheme,
}

/// What a [`Rejection`] was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credentials in a supported scheme: `401` with a bare challenge.
    MissingCredentials,
    /// A malformed `Authorization` header: `400 invalid_request`.
    MalformedAuthorization,
    /// The token was sent in more than one way (several `Authorization`
    /// headers, or a header and an `access_token` query parameter):
    /// `400 invalid_request`.
    MultipleTokens,
    /// The token was sent in the URI query only, which this server does not
    /// accept (RFC 6750 section 2.3 is a MAY, and leaks tokens into logs):
    /// `400 invalid_request`.
    TokenInQuery,
    /// The token itself is invalid: `401 invalid_token`.
    InvalidToken(TokenErrorKind),
    /// The token is bound to a certificate, but the request came without
    /// one: `401 invalid_token`.
    NoClientCertificate,
    /// The token is bound to another certificate than the request's:
    /// `401 invalid_token`.
    CertificateMismatch,
    /// The token's `cnf` names no binding this route accepts: only members
    /// this server cannot check, a DPoP key on a route without DPoP, a
    /// certificate on a DPoP-only route, or both a certificate and a DPoP
    /// key: `401 invalid_token`.
    UnsupportedConfirmation,
    /// The token is not bound, and binding is required: `401 invalid_token`.
    UnboundToken,
    /// The token lacks a required scope: `403 insufficient_scope`.
    InsufficientScope,
    /// No keys to check tokens with: `503` with `Retry-After`.
    KeysUnavailable,
    /// The introspection endpoint (RFC 7662) is down, too slow or gave no
    /// usable answer: `503` with `Retry-After` (the token may be fine).
    IntrospectionUnavailable,
    /// `Authorization: DPoP` without a `DPoP` proof header:
    /// `401 invalid_dpop_proof`.
    MissingDpopProof,
    /// More than one `DPoP` header: `400 invalid_request`.
    MultipleDpopProofs,
    /// The DPoP proof was refused, replayed included
    /// ([`DpopErrorKind::Replayed`]): `401 invalid_dpop_proof`, or
    /// `401 use_dpop_nonce` with a fresh `DPoP-Nonce` header when the proof
    /// lacks a current server nonce.
    InvalidDpopProof(DpopErrorKind),
    /// A DPoP-bound token (`cnf.jkt`) sent with another scheme than `DPoP`
    /// (a downgrade to a bearer token): `401 invalid_token`.
    DpopBoundAsBearer,
    /// The `DPoP` scheme with a token that is not DPoP-bound (no
    /// `cnf.jkt`): `401 invalid_token`.
    NotDpopBound,
    /// The token is bound to another DPoP key than the proof's:
    /// `401 invalid_token` (a new key needs a new token).
    DpopKeyMismatch,
    /// The replay store could not tell whether the proof (or the signed
    /// HTTP request) is new, so it was refused (fail closed): `503` with
    /// `Retry-After`.
    ReplayStoreUnavailable,
    /// The signed HTTP request of `Authorization: PoP` was refused,
    /// replayed included ([`ShrErrorKind::Replayed`]):
    /// `401 invalid_token` in a `PoP` challenge.
    InvalidSignedRequest(ShrErrorKind),
    /// A PoP-bound token (`cnf.kid`) sent without a signed HTTP request
    /// (as `Bearer`, `mtls_pop` or `DPoP`: a downgrade): `401 invalid_token`.
    PopBoundWithoutSignedRequest,
    /// The `PoP` scheme with an access token that is not PoP-bound (no
    /// `cnf.kid`): `401 invalid_token`.
    NotPopBound,
    /// The token's `cnf.kid` is not the thumbprint of the signed HTTP
    /// request's key: `401 invalid_token`.
    PopKeyMismatch,
    /// A signed HTTP request (a JWS of type `pop`) sent as if it were the
    /// access token, with another scheme than `PoP`: `401 invalid_token`.
    SignedRequestAsToken,
}

/// The scheme word of the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    MtlsPop,
    Dpop,
    /// Microsoft's signed HTTP requests.
    Pop,
}

impl Scheme {
    fn word(self) -> &'static str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::MtlsPop => "mtls_pop",
            Scheme::Dpop => "DPoP",
            Scheme::Pop => "PoP",
        }
    }
}

impl RejectionKind {
    /// The HTTP status of the answer.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingCredentials
            | Self::InvalidToken(_)
            | Self::NoClientCertificate
            | Self::CertificateMismatch
            | Self::UnsupportedConfirmation
            | Self::UnboundToken
            | Self::MissingDpopProof
            | Self::InvalidDpopProof(_)
            | Self::DpopBoundAsBearer
            | Self::NotDpopBound
            | Self::DpopKeyMismatch
            | Self::InvalidSignedRequest(_)
            | Self::PopBoundWithoutSignedRequest
            | Self::NotPopBound
            | Self::PopKeyMismatch
            | Self::SignedRequestAsToken => StatusCode::UNAUTHORIZED,
            Self::MalformedAuthorization
            | Self::MultipleTokens
            | Self::TokenInQuery
            | Self::MultipleDpopProofs => StatusCode::BAD_REQUEST,
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::KeysUnavailable
            | Self::IntrospectionUnavailable
            | Self::ReplayStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 (or RFC 9449 section 7.1) `error` code, if the answer
    /// carries one.
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            Self::MissingCredentials
            | Self::KeysUnavailable
            | Self::IntrospectionUnavailable
            | Self::ReplayStoreUnavailable => None,
            Self::MalformedAuthorization
            | Self::MultipleTokens
            | Self::TokenInQuery
            | Self::MultipleDpopProofs => Some("invalid_request"),
            Self::InsufficientScope => Some("insufficient_scope"),
            Self::InvalidToken(_)
            | Self::NoClientCertificate
            | Self::CertificateMismatch
            | Self::UnsupportedConfirmation
            | Self::UnboundToken
            | Self::DpopBoundAsBearer
            | Self::NotDpopBound
            | Self::DpopKeyMismatch
            | Self::InvalidSignedRequest(_)
            | Self::PopBoundWithoutSignedRequest
            | Self::NotPopBound
            | Self::PopKeyMismatch
            | Self::SignedRequestAsToken => Some("invalid_token"),
            Self::MissingDpopProof => Some("invalid_dpop_proof"),
            Self::InvalidDpopProof(kind) => Some(DpopError::new(kind).error_code()),
        }
    }

    /// The `error_description` sent unless the layer is terse (for
    /// [`InvalidToken`](Self::InvalidToken), [`Rejection::description`] can
    /// say more, such as which claim is missing).
    pub fn description(self) -> &'static str {
        match self {
            Self::MissingCredentials => "no access token",
            Self::MalformedAuthorization => "the Authorization header is malformed",
            Self::MultipleTokens => "the access token was sent more than once",
            Self::TokenInQuery => "send the access token in the Authorization header",
            Self::InvalidToken(kind) => kind.description(),
            Self::NoClientCertificate => {
                "the access token is certificate-bound but no client certificate was presented"
            }
            Self::CertificateMismatch => {
                "the access token is bound to a different client certificate"
            }
            Self::UnsupportedConfirmation => {
                "the access token cnf claim names no binding this server accepts"
            }
            Self::UnboundToken => "the access token is not bound",
            Self::InsufficientScope => "the access token lacks a required scope",
            Self::KeysUnavailable => "the token signing keys are unavailable",
            Self::IntrospectionUnavailable => "the token introspection endpoint is unavailable",
            Self::MissingDpopProof => "the DPoP scheme requires a DPoP proof header",
            Self::MultipleDpopProofs => "the DPoP proof header was sent more than once",
            Self::InvalidDpopProof(kind) => match DpopError::new(kind).description() {
                Cow::Borrowed(text) => text,
                Cow::Owned(_) => "the DPoP proof lacks a required claim",
            },
            Self::DpopBoundAsBearer => {
                "the access token is DPoP-bound: send it with the DPoP scheme and a proof"
            }
            Self::NotDpopBound => "the access token sent with the DPoP scheme is not DPoP-bound",
            Self::DpopKeyMismatch => "the access token is bound to another key than the DPoP proof",
            Self::ReplayStoreUnavailable => "the replay check is unavailable",
            Self::InvalidSignedRequest(kind) => match ShrError::new(kind).description() {
                Cow::Borrowed(text) => text,
                Cow::Owned(_) => "the PoP SHR lacks a required claim",
            },
            Self::PopBoundWithoutSignedRequest => {
                "the access token is PoP-bound: send it in a signed HTTP request with the PoP scheme"
            }
            Self::NotPopBound => "the access token in the PoP SHR is not PoP-bound (no cnf.kid)",
            Self::PopKeyMismatch => {
                "the access token is bound to another key than the PoP SHR (cnf.kid)"
            }
            Self::SignedRequestAsToken => {
                "a PoP signed HTTP request is not an access token: send it with the PoP scheme"
            }
        }
    }
}

impl Rejection {
    pub(crate) fn new(kind: RejectionKind, scheme: Scheme) -> Self {
        Self::from_inner(Inner {
            kind,
            token_error: None,
            dpop_error: None,
            shr_error: None,
            replay_error: None,
            scheme,
        })
    }

    fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn token(error: TokenError, scheme: Scheme) -> Self {
        let kind = match error.kind() {
            TokenErrorKind::KeysUnavailable => RejectionKind::KeysUnavailable,
            TokenErrorKind::IntrospectionUnavailable => RejectionKind::IntrospectionUnavailable,
            other => RejectionKind::InvalidToken(other),
        };
        Self::from_inner(Inner {
            kind,
            token_error: Some(error),
            dpop_error: None,
            shr_error: None,
            replay_error: None,
            scheme,
        })
    }

    pub(crate) fn dpop(error: DpopError, scheme: Scheme) -> Self {
        Self::from_inner(Inner {
            kind: RejectionKind::InvalidDpopProof(error.kind()),
            token_error: None,
            dpop_error: Some(error),
            shr_error: None,
            replay_error: None,
            scheme,
        })
    }

    pub(crate) fn shr(error: ShrError) -> Self {
        Self::from_inner(Inner {
            kind: RejectionKind::InvalidSignedRequest(error.kind()),
            token_error: None,
            dpop_error: None,
            shr_error: Some(error),
            replay_error: None,
            scheme: Scheme::Pop,
        })
    }

    pub(crate) fn replay_store(error: ReplayError, scheme: Scheme) -> Self {
        Self::from_inner(Inner {
            kind: RejectionKind::ReplayStoreUnavailable,
            token_error: None,
            dpop_error: None,
            shr_error: None,
            replay_error: Some(error),
            scheme,
        })
    }

    /// What the rejection was for.
    pub fn kind(&self) -> RejectionKind {
        self.inner.kind
    }

    /// The validator's error, for [`RejectionKind::InvalidToken`],
    /// [`RejectionKind::KeysUnavailable`] and
    /// [`RejectionKind::IntrospectionUnavailable`].
    pub fn token_error(&self) -> Option<&TokenError> {
        self.inner.token_error.as_ref()
    }

    /// The DPoP verifier's error, for [`RejectionKind::InvalidDpopProof`]
    /// (a replayed proof's too).
    pub fn dpop_error(&self) -> Option<&DpopError> {
        self.inner.dpop_error.as_ref()
    }

    /// The SHR verifier's error, for [`RejectionKind::InvalidSignedRequest`]
    /// (a replayed SHR's too).
    pub fn shr_error(&self) -> Option<&ShrError> {
        self.inner.shr_error.as_ref()
    }

    /// The `error_description` sent unless the layer is terse: the
    /// validator's [description](TokenError::description) for an invalid
    /// token (naming a missing claim), the DPoP verifier's for a refused
    /// proof, the SHR verifier's for a refused signed HTTP request, the
    /// kind's otherwise.
    pub fn description(&self) -> Cow<'static, str> {
        let inner = &self.inner;
        match (&inner.token_error, &inner.dpop_error, &inner.shr_error) {
            (Some(e), _, _) => e.description(),
            (None, Some(e), _) => e.description(),
            (None, None, Some(e)) => e.description(),
            (None, None, None) => Cow::Borrowed(inner.kind.description()),
        }
    }

    /// The response: status, `WWW-Authenticate` challenges (see
    /// [`challenges`]), `Cache-Control: no-store`, `Retry-After` for a
    /// `503` (no signing keys, no introspection answer, or a replay store
    /// that failed), `DPoP-Nonce` for a `DPoP` request when
    /// nonces are on, an empty body, and this rejection in the extensions.
    pub(crate) fn into_response<B: Default>(self, settings: &Settings) -> Response<B> {
        let kind = self.inner.kind;
        crate::metrics::rejected(kind, self.inner.scheme);
        let mut response = Response::new(B::default());
        *response.status_mut() = kind.status();
        let headers = response.headers_mut();
        match kind {
            RejectionKind::KeysUnavailable
            | RejectionKind::IntrospectionUnavailable
            | RejectionKind::ReplayStoreUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
            }
            _ => {
                let description = (!settings.terse).then(|| self.description());
                let offer = Offer {
                    bearer: settings.offers_bearer(),
                    dpop_algs: settings.dpop.as_ref().map(|v| v.algs()),
                    pop: settings.pop.is_some(),
                };
                let value = challenges(
                    self.inner.scheme,
                    kind,
                    description.as_deref(),
                    settings.scope_param.as_deref(),
                    &offer,
                );
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(nonce) = super::dpop::nonce_header(settings, self.inner.scheme) {
            headers.insert(DPOP_NONCE, nonce);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response.extensions_mut().insert(self);
        response
    }
}

/// The schemes a route accepts, for its challenges.
struct Offer<'a> {
    bearer: bool,
    /// With DPoP, the `algs` parameter.
    dpop_algs: Option<&'a str>,
    /// Signed HTTP requests (`PoP`).
    pop: bool,
}

/// One `WWW-Authenticate` value with a challenge for each scheme the route
/// accepts (RFC 7235 section 4.1 allows several in one value; one value is
/// what clients that read a single header see whole).
///
/// With an error, the challenge of the request's scheme comes first and
/// carries it (`DPoP error="invalid_dpop_proof", algs="ES256 ..."`), then
/// bare challenges for the other schemes: `Bearer`, `DPoP algs="..."`,
/// `PoP`. Without credentials, bare challenges for every scheme offered
/// (RFC 9449 section 7.2: `Bearer, DPoP algs="ES256 PS256"`).
fn challenges(
    scheme: Scheme,
    kind: RejectionKind,
    description: Option<&str>,
    scope: Option<&str>,
    offer: &Offer<'_>,
) -> HeaderValue {
    let mut value = String::new();
    let mut add_bearer = offer.bearer;
    let mut add_dpop = offer.dpop_algs;
    let mut add_pop = offer.pop;
    if let Some(code) = kind.error_code() {
        value.push_str(scheme.word());
        value.push_str(" error=\"");
        value.push_str(code);
        value.push('"');
        if let Some(description) = description {
            value.push_str(", error_description=\"");
            push_quoted(&mut value, description);
            value.push('"');
        }
        if let (RejectionKind::InsufficientScope, Some(scope)) = (kind, scope) {
            value.push_str(", scope=\"");
            push_quoted(&mut value, scope);
            value.push('"');
        }
        match scheme {
            Scheme::Dpop => {
                if let Some(algs) = add_dpop.take() {
                    push_algs(&mut value, algs, false);
                }
            }
            Scheme::Pop => add_pop = false,
            // An `mtls_pop` client is answered in its own scheme only.
            Scheme::Bearer | Scheme::MtlsPop => add_bearer = false,
        }
    }
    if add_bearer {
        push_separator(&mut value);
        value.push_str("Bearer");
    }
    if let Some(algs) = add_dpop {
        push_separator(&mut value);
        value.push_str("DPoP");
        push_algs(&mut value, algs, true);
    }
    if add_pop {
        push_separator(&mut value);
        value.push_str("PoP");
    }
    if value.is_empty() {
        value.push_str("Bearer");
    }
    // Everything above is printable ASCII: `push_quoted` sees to it.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

fn push_separator(value: &mut String) {
    if !value.is_empty() {
        value.push_str(", ");
    }
}

/// The `algs` parameter: ` algs="..."` right after the scheme word (`bare`),
/// `, algs="..."` after other parameters.
fn push_algs(value: &mut String, algs: &str, bare: bool) {
    value.push_str(if bare { " " } else { ", " });
    value.push_str("algs=\"");
    push_quoted(value, algs);
    value.push('"');
}

/// Escapes for an RFC 7230 quoted-string. RFC 6750 allows only printable
/// ASCII in `error_description` and `scope`; anything else (a custom
/// validator's claim name, say) becomes `?`.
fn push_quoted(out: &mut String, text: &str) {
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(if c == ' ' || c.is_ascii_graphic() {
            c
        } else {
            '?'
        });
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Rejection");
        d.field("kind", &self.inner.kind);
        if let Some(e) = &self.inner.token_error {
            d.field("token_error", e);
        }
        if let Some(e) = &self.inner.dpop_error {
            d.field("dpop_error", e);
        }
        if let Some(e) = &self.inner.shr_error {
            d.field("shr_error", e);
        }
        if let Some(e) = &self.inner.replay_error {
            d.field("replay_error", e);
        }
        d.finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // (`description` adds nothing here: the errors' `Display` already
        // names the claim.)
        let inner = &self.inner;
        if let Some(e) = &inner.token_error {
            return write!(f, "{e}");
        }
        if let Some(e) = &inner.dpop_error {
            return write!(f, "{e}");
        }
        if let Some(e) = &inner.shr_error {
            return write!(f, "{e}");
        }
        match &inner.replay_error {
            Some(e) => write!(f, "{}: {e}", inner.kind.description()),
            None => f.write_str(inner.kind.description()),
        }
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        if let Some(e) = &self.inner.token_error {
            return Some(e);
        }
        if let Some(e) = &self.inner.dpop_error {
            return Some(e);
        }
        if let Some(e) = &self.inner.shr_error {
            return Some(e);
        }
        self.inner
            .replay_error
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn www(rejection: Rejection, terse: bool, scope: Option<&str>) -> Option<String> {
        let settings = Settings {
            terse,
            scope_param: scope.map(str::to_owned),
            ..Settings::default()
        };
        www_with(rejection, &settings)
    }

    fn www_with(rejection: Rejection, settings: &Settings) -> Option<String> {
        let response: Response<()> = rejection.into_response(settings);
        response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn challenges() {
        let r = |k| Rejection::new(k, Scheme::Bearer);
        assert_eq!(
            www(r(RejectionKind::MissingCredentials), false, None).unwrap(),
            "Bearer"
        );
        assert_eq!(
            www(r(RejectionKind::CertificateMismatch), true, None).unwrap(),
            "Bearer error=\"invalid_token\""
        );
        assert_eq!(
            www(r(RejectionKind::UnboundToken), false, None).unwrap(),
            "Bearer error=\"invalid_token\", error_description=\"the access token is not bound\""
        );
        assert_eq!(
            www(r(RejectionKind::InsufficientScope), true, Some("a \"b\"")).unwrap(),
            "Bearer error=\"insufficient_scope\", scope=\"a \\\"b\\\"\""
        );
        assert_eq!(www(r(RejectionKind::KeysUnavailable), false, None), None);
        assert_eq!(
            www(r(RejectionKind::IntrospectionUnavailable), false, None),
            None
        );
        let unavailable = Rejection::token(
            TokenError::new(TokenErrorKind::IntrospectionUnavailable),
            Scheme::Bearer,
        );
        assert_eq!(unavailable.kind(), RejectionKind::IntrospectionUnavailable);
        let response: Response<()> = unavailable.into_response(&Settings::default());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let inactive = Rejection::token(TokenError::new(TokenErrorKind::Inactive), Scheme::Bearer);
        assert_eq!(
            www_with(inactive, &Settings::default()).unwrap(),
            "Bearer error=\"invalid_token\", error_description=\"the access token is not active\""
        );
        let pop = Rejection::new(RejectionKind::NoClientCertificate, Scheme::MtlsPop);
        assert!(
            www(pop, true, None)
                .unwrap()
                .starts_with("mtls_pop error=\"invalid_token\"")
        );
    }

    #[test]
    fn dpop_challenges() {
        use crate::proof::Algorithm;
        use crate::proof::dpop::DpopVerifier;
        let verifier = DpopVerifier::builder()
            .algorithms([Algorithm::Es256, Algorithm::EdDsa])
            .build();
        let both = Settings {
            terse: true,
            dpop: Some(verifier.clone()),
            ..Settings::default()
        };
        let dpop_only = Settings {
            no_certificates: true,
            ..both.clone()
        };
        let missing = |s| {
            www_with(
                Rejection::new(RejectionKind::MissingCredentials, Scheme::Bearer),
                s,
            )
        };
        assert_eq!(missing(&both).unwrap(), "Bearer, DPoP algs=\"ES256 EdDSA\"");
        assert_eq!(missing(&dpop_only).unwrap(), "DPoP algs=\"ES256 EdDSA\"");

        let proof = |kind| Rejection::dpop(DpopError::new(kind), Scheme::Dpop);
        assert_eq!(
            www_with(proof(DpopErrorKind::BadSignature), &both).unwrap(),
            "DPoP error=\"invalid_dpop_proof\", algs=\"ES256 EdDSA\", Bearer"
        );
        assert_eq!(
            www_with(proof(DpopErrorKind::MissingNonce), &dpop_only).unwrap(),
            "DPoP error=\"use_dpop_nonce\", algs=\"ES256 EdDSA\""
        );
        let bearer = Rejection::new(RejectionKind::DpopBoundAsBearer, Scheme::Bearer);
        assert_eq!(
            www_with(bearer, &both).unwrap(),
            "Bearer error=\"invalid_token\", DPoP algs=\"ES256 EdDSA\""
        );
        let verbose = Settings {
            terse: false,
            ..both.clone()
        };
        let mismatch = Rejection::new(RejectionKind::DpopKeyMismatch, Scheme::Dpop);
        assert_eq!(
            www_with(mismatch, &verbose).unwrap(),
            "DPoP error=\"invalid_token\", error_description=\"the access token is bound to another key than the DPoP proof\", algs=\"ES256 EdDSA\", Bearer"
        );
        assert_eq!(
            RejectionKind::InvalidDpopProof(DpopErrorKind::MissingClaim).description(),
            "the DPoP proof lacks a required claim"
        );

        // A failing store: 503, Retry-After, no challenge.
        let failed = Rejection::replay_store(
            ReplayError::new(crate::replay::ReplayErrorKind::Unavailable),
            Scheme::Dpop,
        );
        assert!(failed.to_string().contains("unavailable"));
        assert!(std::error::Error::source(&failed).is_some());
        let response: Response<()> = failed.into_response(&both);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn pop_challenges() {
        use crate::proof::dpop::DpopVerifier;
        use crate::proof::shr::ShrVerifier;
        let all = Settings {
            terse: true,
            dpop: Some(
                DpopVerifier::builder()
                    .algorithms([crate::proof::Algorithm::Es256])
                    .build(),
            ),
            pop: Some(ShrVerifier::new()),
            ..Settings::default()
        };
        let missing = Rejection::new(RejectionKind::MissingCredentials, Scheme::Bearer);
        assert_eq!(
            www_with(missing, &all).unwrap(),
            "Bearer, DPoP algs=\"ES256\", PoP"
        );
        let pop_only = Settings {
            no_certificates: true,
            dpop: None,
            ..all.clone()
        };
        let missing = Rejection::new(RejectionKind::MissingCredentials, Scheme::Bearer);
        assert_eq!(www_with(missing, &pop_only).unwrap(), "PoP");

        // The PoP challenge carries the error, with the check that failed.
        let verbose = Settings {
            terse: false,
            ..all.clone()
        };
        let stale = Rejection::shr(ShrError::new(ShrErrorKind::TooOld));
        assert_eq!(
            stale.kind(),
            RejectionKind::InvalidSignedRequest(ShrErrorKind::TooOld)
        );
        assert!(stale.shr_error().is_some());
        assert_eq!(
            www_with(stale, &verbose).unwrap(),
            "PoP error=\"invalid_token\", error_description=\"the PoP SHR ts is too old\", Bearer, DPoP algs=\"ES256\""
        );
        let mismatch = Rejection::new(RejectionKind::PopKeyMismatch, Scheme::Pop);
        assert!(
            www_with(mismatch, &verbose)
                .unwrap()
                .starts_with("PoP error=\"invalid_token\", error_description=\"the access token is bound to another key than the PoP SHR")
        );
        // A PoP-bound token as a bearer token: refused in the Bearer
        // challenge, PoP still offered.
        let downgrade = Rejection::new(RejectionKind::PopBoundWithoutSignedRequest, Scheme::Bearer);
        assert_eq!(
            www_with(downgrade, &all).unwrap(),
            "Bearer error=\"invalid_token\", DPoP algs=\"ES256\", PoP"
        );
        for kind in [
            RejectionKind::InvalidSignedRequest(ShrErrorKind::Replayed),
            RejectionKind::PopBoundWithoutSignedRequest,
            RejectionKind::NotPopBound,
            RejectionKind::PopKeyMismatch,
            RejectionKind::SignedRequestAsToken,
        ] {
            assert_eq!(kind.status(), StatusCode::UNAUTHORIZED, "{kind:?}");
            assert_eq!(kind.error_code(), Some("invalid_token"), "{kind:?}");
            assert!(kind.description().contains("PoP"), "{kind:?}");
        }
        let failed = Rejection::replay_store(
            ReplayError::new(crate::replay::ReplayErrorKind::Unavailable),
            Scheme::Pop,
        );
        let response: Response<()> = failed.into_response(&all);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn a_missing_claim_is_named_and_descriptions_stay_ascii() {
        let missing = Rejection::token(TokenError::missing_claim("jti"), Scheme::Bearer);
        assert_eq!(
            www(missing, false, None).unwrap(),
            "Bearer error=\"invalid_token\", error_description=\"the access token lacks a valid jti claim\""
        );
        let odd = Rejection::token(TokenError::missing_claim("caf\u{e9}\n"), Scheme::Bearer);
        assert!(www(odd, false, None).unwrap().contains("valid caf?? claim"));
        let terse = Rejection::token(TokenError::missing_claim("jti"), Scheme::Bearer);
        assert_eq!(
            www(terse, true, None).unwrap(),
            "Bearer error=\"invalid_token\""
        );
    }
}
