use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

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
use super::slots::{IdentitySlots, KeepIdle};
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
    /// One client per identity, shared with the requests that use it: one
    /// reference count per request rather than a clone of hyper-util's
    /// `Client`.
    pub(crate) slots: IdentitySlots<Arc<HttpsClient<B>>>,
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
        self.inner.slots.stats()
    }

    /// Whether a client for `thumbprint` is held.
    pub fn holds(&self, thumbprint: &Thumbprint) -> bool {
        self.inner.slots.holds(thumbprint)
    }
}

impl<B> MtlsClientPool<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    /// The client for `identity`, built (once) on first use.
    fn client_for(&self, identity: &ClientIdentity) -> Result<Arc<HttpsClient<B>>, PoolError> {
        let inner = &*self.inner;
        inner.slots.client_for(identity, |keep_idle| {
            build_client(&inner.config, &inner.roots, Some(identity), keep_idle).map(Arc::new)
        })
    }
}

/// The rustls configuration of a client: trusting `roots`, presenting
/// `identity` when there is one, offering by ALPN the HTTP versions
/// `config` speaks.
pub(crate) fn tls_config(
    config: &PoolBuilder,
    roots: &Arc<RootCertStore>,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, PoolError> {
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PoolError::new(Kind::Config, Some(e.into())))?
        .with_root_certificates(roots.clone());
    let mut tls = match identity {
        Some(identity) => builder.with_client_cert_resolver(identity.cert_resolver()),
        None => builder.with_no_client_auth(),
    };
    if config.http2 {
        tls.alpn_protocols.push(b"h2".to_vec());
    }
    if config.http1 {
        tls.alpn_protocols.push(b"http/1.1".to_vec());
    }
    Ok(tls)
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
    // hyper-rustls sets ALPN itself, from the versions enabled below.
    let mut tls = tls_config(config, roots, identity)?;
    tls.alpn_protocols.clear();
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
