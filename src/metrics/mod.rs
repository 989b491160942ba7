//! Metrics: what the client and server halves count, through the
//! [`metrics`](https://docs.rs/metrics) crate's facade (feature `metrics`).
//!
//! The crate records; your application picks the exporter (Prometheus,
//! OpenTelemetry, StatsD...) by installing a `metrics` recorder, as with any
//! library that uses the facade. Without a recorder, the facade's no-op
//! recorder takes the counts (a thread-local check and, for a labelled
//! counter, a small allocation); without the `metrics` feature, recording
//! compiles to nothing.
//!
//! # The scheme
//!
//! Every name starts with `tower_token_binding_`; counters end in `_total`.
//! Label values are a fixed, small set of words: never a token, a
//! thumbprint, a key id, a client id, a URL or a path. The names are the
//! constants of this module; [`describe`] gives each one its help text.
//!
//! | name | type | labels | counts |
//! | --- | --- | --- | --- |
//! | [`tower_token_binding_token_fetches_total`](TOKEN_FETCHES) | counter | `outcome` | token fetches by the client's token cache: `ok`, or why it failed: `oauth_error`, `http_status`, `invalid_response`, `token_type`, `certificate_mismatch`, `key_mismatch`, `proof`, `timeout`, `transport`, `discovery`, `other` (a source that is not OAuth client credentials) |
//! | [`tower_token_binding_token_cache_lookups_total`](TOKEN_CACHE_LOOKUPS) | counter | `result` | requests for a token: `hit` (a cached token, at once) or `miss` (waited for a fetch, or was refused while the cache backs off after a failure) |
//! | [`tower_token_binding_token_cache_waiters_total`](TOKEN_CACHE_WAITERS) | counter | | misses that waited for a fetch another request had started (one fetch for everyone) |
//! | [`tower_token_binding_token_refreshes_ahead_total`](TOKEN_REFRESHES_AHEAD) | counter | | refreshes started in the background before the token expired |
//! | [`tower_token_binding_unbound_fallbacks_total`](UNBOUND_FALLBACKS) | counter | | requests sent with an unbound token where a bound one was wanted (only when the fallback is allowed) |
//! | [`tower_token_binding_client_retries_total`](CLIENT_RETRIES) | counter | `reason` | requests sent again by the client's retry policy: `invalid_token` (with a new token), `use_dpop_nonce` (with the server's DPoP nonce), `pop_nonce` (with the server's PoP nonce) |
//! | [`tower_token_binding_pool_clients`](POOL_CLIENTS) | gauge | | per-identity HTTPS clients held by the process's [`MtlsClientPool`](crate::pool::MtlsClientPool)s |
//! | [`tower_token_binding_pool_tls_connections_total`](POOL_TLS_CONNECTIONS) | counter | `client_cert` | TLS connections the pools opened (handshake done): `client_cert="yes"` presenting an identity, `"no"` without one |
//! | [`tower_token_binding_validations_total`](VALIDATIONS) | counter | `outcome`, `scheme` | requests the server's [`CnfValidationLayer`](crate::CnfValidationLayer) let through (`outcome="ok"`) or refused, by reason (below); `scheme` is the `Authorization` scheme: `bearer`, `mtls_pop`, `dpop`, `pop`, or `none` without credentials |
//! | [`tower_token_binding_accepted_total`](ACCEPTED) | counter | `binding` | requests let through, by the binding they proved: `certificate`, `dpop`, `pop`, `none` (unbound, where allowed) |
//! | [`tower_token_binding_validation_cache_lookups_total`](VALIDATION_CACHE_LOOKUPS) | counter | `validator`, `result` | lookups in the server's cache of verified tokens: `validator` `jwt` or `introspection`, `result` `hit` or `miss` (the binding is checked on every request, hit or miss) |
//! | [`tower_token_binding_jwks_fetches_total`](JWKS_FETCHES) | counter | `outcome` | fetches of the server's signing keys: `ok`, `discovery` (no usable issuer metadata), `http_status`, `transport`, `invalid` (not a usable key set) |
//! | [`tower_token_binding_replay_checks_total`](REPLAY_CHECKS) | counter | `proof`, `result` | replay-store checks of otherwise accepted proofs: `proof` `dpop` or `pop`; `result` `fresh`, `replayed` (refused), `share_exceeded` (the proof's key holds its share of the store: refused with `429`) or `unavailable` (the store did not answer: refused with `503`) |
//! | [`tower_token_binding_introspections_total`](INTROSPECTIONS) | counter | `outcome` | calls to an RFC 7662 introspection endpoint: `active`, `inactive` (not active, or refused on its claims), `unavailable` (down, timed out, an error status), `invalid_response` (not an introspection answer), `overloaded` (not made: [`max_concurrent_calls`](crate::validation::IntrospectionValidatorBuilder::max_concurrent_calls) calls in flight already, or all but the [`recheck_reserve`](crate::validation::IntrospectionValidatorBuilder::recheck_reserve) for a token not seen active before; the request gets `503`), `unexpected_shape` (not made: the token is longer than [`max_token_length`](crate::validation::IntrospectionValidatorBuilder::max_token_length) or refused by [`token_shape`](crate::validation::IntrospectionValidatorBuilder::token_shape); the request gets `401`) |
//! | [`tower_token_binding_forwarded_certificates_total`](FORWARDED_CERTIFICATES) | counter | `result` | requests with a forwarded client certificate header at a [`ForwardedClientCertLayer`](crate::server::forwarded::ForwardedClientCertLayer): `used` (from a trusted proxy, certificate taken), `none_taken` (from a trusted proxy, several XFCC elements and none chosen, or an empty URL-escaped PEM: the client sent none), `malformed` (from a trusted proxy, refused with `400`), `ignored` (from a peer that is not a trusted proxy: removed, not read) |
//!
//! The reasons of refused validations (`outcome`), from
//! [`RejectionKind`](crate::validation::RejectionKind) and the token, DPoP
//! and signed-request errors it carries; this is every value:
//!
//! | `outcome` | refused because |
//! | --- | --- |
//! | `missing_credentials` | no token in a supported scheme |
//! | `malformed_request` | a malformed `Authorization` header, a token sent twice, two `DPoP` headers, a signed request sent as a token |
//! | `token_in_query` | the token came in the URI query only |
//! | `malformed_token`, `wrong_token_type`, `disallowed_algorithm`, `unknown_key`, `bad_signature`, `wrong_issuer`, `wrong_audience`, `expired`, `not_yet_valid`, `missing_claim`, `invalid_cnf`, `invalid_token` | the token itself ([`TokenErrorKind`](crate::validation::TokenErrorKind)) |
//! | `inactive` | the introspection endpoint says the token is not active (`"active": false`) |
//! | `token_type_mismatch` | an introspection answer whose `token_type` is at odds with its `cnf` (`DPoP` without `cnf.jkt`, or the other way round) |
//! | `unexpected_shape` | a token the introspection validator did not send to the authorization server: longer than its `max_token_length`, or refused by its `token_shape` |
//! | `keys_unavailable` | no signing keys to check it with (`503`) |
//! | `introspection_unavailable` | the introspection endpoint gave no usable answer (down, timed out, garbage), or too many calls were in flight (`503`) |
//! | `no_client_certificate` | a certificate-bound token without a client certificate |
//! | `binding_mismatch` | bound to another certificate, DPoP key or PoP key than the one presented |
//! | `unbound_token` | an unbound token where binding is required |
//! | `unsupported_cnf` | a `cnf` this route cannot check (or ambiguous) |
//! | `downgrade` | a DPoP- or PoP-bound token sent as a bearer token |
//! | `scheme_mismatch` | the `DPoP` or `PoP` scheme with a token not bound that way |
//! | `missing_proof` | `Authorization: DPoP` without a `DPoP` proof |
//! | `bad_proof` | a DPoP proof or a signed HTTP request that fails its checks |
//! | `nonce_required` | a DPoP proof without the server's current nonce (`use_dpop_nonce`) |
//! | `replayed` | a DPoP proof or signed HTTP request seen before |
//! | `replay_store_unavailable` | the replay store could not answer (`503`) |
//! | `replay_share_exceeded` | the proof's key holds its share of the replay store (`429`) |
//! | `insufficient_scope` | a required scope is missing (`403`) |
//!
//! # Plugging in an exporter
//!
//! Any recorder for the `metrics` facade works; for example, with the
//! `metrics-exporter-prometheus` crate in your application:
//!
//! ```text
//! metrics_exporter_prometheus::PrometheusBuilder::new()
//!     .with_http_listener(([0, 0, 0, 0], 9000))
//!     .install()?;
//! tower_token_binding::metrics::describe();
//! ```
//!
//! Recording goes to the recorder installed when it happens; the crate
//! keeps no handles, so a recorder installed later sees what comes after
//! (the pool-clients gauge is set to the absolute count at each change).

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "server")]
mod server;

