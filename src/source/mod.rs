//! Token sources that talk to authorization servers.
//!
//! [`ClientCredentials`]: OAuth 2.0 client credentials over mutual TLS
//! (RFC 8705), with discovery, the mTLS endpoint aliases, and Microsoft
//! Entra's `mtls_pop` flavour.

mod client_credentials;
mod error;

pub use client_credentials::{ClientCredentials, ClientCredentialsBuilder};
pub use error::{ConfigError, TokenEndpointError, TokenEndpointErrorKind};
