//! [`ConfigError`]: the one error every builder's `build()` returns when it
//! refuses a configuration, naming the setting at fault.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A configuration a builder's `build()` refused: what is wrong
/// ([`kind`](Self::kind)), with which setting ([`setting`](Self::setting):
/// the name of the builder's setter), in which builder
/// ([`builder`](Self::builder)), the file it is about for the settings
/// that name files ([`path`](Self::path)), and the underlying error, if
/// any, as its [`source`](std::error::Error::source) (an
/// [`IdentityError`](crate::IdentityError), a `ServerTlsError`, an
/// [`std::io::Error`], ...).
///
/// `Display` starts with the setting (`audience: ...`), or the builder's
/// name when no one setting is at fault, and ends with the file, if any;
/// the underlying error is left to `source()`, so that a reporter that
/// prints the chain (`anyhow`'s `{:#}`) says each thing once. Neither it nor `Debug` ever shows a secret or a key: the
/// messages name settings and say what is wrong with them, never their
/// values when those could be secret.
///
/// A facade builder ([`ResourceServerBuilder`](crate::server::ResourceServerBuilder),
/// [`BoundClientBuilder`](crate::client::BoundClientBuilder)) hands its
/// settings to the builders it holds, under the same names, and their
/// refusals come back unchanged: [`builder`](Self::builder) then names the
/// inner builder whose check refused, and [`setting`](Self::setting) the
/// setter, which the facade has too.
///
#[cfg_attr(feature = "client", doc = "```")]
#[cfg_attr(not(feature = "client"), doc = "```ignore")]
/// use tower_token_binding::{ConfigError, ConfigErrorKind};
/// use tower_token_binding::source::ClientCredentials;
///
/// let error: ConfigError = ClientCredentials::builder()
///     .token_endpoint("https://login.example.com/token")
///     .client_secret_basic("s3cret")
///     .build()
///     .unwrap_err();
/// assert_eq!(error.setting(), Some("client_id"));
/// assert_eq!(error.kind(), ConfigErrorKind::Missing);
/// assert_eq!(error.builder(), "ClientCredentialsBuilder");
/// assert!(error.to_string().starts_with("client_id: "));
/// assert!(!format!("{error:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct ConfigError {
    builder: &'static str,
    setting: Option<&'static str>,
    kind: ConfigErrorKind,
    message: Cow<'static, str>,
    path: Option<PathBuf>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

/// What is wrong with a setting, for a [`ConfigError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A required setting was not given (an issuer, an audience, a client
    /// id, a client authentication, an identity, trusted proxies, the
    /// server's TLS certificate...).
    Missing,
    /// A setting's value cannot work: a URL that is not `https://`, an
    /// empty audience, a limit of 0, an algorithm that cannot be used, a
    /// malformed scope or origin, a claim that cannot be relaxed, a
    /// certificate and key that do not belong together...
    Invalid,
    /// Two settings that do not go together; [`setting`](ConfigError::setting)
    /// names one, the message the other.
    Conflict,
    /// A file a setting names cannot be read, or holds nothing usable;
    /// [`path`](ConfigError::path) names it and the source says why.
    Unreadable,
    /// Something the configuration needs from the platform is not there:
    /// root certificates, an HTTPS client or TLS configuration, a key
    /// generator, a Tokio runtime.
    Unavailable,
}

impl ConfigErrorKind {
    /// A short word for the kind, as `Display` and logs use it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Conflict => "conflict",
            Self::Unreadable => "unreadable",
            Self::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// The builders that use every constructor are in the halves.
#[cfg_attr(not(all(feature = "client", feature = "server")), allow(dead_code))]
impl ConfigError {
    fn new(
        kind: ConfigErrorKind,
        builder: &'static str,
        setting: Option<&'static str>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            builder,
            setting,
            kind,
            message: message.into(),
            path: None,
            source: None,
        }
    }

