//! The server half: accepting client certificates for certificate-bound tokens.
//!
//! A resource server that accepts RFC 8705 bound tokens asks every client for
//! a certificate in the TLS handshake. Clients that use
//! `self_signed_tls_client_auth` (RFC 8705 section 2.2) present certificates
//! no CA vouches for: their certificate is a key the authorization server has
//! registered, and the binding in the token is what ties it to a caller.
//! [`AnyClientCertVerifier`] accepts such certificates while still checking
//! that the client holds the key (the handshake signature).
//!
//! # Serving
//!
//! - [`ServerTlsConfig`] builds the rustls `ServerConfig`: the server's
//!   certificate and key, and a [`ClientCertMode`] (any certificate, or
//!   certificates from trusted roots; optional or required).
//! - [`serve()`] serves an axum `Router` or any tower service over that
//!   config, HTTP/1.1 and HTTP/2, with graceful shutdown. The client
//!   certificate is read once per connection and every request on it carries
//!   a [`PeerCertificate`] (and a [`ConnectionInfo`]).
//! - Behind a TLS-terminating proxy, [`forwarded::ForwardedClientCertLayer`]
//!   takes the certificate from the RFC 9440 `Client-Cert` header instead,
//!   and only when you add it.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use hyper::body::Incoming;
//! use tower_token_binding::server::{self, ClientCertMode, PeerCertificate, ServerTlsConfig};
//! # use tower_token_binding::test_util::TestPki;
//!
//! async fn handler(request: Request<Incoming>) -> Result<Response<String>, Infallible> {
//!     let bound_to = request.extensions().get::<PeerCertificate>().map(|p| p.thumbprint());
//!     Ok(Response::new(format!("{bound_to:?}")))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pki = TestPki::new()?;
//! # let cert = pki.server_cert()?;
//! let tls = ServerTlsConfig::new(ClientCertMode::any_certificate())
//!     .build(cert.chain(), cert.private_key())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = server::serve(listener, tls, tower::service_fn(handler))
//!     .handshake_timeout(std::time::Duration::from_secs(5))
//!     .with_graceful_shutdown(async { /* e.g. tokio::signal::ctrl_c() */ });
//! server.await?; // The signal is already done: this returns at once.
//! # Ok(())
//! # }
//! ```

mod config;
pub mod forwarded;
mod peer;
mod serve;
mod verifier;

pub use config::{ClientCertMode, ServerTlsConfig, ServerTlsError, ServerTlsErrorKind};
pub use peer::PeerCertificate;
pub use serve::{ConnectionInfo, Serve, ServeFuture, serve};
pub use verifier::AnyClientCertVerifier;
