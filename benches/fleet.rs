//! Placeholder: the fleet bench (Redis replay store against the in-memory
//! one) is written next.
fn main() {}
