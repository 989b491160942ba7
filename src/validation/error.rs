use std::borrow::Cow;
use std::fmt;

/// Why an access token was not accepted by a [`ValidateToken`](super::ValidateToken).
///
/// The [`kind`](Self::kind) decides the HTTP answer: every kind is a `401`
/// `invalid_token` except [`TokenErrorKind::KeysUnavailable`] and
/// [`TokenErrorKind::IntrospectionUnavailable`], a `503` with `Retry-After`
/// (the server cannot check the token now, which is not the client's fault).
#[derive(Debug, Clone)]
pub struct TokenError {
    kind: TokenErrorKind,
    claim: Option<Cow<'static, str>>,
    detail: Option<String>,
}

/// What was wrong with a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenErrorKind {
    /// Not a well-formed JWT (segments, base64url, JSON).
    Malformed,
    /// The `typ` header is not `at+jwt` (RFC 9068 section 4).
    WrongType,
    /// The `alg` is not allowed (including `none` and HMAC with public keys).
    DisallowedAlgorithm,
    /// No key in the key set matches the token's `kid` and `alg`.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `iss` is not the expected issuer.
    WrongIssuer,
    /// `aud` does not name this resource server.
    WrongAudience,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is still in the future (beyond the leeway).
    NotYetValid,
    /// A required claim is missing or has the wrong type;
    /// [`TokenError::claim`] names it.
    MissingClaim,
    /// The JWT header or payload names a JSON member twice (two `cnf`, two
    /// `alg`, two `x5t#S256` inside `cnf`, ...). Parsers disagree on which
    /// one counts, so such a token is refused before anything else is read.
    DuplicateMember,
    /// `cnf` is present but malformed.
    InvalidConfirmation,
    /// No keys could be loaded to check tokens with (the JWKS endpoint is
    /// down and no earlier key set is known).
    KeysUnavailable,
    /// The introspection answer (RFC 7662) says the token is not active:
    /// revoked, expired or never issued.
    Inactive,
    /// The introspection answer's `token_type` does not fit its `cnf`: a
    /// `DPoP` token without `cnf.jkt`, or a `cnf.jkt` in a token of another
    /// type (RFC 9449 section 6.2).
    TokenTypeMismatch,
    /// The token cannot be one of the authorization server's: longer than
    /// the introspection validator's `max_token_length`, or refused by its
    /// `token_shape`. The authorization server was not asked.
    UnexpectedShape,
    /// The introspection endpoint could not be asked, or gave no usable
    /// answer (down, too slow, an error status, not an RFC 7662 JSON
    /// object, `active` not a boolean, a member named twice, a claim of the
    /// wrong type): the token may be fine, so the client is told to come
    /// back (`503` with `Retry-After`).
    IntrospectionUnavailable,
    /// Some other reason, from a custom validator.
    Other,
}

impl TokenError {
    /// A token error of `kind`.
    pub fn new(kind: TokenErrorKind) -> Self {
        Self {
            kind,
            claim: None,
            detail: None,
        }
    }

    /// A [`TokenErrorKind::MissingClaim`] error naming `claim`, which is
    /// absent or of the wrong type. The name goes into `error_description`.
    pub fn missing_claim(claim: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: TokenErrorKind::MissingClaim,
            claim: Some(claim.into()),
            detail: None,
        }
    }

    /// A token error of `kind` with a detail for logs and `Display` (never
    /// sent to the client; do not put the token in it).
    pub fn with_detail(kind: TokenErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            claim: None,
            detail: Some(detail.into()),
        }
    }

    pub(crate) fn set_detail(&mut self, detail: String) {
        self.detail = Some(detail);
    }

    /// What was wrong.
    pub fn kind(&self) -> TokenErrorKind {
        self.kind
    }

    /// The claim that is missing or malformed, for
    /// [`TokenErrorKind::MissingClaim`].
    pub fn claim(&self) -> Option<&str> {
        self.claim.as_deref()
    }

    /// The client-safe description, as sent in `error_description`: fixed
    /// per kind, naming the claim for a missing one.
    pub fn description(&self) -> Cow<'static, str> {
        match &self.claim {
            Some(claim) => Cow::Owned(format!("the access token lacks a valid {claim} claim")),
            None => Cow::Borrowed(self.kind.description()),
        }
    }
}

impl TokenErrorKind {
    pub(crate) fn description(self) -> &'static str {
        match self {
            Self::Malformed => "the access token is not a well-formed JWT",
            Self::WrongType => "the access token typ is not one this server accepts (at+jwt)",
            Self::DisallowedAlgorithm => "the access token is signed with an algorithm not allowed",
            Self::UnknownKey => "the access token is signed with an unknown key",
            Self::BadSignature => "the access token signature is invalid",
            Self::WrongIssuer => "the access token has the wrong issuer",
            Self::WrongAudience => "the access token is not meant for this resource",
            Self::Expired => "the access token has expired",
            Self::NotYetValid => "the access token is not valid yet",
            Self::MissingClaim => "the access token lacks a required claim",
            Self::DuplicateMember => "the access token names a JSON member twice",
            Self::InvalidConfirmation => "the access token cnf claim is malformed",
            Self::KeysUnavailable => "the token issuer's keys are unavailable",
            Self::Inactive => "the access token is not active",
            Self::TokenTypeMismatch => "the access token type does not match its cnf claim",
            Self::UnexpectedShape => "the access token cannot be one of this issuer's tokens",
            Self::IntrospectionUnavailable => "the token introspection endpoint is unavailable",
            Self::Other => "the access token is invalid",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for TokenError {}
