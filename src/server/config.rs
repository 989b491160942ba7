//! Building the rustls `ServerConfig` of a resource server that asks clients
//! for certificates.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::AnyClientCertVerifier;
use crate::identity::FileCause;
use crate::tls;

/// Builds the rustls [`ServerConfig`] of a resource server: its own
/// certificate chain and key, how client certificates are checked
/// ([`ClientCertMode`]), and ALPN `h2` and `http/1.1`.
///
/// The config uses the crate's aws-lc-rs provider (passed explicitly; the
/// process-wide rustls default is neither read nor installed) and rustls'
/// safe default protocol versions. The result is a plain `ServerConfig`:
/// change its fields before use if you need to.
///
/// ```
/// use tower_token_binding::server::{ClientCertMode, ServerTlsConfig};
/// # use tower_token_binding::test_util::TestPki;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let pki = TestPki::new()?;
/// # let server = pki.server_cert()?;
/// # let (chain, key) = (server.chain(), server.private_key());
/// // Any client certificate (RFC 8705 self-signed clients), or none.
/// let config = ServerTlsConfig::new(ClientCertMode::any_certificate()).build(chain, key)?;
/// assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
///
/// // Certificates issued by our CA only, and every client must have one.
/// # let (chain, key) = (server.chain(), server.private_key());
/// let config = ServerTlsConfig::new(ClientCertMode::trusted_roots(pki.root_store()).required())
///     .build(chain, key)?;
/// # let _ = config;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServerTlsConfig {
    client_certs: ClientCertMode,
}

impl ServerTlsConfig {
    /// A config that checks client certificates as `client_certs` says.
    pub fn new(client_certs: ClientCertMode) -> Self {
        Self { client_certs }
    }

