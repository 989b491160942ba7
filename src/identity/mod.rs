//! Client identities: a certificate chain and the private key that goes with it.
//!
//! A [`ClientIdentity`] is what a client presents in the TLS handshake and what
//! its tokens are bound to. It is loaded once (from PEM files, PEM bytes or
//! DER), checked (the key must belong to the leaf certificate), and then cheap
//! to clone: the parsed key and the leaf's [`Thumbprint`] are shared.
//!
//! ```no_run
//! use tower_token_binding::ClientIdentity;
//!
//! # fn main() -> Result<(), tower_token_binding::IdentityError> {
//! let identity = ClientIdentity::from_pem_files("client.pem", "client.key")?;
//! println!("tokens will be bound to x5t#S256={}", identity.thumbprint());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rustls::client::ResolvesClientCert;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::thumbprint::Thumbprint;
use crate::tls;

mod error;
#[cfg(feature = "managed-identity")]
#[cfg_attr(docsrs, doc(cfg(feature = "managed-identity")))]
pub mod managed;
mod pem_files;
#[cfg(feature = "client")]
mod reloading;
#[cfg(feature = "client")]
mod rotation;
#[cfg(feature = "client")]
mod source;
mod validity;

#[cfg(feature = "client")]
pub use reloading::{Reload, ReloadStats, ReloadingIdentity, ReloadingIdentityBuilder};
#[cfg(feature = "client")]
pub use source::IdentitySource;
#[cfg(feature = "client")]
pub(crate) use source::SharedIdentity;

#[cfg(feature = "server")]
pub(crate) use error::FileCause;
pub use error::{IdentityError, IdentityErrorKind};
#[cfg(feature = "server")]
pub(crate) use pem_files::read_pem_files;
pub use pem_files::root_store_from_pem_file;
use pem_files::{certificates_from_pem, key_from_pem, read};
use validity::{Date, Validity, Within};

/// How long before its certificate expires an identity is warned about.
const EXPIRY_WARNING: Duration = Duration::from_secs(24 * 60 * 60);

/// A client certificate chain with its private key, and the leaf's thumbprint.
///
/// Cloning is cheap (a reference count). `Debug` shows the thumbprint and the
/// chain length, never key material.
#[derive(Clone)]
pub struct ClientIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    certified: Arc<CertifiedKey>,
    thumbprint: Thumbprint,
    /// The leaf certificate's validity.
    validity: Validity,
    /// Whether its coming (or past) expiry was logged.
    expiry_warned: AtomicBool,
    /// The identities that took each other's place, this one included.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    line: Arc<Line>,
    /// This identity's place in `line`.
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    generation: u64,
}

/// A line of identities, each replacing the one before: what the files of a
/// [`ReloadingIdentity`] held over time, say.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "client"), allow(dead_code))]
struct Line {
    /// The generation of the newest identity in the line that took over.
    newest: AtomicU64,
    /// The latest generation handed out.
    issued: AtomicU64,
}

/// How many times an identity took another's place, process-wide: a pool
/// that saw this count last time has nothing new to retire, which it learns
/// with one atomic load per request.
#[cfg(feature = "client")]
static REPLACEMENTS: AtomicU64 = AtomicU64::new(0);

/// The count of replacements so far (see [`REPLACEMENTS`]).
#[cfg(feature = "client")]
pub(crate) fn replacements() -> u64 {
    REPLACEMENTS.load(Ordering::Acquire)
}

