//! The verifier core that DPoP proofs and signed HTTP requests share: the
//! error skeleton (`proof_error!`), the accessors of a verified proof
//! (`verified_accessors!`), the JWS and key checks, the claims and the
//! time window. Each scheme keeps what differs: where the key is, its
//! claims, what it is bound to and what it is remembered by.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::proof::alg::Algorithm;
use crate::proof::jwk::PublicJwk;
use crate::proof::jws::{CompactJws, JwsErrorKind};

/// A failure both schemes have (in alphabetical order); each names it
/// with a kind of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    BadSignature,
    DisallowedAlgorithm,
    DuplicateMember,
    InFuture,
    InvalidKey,
    Malformed,
    TooLarge,
    TooOld,
    WrongType,
}

/// A scheme's error, as the shared checks make it.
pub(crate) trait ProofError: Sized {
    /// An error for `failure`.
    fn failed(failure: Failure) -> Self;
    /// A missing-claim error naming `claim`.
    fn missing_claim(claim: &'static str) -> Self;
    /// This error with a detail for logs.
    fn with_detail(self, detail: impl Into<Cow<'static, str>>) -> Self;
}

/// The error of a proof scheme: the public type `$name` of kind `$kind`
/// with a claim and a detail, its constructor and accessors, `Display`
/// (the description, then the detail) and `ProofError`. `$too_old` and
/// `$in_future` name the kinds of a time out of the window; the scheme
/// writes `description`.
macro_rules! proof_error {
    (
        $(#[$doc:meta])*
        pub struct $name:ident($kind:ident { $too_old:ident, $in_future:ident });
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            kind: $kind,
            claim: Option<&'static str>,
            detail: Option<std::borrow::Cow<'static, str>>,
        }

        impl $name {
            /// An error of `kind`.
            pub fn new(kind: $kind) -> Self {
                Self {
                    kind,
                    claim: None,
                    detail: None,
                }
            }

            /// This error with a detail for logs (never sent to the client).
            pub fn with_detail(mut self, detail: impl Into<std::borrow::Cow<'static, str>>) -> Self {
                self.detail = Some(detail.into());
                self
            }

            /// What was wrong.
            pub fn kind(&self) -> $kind {
                self.kind
            }

            #[doc = concat!(
                "The claim that is missing or malformed, for\n[`",
                stringify!($kind),
                "::MissingClaim`]."
            )]
            pub fn claim(&self) -> Option<&'static str> {
                self.claim
            }
        }

        impl $crate::proof::verify::ProofError for $name {
            fn failed(failure: $crate::proof::verify::Failure) -> Self {
                use $crate::proof::verify::Failure as F;
                Self::new(match failure {
                    F::TooLarge => $kind::TooLarge,
                    F::Malformed => $kind::Malformed,
                    F::DuplicateMember => $kind::DuplicateMember,
                    F::WrongType => $kind::WrongType,
                    F::DisallowedAlgorithm => $kind::DisallowedAlgorithm,
                    F::InvalidKey => $kind::InvalidKey,
                    F::BadSignature => $kind::BadSignature,
                    F::TooOld => $kind::$too_old,
                    F::InFuture => $kind::$in_future,
                })
            }

            fn missing_claim(claim: &'static str) -> Self {
                Self {
                    claim: Some(claim),
                    ..Self::new($kind::MissingClaim)
                }
            }

            fn with_detail(self, detail: impl Into<std::borrow::Cow<'static, str>>) -> Self {
                $name::with_detail(self, detail)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.description())?;
                if let Some(detail) = &self.detail {
                    write!(f, " ({detail})")?;
                }
                Ok(())
            }
        }

        impl std::error::Error for $name {}
    };
}
pub(crate) use proof_error;

