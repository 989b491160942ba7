//! The client half: token sources, the token cache, `TokenBindingLayer`,
//! `BoundClient`, identities and the per-identity pool, over real TLS on
//! loopback against the embedded issuer.

#[cfg(feature = "test-util")]
#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod binding_over_mtls;
mod bound_client;
mod bound_client_dpop;
mod bound_client_requests;
mod certificate_lifetimes;
mod client_credentials;
mod dpop_binding;
mod dpop_client_credentials;
mod identity;
mod managed_identity;
mod plain_http;
mod pool;
mod pop_client;
mod reloading_identity;
#[cfg(feature = "reqwest")]
mod reqwest_client;
mod retry_layers;
mod test_issuer;
mod thumbprint;
mod token_binding;
mod wire_cost;
