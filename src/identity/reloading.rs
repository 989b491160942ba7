use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::rotation::Rotation;
use super::{ClientIdentity, IdentityError, IdentityErrorKind, IdentityLoader, IdentitySource};
use crate::{ConfigError, Thumbprint};

/// The default time between two looks at the files.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// A client identity loaded from a certificate file and a key file, and
/// loaded again whenever they change on disk: for certificates that
/// cert-manager, a Vault agent or a SPIFFE helper renews in place.
///
/// - The files are read at once by [`build`](ReloadingIdentityBuilder::build)
///   (an error there is an error to fix), then polled every
///   [`poll_interval`](ReloadingIdentityBuilder::poll_interval) (default
///   30 s) by a background task on the Tokio runtime. A poll compares a
///   SHA-256 of both files' contents with the last one seen, so it works on
///   any file system, symlinked Kubernetes secret volumes included, and
///   costs two small reads.
/// - New contents that make a valid pair replace the identity. A pair that
///   does not (a certificate written before its key, a truncated file, a
///   key that does not belong to the certificate, a certificate that has
///   expired) is refused: the current identity stays, a warning naming the
///   file (and the certificate's dates, if they are the reason) is logged,
///   and the files are tried again when they change next. A certificate
///   that is not valid yet is also tried again once it is.
/// - A certificate that expires within 24 hours is logged at warn level,
///   once per certificate, at load or at the poll that finds it so close.
/// - Token sources given this identity ([`ClientCredentials`](crate::source::ClientCredentials))
///   key their tokens on its thumbprint, so the next request after a
///   renewal gets a token bound to the new certificate, over a connection
///   of the [pool](crate::pool::MtlsClientPool) that presents it.
/// - The new identity [replaces](ClientIdentity::replacing) the old one, so
///   every [`MtlsClientPool`](crate::pool::MtlsClientPool) drops the old
///   one's connections on its next request: the old private key is not
///   used past the renewal, whether the pool is under a
///   [`BoundClient`](crate::BoundClient) or stacked by hand under a
///   [`TokenBindingLayer`](crate::TokenBindingLayer).
///
/// Clones share one identity and one poller; the poller stops when the last
/// clone is dropped. Outside a Tokio runtime nothing is polled until the
/// identity is first used inside one.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_token_binding::identity::{IdentitySource, ReloadingIdentity};
///
/// # fn main() -> Result<(), tower_token_binding::ConfigError> {
/// let identity = ReloadingIdentity::builder("/var/run/secrets/tls.crt", "/var/run/secrets/tls.key")
///     .poll_interval(Duration::from_secs(10))
///     .build()?;
/// println!("presenting x5t#S256={}", identity.current().thumbprint());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ReloadingIdentity {
    shared: Arc<Shared>,
}

struct Shared {
    cert_path: PathBuf,
    key_path: PathBuf,
    interval: Duration,
    /// The identity now (read on every request, without a lock), and its
    /// subscribers.
    rotation: Rotation,
    loader: IdentityLoader,
    /// The contents last examined, good or bad. Held for a whole check, so
    /// that two checks (the poller and `reload_now`) never interleave and a
    /// stale read cannot put back an older pair.
    seen: tokio::sync::Mutex<Seen>,
    polling: AtomicBool,
    reloads: AtomicU64,
    refused: AtomicU64,
}

/// What the last check examined.
struct Seen {
    /// A digest of the contents.
    digest: [u8; 32],
    /// When contents refused for a certificate not valid yet become worth
    /// trying again, unchanged.
    retry_at: Option<SystemTime>,
}

/// Counters of a [`ReloadingIdentity`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadStats {
    /// Times new files replaced the identity.
    pub reloads: u64,
    /// Times new files were refused (unreadable, malformed, a key that
    /// does not match the certificate, or a certificate outside its
    /// validity period).
    pub refused: u64,
}

/// What one look at the files found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Reload {
    /// The files are as they were last seen.
    Unchanged,
    /// The files changed and now hold this identity.
    Reloaded(ClientIdentity),
    /// The files changed and do not make a usable identity; the current one
    /// stays.
    Refused(IdentityError),
}