impl ClientIdentity {
    /// Loads an identity from PEM: certificates from `cert_pem` (the leaf
    /// first, then any intermediates) and the private key from `key_pem`
    /// (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1
    /// `EC PRIVATE KEY`).
    ///
    /// Only certificate sections are read from `cert_pem` and only key sections
    /// from `key_pem`, so a combined file may be passed as both.
    ///
    /// A leaf certificate that has expired or is not valid yet is refused
    /// ([`IdentityErrorKind::Expired`], [`IdentityErrorKind::NotYetValid`]);
    /// [`IdentityLoader::accept_outside_validity`] accepts it. One that
    /// expires within 24 hours is loaded, with a warning logged.
    pub fn from_pem(
        cert_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<Self, IdentityError> {
        Self::loader().from_pem(cert_pem, key_pem)
    }

    /// Loads an identity from a certificate PEM file and a key PEM file (they
    /// may be the same file). See [`from_pem`](Self::from_pem) for the
    /// formats and the checks; errors name the file they are about.
    ///
    /// The files are read synchronously: load identities at start-up, or in
    /// [`spawn_blocking`](https://docs.rs/tokio/latest/tokio/task/fn.spawn_blocking.html).
    pub fn from_pem_files(
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<Self, IdentityError> {
        Self::loader().from_pem_files(cert_path, key_path)
    }

    /// Builds an identity from DER: the chain (leaf first) and the leaf's key.
    /// See [`from_pem`](Self::from_pem) for the checks.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, IdentityError> {
        Self::loader().from_der(chain, key)
    }

    /// A loader, to relax a check the constructors make.
    pub fn loader() -> IdentityLoader {
        IdentityLoader::default()
    }

    /// The identity, with every check but the validity period's.
    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, IdentityError> {
        let Some(leaf) = chain.first() else {
            return Err(IdentityError::new(IdentityErrorKind::NoCertificate));
        };
        let thumbprint = Thumbprint::from_certificate(leaf);
        let validity = Validity::of(leaf).map_err(|e| {
            IdentityError::new(IdentityErrorKind::InvalidCertificate)
                .with_source(format!("cannot read its validity dates: {e}"))
        })?;
        let signing_key = tls::provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| IdentityError::new(IdentityErrorKind::UnsupportedKey).with_source(e))?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            // `Unknown`: the key cannot tell its public half; rustls accepts
            // such keys too. aws-lc-rs keys always can.
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(_)) => {
                return Err(IdentityError::new(IdentityErrorKind::KeyMismatch));
            }
            Err(e) => {
                return Err(
                    IdentityError::new(IdentityErrorKind::InvalidCertificate).with_source(e)
                );
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                certified: Arc::new(certified),
                thumbprint,
                validity,
                expiry_warned: AtomicBool::new(false),
                line: Arc::default(),
                generation: 0,
            }),
        })
    }

    /// When the leaf certificate becomes valid (its `notBefore`).
    pub fn not_before(&self) -> SystemTime {
        self.inner.validity.not_before
    }

    /// When the leaf certificate expires (its `notAfter`).
    pub fn not_after(&self) -> SystemTime {
        self.inner.validity.not_after
    }

    /// How long until the expiry warning is due, from `now`: zero if it is.
    #[cfg(feature = "client")]
    pub(crate) fn expiry_warning_in(&self, now: SystemTime) -> Duration {
        let due = self.not_after().checked_sub(EXPIRY_WARNING);
        due.and_then(|due| due.duration_since(now).ok())
            .unwrap_or_default()
    }

    /// Logs a warning, once per identity, when the certificate expires
    /// within 24 hours of `now` (or has expired: an identity loaded with
    /// [`IdentityLoader::accept_outside_validity`]). `cert` is the file it
    /// came from, if any.
    pub(crate) fn warn_if_expiring(&self, now: SystemTime, cert: Option<&Path>) {
        let validity = &self.inner.validity;
        let expired = validity.at(now) == Within::Expired;
        if !expired && now + EXPIRY_WARNING < validity.not_after {
            return;
        }
        if self.inner.expiry_warned.swap(true, Ordering::Relaxed) {
            return;
        }
        let message = if expired {
            "the client certificate has expired (accepted as asked); renew it"
        } else {
            "the client certificate expires within 24 hours; renew it"
        };
        let (thumbprint, not_before, not_after) = (
            self.thumbprint(),
            Date(validity.not_before),
            Date(validity.not_after),
        );
        match cert {
            Some(cert) => tracing::warn!(
                cert = %cert.display(),
                %thumbprint,
                %not_before,
                %not_after,
                "{message}"
            ),
            None => tracing::warn!(%thumbprint, %not_before, %not_after, "{message}"),
        }
    }

    /// This identity, taking the place of `previous`: `previous` (and any
    /// identity it replaced) is [retired](Self::is_retired) from now on.
    ///
    /// An [`MtlsClientPool`](crate::pool::MtlsClientPool) drops the
    /// connections of a retired identity on its next request (requests in
    /// flight on them finish first), instead of keeping them until they are
    /// idle. A [`ReloadingIdentity`] replaces its identity this way when it
    /// loads renewed files; call it yourself when you swap identities by hand
    /// behind an [`IdentitySource`].
    ///
    /// ```
    /// # use tower_token_binding::test_util::TestPki;
    /// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let pki = TestPki::new()?;
    /// # let old = pki.client_cert("svc.example")?.identity()?;
    /// # let renewed = pki.client_cert("svc.example")?.identity()?;
    /// assert!(!old.is_retired());
    /// let renewed = renewed.replacing(&old);
    /// assert!(old.is_retired());
    /// assert!(!renewed.is_retired());
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn replacing(self, previous: &ClientIdentity) -> ClientIdentity {
        let successor = self.next_in_line(previous);
        successor.take_over();
        successor
    }

    /// Whether another identity has [replaced](Self::replacing) this one.
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn is_retired(&self) -> bool {
        self.inner.line.newest.load(Ordering::Acquire) > self.inner.generation
    }

    /// This identity as the next in `previous`'s line, not yet taking over:
    /// `previous` stays current until [`take_over`](Self::take_over).
    #[cfg(feature = "client")]
    pub(crate) fn next_in_line(self, previous: &ClientIdentity) -> ClientIdentity {
        let line = previous.inner.line.clone();
        let generation = line.issued.fetch_add(1, Ordering::AcqRel) + 1;
        ClientIdentity {
            inner: Arc::new(Inner {
                certified: self.inner.certified.clone(),
                thumbprint: self.inner.thumbprint,
                validity: self.inner.validity,
                expiry_warned: AtomicBool::new(self.inner.expiry_warned.load(Ordering::Relaxed)),
                line,
                generation,
            }),
        }
    }

    /// Retires every identity of this one's line that came before it.
    #[cfg(feature = "client")]
    pub(crate) fn take_over(&self) {
        let line = &self.inner.line;
        if line
            .newest
            .fetch_max(self.inner.generation, Ordering::AcqRel)
            < self.inner.generation
        {
            REPLACEMENTS.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The RFC 8705 `x5t#S256` thumbprint of the leaf certificate, computed
    /// once when the identity was loaded.
    pub fn thumbprint(&self) -> Thumbprint {
        self.inner.thumbprint
    }

    /// The leaf (end-entity) certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // `from_der` refused an empty chain.
        &self.inner.certified.cert[0]
    }

    /// The whole chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.inner.certified.cert
    }

    /// The chain and signing key as rustls uses them.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.inner.certified
    }

    /// A rustls client-certificate resolver that always presents this identity.
    pub fn cert_resolver(&self) -> Arc<dyn ResolvesClientCert> {
        Arc::new(PresentIdentity(self.inner.certified.clone()))
    }

    /// A rustls client config that trusts `roots` and presents this identity.
    ///
    /// Built with the crate's aws-lc-rs provider and rustls' safe default
    /// protocol versions, with a session-resumption store of its own: never
    /// share one config between identities. ALPN is left empty for the HTTP
    /// connector (hyper-rustls) to set.
    pub fn client_config(
        &self,
        roots: impl Into<Arc<RootCertStore>>,
    ) -> Result<ClientConfig, IdentityError> {
        let config = ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| IdentityError::new(IdentityErrorKind::Tls).with_source(e))?
            .with_root_certificates(roots)
            .with_client_cert_resolver(self.cert_resolver());
        Ok(config)
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("thumbprint", &self.inner.thumbprint)
            .field("chain_len", &self.inner.certified.cert.len())
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

