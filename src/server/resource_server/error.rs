//! [`ResourceServerError`]: what [`ResourceServerBuilder::build`] refuses.

use std::fmt;
use std::path::{Path, PathBuf};

use super::BoxError;
#[allow(unused_imports)] // for the docs
use super::ResourceServerBuilder;

/// The error returned by [`ResourceServerBuilder::build`].
///
/// [`kind`](Self::kind) says what is wrong, [`path`](Self::path) which file
/// it is about (for the file settings), and the source chain has the
/// underlying error ([`ServerTlsError`](crate::server::ServerTlsError), [`IdentityError`](crate::IdentityError),
/// [`JwksError`](crate::validation::JwksError),
/// [`InvalidScope`](crate::validation::InvalidScope)).
pub struct ResourceServerError {
    kind: ResourceServerErrorKind,
    path: Option<PathBuf>,
    message: Option<&'static str>,
    source: Option<BoxError>,
}

/// What is wrong with a [`ResourceServerBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceServerErrorKind {
    /// No [`issuer`](ResourceServerBuilder::issuer).
    MissingIssuer,
    /// The issuer is not an `https://` URL without user info, query or
    /// fragment.
    InvalidIssuer,
    /// No [`audience`](ResourceServerBuilder::audience).
    MissingAudience,
    /// An audience is empty (or blank).
    EmptyAudience,
    /// A [required scope](ResourceServerBuilder::required_scope) is not an
    /// RFC 6749 scope token.
    InvalidScope,
    /// [`algorithms`](ResourceServerBuilder::algorithms) is empty.
    NoAlgorithms,
    /// [`allow_missing_claims`](ResourceServerBuilder::allow_missing_claims)
    /// names a claim that is always required (`iss`, `aud`, `exp`) or one
    /// it does not know; see
    /// [`RELAXABLE_CLAIMS`](crate::validation::RELAXABLE_CLAIMS).
    ClaimAlwaysRequired,
    /// Neither [`tls_pem_files`](ResourceServerBuilder::tls_pem_files) nor
    /// [`tls_config`](ResourceServerBuilder::tls_config).
    MissingTls,
    /// The server's certificate or key file cannot be read or used (the
    /// key does not belong to the certificate, ...); [`path`](ResourceServerError::path)
    /// names the file.
    Tls,
    /// The [client CA file](ResourceServerBuilder::client_ca_file) cannot be
    /// read or holds no certificate, or the client-certificate verifier
    /// cannot be built.
    ClientCa,
    /// No trust for the issuer's HTTPS: the
    /// [CA file](ResourceServerBuilder::root_ca_file) cannot be read,
    /// the platform has no root certificates, or the HTTPS client cannot be
    /// built.
    IssuerTls,
    /// Settings that do not go together.
    ConflictingOptions,
    /// The [public origin](ResourceServerBuilder::public_origin) is not an
    /// `http` or `https` origin.
    InvalidPublicOrigin,
    /// The [introspection](ResourceServerBuilder::introspection) settings
    /// cannot work (see the source).
    Introspection,
    /// A multi-tenant [issuer](ResourceServerBuilder::issuer) (Entra
    /// `/organizations/v2.0` or `/common/v2.0` under
    /// [`TokenProfile::entra`](crate::validation::TokenProfile::entra))
    /// without [`allowed_tenants`](ResourceServerBuilder::allowed_tenants):
    /// it would accept tokens from any tenant.
    MissingTenants,
    /// The [token profile](ResourceServerBuilder::token_profile) names a
    /// claim that cannot be shown in a challenge, or lets a claim be absent
    /// that is always required.
    InvalidTokenProfile,
}

impl ResourceServerError {
    pub(super) fn new(kind: ResourceServerErrorKind) -> Self {
        Self {
            kind,
            path: None,
            message: None,
            source: None,
        }
    }

    pub(super) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub(super) fn with_message(mut self, message: &'static str) -> Self {
        self.message = Some(message);
        self
    }

    pub(super) fn at(mut self, path: &Path) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    /// What is wrong.
    pub fn kind(&self) -> ResourceServerErrorKind {
        self.kind
    }

    /// The file the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl fmt::Display for ResourceServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ResourceServerErrorKind as K;
        f.write_str(match self.kind {
            K::MissingIssuer => "an issuer is required (ResourceServerBuilder::issuer)",
            K::InvalidIssuer => "invalid issuer",
            K::MissingAudience => "an audience is required (ResourceServerBuilder::audience)",
            K::EmptyAudience => "an audience must not be empty",
            K::InvalidScope => "invalid required scope",
            K::NoAlgorithms => "at least one signature algorithm must be allowed",
            K::ClaimAlwaysRequired => "a claim that cannot be allowed to be missing",
            K::MissingTls => {
                "the server's TLS certificate is required (ResourceServerBuilder::tls_pem_files, tls_identity or tls_config)"
            }
            K::Tls => "server TLS",
            K::ClientCa => "client certificate trust",
            K::IssuerTls => "trust for the issuer's HTTPS",
            K::ConflictingOptions => "conflicting settings",
            K::InvalidPublicOrigin => "invalid public origin",
            K::Introspection => "token introspection",
            K::MissingTenants => {
                "a multi-tenant issuer needs an allow-list of tenants (ResourceServerBuilder::allowed_tenants)"
            }
            K::InvalidTokenProfile => "invalid token profile",
        })?;
        // A source about a file names it already.
        if let (Some(path), None) = (&self.path, &self.source) {
            write!(f, ": {}", path.display())?;
        }
        if let Some(message) = self.message {
            write!(f, ": {message}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ResourceServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ResourceServerError");
        d.field("kind", &self.kind);
        if let Some(path) = &self.path {
            d.field("path", path);
        }
        if let Some(message) = self.message {
            d.field("message", &message);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for ResourceServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
