//! OAuth 2.0 certificate-bound access tokens ([RFC 8705], "mTLS proof of
//! possession", what Microsoft Entra calls token binding) for [tower], [hyper]
//! and [axum].
//!
//! A bearer token works for whoever holds it. A certificate-bound token
//! carries the thumbprint of the client's TLS certificate in its `cnf` claim,
//! and a resource server accepts it only on a connection whose client
//! certificate has that thumbprint: a stolen token is useless without the key.
//!
//! # In one expression
//!
//! - [`client`]: [`BoundClient`], the whole client stack (retry on
//!   `invalid_token`, [`TokenBindingLayer`], the token cache, OAuth client
//!   credentials over mTLS, the per-certificate pool) from an issuer, a
//!   client id and certificate files that are watched for renewal
//!   ([`identity::ReloadingIdentity`]).
//! - [`server::ResourceServer`]: the resource server, from an issuer URL
//!   (keys found through discovery), an audience and TLS files, serving an
//!   axum `Router` or any tower service behind [`CnfValidationLayer`].
//!
//! # The pieces
//!
//! - [`ConfigError`]: what every builder's `build()` refuses a
//!   configuration with, naming the setting at fault
//!   ([`setting`](ConfigError::setting)) and what is wrong with it
//!   ([`ConfigErrorKind`]).
//! - [`Thumbprint`]: the `x5t#S256` of a certificate (SHA-256 of the leaf's
//!   DER, base64url without padding), parsed strictly, compared in constant
//!   time.
//! - [`Confirmation`]: the `cnf` claim, read strictly.
//! - [`ClientIdentity`]: a certificate chain and its private key, checked to
//!   belong together, with the leaf's thumbprint computed once;
//!   [`identity::IdentitySource`] for identities that change (a
//!   [`ReloadingIdentity`](identity::ReloadingIdentity) follows renewed
//!   files).
//! - [`token`]: token sources and the [`TokenCache`](token::TokenCache) (one
//!   fetch for many callers, refresh ahead, backoff); [`source`]: OAuth
//!   client credentials over mTLS or with DPoP ([`source::ClientCredentials`]).
//! - [`binding`]: [`TokenBindingLayer`], which puts a (bound) token on every
//!   request and the [`ClientIdentity`] it is bound to in its extensions
//!   or, for DPoP-bound tokens, a fresh DPoP proof; and the retry policy
//!   for `invalid_token` and `use_dpop_nonce`.
//! - [`pool`]: [`MtlsClientPool`](pool::MtlsClientPool), one hyper-util
//!   client per certificate thumbprint: the inner service that presents the
//!   identity.
//! - [`server`]: what a resource server needs to accept client certificates
//!   and see them on every request ([`server::PeerCertificate`]).
//! - [`validation`]: [`CnfValidationLayer`], which validates RFC 9068 JWT
//!   access tokens (keys from a JWKS) and accepts a bound token only with
//!   the client certificate it is bound to or, where DPoP is accepted, with
//!   a fresh DPoP proof by its key or, where Microsoft's signed HTTP
//!   requests are accepted, in a fresh `PoP` request signed by its key,
//!   answering per RFC 6750 and RFC 9449; [`ProvenBinding`] tells the
//!   handler which was proven.
//! - [`proof`]: proof-of-possession keys ([`proof::ProofKey`]), public JWKs
//!   and their RFC 7638 thumbprints, JWS signing and verifying, and DPoP
//!   (RFC 9449) proofs: made by clients ([`proof::dpop::DpopProofs`]) and
//!   checked by servers ([`proof::dpop::DpopVerifier`]). In both halves.
//! - [`replay`]: [`replay::ReplayStore`], whether a proof was seen before,
//!   an in-memory store and (feature `redis`) a Redis one, shared by a
//!   fleet.
//! - [`metrics`] (feature `metrics`): what both halves count (token
//!   fetches, caches, pools, retries, validation outcomes by reason,
//!   replays) through the `metrics` crate's facade, under one documented
//!   naming scheme with bounded labels.
//! - [`identity::managed`] (feature `managed-identity`): Azure's managed
//!   identity (IMDS v2) as the identity and token source of a
//!   [`BoundClient`]: the certificate comes from the platform, renewed
//!   before it runs out.
//! - [`reqwest`] (feature `reqwest`): the same tokens, proofs and retries
//!   for reqwest users, as a `reqwest-middleware` middleware
//!   ([`reqwest::TokenBindingMiddleware`]), with one `reqwest::Client` per
//!   client certificate for certificate-bound tokens
//!   ([`reqwest::MtlsReqwestPool`]).
//! - [`test_util`] (feature `test-util`): a generated PKI and an embedded
//!   authorization server that issues bound RFC 9068 JWT access tokens (and,
//!   with `managed-identity`, an embedded IMDS v2), for tests and demos.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `client` | yes | the client half: [`client`], [`token`], [`source`], [`binding`], [`pool`], identity reloading (hyper-rustls, hyper-util's client) |
//! | `server` | yes | the server half: [`server`] (TLS serving with a [`server::PeerCertificate`] on every request, trusted-proxy mode: RFC 9440 `Client-Cert`, the URL-escaped PEM of nginx, AWS ALB and Traefik, and Envoy's `x-forwarded-client-cert`, from listed proxies only) and [`validation`] ([`CnfValidationLayer`], with an HTTPS client to fetch JWKS; token introspection needs `client` too, for its mTLS client pool) |
//! | `axum` | no | [`validation::VerifiedToken`] as an axum extractor, axum's `ConnectInfo` on served requests (implies `server`) |
//! | `metrics` | no | [`metrics`]: counters and a gauge through the `metrics` crate's facade (token fetches, caches, pools, retries, validation outcomes by reason, replays) |
//! | `managed-identity` | no | [`identity::managed`]: Azure managed identity (IMDS v2) as identity and token source (implies `client`; x509-cert, pkcs1) |
//! | `redis` | no | state shared by a fleet, in Redis, Valkey or a Redis Cluster: [`replay::RedisReplayStore`] (one `SET NX PX` per proof) and, with `client`, [`token::RedisTokenCache`] (tokens shared under the in-memory cache; also introspection answers, with `server`); `rediss://` through rustls |
//! | `reqwest` | no | [`reqwest`]: `TokenBindingMiddleware` for `reqwest-middleware`, one reqwest client per certificate, [`client::BoundClientBuilder::build_reqwest`] (implies `client`; reqwest with rustls on aws-lc-rs) |
//! | `test-util` | no | [`test_util`]: test PKI and authorization server (implies `client`, `server`) |
//!
//! Both halves are on by default because the types they share (thumbprints,
//! identities, `cnf`) are the bulk of the crate and most of the build cost is
//! rustls and hyper, which each half needs anyway; a service that is only a
//! client or only a server can turn the other off with
//! `default-features = false`.
//!
//! # Crypto
//!
//! Everything uses one crypto provider, aws-lc-rs, passed explicitly to the
//! rustls configs this crate builds; the process-wide rustls default is
//! neither read nor installed. One exception, with the `redis` feature and a
//! `rediss://` URL: the redis client builds its rustls config from the
//! process default, which rustls sets to aws-lc-rs, the only provider
//! compiled in (no second provider is pulled in).
//!
//! [RFC 8705]: https://www.rfc-editor.org/rfc/rfc8705
//! [tower]: https://docs.rs/tower
//! [hyper]: https://docs.rs/hyper
//! [axum]: https://docs.rs/axum

