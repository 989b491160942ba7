use std::fmt;

use http::StatusCode;

use crate::BoxError;

/// Why a [`ManagedIdentity`](super::ManagedIdentity) could not be built or
/// renewed.
///
/// [`kind`](Self::kind) says what went wrong; [`is_not_available`](Self::is_not_available)
/// is the one most callers branch on (not running on Azure, or on a host
/// without IMDS v2). The message says what was asked and what came back; it
/// never holds key material.
pub struct ManagedIdentityError {
    kind: ManagedIdentityErrorKind,
    message: String,
    status: Option<StatusCode>,
    source: Option<BoxError>,
}

/// What kind of failure a [`ManagedIdentityError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManagedIdentityErrorKind {
    /// No IMDS v2 here: the probe got no answer within its timeout, the
    /// connection was refused, or the answer was not IMDS v2's (a `404`, a
    /// server that is not IMDS). Off Azure, this is the error.
    NotAvailable,
    /// The settings are invalid (a base URL that is not `http://host[:port]`),
    /// or the build ran outside a Tokio runtime.
    Config,
    /// IMDS answered a request after the probe with an error status.
    Status,
    /// An answer could not be used: not JSON, a field missing or empty, a
    /// certificate that is not base64 DER, a token endpoint that is not an
    /// `https://` URL.
    InvalidResponse,
    /// The certificate issued is not for the key the request was made with.
    CertificateMismatch,
    /// The certificate issued cannot be used: it cannot be parsed, has
    /// expired or is not valid yet.
    InvalidCertificate,
    /// A request after the probe got no answer in time.
    Timeout,
    /// A request after the probe failed to connect or to be read.
    Transport,
    /// The key could not be generated or could not sign the request.
    Crypto,
}

impl ManagedIdentityError {
    pub(super) fn new(kind: ManagedIdentityErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            status: None,
            source: None,
        }
    }

    pub(super) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    pub(super) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ManagedIdentityErrorKind {
        self.kind
    }

    /// Whether this says "no IMDS v2 here": not on Azure, or on a host
    /// without it ([`ManagedIdentityErrorKind::NotAvailable`]).
    pub fn is_not_available(&self) -> bool {
        self.kind == ManagedIdentityErrorKind::NotAvailable
    }

    /// The HTTP status IMDS answered with, when that is the failure.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }
}

impl fmt::Display for ManagedIdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("managed identity (IMDS v2): ")?;
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ManagedIdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ManagedIdentityError");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(status) = &self.status {
            d.field("status", status);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for ManagedIdentityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
