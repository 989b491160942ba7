use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use tower::Service;

use super::PoolBuilder;
use super::connector::CountingConnector;
use super::error::{Kind, PoolError};
use super::future::ResponseFuture;
use crate::BoxError;
use crate::{ClientIdentity, Thumbprint, tls};

type HttpsClient<B> = Client<CountingConnector<HttpsConnector<HttpConnector>>, B>;

/// An HTTPS client that presents, for each request, the
/// [`ClientIdentity`] in the request's extensions: the inner service to put
/// under [`TokenBindingLayer`](crate::TokenBindingLayer).
///
/// hyper-util's pool keys connections by scheme and authority only, so one
/// `Client` shared by two certificates could send a request bound to one
/// over a connection authenticated with the other. This pool keeps one
/// hyper-util `Client` per certificate [`Thumbprint`], each with its own
/// rustls config (and so its own session-resumption store):
///
/// - a request with an identity goes out over HTTPS with that identity's
///   client, built on first use, once per thumbprint however many requests
///   race for it; an `http://` request with an identity is refused;
/// - a request without an identity goes through a client that presents no
///   certificate, or is refused ([`PoolBuilder::refuse_unidentified`]);
/// - at most [`max_identities`](PoolBuilder::max_identities) clients are
///   kept: one more evicts the least recently used, and clients unused for
///   [`identity_idle_timeout`](PoolBuilder::identity_idle_timeout) are
///   dropped. Eviction never touches requests in flight (they hold their
///   client) and never empties the whole pool at once;
/// - a renewed certificate has a new thumbprint, so requests with it use new
///   connections at once; and when an identity has been
///   [replaced](ClientIdentity::replacing) (a [`ReloadingIdentity`](crate::identity::ReloadingIdentity)
///   that loaded renewed files does this), the next request, whichever
///   identity it carries, drops the client of the identity replaced, so its
///   idle connections close and its private key is no longer used. Requests
///   in flight on it finish. A request that still carries the replaced
///   identity (its token was fetched before the renewal) is sent, over a
///   connection that is closed after it.
///
/// HTTP/1.1 and HTTP/2 (by ALPN). Cloning is cheap; clones share the pool.
pub struct MtlsClientPool<B> {
    pub(crate) inner: Arc<Inner<B>>,
}

impl<B> Clone for MtlsClientPool<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct Inner<B> {
    pub(crate) config: PoolBuilder,
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) plain: HttpsClient<B>,
    pub(crate) slots: Mutex<Slots<B>>,
    pub(crate) built: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) retired: AtomicU64,
}

pub(crate) struct Slots<B> {
    pub(crate) map: HashMap<Thumbprint, Slot<B>>,
    pub(crate) last_sweep: Instant,
    /// The count of identity replacements when the pool last looked for
    /// clients of retired identities.
    pub(crate) replacements_seen: u64,
}

pub(crate) struct Slot<B> {
    /// Shared with the requests that use it: one reference count per
    /// request rather than a clone of hyper-util's `Client`.
    client: Arc<HttpsClient<B>>,
    /// The identity the client presents.
    identity: ClientIdentity,
    last_used: Instant,
    /// When its certificate comes within a day of expiring, to be logged
    /// (once per identity).
    expiry_warning_at: Option<Instant>,
    /// Counts the client in the pool-clients gauge while the slot lives.
    _gauge: crate::metrics::PoolClientGauge,
}

/// What to do with a request that carries no identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unidentified {
    Plain,
    Refuse,
}

/// Counters and size of an [`MtlsClientPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Identities (clients) held now.
    pub identities: usize,
    /// Clients built, one per new identity.
    pub clients_built: u64,
    /// Clients dropped: least recently used, idle, or of a retired identity.
    pub evicted: u64,
    /// Of those, the clients dropped because their identity was
    /// [replaced](ClientIdentity::replacing).
    pub retired: u64,
}

impl MtlsClientPool<()> {
    /// A builder. (`MtlsClientPool::builder()`, as hyper-util's
    /// `Client::builder`: the body type is chosen at `build`.)
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }
}

impl<B> MtlsClientPool<B> {
    /// The counters and the number of identities held.
    pub fn stats(&self) -> PoolStats {
        let identities = self.lock().map.len();
        PoolStats {
            identities,
            clients_built: self.inner.built.load(Ordering::Relaxed),
            evicted: self.inner.evicted.load(Ordering::Relaxed),
            retired: self.inner.retired.load(Ordering::Relaxed),
        }
    }

