//! [`RejectionKind`]: what a rejection was for, and the status, `error`
//! code and description that each kind is answered with.

use std::borrow::Cow;

use http::StatusCode;

#[cfg(doc)]
use super::Rejection;
use crate::proof::dpop::{DpopError, DpopErrorKind};
use crate::proof::pop::{PopError, PopErrorKind};
use crate::validation::TokenErrorKind;

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
    /// The proof's key holds its share of the replay store
    /// ([`ReplayErrorKind::OwnerShareExceeded`](crate::replay::ReplayErrorKind::OwnerShareExceeded)):
    /// its client sends more proofs than its part, and only its requests
    /// are refused: `429` with `Retry-After`.
    ReplayShareExceeded,
    /// The signed HTTP request of `Authorization: PoP` was refused,
    /// replayed included ([`PopErrorKind::Replayed`]):
    /// `401 invalid_token` in a `PoP` challenge.
    InvalidSignedRequest(PopErrorKind),
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
            Self::ReplayShareExceeded => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The RFC 6750 (or RFC 9449 section 7.1) `error` code, if the answer
    /// carries one.
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            Self::MissingCredentials => None,
            Self::InsufficientScope => Some("insufficient_scope"),
            Self::MissingDpopProof => Some("invalid_dpop_proof"),
            Self::InvalidDpopProof(kind) => Some(DpopError::new(kind).error_code()),
            // The rest by their status: every other 401 is about the token,
            // every 400 about the request; a 503 or 429 carries no code.
            _ => match self.status() {
                StatusCode::UNAUTHORIZED => Some("invalid_token"),
                StatusCode::BAD_REQUEST => Some("invalid_request"),
                _ => None,
            },
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
            Self::KeysUnavailable => "the token issuer's keys are unavailable",
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
            Self::ReplayShareExceeded => "too many proofs by this key are remembered: retry later",
            Self::InvalidSignedRequest(kind) => match PopError::new(kind).description() {
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