    /// The same refusal, said of a facade's `setting`: the inner builder's
    /// setting is not one the user called (the facade's `identity_files`
    /// builds a `ReloadingIdentityBuilder` from two paths, say).
    pub(crate) fn renamed(mut self, builder: &'static str, setting: &'static str) -> Self {
        self.builder = builder;
        self.setting = Some(setting);
        self
    }

    /// `setting` of `builder` is required and was not given.
    pub(crate) fn missing(
        builder: &'static str,
        setting: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ConfigErrorKind::Missing, builder, Some(setting), message)
    }

    /// `setting` of `builder` has a value that cannot work.
    pub(crate) fn invalid(
        builder: &'static str,
        setting: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ConfigErrorKind::Invalid, builder, Some(setting), message)
    }

    /// `setting` of `builder` does not go with another, which `message`
    /// names.
    pub(crate) fn conflict(
        builder: &'static str,
        setting: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ConfigErrorKind::Conflict, builder, Some(setting), message)
    }

    /// The file at `path`, which `setting` of `builder` names, cannot be
    /// read or used; `source` says why.
    pub(crate) fn unreadable(
        builder: &'static str,
        setting: &'static str,
        path: &Path,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self::new(
            ConfigErrorKind::Unreadable,
            builder,
            Some(setting),
            "cannot use the file",
        )
        .at(path)
        .with_source(source)
    }

    /// Something `builder` needs from the platform is not there; `setting`
    /// is the one that would provide it instead, if any.
    pub(crate) fn unavailable(
        builder: &'static str,
        setting: Option<&'static str>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ConfigErrorKind::Unavailable, builder, setting, message)
    }

    /// With the underlying error.
    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        self.source = Some(Arc::from(source.into()));
        self
    }

    /// About the file at `path`.
    pub(crate) fn at(mut self, path: &Path) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    /// What is wrong.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The setting at fault: the name of the builder's setter (`audience`,
    /// `trusted_proxy`, `client_ca_file`...), or `None` when no one setting
    /// is (the platform has no root certificates, say).
    pub fn setting(&self) -> Option<&'static str> {
        self.setting
    }

    /// The builder whose `build()` refused, such as `"JwtValidatorBuilder"`.
    pub fn builder(&self) -> &'static str {
        self.builder
    }

    /// The file the error is about, for the settings that name files.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether a required setting is missing ([`ConfigErrorKind::Missing`]).
    pub fn is_missing(&self) -> bool {
        self.kind == ConfigErrorKind::Missing
    }

    /// Whether two settings conflict ([`ConfigErrorKind::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        self.kind == ConfigErrorKind::Conflict
    }
}

impl fmt::Display for ConfigError {
    /// `setting: message`, and the file for a file setting. The underlying
    /// error is not repeated: it is the [`source`](StdError::source), for
    /// a reporter that prints the chain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.setting.unwrap_or(self.builder))?;
        write!(f, ": {}", self.message)?;
        if let Some(path) = &self.path {
            write!(f, ": {}", path.display())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ConfigError");
        d.field("kind", &self.kind)
            .field("builder", &self.builder)
            .field("setting", &self.setting)
            .field("message", &self.message);
        if let Some(path) = &self.path {
            d.field("path", path);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl StdError for ConfigError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_starts_with_the_setting_and_leaves_the_source_to_source() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = ConfigError::unreadable(
            "ResourceServerBuilder",
            "client_ca_file",
            Path::new("/etc/ca.pem"),
            io,
        );
        assert_eq!(e.kind(), ConfigErrorKind::Unreadable);
        assert_eq!(e.setting(), Some("client_ca_file"));
        assert_eq!(e.path(), Some(Path::new("/etc/ca.pem")));
        // The cause is the source, not repeated in the message.
        assert_eq!(
            e.to_string(),
            "client_ca_file: cannot use the file: /etc/ca.pem"
        );
        assert_eq!(e.source().unwrap().to_string(), "no such file");
        let e = ConfigError::unavailable("RemoteJwks", None, "no platform roots");
        assert_eq!(e.to_string(), "RemoteJwks: no platform roots");
        assert!(e.source().is_none());
    }
}
