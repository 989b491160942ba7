use std::fmt;

use crate::BoxError;

/// Why [`BoundClientBuilder::build`](super::BoundClientBuilder::build)
/// refused a configuration.
pub struct BuildError {
    kind: BuildErrorKind,
    message: String,
    source: Option<BoxError>,
}

/// What kind of misconfiguration a [`BuildError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildErrorKind {
    /// Nowhere to get tokens from: no issuer, token endpoint or token source.
    NoTokenSource,
    /// A scheme that presents a client certificate, and no identity.
    NoIdentity,
    /// A DPoP or PoP client that gets its tokens by client credentials, with
    /// no way to authenticate at the token endpoint: neither a client secret
    /// nor a certificate for `tls_client_auth` (the proof key binds the
    /// token; it does not authenticate the client).
    NoClientAuthentication,
    /// Two settings that cannot go together (an issuer and a token endpoint,
    /// a token source and client-credentials settings, a token with
    /// [`Scheme::MtlsOnly`](crate::binding::Scheme::MtlsOnly)...).
    Conflict,
    /// The client-credentials settings are invalid (a missing client id, an
    /// `http://` URL...).
    TokenSource,
    /// The identity files cannot be loaded.
    Identity,
    /// The trusted roots cannot be loaded.
    Roots,
    /// The DPoP key cannot be loaded (or generated).
    DpopKey,
    /// The PoP key cannot be loaded (or generated).
    PopKey,
    /// The HTTPS client cannot be built.
    Pool,
}

impl BuildError {
    pub(crate) fn new(kind: BuildErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of misconfiguration this is.
    pub fn kind(&self) -> BuildErrorKind {
        self.kind
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("BuildError");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