/// Loads [`ClientIdentity`]s, with the checks of its constructors or with
/// one relaxed.
///
/// By default a leaf certificate outside its validity period (expired, or
/// not valid yet) is refused: a server would refuse it in the handshake, and
/// the error at load names the dates. To present one anyway (a server that
/// does not check dates, a test), say so:
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_token_binding::{ClientIdentity, IdentityErrorKind};
/// # use tower_token_binding::test_util::TestPki;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// # let pki = TestPki::new()?;
/// let day = Duration::from_secs(86_400);
/// let ago = |days: u32| SystemTime::now() - day * days;
/// # let expired = pki.client_cert_valid("svc.example", ago(30), ago(1))?;
/// # let (cert, key) = (expired.cert_pem(), expired.key_pem());
/// let error = ClientIdentity::from_pem(cert, key).unwrap_err();
/// assert_eq!(error.kind(), IdentityErrorKind::Expired);
///
/// let identity = ClientIdentity::loader()
///     .accept_outside_validity()
///     .from_pem(cert, key)?;
/// assert!(identity.not_after() < SystemTime::now());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentityLoader {
    accept_outside_validity: bool,
}

impl IdentityLoader {
    /// Accepts a leaf certificate that has expired or is not valid yet. An
    /// expired one is logged at warn level once.
    pub fn accept_outside_validity(mut self) -> Self {
        self.accept_outside_validity = true;
        self
    }

