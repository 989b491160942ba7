//! The metric labels of what the validation layer decides: each kind of
//! refusal, token error and proof error, and each scheme, mapped to the
//! bounded label values `crate::metrics` documents.

use super::{RejectionKind, Scheme, TokenErrorKind};
use crate::proof::dpop::{DpopError, DpopErrorKind};
use crate::proof::pop::PopErrorKind;

/// The `scheme` label of a refusal of `kind` under `scheme`: `none` when
/// the request had no credentials at all.
pub(crate) fn rejection_scheme(kind: RejectionKind, scheme: Scheme) -> &'static str {
    match kind {
        RejectionKind::MissingCredentials => "none",
        _ => scheme_label(scheme),
    }
}

/// The `proof` label of a replay check under `scheme`.
pub(crate) fn proof_label(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Pop => "pop",
        Scheme::Dpop | Scheme::Bearer | Scheme::MtlsPop => "dpop",
    }
}

/// The `scheme` label: the `Authorization` scheme word, lowercased.
pub(crate) fn scheme_label(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Bearer => "bearer",
        Scheme::MtlsPop => "mtls_pop",
        Scheme::Dpop => "dpop",
        Scheme::Pop => "pop",
    }
}

/// The `outcome` label of a refusal: exhaustive, so a new kind of
/// rejection needs a label here.
pub(crate) fn rejection_outcome(kind: RejectionKind) -> &'static str {
    use RejectionKind as K;
    match kind {
        K::MissingCredentials => "missing_credentials",
        K::MalformedAuthorization
        | K::MultipleTokens
        | K::MultipleDpopProofs
        | K::SignedRequestAsToken => "malformed_request",
        K::TokenInQuery => "token_in_query",
        K::InvalidToken(kind) => token_outcome(kind),
        K::NoClientCertificate => "no_client_certificate",
        K::CertificateMismatch | K::DpopKeyMismatch | K::PopKeyMismatch => "binding_mismatch",
        K::UnsupportedConfirmation => "unsupported_cnf",
        K::UnboundToken => "unbound_token",
        K::InsufficientScope => "insufficient_scope",
        K::KeysUnavailable => "keys_unavailable",
        K::MissingDpopProof => "missing_proof",
        K::InvalidDpopProof(kind) => dpop_outcome(kind),
        K::DpopBoundAsBearer | K::PopBoundWithoutSignedRequest => "downgrade",
        K::NotDpopBound | K::NotPopBound => "scheme_mismatch",
        K::ReplayStoreUnavailable => "replay_store_unavailable",
        K::ReplayShareExceeded => "replay_share_exceeded",
        K::IntrospectionUnavailable => "introspection_unavailable",
        K::InvalidSignedRequest(kind) => pop_outcome(kind),
    }
}

pub(crate) fn token_outcome(kind: TokenErrorKind) -> &'static str {
    use TokenErrorKind as K;
    match kind {
        K::Malformed | K::DuplicateMember => "malformed_token",
        K::WrongType => "wrong_token_type",
        K::DisallowedAlgorithm => "disallowed_algorithm",
        K::UnknownKey => "unknown_key",
        K::BadSignature => "bad_signature",
        K::WrongIssuer => "wrong_issuer",
        K::WrongAudience => "wrong_audience",
        K::Expired => "expired",
        K::NotYetValid => "not_yet_valid",
        K::MissingClaim => "missing_claim",
        K::InvalidConfirmation => "invalid_cnf",
        K::KeysUnavailable => "keys_unavailable",
        K::Inactive => "inactive",
        K::TokenTypeMismatch => "token_type_mismatch",
        K::UnexpectedShape => "unexpected_shape",
        K::IntrospectionUnavailable => "introspection_unavailable",
        K::Other => "invalid_token",
    }
}

pub(crate) fn dpop_outcome(kind: DpopErrorKind) -> &'static str {
    if kind == DpopErrorKind::Replayed {
        "replayed"
    } else if DpopError::new(kind).is_nonce_error() {
        "nonce_required"
    } else {
        "bad_proof"
    }
}

pub(crate) fn pop_outcome(kind: PopErrorKind) -> &'static str {
    if kind == PopErrorKind::Replayed {
        "replayed"
    } else {
        "bad_proof"
    }
}
