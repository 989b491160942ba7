use std::fmt;
use std::sync::Arc;

use rustls::RootCertStore;

use crate::ClientIdentity;
use crate::Thumbprint;
use crate::pool::{IdentitySlots, KeepIdle, PoolBuilder, PoolError, PoolStats, tls_config};

/// How each reqwest client is configured beyond TLS: see
/// [`MtlsReqwestPool::configure`].
pub(crate) type Configure =
    Arc<dyn Fn(::reqwest::ClientBuilder) -> ::reqwest::ClientBuilder + Send + Sync>;

/// One `reqwest::Client` per client certificate thumbprint, each presenting
/// its certificate: what sends certificate-bound requests for
/// [`TokenBindingMiddleware`](super::TokenBindingMiddleware), as
/// [`MtlsClientPool`](crate::pool::MtlsClientPool) does under
/// [`TokenBindingLayer`](crate::TokenBindingLayer).
///
/// reqwest's connection pool keys connections by scheme and host only, so
/// one client shared by two certificates could send a request bound to one
/// over a connection authenticated with the other. This pool keeps a client
/// per certificate, with its own rustls config (on aws-lc-rs, trusting the
/// pool's roots), under the same rules as `MtlsClientPool`, from the same
/// [`PoolBuilder`]:
///
/// - a client is built on first use of its identity, once however many
///   requests race for it, speaks `https` only, and follows no redirect
///   (a `3xx` is the answer: the certificate and the token go to the URL
///   asked for, nowhere else);
/// - at most [`max_identities`](PoolBuilder::max_identities) are kept (one
///   more evicts the least recently used), and one unused for
///   [`identity_idle_timeout`](PoolBuilder::identity_idle_timeout) is
///   dropped with its connections;
/// - a renewed certificate has a new thumbprint, and so a new client; when
///   an identity has been [replaced](ClientIdentity::replacing) (a
///   [`ReloadingIdentity`](crate::identity::ReloadingIdentity) that loaded
///   renewed files), the next request drops the client of the identity
///   replaced.
///
/// [`connect_timeout`](PoolBuilder::connect_timeout) and
/// [`pool_idle_timeout`](PoolBuilder::pool_idle_timeout) are reqwest's of
/// the same names; [`response_timeout`](PoolBuilder::response_timeout) is
/// reqwest's `timeout`, which bounds the body too;
/// [`http1_only`](PoolBuilder::http1_only) offers only HTTP/1.1 by ALPN.
/// Anything else (a user agent, default headers, a proxy) is
/// [`configure`](Self::configure)'s.
///
/// Cloning is cheap; clones share the clients.
///
/// ```
/// use tower_token_binding::pool::MtlsClientPool;
/// use tower_token_binding::reqwest::MtlsReqwestPool;
/// # use tower_token_binding::test_util::TestPki;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// # let pki = TestPki::new()?;
/// # let identity = pki.client_cert("svc.example")?.identity()?;
/// let pool = MtlsReqwestPool::new(
///     MtlsClientPool::builder()
///         .root_store(pki.root_store())
///         .max_identities(16),
/// )?
/// .configure(|client| client.user_agent("orders-sync/1.0"));
///
/// // The client that presents `identity`: the same one every time.
/// let client = pool.client(&identity)?;
/// # let _ = client;
/// assert_eq!(pool.stats().identities, 1);
/// assert!(pool.holds(&identity.thumbprint()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MtlsReqwestPool {
    inner: Arc<Inner>,
}

struct Inner {
    config: PoolBuilder,
    roots: Arc<RootCertStore>,
    configure: Option<Configure>,
    slots: IdentitySlots<::reqwest::Client>,
}

impl MtlsReqwestPool {
    /// A pool with the settings of `config` (roots, timeouts, bounds).
    ///
    /// Fails when `config` gives no roots and the platform has none.
    pub fn new(config: PoolBuilder) -> Result<Self, PoolError> {
        let roots = config.roots_or_platform()?;
        Ok(Self::with(config, roots, None))
    }

    fn with(config: PoolBuilder, roots: Arc<RootCertStore>, configure: Option<Configure>) -> Self {
        let slots = IdentitySlots::new(config.max_identities, config.identity_idle_timeout);
        Self {
            inner: Arc::new(Inner {
                config,
                roots,
                configure,
                slots,
            }),
        }
    }

    /// Passes each client's builder through `configure` before it is built,
    /// after the pool's own settings: a user agent, default headers, a
    /// proxy, reqwest's other timeouts. The TLS settings are the pool's:
    /// a `configure` that changes them breaks the binding. Clients this pool
    /// had already built are dropped.
    pub fn configure(
        self,
        configure: impl Fn(::reqwest::ClientBuilder) -> ::reqwest::ClientBuilder + Send + Sync + 'static,
    ) -> Self {
        self.configured(Arc::new(configure))
    }

    /// [`configure`](Self::configure), with a shared closure.
    pub(crate) fn configured(self, configure: Configure) -> Self {
        Self::with(
            self.inner.config.clone(),
            self.inner.roots.clone(),
            Some(configure),
        )
    }

    /// The client that presents `identity`, built (once) on first use.
    ///
    /// A failure is a [`PoolError`] whose [`is_config`](PoolError::is_config)
    /// is true: reqwest could not build a client with this configuration.
    pub fn client(&self, identity: &ClientIdentity) -> Result<::reqwest::Client, PoolError> {
        self.inner
            .slots
            .client_for(identity, |keep_idle| self.build(identity, keep_idle))
    }

    /// The counters and the number of identities held.
    pub fn stats(&self) -> PoolStats {
        self.inner.slots.stats()
    }

    /// Whether a client for `thumbprint` is held.
    pub fn holds(&self, thumbprint: &Thumbprint) -> bool {
        self.inner.slots.holds(thumbprint)
    }

    fn build(
        &self,
        identity: &ClientIdentity,
        keep_idle: KeepIdle,
    ) -> Result<::reqwest::Client, PoolError> {
        let config = &self.inner.config;
        let tls = tls_config(config, &self.inner.roots, Some(identity))?;
        let mut builder = settings(config, tls).https_only(true);
        if keep_idle == KeepIdle::No {
            builder = builder.pool_max_idle_per_host(0);
        }
        if let Some(configure) = &self.inner.configure {
            builder = configure(builder);
        }
        builder.build().map_err(PoolError::config)
    }
}

/// A reqwest client builder with `tls` and the pool settings of `config`.
pub(crate) fn settings(
    config: &PoolBuilder,
    tls: rustls::ClientConfig,
) -> ::reqwest::ClientBuilder {
    // No redirect is followed: reqwest keeps the `DPoP` proof (made for the
    // first URL) on a redirect to another origin, even to plain `http`, and
    // a certificate client would present its certificate there. A `3xx` is
    // the answer; following it through the middleware authorizes the new
    // URL afresh.
    let mut builder = ::reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .tcp_nodelay(true)
        .redirect(::reqwest::redirect::Policy::none())
        .pool_idle_timeout(config.pool_idle_timeout);
    if let Some(timeout) = config.connect_timeout {
        builder = builder.connect_timeout(timeout);
    }
    if let Some(timeout) = config.response_timeout {
        builder = builder.timeout(timeout);
    }
    if !config.http2 {
        builder = builder.http1_only();
    }
    builder
}

impl fmt::Debug for MtlsReqwestPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsReqwestPool")
            .field("stats", &self.stats())
            .field("config", &self.inner.config)
            .field("configure", &self.inner.configure.is_some())
            .finish_non_exhaustive()
    }
}
