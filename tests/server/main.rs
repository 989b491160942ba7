//! The server half: `CnfValidationLayer`, DPoP and PoP proofs, JWT and
//! introspection validation, forwarded certificates, `serve` and
//! `ResourceServer`, over real TLS on loopback.

#[cfg(feature = "test-util")]
#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod any_client_cert;
mod cnf_validation;
mod dpop_replay_nonces;
mod dpop_validation;
mod forwarded_xfcc;
mod grpc_refusals;
mod grpc_tonic;
mod introspection;
mod introspection_deployment;
mod issuer_unreachable;
mod jwks_refresh;
mod jwt_algorithms;
mod pop_round_trips;
mod pop_validation;
mod public_origin_warning;
mod replay_share;
mod request_targets;
mod resource_server;
mod resource_server_discovery;
mod server_plumbing;
mod server_shutdown;
mod token_profiles;
