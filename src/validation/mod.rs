//! `CnfValidationLayer`: accept certificate-bound access tokens only from
//! the certificate they are bound to.
//!
//! For every request the middleware
//!
//! 1. reads the token from `Authorization` (scheme word `Bearer`, or
//!    `mtls_pop` as Microsoft Entra sends it; case-insensitive; exactly one
//!    token, in the header only);
//! 2. validates it with a [`ValidateToken`], by default a [`JwtValidator`]
//!    (RFC 9068 JWT access tokens, keys from a JWKS);
//! 3. checks the binding (RFC 8705 section 3): a token whose `cnf` has an
//!    `x5t#S256` passes only on a request whose
//!    [`PeerCertificate`](crate::server::PeerCertificate) has that
//!    thumbprint, compared in constant time. A token with no `cnf` is
//!    refused unless the layer [allows unbound tokens](CnfValidationLayer::allow_unbound);
//! 4. checks [required scopes](CnfValidationLayer::required_scope);
//! 5. puts the [`VerifiedToken`] into the request's extensions and calls the
//!    inner service.
//!
//! Refusals are responses, per RFC 6750 section 3, with the [`Rejection`] in
//! their extensions:
//!
//! | case | status | `WWW-Authenticate` |
//! | --- | --- | --- |
//! | no token (or another scheme) | 401 | `Bearer` |
//! | malformed header, token sent twice, token in the query | 400 | `Bearer error="invalid_request"` |
//! | bad token, unbound where binding is required, wrong or no certificate | 401 | `Bearer error="invalid_token"` |
//! | missing scope | 403 | `Bearer error="insufficient_scope", scope="..."` |
//! | no signing keys could be loaded | 503 | none |
//!
//! The challenge carries `error_description` unless the layer is
//! [terse](CnfValidationLayer::terse), and uses the scheme word of the
//! request (`mtls_pop` answers `mtls_pop`).
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_token_binding::server::PeerCertificate;
//! use tower_token_binding::validation::{CnfValidationLayer, TokenError, TokenErrorKind, VerifiedToken};
//! use tower_token_binding::{Confirmation, Thumbprint};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The client certificate (normally attached by the TLS server plumbing).
//! let peer = PeerCertificate::new(b"client certificate DER".to_vec().into());
//! let bound_to = peer.thumbprint();
//!
//! // A toy validator: one known token, bound to that certificate.
//! let validator = move |token: &str| {
//!     let known = token == "good-token";
//!     async move {
//!         if !known {
//!             return Err(TokenError::new(TokenErrorKind::Other));
//!         }
//!         let claims = serde_json::json!({ "sub": "svc", "cnf": Confirmation::bound_to(bound_to) });
//!         Ok(VerifiedToken::from_claims(claims.as_object().unwrap().clone()).unwrap())
//!     }
//! };
//!
//! let service = ServiceBuilder::new()
//!     .layer(CnfValidationLayer::new(validator))
//!     .service_fn(|request: Request<String>| async move {
//!         let token = request.extensions().get::<VerifiedToken>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("hello {}", token.subject().unwrap())))
//!     });
//!
//! // The right certificate: through.
//! let mut request = Request::new(String::new());
//! request.headers_mut().insert(header::AUTHORIZATION, "Bearer good-token".parse().unwrap());
//! request.extensions_mut().insert(peer.clone());
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // The same token without the certificate: 401 invalid_token.
//! let mut request = Request::new(String::new());
//! request.headers_mut().insert(header::AUTHORIZATION, "Bearer good-token".parse().unwrap());
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
//! assert!(challenge.starts_with("Bearer error=\"invalid_token\""));
//!
//! // No token at all: a bare challenge.
//! let response = service.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
//! # }
//! ```

mod cache;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod jwks;
pub(crate) mod jwt;
mod layer;
mod rejection;
mod service;
mod token;
mod validator;

pub use error::{TokenError, TokenErrorKind};
#[cfg(feature = "axum")]
pub use extract::MissingVerifiedToken;
pub use future::ResponseFuture;
pub use jwks::{JwksError, JwksSource, RemoteJwks};
pub use jwt::{JwtFuture, JwtValidator, JwtValidatorBuilder, RELAXABLE_CLAIMS};
pub use layer::{CnfValidationLayer, InvalidScope};
pub use rejection::{Rejection, RejectionKind};
pub use service::CnfValidation;
pub use token::VerifiedToken;
pub use validator::ValidateToken;
