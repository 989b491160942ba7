//! `CnfValidationLayer`: accept bound access tokens only from the holder
//! of the key they are bound to: a TLS client certificate (RFC 8705) and,
//! where enabled, a DPoP key (RFC 9449) or the key of Microsoft's signed
//! HTTP requests (`PoP`).
//!
//! For every request the middleware
//!
//! 1. reads the token from `Authorization` (scheme word `Bearer`, or
//!    `mtls_pop` as Microsoft Entra sends it, or `DPoP` where
//!    [DPoP is accepted](CnfValidationLayer::accept_dpop), with exactly one
//!    `DPoP` proof header; case-insensitive; exactly one token, in the
//!    header only) or, where
//!    [signed HTTP requests are accepted](CnfValidationLayer::accept_pop),
//!    `PoP` with a signed request (SHR) carrying the token in its `at`; a
//!    signed request sent with another scheme is refused;
//! 2. for `DPoP`, verifies the proof with the
//!    [`DpopVerifier`](crate::proof::dpop::DpopVerifier): `typ`, `alg`,
//!    public `jwk`, signature, `htm`, `htu` (see
//!    [`public_origin`](CnfValidationLayer::public_origin)), `iat`, `ath`,
//!    and the server nonce when nonces are on; for `PoP`, verifies the SHR
//!    with the [`PopVerifier`](crate::proof::pop::PopVerifier): `typ`,
//!    `alg`, public `cnf.jwk`, signature, `ts`, method `m`, host `u`, path
//!    `p`, the query and header hashes `q` and `h` when present, and the
//!    body hash `b` against the body a [`BufferBodyLayer`] outside read
//!    (without one, an SHR with `b` is refused);
//! 3. validates the token with a [`ValidateToken`], by default a
//!    [`JwtValidator`] (RFC 9068 JWT access tokens, keys from a JWKS; a
//!    token seen before is served from its cache), or an
//!    [`IntrospectionValidator`] for opaque tokens (RFC 7662, the answer
//!    cached), or both, chosen by the token's shape ([`JwtOrIntrospection`]);
//! 4. checks the binding the token's `cnf` names, every request: an
//!    `x5t#S256` passes only on a request whose
//!    [`PeerCertificate`](crate::server::PeerCertificate) has that
//!    thumbprint; a `jkt` only with the `DPoP` scheme and a proof by the key
//!    with that thumbprint (a downgrade to `Bearer` is refused); a `kid`
//!    only with the `PoP` scheme and an SHR by the key with that thumbprint
//!    (sent any other way, refused); compared in constant time. A token with no `cnf` is refused unless
//!    the layer [allows unbound tokens](CnfValidationLayer::allow_unbound);
//! 5. checks [required scopes](CnfValidationLayer::required_scope);
//! 6. for `DPoP` and `PoP`, last, asks the
//!    [replay store](CnfValidationLayer::replay_store) whether the proof
//!    (the SHR: its key, `nonce` and `ts`) is new;
//! 7. puts the [`VerifiedToken`] into the request's extensions, with the
//!    [binding proven](VerifiedToken::binding), and calls the inner
//!    service.
//!
//! Refusals are responses, per RFC 6750 section 3 and RFC 9449 section
//! 7.1, with the [`Rejection`] in their extensions:
//!
//! | case | status | `WWW-Authenticate` |
//! | --- | --- | --- |
//! | no token (or another scheme) | 401 | `Bearer` (and `DPoP algs="..."` where accepted) |
//! | malformed header, token sent twice, token in the query, two `DPoP` headers | 400 | `Bearer error="invalid_request"` |
//! | bad token (an [introspection](IntrospectionValidator) answer `active: false` included), unbound where binding is required, wrong or no certificate, DPoP-bound token as `Bearer`, `DPoP` with a token not DPoP-bound, proof by another key, PoP-bound token without an SHR, an SHR as the token | 401 | `Bearer error="invalid_token"` |
//! | `DPoP` without a proof, bad or replayed proof | 401 | `DPoP error="invalid_dpop_proof", algs="..."` |
//! | no current server nonce in the proof | 401 | `DPoP error="use_dpop_nonce", algs="..."`, and a `DPoP-Nonce` header |
//! | `PoP`: bad or replayed SHR, its token invalid, not PoP-bound or bound to another key | 401 | `PoP error="invalid_token"` |
//! | missing scope | 403 | `Bearer error="insufficient_scope", scope="..."` |
//! | no signing keys could be loaded | 503 | none; `Retry-After` |
//! | the introspection endpoint is down, too slow or answers garbage | 503 | none; `Retry-After` |
//! | the replay store could not answer | 503 | none; `Retry-After` |
//!
//! The challenge carries `error_description` unless the layer is
//! [terse](CnfValidationLayer::terse), and uses the scheme word of the
//! request (`mtls_pop` answers `mtls_pop`, `DPoP` answers `DPoP`, `PoP`
//! answers `PoP`). Where the route accepts several bindings, one `WWW-Authenticate` value carries a
//! challenge for each scheme, the one with the error first:
//! `DPoP error="invalid_dpop_proof", algs="ES256 ...", Bearer`. With server
//! nonces on, every response to a `DPoP` request carries the current
//! `DPoP-Nonce`.
//!
//! A gRPC call (`content-type: application/grpc`, `application/grpc+proto`,
//! ...) is refused as gRPC clients read it, in a "Trailers-Only" answer:
//! HTTP `200`, `grpc-status` `16` (`UNAUTHENTICATED`) where the table says
//! `401` or `400`, `7` (`PERMISSION_DENIED`) for `403`, `8`
//! (`RESOURCE_EXHAUSTED`) for `429`, `14` (`UNAVAILABLE`) for `503`, the
//! reason in `grpc-message`, no body; `WWW-Authenticate`, `DPoP-Nonce` and
//! `Retry-After` are kept as response metadata, and the [`Rejection`] is in
//! the extensions as for any refusal.
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
//!
//! DPoP-bound tokens next to certificate-bound ones; a proof is accepted
//! once:
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Method, Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_token_binding::proof::dpop::{DPOP, DpopProofs, DpopVerifier};
//! use tower_token_binding::proof::{Algorithm, ProofKey};
//! use tower_token_binding::validation::{CnfValidationLayer, TokenError, TokenErrorKind, VerifiedToken};
//! use tower_token_binding::{Confirmation, ProvenBinding};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The client's DPoP key, and a token bound to it.
//! let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
//! let jkt = proofs.thumbprint();
//! let validator = move |token: &str| {
//!     let known = token == "dpop-token";
//!     async move {
//!         if !known {
//!             return Err(TokenError::new(TokenErrorKind::Other));
//!         }
//!         let claims = serde_json::json!({ "sub": "app", "cnf": Confirmation::bound_to_key(jkt) });
//!         Ok(VerifiedToken::from_claims(claims.as_object().unwrap().clone()).unwrap())
//!     }
//! };
//!
//! let service = ServiceBuilder::new()
//!     .layer(CnfValidationLayer::new(validator).accept_dpop(DpopVerifier::new()))
//!     .service_fn(|request: Request<String>| async move {
//!         let token = request.extensions().get::<VerifiedToken>().unwrap();
//!         assert!(matches!(token.binding(), ProvenBinding::Dpop(_)));
//!         Ok::<_, Infallible>(Response::new(String::new()))
//!     });
//!
//! let uri = "https://api.example/orders";
//! let proof = proofs.proof(&Method::GET, &uri.parse().unwrap(), Some("dpop-token")).unwrap();
//! let request = || {
//!     Request::get(uri)
//!         .header(header::AUTHORIZATION, "DPoP dpop-token")
//!         .header(DPOP, proof.as_str())
//!         .body(String::new())
//!         .unwrap()
//! };
//! let response = service.clone().oneshot(request()).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // The same proof again: a replay.
//! let response = service.clone().oneshot(request()).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
//! assert!(challenge.starts_with("DPoP error=\"invalid_dpop_proof\""));
//!
//! // The token as a bearer token: a downgrade, refused.
//! let mut request = Request::new(String::new());
//! request.headers_mut().insert(header::AUTHORIZATION, "Bearer dpop-token".parse().unwrap());
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
//! assert!(challenge.starts_with("Bearer error=\"invalid_token\""));
//! # }
//! ```
//!
//! A PoP-bound token inside Microsoft's signed HTTP request, whose `at` the
//! validator sees; the token alone is refused:
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Method, Request, Response, StatusCode, header};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_token_binding::proof::pop::{PopVerifier, PopProofs};
//! use tower_token_binding::proof::{Algorithm, ProofKey};
//! use tower_token_binding::validation::{CnfValidationLayer, TokenError, TokenErrorKind, VerifiedToken};
//! use tower_token_binding::{Confirmation, ProvenBinding};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let shrs = PopProofs::new(ProofKey::generate(Algorithm::Ps256).unwrap());
//! let kid = shrs.kid();
//! let validator = move |token: &str| {
//!     let known = token == "pop-token";
//!     async move {
//!         if !known {
//!             return Err(TokenError::new(TokenErrorKind::Other));
//!         }
//!         let claims = serde_json::json!({ "sub": "app", "cnf": Confirmation::bound_to_kid(kid) });
//!         Ok(VerifiedToken::from_claims(claims.as_object().unwrap().clone()).unwrap())
//!     }
//! };
//! let service = ServiceBuilder::new()
//!     .layer(CnfValidationLayer::new(validator).accept_pop(PopVerifier::new()))
//!     .service_fn(|request: Request<String>| async move {
//!         let token = request.extensions().get::<VerifiedToken>().unwrap();
//!         assert!(matches!(token.binding(), ProvenBinding::Pop(_)));
//!         Ok::<_, Infallible>(Response::new(String::new()))
//!     });
//!
//! let uri = "https://api.example/orders";
//! let shr = shrs.sign(&Method::GET, &uri.parse().unwrap(), "pop-token").unwrap();
//! let request = |authorization: String| {
//!     Request::get(uri)
//!         .header(header::AUTHORIZATION, authorization)
//!         .body(String::new())
//!         .unwrap()
//! };
//! let response = service.clone().oneshot(request(format!("PoP {shr}"))).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // The token without its signed request: a downgrade, refused.
//! let response = service.oneshot(request("Bearer pop-token".into())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
//! assert!(challenge.starts_with("Bearer error=\"invalid_token\""));
//! assert!(challenge.ends_with(", PoP"));
//! # }
//! ```

