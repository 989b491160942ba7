//! What the server half records: one small function per event, called in
//! one line where it happens.

use super::{
    ACCEPTED, FORWARDED_CERTIFICATES, INTROSPECTIONS, JWKS_FETCHES, REPLAY_CHECKS,
    VALIDATION_CACHE_LOOKUPS, VALIDATIONS, increment,
};
use crate::ProvenBinding;
use crate::replay::ReplayErrorKind;

/// The validation layer refused a request (every refusal passes here, as
/// it becomes a response), with its `outcome` and `scheme` labels (see
/// `validation::labels`).
#[inline]
pub(crate) fn rejected(outcome: &'static str, scheme: &'static str) {
    increment(VALIDATIONS, &[("outcome", outcome), ("scheme", scheme)]);
}

/// The validation layer let a request through under `scheme` (its label),
/// the request having proven `binding`.
#[inline]
pub(crate) fn accepted(scheme: &'static str, binding: ProvenBinding) {
    increment(VALIDATIONS, &[("outcome", "ok"), ("scheme", scheme)]);
    increment(ACCEPTED, &[("binding", binding_label(binding))]);
}

/// The `binding` label of an accepted request.
pub(crate) fn binding_label(binding: ProvenBinding) -> &'static str {
    match binding {
        ProvenBinding::Certificate(_) => "certificate",
        ProvenBinding::Dpop(_) => "dpop",
        ProvenBinding::Pop(_) => "pop",
        ProvenBinding::None => "none",
    }
}

/// Which validator's cache of verified tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validator {
    /// [`JwtValidator`](crate::validation::JwtValidator).
    Jwt,
    /// An RFC 7662 introspection validator.
    Introspection,
}

/// A lookup in a validator's cache of verified tokens.
#[inline]
pub(crate) fn validation_cache(validator: Validator, hit: bool) {
    let validator = match validator {
        Validator::Jwt => "jwt",
        Validator::Introspection => "introspection",
    };
    let result = if hit { "hit" } else { "miss" };
    increment(
        VALIDATION_CACHE_LOOKUPS,
        &[("validator", validator), ("result", result)],
    );
}

/// How a fetch of the signing keys (JWKS) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwksFetch {
    /// A usable key set (changed or not).
    Ok,
    /// The issuer's metadata could not be had or names no usable JWKS URL.
    Discovery,
    /// The server answered with a status other than success.
    HttpStatus,
    /// No answer: connection, TLS, timeout.
    Transport,
    /// An answer that is not a usable key set (unreadable, too large, not a
    /// JWKS, no usable key).
    Invalid,
}

/// A fetch of the signing keys ended.
#[inline]
pub(crate) fn jwks_fetch(outcome: JwksFetch) {
    let outcome = match outcome {
        JwksFetch::Ok => "ok",
        JwksFetch::Discovery => "discovery",
        JwksFetch::HttpStatus => "http_status",
        JwksFetch::Transport => "transport",
        JwksFetch::Invalid => "invalid",
    };
    increment(JWKS_FETCHES, &[("outcome", outcome)]);
}

/// The replay store answered for a DPoP proof (`proof` `dpop`) or a signed
/// HTTP request (`pop`): new (`Ok(true)`), seen before (`Ok(false)`), the
/// proof's key over its share (`Err(OwnerShareExceeded)`), or no answer
/// (any other error).
#[inline]
pub(crate) fn replay_check(proof: &'static str, answer: Result<bool, ReplayErrorKind>) {
    let result = match answer {
        Ok(true) => "fresh",
        Ok(false) => "replayed",
        Err(ReplayErrorKind::OwnerShareExceeded) => "share_exceeded",
        Err(_) => "unavailable",
    };
    increment(REPLAY_CHECKS, &[("proof", proof), ("result", result)]);
}

/// How a call to an introspection endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Introspection {
    /// `"active": true`.
    Active,
    /// `"active": false`, or an active token refused on its claims
    /// (expired, another issuer or audience, a `token_type` at odds with
    /// its `cnf`).
    Inactive,
    /// Down, timed out, or a `5xx`.
    Unavailable,
    /// An answer that is not an introspection response.
    InvalidResponse,
    /// Not made: `max_concurrent_calls` calls were in flight already, or
    /// all but the `recheck_reserve` for a token not seen active before
    /// (answered `503` at once).
    Overloaded,
    /// Not made: the token cannot be the issuer's (longer than
    /// `max_token_length`, or refused by `token_shape`; answered `401`).
    UnexpectedShape,
}

/// A call to an introspection endpoint ended: for the introspection
/// validator, next to its cache lookups
/// (`validation_cache(Validator::Introspection, hit)`).
#[inline]
pub(crate) fn introspection_call(outcome: Introspection) {
    increment(
        INTROSPECTIONS,
        &[("outcome", introspection_outcome(outcome))],
    );
}

/// What a forwarded-certificate layer did with a request's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forwarded {
    /// From a trusted proxy; the certificate was taken.
    Used,
    /// From a trusted proxy; several XFCC elements, none chosen, or an
    /// empty URL-escaped PEM (the client sent no certificate).
    NoneTaken,
    /// From a trusted proxy; malformed, refused with `400`.
    Malformed,
    /// From a peer that is not a trusted proxy; removed, not read.
    Ignored,
}

/// A request with a forwarded client certificate header.
#[inline]
pub(crate) fn forwarded_certificate(result: Forwarded) {
    let result = match result {
        Forwarded::Used => "used",
        Forwarded::NoneTaken => "none_taken",
        Forwarded::Malformed => "malformed",
        Forwarded::Ignored => "ignored",
    };
    increment(FORWARDED_CERTIFICATES, &[("result", result)]);
}

/// The `outcome` label of an introspection call.
pub(crate) fn introspection_outcome(outcome: Introspection) -> &'static str {
    match outcome {
        Introspection::Active => "active",
        Introspection::Inactive => "inactive",
        Introspection::Unavailable => "unavailable",
        Introspection::InvalidResponse => "invalid_response",
        Introspection::Overloaded => "overloaded",
        Introspection::UnexpectedShape => "unexpected_shape",
    }
}
