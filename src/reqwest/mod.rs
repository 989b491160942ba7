//! Bound tokens for reqwest users: [`TokenBindingMiddleware`], a
//! `reqwest-middleware` middleware over the crate's token cache, sources
//! and proofs, and [`MtlsReqwestPool`], one `reqwest::Client` per client
//! certificate for certificate-bound tokens.
//!
//! The middleware does per request what [`TokenBindingLayer`](crate::TokenBindingLayer)
//! does for a tower stack, with the same code: one fetch for all callers,
//! the token's header and its DPoP proof or signed request, the nonce and
//! `invalid_token` retries, the `https` rule and the same errors. DPoP,
//! PoP and `Bearer` requests go down the chain to your `reqwest::Client`;
//! a certificate-bound request goes out through the pool's client for the
//! token's certificate, since only a connection that presents it makes the
//! token good.
//!
//! [`BoundClientBuilder::build_reqwest`](crate::client::BoundClientBuilder::build_reqwest)
//! turns the settings of a [`BoundClient`](crate::BoundClient) into a
//! `reqwest_middleware::ClientWithMiddleware` in one line, certificate-bound
//! here:
//!
#![cfg_attr(feature = "test-util", doc = "```")]
#![cfg_attr(not(feature = "test-util"), doc = "```ignore")]
//! use tower_token_binding::BoundClient;
//! # use tower_token_binding::test_util::{TestIssuer, TestPki};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let pki = TestPki::new()?;
//! # let issuer = TestIssuer::start(&pki).await?;
//! # let identity = pki.client_cert("svc.example")?.identity()?;
//! let client = BoundClient::builder()
//!     .issuer(issuer.issuer())
//!     .client_id("svc")
//!     .identity(identity)
//!     .root_store(pki.root_store())
//!     .build_reqwest()?;
//!
//! // reqwest as ever; the token and the certificate come with each request.
//! let response = client.get(issuer.jwks_uri()).send().await?;
//! assert!(response.status().is_success());
//! # Ok(())
//! # }
//! ```
//!
//! With [`scheme(Scheme::Dpop)`](crate::client::BoundClientBuilder::scheme)
//! the same line gives a DPoP-bound client. For a chain of your own (a
//! retry or tracing middleware before it), take the middleware alone with
//! [`build_reqwest_middleware`](crate::client::BoundClientBuilder::build_reqwest_middleware),
//! or make one from any [`TokenBindingLayer`](crate::TokenBindingLayer)
//! with [`TokenBindingMiddleware::new`].

mod error;
mod middleware;
mod pool;

pub use middleware::TokenBindingMiddleware;
pub(crate) use pool::Configure;
pub use pool::MtlsReqwestPool;
pub(crate) use pool::settings as client_settings;