#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The docs link to every feature's items (the feature table above, the
// builders' mentions of managed identity); built with some features off,
// those links have nothing to point to. CI builds the docs with every
// feature and `-D warnings`, which catches a link that is really broken.
#![cfg_attr(
    not(all(
        feature = "client",
        feature = "server",
        feature = "axum",
        feature = "metrics",
        feature = "managed-identity",
        feature = "redis",
        feature = "reqwest",
        feature = "test-util"
    )),
    allow(rustdoc::broken_intra_doc_links, rustdoc::private_intra_doc_links)
)]

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod binding;
#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod client;
pub mod clock;
pub mod cnf;
mod config_error;
#[cfg(any(feature = "client", feature = "server"))]
mod discovery;
pub mod identity;
mod json;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
// Without the feature, the same calls, compiled to nothing.
#[cfg(not(feature = "metrics"))]
#[allow(dead_code, unreachable_pub)]
mod metrics;
#[cfg(feature = "server")]
mod peer;
pub mod proof;
#[cfg(feature = "redis")]
mod redis_link;
pub mod replay;
pub mod thumbprint;
mod tls;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod pool;

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod source;

#[cfg(feature = "client")]
#[cfg_attr(docsrs, doc(cfg(feature = "client")))]
pub mod token;

#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod validation;
#[cfg(feature = "server")]
mod warn_limit;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;

/// The boxed error of the whole crate: what sources, services and
/// builders return when the cause is someone else's (published as
/// [`token::BoxError`]).
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(feature = "client")]
pub use binding::TokenBindingLayer;
#[cfg(feature = "client")]
pub use client::BoundClient;
pub use cnf::{Binding, Confirmation, InvalidConfirmation, ProvenBinding};
pub use config_error::{ConfigError, ConfigErrorKind};
pub use identity::{ClientIdentity, IdentityError, IdentityErrorKind};
pub use thumbprint::{ParseThumbprintError, Thumbprint};
#[cfg(feature = "server")]
pub use validation::CnfValidationLayer;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
