//! Opaque access tokens: OAuth 2.0 Token Introspection (RFC 7662), with the
//! `cnf` of RFC 8705 section 3.2 (`x5t#S256`) and RFC 9449 section 6.2
//! (`jkt`), behind the same binding checks as JWTs.
//!
//! [`IntrospectionValidator`] asks the authorization server about a token
//! and checks the answer; [`JwtOrIntrospection`] sends JWTs to a
//! [`JwtValidator`](super::JwtValidator) and the other tokens to it. Either
//! goes into a [`CnfValidationLayer`](crate::CnfValidationLayer), which then
//! checks the certificate or the DPoP proof the answer's `cnf` names, on
//! every request.
//!
//! The introspection validator needs the `client` feature as well as
//! `server` (both on by default): its calls go out through the crate's
//! [`MtlsClientPool`](crate::pool::MtlsClientPool), which presents the
//! resource server's certificate for `tls_client_auth`.
//!
//! A fleet of resource servers can share the answers (an L2 under each
//! replica's memory) through a `RedisTokenCache` (feature `redis`) or any
//! [`SharedTokenCache`](crate::token::SharedTokenCache): see
//! [`IntrospectionValidatorBuilder::shared_cache`].

mod by_shape;

#[cfg(feature = "client")]
mod answers;
#[cfg(feature = "client")]
mod builder;
#[cfg(feature = "client")]
mod exchange;
#[cfg(feature = "client")]
mod response;
#[cfg(feature = "client")]
mod validator;
// The fleet's shared answers (L2).
#[cfg(feature = "client")]
mod shared;
// Tokens refused before any call.
#[cfg(feature = "client")]
mod shape;

#[cfg(feature = "client")]
#[allow(deprecated)]
pub use builder::IntrospectionConfigError;
#[cfg(feature = "client")]
pub use builder::IntrospectionValidatorBuilder;
pub use by_shape::{JwtOrIntrospection, JwtOrIntrospectionFuture};
#[cfg(feature = "client")]
pub use shape::TokenShape;
#[cfg(feature = "client")]
pub use validator::{IntrospectionFuture, IntrospectionValidator};
