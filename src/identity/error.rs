//! [`IdentityError`]: why a client identity could not be loaded, with the
//! file it was about and the certificate's validity when that was the cause.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::validity::{Date, Validity};

/// The error returned when a client identity cannot be loaded.
///
/// [`kind`](Self::kind) says what went wrong, [`path`](Self::path) which file
/// it was about (when loading from files), and the source chain has the
/// underlying I/O, PEM or rustls error.
pub struct IdentityError {
    pub(super) kind: IdentityErrorKind,
    /// The certificate's validity and the time it was checked at.
    pub(super) validity: Option<(Validity, SystemTime)>,
    cause: FileCause,
}

/// The file an error is about and the error behind it, both optional: what
/// [`IdentityError`] and the server's TLS error hold besides their kind,
/// shown the same way.
#[derive(Default)]
pub(crate) struct FileCause {
    path: Option<PathBuf>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl FileCause {
    /// The file.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// About the file at `path`.
    pub(crate) fn set_path(&mut self, path: &Path) {
        self.path = Some(path.to_owned());
    }

    /// Behind it, `source`.
    pub(crate) fn set_source(&mut self, source: Box<dyn std::error::Error + Send + Sync>) {
        self.source = Some(source);
    }

    /// Writes `"{path}: "`, to start a `Display`, when there is a file.
    pub(crate) fn fmt_path(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: ", path.display()),
            None => Ok(()),
        }
    }

    /// Writes `": {source}"`, to end a `Display`, when there is an error
    /// behind.
    pub(crate) fn fmt_source(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, ": {source}"),
            None => Ok(()),
        }
    }

    /// Adds the `path` field to a `Debug`, when there is a file.
    pub(crate) fn debug_path(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        if let Some(path) = &self.path {
            d.field("path", path);
        }
    }

    /// Adds the `source` field to a `Debug`, when there is an error behind.
    pub(crate) fn debug_source(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        if let Some(source) = &self.source {
            d.field("source", source);
        }
    }

    /// The error behind, for `Error::source`.
    pub(crate) fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// What went wrong loading a client identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityErrorKind {
    /// A file could not be read.
    Io,
    /// The PEM has a malformed section.
    MalformedPem,
    /// There is no certificate.
    NoCertificate,
    /// There is no private key (PKCS#8, PKCS#1 or SEC1).
    NoPrivateKey,
    /// The only key is an encrypted PKCS#8 key, which is not supported.
    EncryptedKey,
    /// There is more than one private key.
    MultipleKeys,
    /// The private key is of a type or curve the crypto provider cannot use.
    UnsupportedKey,
    /// The private key does not belong to the leaf certificate.
    KeyMismatch,
    /// The leaf certificate cannot be parsed.
    InvalidCertificate,
    /// The leaf certificate has expired ([`IdentityError::not_after`] says
    /// when).
    Expired,
    /// The leaf certificate is not valid yet ([`IdentityError::not_before`]
    /// says from when).
    NotYetValid,
    /// A TLS configuration could not be built.
    Tls,
}

impl IdentityError {
    pub(super) fn new(kind: IdentityErrorKind) -> Self {
        Self {
            kind,
            validity: None,
            cause: FileCause::default(),
        }
    }

    pub(super) fn with_validity(mut self, validity: Validity, now: SystemTime) -> Self {
        self.validity = Some((validity, now));
        self
    }

    pub(super) fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.cause.set_source(source.into());
        self
    }

    pub(super) fn at(mut self, path: &Path) -> Self {
        self.cause.set_path(path);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> IdentityErrorKind {
        self.kind
    }

    /// The file the error is about, when loading from files.
    pub fn path(&self) -> Option<&Path> {
        self.cause.path()
    }

    /// The leaf certificate's `notBefore`, for an
    /// [`Expired`](IdentityErrorKind::Expired) or
    /// [`NotYetValid`](IdentityErrorKind::NotYetValid) certificate.
    pub fn not_before(&self) -> Option<SystemTime> {
        self.validity.map(|(v, _)| v.not_before)
    }

    /// The leaf certificate's `notAfter`, for an
    /// [`Expired`](IdentityErrorKind::Expired) or
    /// [`NotYetValid`](IdentityErrorKind::NotYetValid) certificate.
    pub fn not_after(&self) -> Option<SystemTime> {
        self.validity.map(|(v, _)| v.not_after)
    }

    /// Kind, path and source, for errors of other types built from this one.
    #[cfg(feature = "server")]
    pub(crate) fn into_parts(self) -> (IdentityErrorKind, FileCause) {
        (self.kind, self.cause)
    }
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use IdentityErrorKind as K;
        self.cause.fmt_path(f)?;
        f.write_str(match self.kind {
            K::Io => "cannot read the file",
            K::MalformedPem => "malformed PEM",
            K::NoCertificate => "no certificate found (expected a PEM CERTIFICATE section)",
            K::NoPrivateKey => {
                "no private key found (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section)"
            }
            K::EncryptedKey => "the private key is encrypted; decrypt it first",
            K::MultipleKeys => "more than one private key found; expected exactly one",
            K::UnsupportedKey => "the private key is of an unsupported type",
            K::KeyMismatch => "the private key does not belong to the certificate",
            K::InvalidCertificate => "the certificate cannot be parsed",
            K::Expired => "the certificate has expired",
            K::NotYetValid => "the certificate is not valid yet",
            K::Tls => "cannot build the TLS configuration",
        })?;
        if let Some((validity, now)) = &self.validity {
            write!(
                f,
                " ({validity}; it is now {}): renew it, or load it with accept_outside_validity",
                Date(*now)
            )?;
        }
        self.cause.fmt_source(f)
    }
}

impl fmt::Debug for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("IdentityError");
        d.field("kind", &self.kind);
        self.cause.debug_path(&mut d);
        if let Some((validity, _)) = &self.validity {
            d.field("not_before", &Date(validity.not_before))
                .field("not_after", &Date(validity.not_after));
        }
        self.cause.debug_source(&mut d);
        d.finish()
    }
}

impl std::error::Error for IdentityError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.source()
    }
}