    /// Whether a client for `thumbprint` is held.
    pub fn holds(&self, thumbprint: &Thumbprint) -> bool {
        self.lock().map.contains_key(thumbprint)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots<B>> {
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<B> MtlsClientPool<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    /// The client for `identity`, built (once) on first use.
    fn client_for(&self, identity: &ClientIdentity) -> Result<Arc<HttpsClient<B>>, PoolError> {
        let thumbprint = identity.thumbprint();
        let config = &self.inner.config;
        let now = crate::clock::now();
        let mut slots = self.lock();
        if now.duration_since(slots.last_sweep) >= config.identity_idle_timeout / 2 {
            self.sweep(&mut slots, now);
        }
        // One atomic load, unless an identity was replaced since last time.
        let replacements = crate::identity::replacements();
        let mut retired_client = None;
        if replacements != slots.replacements_seen {
            slots.replacements_seen = replacements;
            retired_client = self.drop_retired(&mut slots, &thumbprint);
        }
        if let Some(slot) = slots.map.get_mut(&thumbprint) {
            slot.last_used = now;
            if slot.expiry_warning_at.is_some_and(|at| now >= at) {
                slot.expiry_warning_at = None;
                slot.identity.warn_if_expiring(crate::clock::wall(), None);
            }
            return Ok(slot.client.clone());
        }
        if identity.is_retired() {
            // Its token was fetched before the renewal: it goes out with the
            // identity it is bound to, over the client just dropped or a
            // one-off client, and no connection is kept for it.
            drop(slots);
            return match retired_client {
                Some(client) => Ok(client),
                None => build_client(config, &self.inner.roots, Some(identity), KeepIdle::No)
                    .map(Arc::new),
            };
        }
        while slots.map.len() >= config.max_identities {
            let Some(oldest) = slots
                .map
                .iter()
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(t, _)| *t)
            else {
                break;
            };
            slots.map.remove(&oldest);
            self.inner.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(thumbprint = %oldest, "client identity evicted (least recently used)");
        }
        // Built under the lock: once per thumbprint, however many race.
        let client = Arc::new(build_client(
            config,
            &self.inner.roots,
            Some(identity),
            KeepIdle::Yes,
        )?);
        self.inner.built.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(thumbprint = %thumbprint, "client for a new identity");
        slots.map.insert(
            thumbprint,
            Slot {
                client: client.clone(),
                identity: identity.clone(),
                last_used: now,
                expiry_warning_at: now
                    .checked_add(identity.expiry_warning_in(crate::clock::wall())),
                _gauge: crate::metrics::PoolClientGauge::held(),
            },
        );
        Ok(client)
    }

    /// Drops the clients of retired identities; returns the one for
    /// `thumbprint`, if it was among them, for the request at hand.
    fn drop_retired(
        &self,
        slots: &mut Slots<B>,
        thumbprint: &Thumbprint,
    ) -> Option<Arc<HttpsClient<B>>> {
        let retired: Vec<Thumbprint> = slots
            .map
            .iter()
            .filter(|(_, slot)| slot.identity.is_retired())
            .map(|(t, _)| *t)
            .collect();
        let mut kept_for_request = None;
        for t in retired {
            let Some(slot) = slots.map.remove(&t) else {
                continue;
            };
            self.inner.evicted.fetch_add(1, Ordering::Relaxed);
            self.inner.retired.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(thumbprint = %t, "client of a replaced identity dropped");
            if t == *thumbprint {
                kept_for_request = Some(slot.client);
            }
        }
        kept_for_request
    }

    /// Drops identities idle for longer than the idle timeout.
    fn sweep(&self, slots: &mut Slots<B>, now: Instant) {
        let timeout = self.inner.config.identity_idle_timeout;
        let before = slots.map.len();
        slots
            .map
            .retain(|_, slot| now.duration_since(slot.last_used) < timeout);
        let dropped = before - slots.map.len();
        if dropped > 0 {
            self.inner
                .evicted
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::debug!(dropped, "idle client identities dropped");
        }
        slots.last_sweep = now;
    }
}

/// Whether a client keeps idle connections for reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepIdle {
    Yes,
    /// Each connection closes once its requests are done: for a retired
    /// identity's last requests.
    No,
}

/// A hyper-util client: with `identity`, HTTPS only and presenting it;
/// without, HTTPS or HTTP and presenting nothing.
pub(crate) fn build_client<B>(
    config: &PoolBuilder,
    roots: &Arc<RootCertStore>,
    identity: Option<&ClientIdentity>,
    keep_idle: KeepIdle,
) -> Result<HttpsClient<B>, PoolError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PoolError::new(Kind::Config, Some(e.into())))?
        .with_root_certificates(roots.clone());
    let tls = match identity {
        Some(identity) => builder.with_client_cert_resolver(identity.cert_resolver()),
        None => builder.with_no_client_auth(),
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let https = if identity.is_some() {
        https.https_only()
    } else {
        https.https_or_http()
    };
    let connector = match (config.http1, config.http2) {
        (true, false) => https.enable_http1().wrap_connector(http),
        (false, true) => https.enable_http2().wrap_connector(http),
        _ => https.enable_http1().enable_http2().wrap_connector(http),
    };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_timer(TokioTimer::new());
    if keep_idle == KeepIdle::No {
        client.pool_max_idle_per_host(0);
    }
    if !config.http1 {
        client.http2_only(true);
    }
    Ok(client.build(CountingConnector::new(connector, identity.is_some())))
}

impl<B> fmt::Debug for MtlsClientPool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MtlsClientPool")
            .field("stats", &self.stats())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for MtlsClientPool<B>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = PoolError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), PoolError>> {
        // hyper-util's client is always ready; connections are made per call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let sending = match request.extensions().get::<ClientIdentity>() {
            Some(identity) => {
                if request.uri().scheme() != Some(&http::uri::Scheme::HTTPS) {
                    return ResponseFuture::error(PoolError::new(Kind::NotHttps, None));
                }
                match self.client_for(identity) {
                    Ok(client) => client.request(request),
                    Err(e) => return ResponseFuture::error(e),
                }
            }
            None if self.inner.config.unidentified == Unidentified::Refuse => {
                return ResponseFuture::error(PoolError::new(Kind::NoIdentity, None));
            }
            None => self.inner.plain.request(request),
        };
        ResponseFuture::sending(sending, self.inner.config.response_timeout)
    }
}