    /// As [`ClientIdentity::from_pem`], with this loader's checks.
    pub fn from_pem(
        &self,
        cert_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<ClientIdentity, IdentityError> {
        let chain = certificates_from_pem(cert_pem.as_ref())?;
        let key = key_from_pem(key_pem.as_ref())?;
        self.from_der(chain, key)
    }

    /// As [`ClientIdentity::from_pem_files`], with this loader's checks.
    pub fn from_pem_files(
        &self,
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<ClientIdentity, IdentityError> {
        let (cert_path, key_path) = (cert_path.as_ref(), key_path.as_ref());
        let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
        let identity = self.pem_pair(cert_path, key_path, &cert_pem, &key_pem)?;
        identity.warn_if_expiring(crate::clock::wall(), Some(cert_path));
        Ok(identity)
    }

    /// As [`ClientIdentity::from_der`], with this loader's checks.
    pub fn from_der(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ClientIdentity, IdentityError> {
        let identity = self.check(ClientIdentity::new(chain, key)?)?;
        identity.warn_if_expiring(crate::clock::wall(), None);
        Ok(identity)
    }

    /// `identity`, if its validity period is acceptable now.
    fn check(&self, identity: ClientIdentity) -> Result<ClientIdentity, IdentityError> {
        if self.accept_outside_validity {
            return Ok(identity);
        }
        let validity = identity.inner.validity;
        let now = crate::clock::wall();
        let kind = match validity.at(now) {
            Within::Yes => return Ok(identity),
            Within::NotYet => IdentityErrorKind::NotYetValid,
            Within::Expired => IdentityErrorKind::Expired,
        };
        Err(IdentityError::new(kind).with_validity(validity, now))
    }

    /// An identity from the contents of a certificate file and a key file;
    /// errors name the file they are about. Logs nothing.
    fn pem_pair(
        &self,
        cert_path: &Path,
        key_path: &Path,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<ClientIdentity, IdentityError> {
        let chain = certificates_from_pem(cert_pem).map_err(|e| e.at(cert_path))?;
        let key = key_from_pem(key_pem).map_err(|e| e.at(key_path))?;
        ClientIdentity::new(chain, key)
            .and_then(|identity| self.check(identity))
            .map_err(|e| match e.kind {
                IdentityErrorKind::KeyMismatch => e.at(key_path),
                _ => e.at(cert_path),
            })
    }
}

/// Presents one certified key, whatever the server asks.
struct PresentIdentity(Arc<CertifiedKey>);

impl fmt::Debug for PresentIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentIdentity").finish_non_exhaustive()
    }
}

impl ResolvesClientCert for PresentIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        // Presenting a certificate whose key cannot sign with any scheme the
        // server offered would fail the handshake later with a worse error.
        self.0.key.choose_scheme(sigschemes).map(|_| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