#[cfg(feature = "client")]
pub(crate) use client::*;
#[cfg(feature = "server")]
pub(crate) use server::*;

/// Token fetches by the client's token cache, by `outcome`.
pub const TOKEN_FETCHES: &str = "tower_token_binding_token_fetches_total";
/// Requests to the client's token cache, by `result` (`hit`, `miss`).
pub const TOKEN_CACHE_LOOKUPS: &str = "tower_token_binding_token_cache_lookups_total";
/// Token cache misses that waited for a fetch another request started.
pub const TOKEN_CACHE_WAITERS: &str = "tower_token_binding_token_cache_waiters_total";
/// Token refreshes started in the background ahead of expiry.
pub const TOKEN_REFRESHES_AHEAD: &str = "tower_token_binding_token_refreshes_ahead_total";
/// Requests sent with an unbound token where a bound one was wanted.
pub const UNBOUND_FALLBACKS: &str = "tower_token_binding_unbound_fallbacks_total";
/// Requests sent again by the client's retry policy, by `reason`.
pub const CLIENT_RETRIES: &str = "tower_token_binding_client_retries_total";
/// Per-identity HTTPS clients held by the process's pools (a gauge).
pub const POOL_CLIENTS: &str = "tower_token_binding_pool_clients";
/// TLS connections opened by the pools, by `client_cert` (`yes`, `no`).
pub const POOL_TLS_CONNECTIONS: &str = "tower_token_binding_pool_tls_connections_total";
/// Requests the validation layer let through or refused, by `outcome` and
/// `scheme`.
pub const VALIDATIONS: &str = "tower_token_binding_validations_total";
/// Requests the validation layer let through, by the `binding` proven.
pub const ACCEPTED: &str = "tower_token_binding_accepted_total";
/// Lookups in the server's cache of verified tokens, by `validator` and
/// `result`.
pub const VALIDATION_CACHE_LOOKUPS: &str = "tower_token_binding_validation_cache_lookups_total";
/// Fetches of the server's signing keys (JWKS), by `outcome`.
pub const JWKS_FETCHES: &str = "tower_token_binding_jwks_fetches_total";
/// Replay-store checks, by `proof` (`dpop`, `pop`) and `result`.
pub const REPLAY_CHECKS: &str = "tower_token_binding_replay_checks_total";
/// Calls to a token introspection endpoint, by `outcome`.
pub const INTROSPECTIONS: &str = "tower_token_binding_introspections_total";
/// Requests carrying a forwarded client certificate header (RFC 9440
/// `Client-Cert` or Envoy's XFCC), by `result`.
pub const FORWARDED_CERTIFICATES: &str = "tower_token_binding_forwarded_certificates_total";

