/// The error of [`BoundClientBuilder::build`](super::BoundClientBuilder::build),
/// now the crate's one [`ConfigError`](crate::ConfigError).
#[deprecated(note = "use tower_token_binding::ConfigError, which every builder returns")]
pub type BuildError = crate::ConfigError;