mod body;
mod cache;
mod dpop;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod introspection;
pub(crate) mod issuer;
mod jwks;
pub(crate) mod jwt;
pub(crate) mod labels;
mod layer;
mod pop;
mod profile;
mod rejection;
mod service;
mod token;
mod validator;

pub use body::{BufferBody, BufferBodyLayer, BufferedBody};
pub use dpop::InvalidPublicOrigin;
pub use error::{TokenError, TokenErrorKind};
#[cfg(feature = "axum")]
pub use extract::MissingVerifiedToken;
pub use future::ResponseFuture;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
#[allow(deprecated)]
pub use introspection::IntrospectionConfigError;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub use introspection::{
    IntrospectionFuture, IntrospectionValidator, IntrospectionValidatorBuilder, TokenShape,
};
pub use introspection::{JwtOrIntrospection, JwtOrIntrospectionFuture};
pub use issuer::{TENANT_PLACEHOLDER, TrustedIssuer};
pub use jwks::{JwksError, JwksSource, RemoteJwks};
pub use jwt::{
    DEFAULT_MAX_JWT_LENGTH, JwtFuture, JwtValidator, JwtValidatorBuilder, RELAXABLE_CLAIMS,
};
pub use layer::{CnfValidationLayer, InvalidScope};
pub use profile::{ClaimForm, PRESETS, TokenProfile};
pub(crate) use rejection::Scheme;
pub use rejection::{Rejection, RejectionKind};
pub use service::CnfValidation;
pub use token::VerifiedToken;
pub use validator::ValidateToken;
