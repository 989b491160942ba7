use std::borrow::Cow;
use std::fmt;

use crate::proof::key::KeyError;
use crate::proof::verify::proof_error;

proof_error! {
    /// Why a DPoP proof was refused by a
    /// [`DpopVerifier`](super::DpopVerifier).
    ///
    /// The answer (RFC 9449 section 7.1) is a `401` with a `DPoP` challenge
    /// whose `error` is [`error_code`](Self::error_code) (`invalid_dpop_proof`,
    /// or `use_dpop_nonce` with a fresh `DPoP-Nonce` header) and whose
    /// `error_description` may be [`description`](Self::description): fixed
    /// text per kind, safe to send. [`Display`](std::fmt::Display) adds a detail for
    /// logs.
    pub struct DpopError(DpopErrorKind { IatTooOld, IatInFuture });
}

/// What was wrong with a DPoP proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopErrorKind {
    /// The proof is longer than the configured maximum (4 KiB by default).
    TooLarge,
    /// Not a compact JWS with JSON object header and claims.
    Malformed,
    /// The header or the claims name a JSON member twice.
    DuplicateMember,
    /// The `typ` header is not `dpop+jwt`.
    WrongType,
    /// The `alg` is not allowed (never `none` nor HMAC).
    DisallowedAlgorithm,
    /// The `jwk` header is missing, is not a public key of a supported
    /// type (a private member such as `d` is refused), or does not fit the
    /// `alg`.
    InvalidKey,
    /// The signature does not verify with the `jwk`.
    BadSignature,
    /// A required claim is missing or malformed;
    /// [`DpopError::claim`] names it.
    MissingClaim,
    /// `htm` is not the request's method.
    MethodMismatch,
    /// `htu` is not the request's URI.
    UriMismatch,
    /// `iat` is older than the window allows.
    IatTooOld,
    /// `iat` is further in the future than the window allows.
    IatInFuture,
    /// `ath` is not the hash of the access token presented.
    AthMismatch,
    /// The server requires a nonce and the proof has none.
    MissingNonce,
    /// The proof's nonce is not a current nonce of the server (stale or
    /// forged).
    InvalidNonce,
    /// The proof has been used before.
    Replayed,
}

impl DpopError {
    /// The OAuth error code: `use_dpop_nonce` when the client must retry
    /// with the server's current nonce, `invalid_dpop_proof` otherwise.
    pub fn error_code(&self) -> &'static str {
        match self.kind {
            DpopErrorKind::MissingNonce | DpopErrorKind::InvalidNonce => "use_dpop_nonce",
            _ => "invalid_dpop_proof",
        }
    }

    /// Whether the client must retry with the server's current nonce.
    pub fn is_nonce_error(&self) -> bool {
        self.error_code() == "use_dpop_nonce"
    }

    /// The client-safe description, for `error_description`: fixed per
    /// kind, naming the claim for a missing one.
    pub fn description(&self) -> Cow<'static, str> {
        use DpopErrorKind as K;
        Cow::Borrowed(match self.kind {
            K::TooLarge => "the DPoP proof is too large",
            K::Malformed => "the DPoP proof is not a well-formed JWT",
            K::DuplicateMember => "the DPoP proof names a JSON member twice",
            K::WrongType => "the DPoP proof is not of type dpop+jwt",
            K::DisallowedAlgorithm => "the DPoP proof is signed with an algorithm not allowed",
            K::InvalidKey => "the DPoP proof jwk is not an acceptable public key",
            K::BadSignature => "the DPoP proof signature is invalid",
            K::MissingClaim => {
                return match self.claim {
                    Some(claim) => {
                        Cow::Owned(format!("the DPoP proof lacks a valid {claim} claim"))
                    }
                    None => Cow::Borrowed("the DPoP proof lacks a required claim"),
                };
            }
            K::MethodMismatch => "the DPoP proof htm does not match the request method",
            K::UriMismatch => "the DPoP proof htu does not match the request URI",
            K::IatTooOld => "the DPoP proof is too old",
            K::IatInFuture => "the DPoP proof is issued in the future",
            K::AthMismatch => "the DPoP proof ath does not match the access token",
            K::MissingNonce => "a DPoP nonce is required",
            K::InvalidNonce => "the DPoP nonce is invalid or expired",
            K::Replayed => "the DPoP proof has been used before",
        })
    }
}

/// Why a DPoP proof could not be made.
#[derive(Debug)]
pub struct CreateDpopProofError {
    kind: CreateDpopProofErrorKind,
    source: Option<KeyError>,
}

/// What kept a DPoP proof from being made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CreateDpopProofErrorKind {
    /// The request URI has no scheme or no host: `htu` must be absolute.
    RelativeUri,
    /// The system random generator failed (no `jti`).
    Random,
    /// The key failed to sign.
    Signing,
}

impl CreateDpopProofError {
    pub(crate) fn new(kind: CreateDpopProofErrorKind) -> Self {
        Self { kind, source: None }
    }

    pub(crate) fn signing(source: KeyError) -> Self {
        Self {
            kind: CreateDpopProofErrorKind::Signing,
            source: Some(source),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> CreateDpopProofErrorKind {
        self.kind
    }
}

impl fmt::Display for CreateDpopProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            CreateDpopProofErrorKind::RelativeUri => {
                "a DPoP proof needs an absolute request URI (scheme and host)"
            }
            CreateDpopProofErrorKind::Random => "the system random generator failed",
            CreateDpopProofErrorKind::Signing => "the DPoP proof could not be signed",
        })
    }
}

impl std::error::Error for CreateDpopProofError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
