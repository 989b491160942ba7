//! The old name of what [`ResourceServerBuilder::build`](super::ResourceServerBuilder::build)
//! refuses with.

/// The error of [`ResourceServerBuilder::build`](super::ResourceServerBuilder::build),
/// now the crate's one [`ConfigError`](crate::ConfigError).
#[deprecated(note = "use tower_token_binding::ConfigError, which every builder returns")]
pub type ResourceServerError = crate::ConfigError;
