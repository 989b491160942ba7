//! Proof of possession of a private key: the keys, JWKs, thumbprints and
//! JWS signatures behind DPoP (RFC 9449) and Microsoft's signed HTTP
//! requests, in one place for both.
//!
//! - [`ProofKey`]: a private key (ES256 by default; EdDSA, PS256 and others)
//!   generated in memory or loaded from PEM, parsed once, signing with
//!   aws-lc-rs.
//! - [`PublicJwk`]: a public key as a JWK, ours or a peer's (read strictly:
//!   no private members), and its RFC 7638 [`JwkThumbprint`], the `jkt` a
//!   token is bound to.
//! - [`jws`]: compact JWS signing and strict verification.
//! - [`dpop`]: DPoP proofs, made by clients ([`dpop::DpopProofs`]) and
//!   checked by servers ([`dpop::DpopVerifier`]).
//! - [`pop`]: Microsoft's `PoP` scheme, whose proofs are signed HTTP
//!   requests (SHRs), made by clients ([`pop::PopProofs`]) and checked by
//!   servers ([`pop::PopVerifier`]).
//!
//! Used by both halves of the crate: clients make proofs, servers check
//! them. Whether a proof was seen before is the [`replay`](crate::replay)
//! store's question.
//!
//! ```
//! use tower_token_binding::proof::{Algorithm, ProofKey, PublicJwk};
//!
//! let key = ProofKey::generate(Algorithm::Es256).unwrap();
//! // What a server reads from a proof's header: the same key, the same jkt.
//! let received = PublicJwk::parse(key.public_jwk().as_json()).unwrap();
//! assert_eq!(received.thumbprint(), key.thumbprint());
//! ```

mod alg;
#[cfg(feature = "client")]
pub(crate) mod challenge;
pub mod dpop;
mod jwk;
pub mod jws;
mod key;
pub mod pop;
mod thumbprint;
mod verify;
mod window;

pub use alg::Algorithm;
pub use jwk::{JwkError, JwkErrorKind, PublicJwk};
pub use key::{KeyError, KeyErrorKind, ProofKey, ProofSignature};
pub use thumbprint::{JwkThumbprint, ParseJwkThumbprintError};

/// The default port of `scheme` (`https` or `http`, case-insensitive): how
/// both schemes tell one origin from another (a PoP `u`, the DPoP nonce
/// memory's origins), and the reqwest middleware a response's origin.
pub(crate) fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else {
        None
    }
}

/// The former name of [`pop`], Microsoft's `PoP` scheme: each item is now
/// there, named for the scheme.
#[deprecated(note = "renamed `proof::pop`")]
pub mod shr {
    pub use super::pop::{
        SCHEME, body_hash, header_claim, host_claim, path_claim, query_claim, req_cnf,
    };

    /// Now [`PopVerifier`](super::pop::PopVerifier).
    #[deprecated(note = "renamed `proof::pop::PopVerifier`")]
    pub type ShrVerifier = super::pop::PopVerifier;
    /// Now [`PopVerifierBuilder`](super::pop::PopVerifierBuilder).
    #[deprecated(note = "renamed `proof::pop::PopVerifierBuilder`")]
    pub type ShrVerifierBuilder = super::pop::PopVerifierBuilder;
    /// Now [`VerifiedPopProof`](super::pop::VerifiedPopProof).
    #[deprecated(note = "renamed `proof::pop::VerifiedPopProof`")]
    pub type VerifiedShr = super::pop::VerifiedPopProof;
    /// Now [`PopError`](super::pop::PopError).
    #[deprecated(note = "renamed `proof::pop::PopError`")]
    pub type ShrError = super::pop::PopError;
    /// Now [`PopErrorKind`](super::pop::PopErrorKind).
    #[deprecated(note = "renamed `proof::pop::PopErrorKind`")]
    pub type ShrErrorKind = super::pop::PopErrorKind;
    /// Now [`CreatePopProofError`](super::pop::CreatePopProofError).
    #[deprecated(note = "renamed `proof::pop::CreatePopProofError`")]
    pub type CreateShrError = super::pop::CreatePopProofError;
    /// Now [`CreatePopProofErrorKind`](super::pop::CreatePopProofErrorKind).
    #[deprecated(note = "renamed `proof::pop::CreatePopProofErrorKind`")]
    pub type CreateShrErrorKind = super::pop::CreatePopProofErrorKind;
    /// Now [`PopSigner`](super::pop::PopSigner).
    #[deprecated(note = "renamed `proof::pop::PopSigner`")]
    pub type ShrSigner<'a> = super::pop::PopSigner<'a>;
    /// Now [`PopProofs`](super::pop::PopProofs).
    #[deprecated(note = "renamed `proof::pop::PopProofs`")]
    pub type SignedHttpRequests = super::pop::PopProofs;
    /// Now [`POP_TYPE`](super::pop::POP_TYPE).
    #[deprecated(note = "renamed `proof::pop::POP_TYPE`")]
    pub const SHR_TYPE: &str = super::pop::POP_TYPE;
}