/// The accessors both verified proofs have, on fields `jwk`, `alg` and
/// `window` (a `ReplayWindow`):
/// `$what` names the proof in the docs, `$made` its time claim,
/// `$verify` the verifier's `verify` and `$key` what the replay key
/// hashes.
macro_rules! verified_accessors {
    ($what:literal, $made:literal, $verify:literal, $key:literal) => {
        #[doc = concat!("The ", $what, "'s public key.")]
        pub fn jwk(&self) -> &$crate::proof::PublicJwk {
            &self.jwk
        }

        #[doc = concat!("The ", $what, "'s algorithm.")]
        pub fn algorithm(&self) -> $crate::proof::Algorithm {
            self.alg
        }

        #[doc = concat!(
            "What the ", $what, " is remembered by in a replay store: the SHA-256\nof ",
            $key,
            "."
        )]
        pub fn replay_key(&self) -> $crate::replay::ReplayKey {
            self.window.key()
        }

        #[doc = concat!(
            "Until when the ", $what, " must be remembered: after that its `", $made,
            "` is out\nof the window and it is refused anyway."
        )]
        pub fn replay_expires_at(&self) -> std::time::SystemTime {
            self.window.expires_at()
        }

        #[doc = concat!(
            "Whether the ", $what, "'s `", $made, "` is still within the verifier's window at\n",
            "`now` (it was at [`verify`](", $verify, ") time). Check it\n",
            "again right before asking the replay store when anything slow (a\n",
            "token validation, a key fetch) came in between: one that has aged\n",
            "out of the window must be refused, not remembered."
        )]
        pub fn is_acceptable_at(&self, now: std::time::SystemTime) -> bool {
            self.window.is_acceptable_at(now)
        }
    };
}
pub(crate) use verified_accessors;

/// The first checks of both verifiers: the proof is at most `max_size`
/// bytes, a compact JWS naming no JSON member twice, of a `typ` that
/// `typ_matches`, signed with one of `algorithms` (the signature is checked
/// by `verify_signature`, once the key is known).
pub(crate) fn parse<'a, E: ProofError>(
    proof: &'a str,
    max_size: usize,
    typ_matches: impl FnOnce(&str) -> bool,
    algorithms: &[Algorithm],
) -> Result<CompactJws<'a>, E> {
    if proof.len() > max_size {
        return Err(E::failed(Failure::TooLarge));
    }
    let jws = CompactJws::parse(proof).map_err(|e| {
        let failure = match e.kind() {
            JwsErrorKind::DuplicateMember => Failure::DuplicateMember,
            JwsErrorKind::DisallowedAlgorithm => Failure::DisallowedAlgorithm,
            _ => Failure::Malformed,
        };
        E::failed(failure).with_detail(e.to_string())
    })?;
    if !jws.typ().is_some_and(typ_matches) {
        return Err(E::failed(Failure::WrongType));
    }
    let alg = jws.algorithm();
    if !algorithms.contains(&alg) {
        return Err(E::failed(Failure::DisallowedAlgorithm)
            .with_detail(format!("alg {alg} is not allowed")));
    }
    Ok(jws)
}

/// The proof's key, from its JWK: a public key of a supported type.
pub(crate) fn public_key<E: ProofError>(jwk: &Value) -> Result<PublicJwk, E> {
    PublicJwk::from_value(jwk)
        .map_err(|e| E::failed(Failure::InvalidKey).with_detail(e.to_string()))
}

/// The signature of `jws` verifies with `jwk`, for one of `algorithms`.
pub(crate) fn verify_signature<E: ProofError>(
    jws: &CompactJws<'_>,
    jwk: &PublicJwk,
    algorithms: &[Algorithm],
) -> Result<(), E> {
    jws.verify(jwk, algorithms).map_err(|e| {
        let failure = match e.kind() {
            JwsErrorKind::BadSignature => Failure::BadSignature,
            JwsErrorKind::DisallowedAlgorithm => Failure::DisallowedAlgorithm,
            _ => Failure::InvalidKey,
        };
        E::failed(failure).with_detail(e.to_string())
    })
}

/// The string claim `name`, or a missing-claim error naming it.
pub(crate) fn string_claim<'a, E: ProofError>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, E> {
    match claims.get(name) {
        Some(Value::String(value)) => Ok(value),
        _ => Err(E::missing_claim(name)),
    }
}

/// How old (`back`) and how far ahead of `now` (`ahead`, for clock skew)
/// the time a proof was made may be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeWindow {
    pub(crate) back: Duration,
    pub(crate) ahead: Duration,
}

impl TimeWindow {
    /// Checks `made` (whole seconds since the Unix epoch) at `now`, and
    /// returns it as a duration since the epoch.
    pub(crate) fn check<E: ProofError>(&self, made: u64, now: SystemTime) -> Result<Duration, E> {
        let now_since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let made_since_epoch = Duration::from_secs(made);
        if now_since_epoch.saturating_sub(made_since_epoch) > self.back {
            return Err(E::failed(Failure::TooOld));
        }
        if made_since_epoch.saturating_sub(now_since_epoch) > self.ahead {
            return Err(E::failed(Failure::InFuture));
        }
        Ok(made_since_epoch)
    }
}
