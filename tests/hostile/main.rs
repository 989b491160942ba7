//! Hostile input against everything the crate parses: tokens, proofs,
//! headers, forwarded certificates, token profiles; property tests
//! included.

#[cfg(feature = "test-util")]
#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod hostile_escaped_pem;
mod hostile_jose;
mod hostile_profiles;
mod hostile_refactor;
#[cfg(feature = "reqwest")]
mod hostile_reqwest;
mod hostile_review;
mod hostile_tokens;
mod malformed_input;
mod validation_props;