    /// Builds the config with the server's certificate `chain` (leaf first)
    /// and its private `key`.
    ///
    /// Fails when the key does not belong to the leaf, is of an unsupported
    /// type, or when the client-certificate roots are empty.
    pub fn build(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ServerConfig, ServerTlsError> {
        if chain.is_empty() {
            return Err(ServerTlsError::new(ServerTlsErrorKind::NoCertificate));
        }
        let verifier = self.client_certs.verifier()?;
        let mut config = ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerTlsError::new(ServerTlsErrorKind::Tls).with_source(e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| {
                let kind = match e {
                    rustls::Error::InconsistentKeys(_) => ServerTlsErrorKind::KeyMismatch,
                    _ => ServerTlsErrorKind::Tls,
                };
                ServerTlsError::new(kind).with_source(e)
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Builds the config from PEM files: the certificate chain (leaf first)
    /// from `cert_path`, the private key (PKCS#8, PKCS#1 or SEC1) from
    /// `key_path`. They may be the same file.
    ///
    /// The files are read synchronously: build the config at start-up.
    pub fn build_from_pem_files(
        &self,
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<ServerConfig, ServerTlsError> {
        let (cert_path, key_path) = (cert_path.as_ref(), key_path.as_ref());
        let (chain, key) =
            crate::identity::read_pem_files(cert_path, key_path).map_err(ServerTlsError::from)?;
        self.build(chain, key).map_err(|e| match e.kind {
            ServerTlsErrorKind::KeyMismatch | ServerTlsErrorKind::Tls => e.at(key_path),
            _ => e,
        })
    }
}

/// How a server asks for and checks client certificates.
///
/// Both modes are *optional* unless made [`required`](Self::required): every
/// client is asked for a certificate, and one without a certificate still
/// connects. Its requests carry no [`PeerCertificate`](super::PeerCertificate),
/// so a bound token sent on it gets a proper `401` from the token validation
/// instead of a failed handshake, and unbound tokens remain possible where
/// the application allows them.
#[derive(Clone)]
pub struct ClientCertMode {
    trust: Trust,
    required: bool,
}

#[derive(Clone)]
enum Trust {
    Any,
    Roots(Arc<RootCertStore>),
}

impl ClientCertMode {
    /// Accepts any well-formed certificate, CA-issued or self-signed, and
    /// still verifies the handshake signature (the client must hold the key):
    /// RFC 8705 section 2.2 `self_signed_tls_client_auth`. See
    /// [`AnyClientCertVerifier`].
    pub fn any_certificate() -> Self {
        Self {
            trust: Trust::Any,
            required: false,
        }
    }

    /// Accepts certificates that chain to one of `roots` (and are valid now,
    /// for client authentication), via rustls' `WebPkiClientVerifier`:
    /// RFC 8705 section 2.1 `tls_client_auth`.
    pub fn trusted_roots(roots: impl Into<Arc<RootCertStore>>) -> Self {
        Self {
            trust: Trust::Roots(roots.into()),
            required: false,
        }
    }

    /// Refuses the handshake of a client that presents no certificate.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Lets a client without a certificate connect (the default).
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// Whether a client must present a certificate.
    pub fn is_required(&self) -> bool {
        self.required
    }

    /// The rustls verifier for this mode, built with the crate's provider.
    pub fn verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, ServerTlsError> {
        match (&self.trust, self.required) {
            (Trust::Any, false) => Ok(Arc::new(AnyClientCertVerifier::optional())),
            (Trust::Any, true) => Ok(Arc::new(AnyClientCertVerifier::required())),
            (Trust::Roots(roots), required) => {
                let builder =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), tls::provider());
                let builder = if required {
                    builder
                } else {
                    builder.allow_unauthenticated()
                };
                builder.build().map_err(|e| {
                    ServerTlsError::new(ServerTlsErrorKind::ClientVerifier).with_source(e)
                })
            }
        }
    }
}

impl fmt::Debug for ClientCertMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClientCertMode");
        match &self.trust {
            Trust::Any => d.field("trust", &"any certificate"),
            Trust::Roots(roots) => d.field("trusted_roots", &roots.len()),
        };
        d.field("required", &self.required).finish()
    }
}

/// The error returned when a [`ServerTlsConfig`] cannot be built.
///
/// [`kind`](Self::kind) says what went wrong, [`path`](Self::path) which file
/// it was about (when building from files), and the source chain has the
/// underlying I/O, PEM or rustls error.
pub struct ServerTlsError {
    kind: ServerTlsErrorKind,
    cause: FileCause,
}

/// What went wrong building a [`ServerTlsConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerTlsErrorKind {
    /// A file could not be read.
    Io,
    /// The PEM has a malformed section.
    MalformedPem,
    /// There is no server certificate.
    NoCertificate,
    /// There is no private key (PKCS#8, PKCS#1 or SEC1).
    NoPrivateKey,
    /// There is more than one private key.
    MultipleKeys,
    /// The only key is an encrypted PKCS#8 key, which is not supported.
    EncryptedKey,
    /// The private key does not belong to the server certificate.
    KeyMismatch,
    /// The client-certificate verifier cannot be built (for example, no
    /// trusted roots).
    ClientVerifier,
    /// rustls refused the configuration (for example, an unsupported key).
    Tls,
}

impl ServerTlsError {
    fn new(kind: ServerTlsErrorKind) -> Self {
        Self {
            kind,
            cause: FileCause::default(),
        }
    }

    fn with_source(mut self, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        self.cause.set_source(source.into());
        self
    }

