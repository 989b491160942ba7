/// The error of [`ClientCredentialsBuilder::build`](super::ClientCredentialsBuilder::build),
/// now the crate's one [`ConfigError`](crate::ConfigError).
#[deprecated(note = "use tower_token_binding::ConfigError, which every builder returns")]
pub type ConfigError = crate::ConfigError;
