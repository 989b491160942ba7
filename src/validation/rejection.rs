use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode, header};

use super::{TokenError, TokenErrorKind};

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
    /// The token's `cnf` has no `x5t#S256`: it binds the token to something
    /// other than a certificate (for example a DPoP key), which this server
    /// cannot check: `401 invalid_token`.
    UnsupportedConfirmation,
    /// The token is not bound, and binding is required: `401 invalid_token`.
    UnboundToken,
    /// The token lacks a required scope: `403 insufficient_scope`.
    InsufficientScope,
    /// No keys to check tokens with: `503`.
    KeysUnavailable,
}

/// The scheme word of the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    MtlsPop,
}

impl Scheme {
    fn word(self) -> &'static str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::MtlsPop => "mtls_pop",
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
            | Self::UnboundToken => StatusCode::UNAUTHORIZED,
            Self::MalformedAuthorization | Self::MultipleTokens | Self::TokenInQuery => {
                StatusCode::BAD_REQUEST
            }
            Self::InsufficientScope => StatusCode::FORBIDDEN,
            Self::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 `error` code, if the answer carries one.
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            Self::MissingCredentials | Self::KeysUnavailable => None,
            Self::MalformedAuthorization | Self::MultipleTokens | Self::TokenInQuery => {
                Some("invalid_request")
            }
            Self::InsufficientScope => Some("insufficient_scope"),
            Self::InvalidToken(_)
            | Self::NoClientCertificate
            | Self::CertificateMismatch
            | Self::UnsupportedConfirmation
            | Self::UnboundToken => Some("invalid_token"),
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
                "the access token cnf claim has no x5t#S256 certificate thumbprint"
            }
            Self::UnboundToken => "the access token is not certificate-bound",
            Self::InsufficientScope => "the access token lacks a required scope",
            Self::KeysUnavailable => "the token signing keys are unavailable",
        }
    }
}

impl Rejection {
    pub(crate) fn new(kind: RejectionKind, scheme: Scheme) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                token_error: None,
                scheme,
            }),
        }
    }

    pub(crate) fn token(error: TokenError, scheme: Scheme) -> Self {
        let kind = match error.kind() {
            TokenErrorKind::KeysUnavailable => RejectionKind::KeysUnavailable,
            other => RejectionKind::InvalidToken(other),
        };
        Self {
            inner: Arc::new(Inner {
                kind,
                token_error: Some(error),
                scheme,
            }),
        }
    }

    /// What the rejection was for.
    pub fn kind(&self) -> RejectionKind {
        self.inner.kind
    }

    /// The validator's error, for [`RejectionKind::InvalidToken`] and
    /// [`RejectionKind::KeysUnavailable`].
    pub fn token_error(&self) -> Option<&TokenError> {
        self.inner.token_error.as_ref()
    }

    /// The `error_description` sent unless the layer is terse: the
    /// validator's [description](TokenError::description) for an invalid
    /// token (naming a missing claim), the kind's otherwise.
    pub fn description(&self) -> Cow<'static, str> {
        match &self.inner.token_error {
            Some(e) => e.description(),
            None => Cow::Borrowed(self.inner.kind.description()),
        }
    }

    /// The RFC 6750 response: status, `WWW-Authenticate` challenge (with
    /// `error_description` unless `terse`, and `scope` for
    /// `insufficient_scope`), `Cache-Control: no-store`, an empty body, and
    /// this rejection in the extensions.
    pub(crate) fn into_response<B: Default>(self, terse: bool, scope: Option<&str>) -> Response<B> {
        let kind = self.inner.kind;
        let mut response = Response::new(B::default());
        *response.status_mut() = kind.status();
        if kind != RejectionKind::KeysUnavailable {
            let description = (!terse).then(|| self.description());
            let challenge = challenge(self.inner.scheme, kind, description.as_deref(), scope);
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response.extensions_mut().insert(self);
        response
    }
}

fn challenge(
    scheme: Scheme,
    kind: RejectionKind,
    description: Option<&str>,
    scope: Option<&str>,
) -> HeaderValue {
    let mut value = String::from(scheme.word());
    if let Some(code) = kind.error_code() {
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
    }
    // Everything above is printable ASCII: `push_quoted` sees to it.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
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
        d.finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.token_error {
            Some(e) => write!(f, "{e}"),
            None => f.write_str(self.inner.kind.description()),
            // (`description` adds nothing here: `TokenError`'s `Display`
            // already names the claim.)
        }
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .token_error
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn www(rejection: Rejection, terse: bool, scope: Option<&str>) -> Option<String> {
        let response: Response<()> = rejection.into_response(terse, scope);
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
            "Bearer error=\"invalid_token\", error_description=\"the access token is not certificate-bound\""
        );
        assert_eq!(
            www(r(RejectionKind::InsufficientScope), true, Some("a \"b\"")).unwrap(),
            "Bearer error=\"insufficient_scope\", scope=\"a \\\"b\\\"\""
        );
        assert_eq!(www(r(RejectionKind::KeysUnavailable), false, None), None);
        let pop = Rejection::new(RejectionKind::NoClientCertificate, Scheme::MtlsPop);
        assert!(
            www(pop, true, None)
                .unwrap()
                .starts_with("mtls_pop error=\"invalid_token\"")
        );
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
