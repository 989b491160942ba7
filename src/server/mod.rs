//! The server half: accepting client certificates for certificate-bound tokens.
//!
//! A resource server that accepts RFC 8705 bound tokens asks every client for
//! a certificate in the TLS handshake. Clients that use
//! `self_signed_tls_client_auth` (RFC 8705 section 2.2) present certificates
//! no CA vouches for: their certificate is a key the authorization server has
//! registered, and the binding in the token is what ties it to a caller.
//! [`AnyClientCertVerifier`] accepts such certificates while still checking
//! that the client holds the key (the handshake signature).

mod peer;
mod verifier;

pub use peer::PeerCertificate;
pub use verifier::AnyClientCertVerifier;
