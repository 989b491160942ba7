use std::borrow::Cow;
use std::fmt;

use crate::proof::key::KeyError;
use crate::proof::verify::proof_error;

proof_error! {
    /// Why a signed HTTP request was refused by a
    /// [`PopVerifier`](super::PopVerifier).
    ///
    /// The answer is a `401` with `WWW-Authenticate: PoP
    /// error="invalid_token"` ([`error_code`](Self::error_code)) and an
    /// `error_description` that may be [`description`](Self::description):
    /// fixed text per kind naming the failed check, safe to send.
    /// [`Display`](fmt::Display) adds a detail for logs.
    pub struct PopError(PopErrorKind { TooOld, InFuture });
}

/// What was wrong with a signed HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PopErrorKind {
    /// The SHR is longer than the configured maximum.
    TooLarge,
    /// Not a compact JWS with JSON object header and payload.
    Malformed,
    /// The header or the payload names a JSON member twice.
    DuplicateMember,
    /// The `typ` header is not `pop`.
    WrongType,
    /// The `alg` is not allowed (never `none` nor HMAC).
    DisallowedAlgorithm,
    /// `cnf.jwk` is missing, is not a public key of a supported type (a
    /// private member such as `d`, or a symmetric key, is refused), or does
    /// not fit the `alg`.
    InvalidKey,
    /// The header's `kid` is not the thumbprint of `cnf.jwk`.
    KidMismatch,
    /// The signature does not verify with `cnf.jwk`.
    BadSignature,
    /// A required claim is missing or malformed; [`PopError::claim`]
    /// names it.
    MissingClaim,
    /// `ts` is older than the lifetime allows.
    TooOld,
    /// `ts` is further in the future than the leeway allows.
    InFuture,
    /// `m` is not the request's method.
    MethodMismatch,
    /// `u` is not the request's host and port.
    HostMismatch,
    /// `p` is not the request's path.
    PathMismatch,
    /// `q` or `h` lists more names than the verifier allows
    /// ([`max_covered_names`](super::PopVerifierBuilder::max_covered_names)).
    TooManyNames,
    /// `q` does not match the request's query, names a parameter the
    /// request repeats, or (when `q` is required) leaves one out.
    QueryMismatch,
    /// `h` does not match the request's headers.
    HeaderMismatch,
    /// `b` does not match the request's body, or the body is not available
    /// to check it.
    BodyMismatch,
    /// The SHR has been used before.
    Replayed,
}

impl PopError {
    /// The OAuth error code of the `PoP` challenge: `invalid_token`.
    pub fn error_code(&self) -> &'static str {
        "invalid_token"
    }

    /// The client-safe description, for `error_description`: fixed per
    /// kind, naming the failed check (and the claim, for a missing one).
    pub fn description(&self) -> Cow<'static, str> {
        use PopErrorKind as K;
        Cow::Borrowed(match self.kind {
            K::TooLarge => "the PoP SHR is too large",
            K::Malformed => "the PoP SHR is not a well-formed JWS",
            K::DuplicateMember => "the PoP SHR names a JSON member twice",
            K::WrongType => "the PoP SHR is not of type pop",
            K::DisallowedAlgorithm => "the PoP SHR is signed with an algorithm not allowed",
            K::InvalidKey => "the PoP SHR cnf.jwk is not an acceptable public key",
            K::KidMismatch => "the PoP SHR kid is not the thumbprint of its cnf.jwk",
            K::BadSignature => "the PoP SHR signature is invalid",
            K::MissingClaim => {
                return match self.claim {
                    Some(claim) => Cow::Owned(format!("the PoP SHR lacks a valid {claim} claim")),
                    None => Cow::Borrowed("the PoP SHR lacks a required claim"),
                };
            }
            K::TooOld => "the PoP SHR ts is too old",
            K::InFuture => "the PoP SHR ts is in the future",
            K::MethodMismatch => "the PoP SHR method m does not match the request",
            K::HostMismatch => "the PoP SHR host u does not match the request",
            K::PathMismatch => "the PoP SHR path p does not match the request",
            K::TooManyNames => "the PoP SHR q or h lists too many names",
            K::QueryMismatch => "the PoP SHR query hash q does not match the request",
            K::HeaderMismatch => "the PoP SHR header hash h does not match the request",
            K::BodyMismatch => "the PoP SHR body hash b does not match the request",
            K::Replayed => "the PoP SHR has been used before",
        })
    }
}

/// Why a signed HTTP request could not be made.
#[derive(Debug)]
pub struct CreatePopProofError {
    kind: CreatePopProofErrorKind,
    source: Option<KeyError>,
}

/// What kept a signed HTTP request from being made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreatePopProofErrorKind {
    /// The request URI has no scheme or no host: `u` needs both.
    RelativeUri,
    /// A header to be hashed into `h` is absent or its value is not
    /// visible ASCII.
    Header,
    /// The system random generator failed (no nonce).
    Random,
    /// The key failed to sign.
    Signing,
}

impl CreatePopProofError {
    pub(crate) fn new(kind: CreatePopProofErrorKind) -> Self {
        Self { kind, source: None }
    }

    pub(crate) fn signing(source: KeyError) -> Self {
        Self {
            kind: CreatePopProofErrorKind::Signing,
            source: Some(source),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> CreatePopProofErrorKind {
        self.kind
    }
}

impl fmt::Display for CreatePopProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            CreatePopProofErrorKind::RelativeUri => {
                "a signed HTTP request needs an absolute URI (scheme and host)"
            }
            CreatePopProofErrorKind::Header => {
                "a header to sign is absent or its value is not visible ASCII"
            }
            CreatePopProofErrorKind::Random => "the system random generator failed",
            CreatePopProofErrorKind::Signing => "the signed HTTP request could not be signed",
        })
    }
}

impl std::error::Error for CreatePopProofError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