/// Every name above, for checks and dashboards.
pub const NAMES: [&str; 15] = [
    TOKEN_FETCHES,
    TOKEN_CACHE_LOOKUPS,
    TOKEN_CACHE_WAITERS,
    TOKEN_REFRESHES_AHEAD,
    UNBOUND_FALLBACKS,
    CLIENT_RETRIES,
    POOL_CLIENTS,
    POOL_TLS_CONNECTIONS,
    VALIDATIONS,
    ACCEPTED,
    VALIDATION_CACHE_LOOKUPS,
    JWKS_FETCHES,
    REPLAY_CHECKS,
    INTROSPECTIONS,
    FORWARDED_CERTIFICATES,
];

/// Gives every metric of this crate its help text, on the recorder
/// installed now (call it after installing an exporter; exporters show the
/// text as, for example, Prometheus' `# HELP`).
pub fn describe() {
    #[cfg(feature = "metrics")]
    {
        use ::metrics::{describe_counter, describe_gauge};
        describe_counter!(TOKEN_FETCHES, "Access token fetches, by outcome");
        describe_counter!(
            TOKEN_CACHE_LOOKUPS,
            "Access token cache lookups: hit or miss"
        );
        describe_counter!(
            TOKEN_CACHE_WAITERS,
            "Token cache misses that waited for a fetch in flight"
        );
        describe_counter!(
            TOKEN_REFRESHES_AHEAD,
            "Token refreshes started ahead of expiry"
        );
        describe_counter!(
            UNBOUND_FALLBACKS,
            "Requests sent with an unbound token where a bound one was wanted"
        );
        describe_counter!(CLIENT_RETRIES, "Requests retried, by reason");
        describe_gauge!(
            POOL_CLIENTS,
            "Per-identity HTTPS clients held by the mTLS pools"
        );
        describe_counter!(
            POOL_TLS_CONNECTIONS,
            "TLS connections opened by the mTLS pools"
        );
        describe_counter!(
            VALIDATIONS,
            "Requests validated, by outcome and Authorization scheme"
        );
        describe_counter!(ACCEPTED, "Requests accepted, by the binding proven");
        describe_counter!(
            VALIDATION_CACHE_LOOKUPS,
            "Verified-token cache lookups, by validator and result"
        );
        describe_counter!(JWKS_FETCHES, "Signing key (JWKS) fetches, by outcome");
        describe_counter!(
            REPLAY_CHECKS,
            "Replay-store checks of proofs, by proof and result"
        );
        describe_counter!(INTROSPECTIONS, "Token introspection calls, by outcome");
        describe_counter!(
            FORWARDED_CERTIFICATES,
            "Requests with a forwarded client certificate header, by result"
        );
    }
}

/// Adds one to the counter `name` with `labels`.
#[cfg(any(feature = "client", feature = "server"))]
#[inline]
fn increment(name: &'static str, labels: &[(&'static str, &'static str)]) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(name, labels).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, labels);
}

/// Adds one to a counter whose name and labels are known at compile time
/// (`key`, a `static`): the key's hash is computed once, not per event, for
/// the events on every request's path.
#[cfg(all(feature = "client", feature = "metrics"))]
#[inline]
fn increment_static(key: &'static ::metrics::Key) {
    static METADATA: ::metrics::Metadata<'static> =
        ::metrics::Metadata::new(module_path!(), ::metrics::Level::INFO, Some(module_path!()));
    ::metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
}

#[cfg(all(test, feature = "metrics"))]
mod tests;