    fn at(mut self, path: &Path) -> Self {
        self.cause.set_path(path);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ServerTlsErrorKind {
        self.kind
    }

    /// The file the error is about, when building from files.
    pub fn path(&self) -> Option<&Path> {
        self.cause.path()
    }
}

impl From<crate::IdentityError> for ServerTlsError {
    fn from(e: crate::IdentityError) -> Self {
        use crate::IdentityErrorKind as I;
        let (kind, cause) = e.into_parts();
        let kind = match kind {
            I::Io => ServerTlsErrorKind::Io,
            I::MalformedPem => ServerTlsErrorKind::MalformedPem,
            I::NoCertificate => ServerTlsErrorKind::NoCertificate,
            I::NoPrivateKey => ServerTlsErrorKind::NoPrivateKey,
            I::EncryptedKey => ServerTlsErrorKind::EncryptedKey,
            I::MultipleKeys => ServerTlsErrorKind::MultipleKeys,
            I::KeyMismatch => ServerTlsErrorKind::KeyMismatch,
            _ => ServerTlsErrorKind::Tls,
        };
        Self { kind, cause }
    }
}

impl fmt::Display for ServerTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ServerTlsErrorKind as K;
        self.cause.fmt_path(f)?;
        f.write_str(match self.kind {
            K::Io => "cannot read the file",
            K::MalformedPem => "malformed PEM",
            K::NoCertificate => "no server certificate found",
            K::NoPrivateKey => {
                "no private key found (expected a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section)"
            }
            K::MultipleKeys => "more than one private key found; expected exactly one",
            K::EncryptedKey => "the private key is encrypted; decrypt it first",
            K::KeyMismatch => "the private key does not belong to the server certificate",
            K::ClientVerifier => "cannot build the client-certificate verifier",
            K::Tls => "cannot build the TLS configuration",
        })?;
        self.cause.fmt_source(f)
    }
}

impl fmt::Debug for ServerTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ServerTlsError");
        d.field("kind", &self.kind);
        self.cause.debug_path(&mut d);
        self.cause.debug_source(&mut d);
        d.finish()
    }
}

impl std::error::Error for ServerTlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    const CERT: &[u8] = include_bytes!("../../tests/data/leaf.pem");
    const KEY: &[u8] = include_bytes!("../../tests/data/leaf.key");
    const OTHER_KEY: &[u8] = include_bytes!("../../tests/data/other.key");
    const CA: &[u8] = include_bytes!("../../tests/data/ca.pem");

    fn chain() -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(CERT)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn key(pem: &[u8]) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(pem).unwrap()
    }

    fn roots() -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(CA).unwrap())
            .unwrap();
        roots
    }

    #[test]
    fn every_mode_builds_and_offers_client_auth() {
        for mode in [
            ClientCertMode::any_certificate(),
            ClientCertMode::any_certificate().required(),
            ClientCertMode::trusted_roots(roots()),
            ClientCertMode::trusted_roots(roots()).required(),
            ClientCertMode::trusted_roots(roots()).required().optional(),
        ] {
            let verifier = mode.verifier().unwrap();
            assert!(verifier.offer_client_auth());
            assert_eq!(verifier.client_auth_mandatory(), mode.is_required());
            let config = ServerTlsConfig::new(mode).build(chain(), key(KEY)).unwrap();
            assert_eq!(
                config.alpn_protocols,
                [b"h2".to_vec(), b"http/1.1".to_vec()]
            );
        }
    }

    #[test]
    fn refusals() {
        let any = ServerTlsConfig::new(ClientCertMode::any_certificate());
        let kind = |r: Result<ServerConfig, ServerTlsError>| r.unwrap_err().kind();
        assert_eq!(
            kind(any.build(chain(), key(OTHER_KEY))),
            ServerTlsErrorKind::KeyMismatch
        );
        assert_eq!(
            kind(any.build(Vec::new(), key(KEY))),
            ServerTlsErrorKind::NoCertificate
        );
        let empty = ServerTlsConfig::new(ClientCertMode::trusted_roots(RootCertStore::empty()));
        assert_eq!(
            kind(empty.build(chain(), key(KEY))),
            ServerTlsErrorKind::ClientVerifier
        );
    }

    #[test]
    fn debug_is_short() {
        let mode = ClientCertMode::trusted_roots(roots()).required();
        assert_eq!(
            format!("{mode:?}"),
            "ClientCertMode { trusted_roots: 1, required: true }"
        );
    }
}
