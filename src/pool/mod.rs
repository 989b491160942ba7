//! A per-certificate mTLS client pool: one hyper-util `Client` per client
//! certificate thumbprint, bounded, rotation-safe.
//!
//! [`MtlsClientPool`] is the inner service most users want under
//! [`TokenBindingLayer`](crate::TokenBindingLayer): the layer puts the
//! identity a token is bound to into each request, and the pool sends the
//! request over a connection that presents exactly that identity.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::Empty;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower::retry::RetryLayer;
//! use tower_token_binding::TokenBindingLayer;
//! use tower_token_binding::pool::MtlsClientPool;
//! use tower_token_binding::server::{self, AnyClientCertVerifier, PeerCertificate};
//! use tower_token_binding::test_util::TestPki;
//! use tower_token_binding::token::Token;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let pki = TestPki::new()?;
//! # // A server that answers with the thumbprint of the client certificate.
//! # let tls = pki.server_config(Arc::new(AnyClientCertVerifier::optional()))?;
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let url = format!("https://localhost:{}/", listener.local_addr()?.port());
//! # tokio::spawn(server::serve(listener, tls, tower::service_fn(|r: http::Request<hyper::body::Incoming>| async move {
//! #     let peer = r.extensions().get::<PeerCertificate>().map(|p| p.thumbprint().to_string());
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(peer.unwrap_or_default()))
//! # })).into_future());
//! let identity = pki.client_cert("svc.example")?.identity()?;
//!
//! // Tokens bound to `identity` (normally from OAuth client credentials).
//! let source = {
//!     let identity = identity.clone();
//!     move || {
//!         let identity = identity.clone();
//!         async move { Ok(Token::new("bound-token").expires_in(Duration::from_secs(600)).bound_to(identity)) }
//!     }
//! };
//! let binding = TokenBindingLayer::bound(source);
//! let pool: MtlsClientPool<Empty<Bytes>> = MtlsClientPool::builder()
//!     .root_store(pki.root_store())
//!     .build()?;
//!
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new(binding.retry_policy()))
//!     .layer(binding)
//!     .service(pool.clone());
//!
//! let response = client.oneshot(Request::get(&url).body(Empty::new())?).await?;
//! # use http_body_util::BodyExt;
//! let seen = response.into_body().collect().await?.to_bytes();
//! // The server saw the certificate the token is bound to.
//! assert_eq!(seen, identity.thumbprint().to_string());
//! assert_eq!(pool.stats().identities, 1);
//! # Ok(())
//! # }
//! ```

mod builder;
mod connector;
mod error;
mod future;
mod service;
mod slots;

pub use builder::PoolBuilder;
pub(crate) use builder::Roots;
pub use error::PoolError;
pub use future::ResponseFuture;
#[cfg(feature = "reqwest")]
pub(crate) use service::tls_config;
pub use service::{MtlsClientPool, PoolStats};
#[cfg(feature = "reqwest")]
pub(crate) use slots::{IdentitySlots, KeepIdle};