/// Builds a [`ReloadingIdentity`].
#[derive(Debug, Clone)]
pub struct ReloadingIdentityBuilder {
    cert_path: PathBuf,
    key_path: PathBuf,
    interval: Duration,
    loader: IdentityLoader,
}

impl ReloadingIdentityBuilder {
    /// How often the files are looked at. Default 30 s; at least 10 ms.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Accepts certificates that have expired or are not valid yet, at
    /// build and at every reload (see
    /// [`IdentityLoader::accept_outside_validity`]).
    pub fn accept_outside_validity(mut self) -> Self {
        self.loader = self.loader.accept_outside_validity();
        self
    }

    /// Loads the files: an error if they do not make an identity now
    /// (including a certificate outside its validity period, unless
    /// [accepted](Self::accept_outside_validity)): a
    /// [`ConfigErrorKind::Unreadable`](crate::ConfigErrorKind::Unreadable)
    /// naming the file (`cert_path` or `key_path`, the key's for a key
    /// that is not the certificate's), with the [`IdentityError`] as its
    /// source.
    pub fn build(self) -> Result<ReloadingIdentity, ConfigError> {
        let cert_path = self.cert_path.clone();
        let key_path = self.key_path.clone();
        self.load().map_err(|e| {
            let (setting, path) = match e.path() {
                Some(path) if path == key_path => ("key_path", key_path.clone()),
                Some(path) => ("cert_path", path.to_owned()),
                None if e.kind() == IdentityErrorKind::KeyMismatch => {
                    ("key_path", key_path.clone())
                }
                None => ("cert_path", cert_path.clone()),
            };
            ConfigError::unreadable("ReloadingIdentityBuilder", setting, &path, e)
        })
    }

    fn load(self) -> Result<ReloadingIdentity, IdentityError> {
        let (cert_pem, key_pem) = read_pair(&self.cert_path, &self.key_path)?;
        let identity =
            self.loader
                .pem_pair(&self.cert_path, &self.key_path, &cert_pem, &key_pem)?;
        identity.warn_if_expiring(crate::clock::wall(), Some(&self.cert_path));
        let shared = Arc::new(Shared {
            rotation: Rotation::new(identity),
            loader: self.loader,
            seen: tokio::sync::Mutex::new(Seen {
                digest: digest(&cert_pem, &key_pem),
                retry_at: None,
            }),
            cert_path: self.cert_path,
            key_path: self.key_path,
            interval: self.interval,
            polling: AtomicBool::new(false),
            reloads: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let identity = ReloadingIdentity { shared };
        identity.ensure_polling();
        Ok(identity)
    }
}

impl ReloadingIdentity {
    /// A builder for the certificate file (PEM, leaf first) and key file
    /// (PEM; may be the same file).
    pub fn builder(
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> ReloadingIdentityBuilder {
        ReloadingIdentityBuilder {
            cert_path: cert_path.as_ref().to_owned(),
            key_path: key_path.as_ref().to_owned(),
            interval: DEFAULT_POLL_INTERVAL,
            loader: IdentityLoader::default(),
        }
    }

    /// Loads the files, polled every 30 s.
    pub fn from_pem_files(
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<Self, IdentityError> {
        Self::builder(cert_path, key_path).load()
    }

    /// A receiver that sees every new identity (as a
    /// [`watch`](tokio::sync::watch) channel does: the latest one).
    pub fn subscribe(&self) -> watch::Receiver<ClientIdentity> {
        self.ensure_polling();
        self.shared.rotation.subscribe()
    }

    /// The counters.
    pub fn stats(&self) -> ReloadStats {
        ReloadStats {
            reloads: self.shared.reloads.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
        }
    }

    /// Looks at the files now, without waiting for the next poll (after a
    /// renewal hook, say).
    pub async fn reload_now(&self) -> Reload {
        self.shared.check().await
    }

    /// Starts the poller on the current Tokio runtime if none runs.
    fn ensure_polling(&self) {
        if self.shared.polling.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.polling.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.shared);
        let interval = self.shared.interval;
        runtime.spawn(poll(weak, interval));
    }
}

impl IdentitySource for ReloadingIdentity {
    fn current(&self) -> ClientIdentity {
        self.ensure_polling();
        self.shared.current()
    }

    fn thumbprint(&self) -> Thumbprint {
        self.ensure_polling();
        self.shared.rotation.thumbprint()
    }
}

impl fmt::Debug for ReloadingIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingIdentity")
            .field("cert_path", &self.shared.cert_path)
            .field("key_path", &self.shared.key_path)
            .field("poll_interval", &self.shared.interval)
            .field("thumbprint", &self.shared.current().thumbprint())
            .field("stats", &self.stats())
            .finish()
    }
}

/// The poller: ends when the last handle is gone. If the runtime drops it,
/// `polling` goes back to false so the next use restarts it elsewhere.
async fn poll(shared: Weak<Shared>, interval: Duration) {
    struct Stopped(Weak<Shared>);
    impl Drop for Stopped {
        fn drop(&mut self) {
            if let Some(shared) = self.0.upgrade() {
                shared.polling.store(false, Ordering::Release);
            }
        }
    }
    let _stopped = Stopped(shared.clone());
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        shared.check().await;
    }
}

