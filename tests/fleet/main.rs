//! A fleet sharing state through a real `redis-server`: replay detection,
//! tokens and their locks, introspection answers, and the examples run as a
//! fleet.

#[cfg(feature = "test-util")]
#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod fleet_examples;
mod fleet_introspection;
mod fleet_replay;
mod fleet_token_cache;
mod fleet_token_locks;
