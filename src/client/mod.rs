//! The whole client in one expression: [`BoundClient`].
//!
//! [`BoundClient::builder`] stacks the composable pieces of this crate in
//! the right order, with defaults that suit most services:
//!
//! ```text
//! BoundClient
//!   Retry(InvalidTokenRetry)       401 invalid_token: drop that token, send again (once);
//!                                  401 use_dpop_nonce: send again with the nonce (once)
//!     TokenBindingLayer            Authorization + the identity the token is bound to,
//!                                  or (Scheme::Dpop) a fresh DPoP proof
//!       TokenCache                 one fetch for all callers, refreshed ahead of expiry
//!         ClientCredentials        OAuth client credentials over mTLS (or your TokenSource)
//!     MtlsClientPool               one hyper client per certificate thumbprint
//! ```
//!
//! With [`identity_files`](BoundClientBuilder::identity_files), the
//! certificate and key are a [`ReloadingIdentity`](crate::identity::ReloadingIdentity):
//! when a renewal agent rewrites them, the next request gets a token bound
//! to the new certificate, over a new connection that presents it, without a
//! restart.
//!
//! ```
//! use tower_token_binding::BoundClient;
//! # use tower_token_binding::test_util::{TestIssuer, TestPki};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let pki = TestPki::new()?;
//! # let issuer = TestIssuer::start(&pki).await?;
//! # let dir = tempfile::tempdir()?;
//! # let (cert, key) = pki.client_cert("svc.example")?.write_pem_files(dir.path(), "client")?;
//! # let ca = dir.path().join("ca.pem");
//! # std::fs::write(&ca, pki.ca_pem())?;
//! let client = BoundClient::builder()
//!     .issuer(issuer.issuer())
//!     .client_id("svc")
//!     .identity_files(&cert, &key)
//!     .root_ca_file(&ca)
//!     .build()?;
//! // Every call now carries a bound token over an mTLS connection:
//! // client.get("https://api.example/orders").await?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! With [`scheme(Scheme::Dpop)`](BoundClientBuilder::scheme), tokens are
//! bound to a DPoP key (generated, or [given](BoundClientBuilder::dpop_key))
//! instead of a certificate, and go over connections that need none. With
//! [`scheme(Scheme::Pop)`](BoundClientBuilder::scheme), tokens are bound to
//! a PoP key (a new RSA-2048 PS256 key, or [given](BoundClientBuilder::pop_key))
//! and sent inside a signed HTTP request made for each request
//! (`Authorization: PoP <SHR>`), as Microsoft's PoP scheme has it.
//!
//! With the `managed-identity` feature, `managed_identity(..)` takes the
//! identity, the client id and the token endpoint from Azure's managed
//! identity (IMDS v2; see `identity::managed`), renewed as it runs out.
//!
//! Every misconfiguration is a [`ConfigError`](crate::ConfigError) from
//! `build()`, naming the setting, not a surprise at the first request.

mod builder;
mod error;
mod future;
mod request;
mod service;

pub use builder::BoundClientBuilder;
#[allow(deprecated)]
pub use error::BuildError;
pub use future::ResponseFuture;
pub use request::RequestBuilder;
pub use service::BoundClient;

/// The body of a response from [`BoundClient`] as a `tower::Service`
/// (hyper's streaming body), re-exported so that a retry policy or a layer
/// written against it needs no `hyper` dependency of its own.
/// [`get`](BoundClient::get), [`post`](BoundClient::post) and
/// [`send`](BoundClient::send) read it into `Bytes` for you.
///
/// ```
/// use http::{Request, Response};
/// use tower::retry::Policy;
/// use tower_token_binding::client::Incoming;
/// use tower_token_binding::token::BoxError;
///
/// #[derive(Clone)]
/// struct RetryOn503;
///
/// impl<B: Clone> Policy<Request<B>, Response<Incoming>, BoxError> for RetryOn503 {
///     type Future = std::future::Ready<()>;
///     fn retry(
///         &mut self,
///         _: &mut Request<B>,
///         result: &mut Result<Response<Incoming>, BoxError>,
///     ) -> Option<Self::Future> {
///         let busy = result.as_ref().is_ok_and(|r| r.status() == 503);
///         busy.then(|| std::future::ready(()))
///     }
///     fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
///         let mut clone = Request::new(request.body().clone());
///         *clone.uri_mut() = request.uri().clone();
///         *clone.headers_mut() = request.headers().clone();
///         Some(clone)
///     }
/// }
/// ```
pub use hyper::body::Incoming;
