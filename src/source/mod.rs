//! Token sources that talk to authorization servers.
//!
//! [`ClientCredentials`]: OAuth 2.0 client credentials over mutual TLS
//! (RFC 8705), with discovery, the mTLS endpoint aliases, and Microsoft
//! Entra's `mtls_pop` flavour; or with DPoP (RFC 9449) proofs, for tokens
//! bound to a key rather than a certificate.

mod builder;
pub(crate) mod client_auth;
mod client_credentials;
mod error;
#[cfg(feature = "managed-identity")]
mod managed;
mod response;

pub use crate::token::endpoint_error::{TokenEndpointError, TokenEndpointErrorKind};
pub use builder::ClientCredentialsBuilder;
pub use client_credentials::ClientCredentials;
#[allow(deprecated)]
pub use error::ConfigError;
