use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;

use super::error::{Kind, PoolError};
use super::service::{Inner, MtlsClientPool, Unidentified};
use super::slots::{IdentitySlots, KeepIdle};
use crate::config_error::ConfigError;

/// The trusted roots a builder was given: a store, or a PEM file read when
/// the builder builds (its `root_store` and `root_ca_file` settings).
#[derive(Clone)]
pub(crate) enum Roots {
    Store(Arc<RootCertStore>),
    File(PathBuf),
}

impl Roots {
    /// The store, reading the file now; a file that cannot be read or holds
    /// no usable certificate is `builder`'s `root_ca_file` error.
    pub(crate) fn load(self, builder: &'static str) -> Result<Arc<RootCertStore>, ConfigError> {
        match self {
            Self::Store(roots) => Ok(roots),
            Self::File(path) => crate::identity::root_store_from_pem_file(&path)
                .map(Arc::new)
                .map_err(|e| ConfigError::unreadable(builder, "root_ca_file", &path, e)),
        }
    }
}

/// Builds an [`MtlsClientPool`].
///
/// ```
/// use std::time::Duration;
/// use tower_token_binding::pool::MtlsClientPool;
///
/// # fn main() -> Result<(), tower_token_binding::pool::PoolError> {
/// let roots = rustls::RootCertStore::empty(); // your CA; or .platform_roots()
/// let pool: MtlsClientPool<http_body_util::Empty<bytes::Bytes>> = MtlsClientPool::builder()
///     .root_store(roots)
///     .max_identities(16)
///     .identity_idle_timeout(Duration::from_secs(300))
///     .connect_timeout(Duration::from_secs(5))
///     .build()?;
/// # let _ = pool;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    pub(crate) roots: Option<Arc<RootCertStore>>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) max_identities: usize,
    pub(crate) identity_idle_timeout: Duration,
    pub(crate) http1: bool,
    pub(crate) http2: bool,
    pub(crate) unidentified: Unidentified,
}

impl<B> MtlsClientPool<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    /// `pool` when one is given, else a new pool trusting `roots` (the
    /// platform's when `None`): the pool of a builder that takes either.
    /// Failures are `builder`'s configuration errors.
    pub(crate) fn given_or_new(
        pool: Option<Self>,
        roots: Option<Roots>,
        builder: &'static str,
    ) -> Result<Self, ConfigError> {
        if let Some(pool) = pool {
            return Ok(pool);
        }
        let mut pool = PoolBuilder::default();
        if let Some(roots) = roots {
            pool = pool.root_store(roots.load(builder)?);
        }
        pool.build().map_err(|e| {
            ConfigError::unavailable(builder, Some("root_store"), "cannot build the HTTPS client")
                .with_source(e)
        })
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self {
            roots: None,
            connect_timeout: Some(Duration::from_secs(10)),
            response_timeout: None,
            pool_idle_timeout: Duration::from_secs(90),
            max_identities: 64,
            identity_idle_timeout: Duration::from_secs(600),
            http1: true,
            http2: true,
            unidentified: Unidentified::Plain,
        }
    }
}

impl PoolBuilder {
    /// Trusts `roots` for servers' certificates.
    pub fn root_store(mut self, roots: impl Into<Arc<RootCertStore>>) -> Self {
        self.roots = Some(roots.into());
        self
    }

    /// Trusts the platform's root certificates (the default when no
    /// [`root_store`](Self::root_store) is given).
    pub fn platform_roots(mut self) -> Self {
        self.roots = None;
        self
    }

    /// How long a TCP connect may take. Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The most a request may take, from the call to the response head
    /// (connecting included); past it the call fails with a [`PoolError`]
    /// whose [`is_timeout`](PoolError::is_timeout) is true. None by
    /// default: [`BoundClient`](crate::BoundClient) bounds each whole call
    /// with its own [`request_timeout`](crate::client::BoundClientBuilder::request_timeout)
    /// (30 s), and a stack of your own takes tower's `TimeoutLayer`, which
    /// the pool would only duplicate.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// How long an idle keep-alive connection is kept. Default 90 s.
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// At most this many identities (each with its own connections) are
    /// kept; one more evicts the least recently used. Default 64; at least 1.
    pub fn max_identities(mut self, max: usize) -> Self {
        self.max_identities = max.max(1);
        self
    }

    /// An identity unused for this long is dropped with its connections.
    /// Default 10 minutes.
    pub fn identity_idle_timeout(mut self, timeout: Duration) -> Self {
        self.identity_idle_timeout = timeout;
        self
    }

    /// Speaks HTTP/1.1 only (no `h2` in ALPN).
    pub fn http1_only(mut self) -> Self {
        self.http1 = true;
        self.http2 = false;
        self
    }

    /// Speaks HTTP/2 only (`h2` in ALPN, and over cleartext with prior
    /// knowledge).
    pub fn http2_only(mut self) -> Self {
        self.http1 = false;
        self.http2 = true;
        self
    }

    /// Refuses requests that carry no [`ClientIdentity`](crate::ClientIdentity)
    /// (with [`PoolError::is_no_identity`]) instead of sending them without a
    /// client certificate.
    pub fn refuse_unidentified(mut self) -> Self {
        self.unidentified = Unidentified::Refuse;
        self
    }

    /// The roots given, else the platform's.
    pub(crate) fn roots_or_platform(&self) -> Result<Arc<RootCertStore>, PoolError> {
        match &self.roots {
            Some(roots) => Ok(roots.clone()),
            None => Ok(Arc::new(crate::tls::platform_roots().ok_or_else(|| {
                PoolError::new(
                    Kind::Config,
                    Some("no platform root certificates found; give roots with PoolBuilder::root_store".into()),
                )
            })?)),
        }
    }

    /// Builds the pool.
    ///
    /// Fails when no roots were given and the platform has none.
    pub fn build<B>(self) -> Result<MtlsClientPool<B>, PoolError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        let roots = self.roots_or_platform()?;
        let plain = super::service::build_client(&self, &roots, None, KeepIdle::Yes)?;
        Ok(MtlsClientPool {
            inner: Arc::new(Inner {
                roots,
                plain,
                slots: IdentitySlots::new(self.max_identities, self.identity_idle_timeout),
                config: self,
            }),
        })
    }
}
