//! The crate against a certified OpenID provider (node `oidc-provider`,
//! under `tests/interop`): tokens, DPoP and introspection both ways.
//! Without Node outside CI each test says it is skipped.

#[cfg(feature = "test-util")]
#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod interop;
mod interop_dpop;
mod interop_dpop_server;
mod interop_introspection;
mod interop_smoke;
