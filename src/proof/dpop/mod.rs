//! DPoP ([RFC 9449]): a proof of possession of the token's key on every
//! request.
//!
//! A DPoP-bound access token carries `"cnf": {"jkt": "..."}`, the RFC 7638
//! thumbprint of the client's public key. With every request the client
//! sends `Authorization: DPoP <token>` and a `DPoP` header: a JWT of type
//! `dpop+jwt`, signed by that key, carrying its public key in the header and,
//! in its claims, the request's method (`htm`) and URI (`htu`), the time
//! (`iat`), a unique id (`jti`), the token's hash (`ath`) and the server's
//! nonce when it asked for one.
//!
//! - Client: [`DpopProofs`] makes the proofs of one [`ProofKey`] and
//!   remembers the last `DPoP-Nonce` of each origin ([`NonceMemory`]).
//! - Server: [`DpopVerifier`] checks a proof against the request (a pure
//!   function of the proof, the request and the time) and returns a
//!   [`VerifiedDpopProof`]; the caller then checks the token's `cnf.jkt`
//!   ([`VerifiedDpopProof::is_bound_to`]) and, last, the
//!   [`replay store`](crate::replay). [`StatelessNonces`] makes and checks
//!   server nonces without state.
//!
//! ```
//! use tower_token_binding::clock;
//! use http::{Method, Uri};
//! use tower_token_binding::proof::dpop::{DpopProofs, DpopVerifier};
//! use tower_token_binding::proof::{Algorithm, ProofKey};
//!
//! // Client: one key, a proof per request.
//! let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
//! let uri: Uri = "https://api.example/orders?page=2".parse().unwrap();
//! let proof = proofs.proof(&Method::GET, &uri, Some("the-access-token")).unwrap();
//!
//! // Server: the same request, as the server sees it.
//! let verified = DpopVerifier::new()
//!     .verify(&proof, &Method::GET, &uri, Some("the-access-token"), clock::wall())
//!     .unwrap();
//! assert_eq!(verified.jkt(), proofs.thumbprint());
//! // The token's cnf.jkt must name the proof's key.
//! assert!(verified.is_bound_to(&proofs.thumbprint().to_string()));
//!
//! // Another method: refused.
//! let err = DpopVerifier::new()
//!     .verify(&proof, &Method::POST, &uri, Some("the-access-token"), clock::wall())
//!     .unwrap_err();
//! assert_eq!(err.error_code(), "invalid_dpop_proof");
//! ```
//!
//! [RFC 9449]: https://www.rfc-editor.org/rfc/rfc9449
//! [`ProofKey`]: super::ProofKey

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderName;

mod client;
mod error;
pub(crate) mod htu;
mod nonce_memory;
mod stateless_nonces;
mod verifier;

#[cfg(test)]
mod tests;

pub use client::DpopProofs;
pub use error::{CreateDpopProofError, CreateDpopProofErrorKind, DpopError, DpopErrorKind};
pub use nonce_memory::NonceMemory;
pub use stateless_nonces::{NonceSecretError, StatelessNonces};
pub use verifier::{DpopVerifier, DpopVerifierBuilder, VerifiedDpopProof};

/// A verified DPoP proof: now [`VerifiedDpopProof`].
#[deprecated(note = "renamed `VerifiedDpopProof`")]
pub type VerifiedProof = VerifiedDpopProof;
/// Why a DPoP proof could not be made: now [`CreateDpopProofError`].
#[deprecated(note = "renamed `CreateDpopProofError`")]
pub type CreateProofError = CreateDpopProofError;
/// What went wrong making a DPoP proof: now [`CreateDpopProofErrorKind`].
#[deprecated(note = "renamed `CreateDpopProofErrorKind`")]
pub type CreateProofErrorKind = CreateDpopProofErrorKind;

/// The `DPoP` request header, which carries the proof.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The `DPoP-Nonce` response header, which carries a server's nonce.
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The `typ` of a DPoP proof.
pub const PROOF_TYPE: &str = "dpop+jwt";

/// The `ath` of an access token: base64url (no padding) of its SHA-256
/// digest (RFC 9449 section 4.2).
///
/// ```
/// use tower_token_binding::proof::dpop::access_token_hash;
///
/// // RFC 9449 section 7.1.
/// assert_eq!(
///     access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
///     "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo",
/// );
/// ```
pub fn access_token_hash(access_token: &str) -> String {
    let mut buf = [0u8; ATH_LEN];
    ath(access_token, &mut buf).to_owned()
}

/// The length of an `ath` (and of any base64url SHA-256 digest).
const ATH_LEN: usize = 43;

/// The `ath` of `access_token`, written into `buf`.
fn ath<'b>(access_token: &str, buf: &'b mut [u8; ATH_LEN]) -> &'b str {
    let digest = digest::digest(&digest::SHA256, access_token.as_bytes());
    match URL_SAFE_NO_PAD.encode_slice(digest.as_ref(), buf) {
        // base64url is ASCII.
        Ok(ATH_LEN) => std::str::from_utf8(buf).unwrap_or_default(),
        _ => "",
    }
}
