//! The server half: accepting client certificates for certificate-bound tokens.
//!
//! # In one expression
//!
//! [`ResourceServer`] is the whole resource server from an issuer URL, an
//! audience and the server's TLS files: the signing keys are found through
//! the issuer's metadata, client certificates are asked for (any
//! certificate by default, as RFC 8705 self-signed clients need), and the
//! [`CnfValidationLayer`](crate::CnfValidationLayer) accepts a token only
//! with the certificate it is bound to. Every default can be changed on
//! [`ResourceServerBuilder`]; the pieces below are what it is made of, for
//! when you need to stack them differently.
//!
#![cfg_attr(feature = "axum", doc = "```no_run")]
#![cfg_attr(not(feature = "axum"), doc = "```ignore")]
//! use axum::{Router, routing::get};
//! use tower_token_binding::server::ResourceServer;
//! use tower_token_binding::validation::VerifiedToken;
//!
//! async fn hello(token: VerifiedToken) -> String {
//!     format!("hello {}", token.subject().unwrap_or("?"))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
//! ResourceServer::builder()
//!     .issuer("https://login.example.com")
//!     .audience("https://api.example.com")
//!     .tls_pem_files("server.pem", "server.key")
//!     .build()?
//!     .serve(listener, Router::new().route("/hello", get(hello)))
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Client certificates
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
//!   takes the certificate from the RFC 9440 `Client-Cert` header or Envoy's
//!   `x-forwarded-client-cert` instead, only when you add it, and only from
//!   the proxies you list.
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
mod resource_server;
mod serve;
mod verifier;

pub use crate::peer::PeerCertificate;
pub use config::{ClientCertMode, ServerTlsConfig, ServerTlsError, ServerTlsErrorKind};
#[allow(deprecated)]
pub use resource_server::ResourceServerError;
pub use resource_server::{ResourceServer, ResourceServerBuilder};
pub use serve::{ConnectionInfo, Serve, ServeFuture, serve};
pub use verifier::AnyClientCertVerifier;