impl Shared {
    fn current(&self) -> ClientIdentity {
        self.rotation.current()
    }

    async fn check(self: &Arc<Self>) -> Reload {
        let mut seen = self.seen.lock().await;
        let (cert_path, key_path) = (self.cert_path.clone(), self.key_path.clone());
        let read = tokio::task::spawn_blocking(move || read_pair(&cert_path, &key_path)).await;
        let (cert_pem, key_pem) = match read {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                // Warned about once per distinct error.
                let fresh = first_sight(
                    &mut seen.digest,
                    digest(e.to_string().as_bytes(), b"unreadable"),
                );
                return self.refuse(e, fresh);
            }
            Err(join) => {
                // The blocking pool is shutting down: nothing to do.
                tracing::debug!(error = %join, "identity files not read");
                return Reload::Unchanged;
            }
        };
        let now = crate::clock::wall();
        let retry = seen.retry_at.is_some_and(|at| now >= at);
        if !first_sight(&mut seen.digest, digest(&cert_pem, &key_pem)) && !retry {
            self.current().warn_if_expiring(now, Some(&self.cert_path));
            return Reload::Unchanged;
        }
        seen.retry_at = None;
        match self
            .loader
            .pem_pair(&self.cert_path, &self.key_path, &cert_pem, &key_pem)
        {
            Ok(identity) if identity.chain() == self.current().chain() => {
                // The same certificate again (rewritten, or back after a
                // read error).
                self.current().warn_if_expiring(now, Some(&self.cert_path));
                Reload::Unchanged
            }
            Ok(identity) => {
                // Published first, then the old one retired: no request
                // finds the current identity retired.
                let (identity, previous) = self.rotation.replace(identity);
                let old = previous.thumbprint();
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    cert = %self.cert_path.display(),
                    old = %old,
                    new = %identity.thumbprint(),
                    "client identity reloaded"
                );
                identity.warn_if_expiring(now, Some(&self.cert_path));
                Reload::Reloaded(identity)
            }
            Err(e) => {
                if e.kind() == IdentityErrorKind::NotYetValid {
                    // Unchanged files become valid with time: look again then.
                    seen.retry_at = e.not_before();
                }
                // Warned about once per contents: they are recorded as seen.
                self.refuse(e, !retry)
            }
        }
    }

    fn refuse(&self, error: IdentityError, fresh: bool) -> Reload {
        if fresh {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                error = %error,
                current = %self.current().thumbprint(),
                "new client identity files refused; keeping the current identity"
            );
        }
        Reload::Refused(error)
    }
}

/// Records `digest` as examined; false if it already was.
fn first_sight(seen: &mut [u8; 32], digest: [u8; 32]) -> bool {
    if *seen == digest {
        return false;
    }
    *seen = digest;
    true
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), IdentityError> {
    Ok((super::read(cert_path)?, super::read(key_path)?))
}

fn digest(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update((cert_pem.len() as u64).to_be_bytes());
    hash.update(cert_pem);
    hash.update(key_pem);
    hash.finalize().into()
}
