//! `TokenBindingLayer`: authorize every request with a certificate-bound
//! token, and tell the connection which certificate to present.
//!
//! For each request the middleware takes a token from a
//! [`TokenCache`](crate::token::TokenCache) (at once when it holds a fresh
//! one; otherwise the request waits for the one fetch all waiting requests
//! share), sets `Authorization` (marked sensitive), and puts the
//! [`ClientIdentity`](crate::ClientIdentity) the token is bound to into the
//! request's extensions. The inner service decides how to use that identity:
//! an HTTPS client that presents it (one connection pool per certificate, so
//! that a connection made with one identity never carries another's token).
//!
//! # Schemes
//!
//! - [`TokenBindingLayer::bound`]: RFC 8705 bound tokens,
//!   `Authorization: Bearer <token>` (or `mtls_pop <token>` with
//!   [`header_word`](TokenBindingLayer::header_word), as Microsoft Entra
//!   wants), identity in the extensions. An unbound token from the source is
//!   an error unless [allowed](TokenBindingLayer::allow_unbound_fallback).
//! - [`TokenBindingLayer::dpop`]: DPoP-bound tokens (RFC 9449),
//!   `Authorization: DPoP <token>` and a fresh `DPoP` proof per request,
//!   signed by the token's key; nonces remembered per origin. Any inner
//!   service: no certificate is needed.
//! - [`TokenBindingLayer::pop`]: PoP-bound tokens (Microsoft's signed HTTP
//!   requests), `Authorization: PoP <SHR>`, a fresh SHR per request signed
//!   by the token's key; a nonce a resource asks for (`401`,
//!   `WWW-Authenticate: PoP nonce="..."`) goes into the next SHR to its
//!   origin, once. Any inner service: no certificate is needed.
//! - [`TokenBindingLayer::bearer`]: plain bearer tokens, no identity.
//! - [`TokenBindingLayer::mtls_only`]: no token, just the identity.
//!
//! # Order of layers
//!
//! ```text
//! RetryLayer(InvalidTokenRetry)   outermost: sees the 401, drops the token, sends again
//!   TokenBindingLayer             each attempt: the current token and its identity
//!     your mTLS client            presents the identity from the extensions
//! ```
//!
//! With the retry layer *inside* the binding layer, a retry would resend the
//! rejected token; with no retry layer, a rejected token is still dropped
//! only when you call [`TokenCache::invalidate`](crate::token::TokenCache::invalidate).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http::{Request, Response, header};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_token_binding::{ClientIdentity, TokenBindingLayer};
//! use tower_token_binding::binding::HeaderWord;
//! use tower_token_binding::token::Token;
//! # use tower_token_binding::test_util::TestPki;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let identity = TestPki::self_signed_client("svc.example")?.identity()?;
//! // A source of tokens bound to `identity` (normally: OAuth client credentials).
//! let source = {
//!     let identity = identity.clone();
//!     move || {
//!         let identity = identity.clone();
//!         async move {
//!             Ok(Token::new("a-bound-token")
//!                 .expires_in(Duration::from_secs(3600))
//!                 .bound_to(identity))
//!         }
//!     }
//! };
//!
//! let service = ServiceBuilder::new()
//!     .layer(TokenBindingLayer::bound(source).header_word(HeaderWord::MtlsPop))
//!     .service_fn(|request: Request<String>| async move {
//!         // A real inner service sends the request over a connection that
//!         // presents this identity.
//!         let identity = request.extensions().get::<ClientIdentity>().unwrap();
//!         let auth = request.headers()[header::AUTHORIZATION].clone();
//!         assert!(auth.is_sensitive());
//!         Ok::<_, Infallible>(Response::new(format!("{} as {}", auth.to_str().unwrap(), identity.thumbprint())))
//!     });
//!
//! let response = service.oneshot(Request::new(String::new())).await?;
//! assert!(response.body().starts_with("mtls_pop a-bound-token as "));
//! # Ok(())
//! # }
//! ```

mod authorize;
mod future;
mod layer;
mod retry;
mod scheme;
mod service;
mod transport;

#[cfg(feature = "reqwest")]
pub(crate) use authorize::{NonceOrigin, authorize, settle};
pub use future::ResponseFuture;
#[cfg(feature = "reqwest")]
pub(crate) use layer::Settings;
pub use layer::TokenBindingLayer;
pub use retry::InvalidTokenRetry;
pub use scheme::{HeaderWord, ParseSchemeError, Scheme};
pub use service::TokenBinding;
pub use transport::InsecureTransport;
#[cfg(feature = "reqwest")]
pub(crate) use transport::check as check_transport;
