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
//! - [`shr`]: Microsoft's signed HTTP requests (the `PoP` scheme), made by
//!   clients ([`shr::SignedHttpRequests`]) and checked by servers
//!   ([`shr::ShrVerifier`]).
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
pub mod shr;
mod thumbprint;
mod verify;
mod window;

pub use alg::Algorithm;
pub use jwk::{JwkError, JwkErrorKind, PublicJwk};
pub use key::{KeyError, KeyErrorKind, ProofKey, ProofSignature};
pub use thumbprint::{JwkThumbprint, ParseJwkThumbprintError};
