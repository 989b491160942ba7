//! Test helpers: a throwaway PKI, an embedded authorization server and,
//! with `managed-identity`, an embedded IMDS v2.
//!
//! **For tests and demos only.** Everything here is generated at run time, keys
//! included, and the authorization server has no client registry (clients
//! name themselves and are checked only as far as that allows: see
//! [`TestIssuer`]): it exists so that bound tokens can be exercised for real (real certificates,
//! real TLS on loopback, real ES256 signatures) without an external identity
//! provider. Enable it with the `test-util` feature, usually as a
//! dev-dependency:
//!
//! ```toml
//! [dev-dependencies]
//! tower-token-binding = { version = "0.1", features = ["test-util"] }
//! ```
//!
//! ```
//! use tower_token_binding::test_util::{TestIssuer, TestPki};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_token_binding::test_util::Error> {
//! let pki = TestPki::new()?;
//! let client = pki.client_cert("client-1")?;
//! let issuer = TestIssuer::start(&pki).await?;
//!
//! // The issuer listens on 127.0.0.1 with a certificate from `pki`.
//! assert!(issuer.token_endpoint().starts_with("https://127.0.0.1:"));
//! let identity = client.identity()?;
//! assert_eq!(identity.thumbprint(), client.thumbprint());
//! # Ok(())
//! # }
//! ```

mod http;
#[cfg(feature = "managed-identity")]
mod imds;
mod introspection;
mod issuer;
mod pki;
mod signing_key;
mod token_endpoint;

pub use http::get_with_token;
#[cfg(feature = "managed-identity")]
#[cfg_attr(docsrs, doc(cfg(feature = "managed-identity")))]
pub use imds::{ImdsEmulator, ImdsEmulatorBuilder, ImdsFault};
pub use introspection::{IntrospectionFault, IntrospectionHold};
pub use issuer::{Fault, JwksHold, TestIssuer, TestIssuerBuilder};

#[cfg(test)]
pub(crate) use pki::svc_identity;
pub use pki::{TestCert, TestPki};
use token_endpoint::basic_auth as basic_credentials;

use std::fmt;

/// The error returned by the test helpers.
#[derive(Debug)]
pub struct Error {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A listener on a free port of `127.0.0.1`, and its address.
async fn listen() -> Result<(tokio::net::TcpListener, std::net::SocketAddr), Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::new("cannot listen on 127.0.0.1", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::new("cannot read the listening address", e))?;
    Ok((listener, addr))
}

impl From<crate::IdentityError> for Error {
    fn from(e: crate::IdentityError) -> Self {
        Self::new("cannot load the identity", e)
    }
}
