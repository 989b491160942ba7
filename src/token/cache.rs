use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use http::HeaderValue;

use super::shared::SharedTier;
use super::{
    AccessToken, BoxError, CacheKey, SharedTokenCache, Token, TokenSource, TokenUnavailable,
    TokenUnavailableKind,
};

/// A token cache in front of a [`TokenSource`].
///
/// - **One fetch for everyone**: however many requests find the cache empty
///   (or the token expired) at once, the source is asked once and all of them
///   wait for that answer.
/// - **Refresh ahead**: once a token has lived a share of its lifetime
///   (default 80 %, minus a random jitter of up to 10 % so that many
///   processes do not all refresh together), the next request triggers a
///   refresh in the background and is served the current token at once.
/// - **Failures**: a failed refresh while the token is still valid keeps it
///   in service and retries with exponential backoff; without a valid token,
///   callers get [`TokenUnavailable`], and the source is not asked again
///   before the backoff has passed.
/// - **Keys**: a token is served only under the [`CacheKey`] it was fetched
///   under; when the source's key changes (a renewed certificate), the old
///   token is never served again.
/// - **Rejections**: a token a server rejects is dropped once per token
///   and at most once per backoff: the first drop is at once (a key
///   rotated at the issuer), and a rejection within the backoff after a
///   drop keeps the token, the backoff doubled with each drop in a row; a
///   token the server accepts ([`accepted`](Self::accepted)) ends the
///   streak. [`invalidate`](Self::invalidate) drops a token at once.
/// - **Shared** ([`TokenCacheBuilder::shared`]): with a
///   [`SharedTokenCache`] under it, a fetch first looks there, and one
///   process of a fleet fetches for all (see [`shared`](super::shared)).
///
/// The fast path (a fresh token) takes a read lock for a pointer copy; no
/// lock is ever held while the source is asked. Cloning is cheap and clones
/// share the cache.
///
/// ```
/// use std::time::Duration;
/// use tower_token_binding::token::{Token, TokenCache};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let cache = TokenCache::new(|| async {
///     Ok(Token::new("a token").expires_in(Duration::from_secs(600)))
/// });
/// let token = cache.get().await.unwrap();
/// assert_eq!(token.token().access_token().secret(), "a token");
/// let _again = cache.get().await.unwrap();
/// assert_eq!(cache.stats().fetches, 1);
/// assert_eq!(cache.stats().hits, 1);
/// # }
/// ```
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    source: Box<dyn DynSource>,
    /// The token served, read without a lock; written only under the
    /// flight lock.
    current: ArcSwapOption<CachedToken>,
    flight: Mutex<Flight>,
    config: Config,
    shared: Option<SharedTier>,
    fetches: AtomicU64,
    hits: AtomicU64,
    failures: AtomicU64,
    fallbacks: AtomicU64,
    /// Tokens rejected one after another since a token was last accepted;
    /// each cached token holds it too, to look at on every answer.
    rejections: Arc<AtomicU32>,
}

#[derive(Default)]
struct Flight {
    fetch: Option<SharedFetch>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<TokenUnavailable>,
    /// No rejected token is dropped before this (after a drop).
    drops_paced_until: Option<Instant>,
}

/// What a caller that missed the fast path gets under the flight lock.
enum Joined {
    /// A token published since the miss.
    Cached(Arc<CachedToken>),
    /// The one fetch, in flight or just started.
    Fetch(SharedFetch),
}

type SharedFetch = Shared<BoxFuture<'static, Result<Arc<CachedToken>, TokenUnavailable>>>;

#[derive(Clone, Debug)]
struct Config {
    refresh_share: f64,
    jitter_share: f64,
    min_backoff: Duration,
    max_backoff: Duration,
}

/// Counters of a [`TokenCache`], since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Times the source was asked for a token.
    pub fetches: u64,
    /// Requests served a cached token without waiting.
    pub hits: u64,
    /// Fetches that failed.
    pub failures: u64,
    /// Requests sent with an unbound token where a bound one was wanted,
    /// because the user allowed that fallback.
    pub unbound_fallbacks: u64,
}

/// A token as the cache holds it, with when it is due for refresh.
pub struct CachedToken {
    token: Token,
    key: CacheKey,
    refresh_at: Instant,
    usable_until: Option<Instant>,
    /// `Authorization` values, built once per header word (`Bearer`,
    /// `mtls_pop`, `DPoP`).
    pub(crate) headers: [OnceLock<Option<HeaderValue>>; 3],
    /// The cache it came from, told of the answers to requests that carried
    /// it: a request in flight holds the token alone, not the cache too.
    cache: Weak<Inner>,
    /// The cache's streak of rejections, read on every answer.
    rejections: Arc<AtomicU32>,
}

impl CachedToken {
    fn new(token: Token, key: CacheKey, cache: &Arc<Inner>) -> Self {
        let config = &cache.config;
        let now = crate::clock::now();
        let (refresh_at, usable_until) = match token.expiry() {
            Some(expiry) => {
                let lifetime = expiry.saturating_duration_since(now);
                let jitter = lifetime.mul_f64(config.jitter_share * random_unit());
                let refresh_at = now
                    + lifetime
                        .mul_f64(config.refresh_share)
                        .saturating_sub(jitter);
                // Stop using a token a little before it expires: it still has
                // to travel. A tenth of its lifetime, at most 10 s.
                let margin = (lifetime / 10).min(Duration::from_secs(10));
                (refresh_at, Some(expiry - margin))
            }
            None => (far_future(now), None),
        };
        Self {
            token,
            key,
            refresh_at,
            usable_until,
            headers: Default::default(),
            cache: Arc::downgrade(cache),
            rejections: cache.rejections.clone(),
        }
    }

    /// A server rejected a request that carried this token: dropped from
    /// its cache, paced (see [`TokenCache::invalidate`]).
    pub(crate) fn rejected(&self) {
        if let Some(inner) = self.cache.upgrade() {
            TokenCache { inner }.reject(self.token.access_token());
        }
    }

    /// A server answered a request that carried this token other than
    /// `401`: see [`TokenCache::accepted`]. One atomic load when there is
    /// no streak of rejections.
    pub(crate) fn accepted(&self) {
        if self.rejections.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(inner) = self.cache.upgrade() {
            TokenCache { inner }.accepted(self.token.access_token());
        }
    }

    /// The token.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The key it was fetched under.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }

    fn usable_at(&self, now: Instant) -> bool {
        self.usable_until.is_none_or(|until| now < until)
    }
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("token", &self.token)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn far_future(now: Instant) -> Instant {
    now + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// A random number in [0, 1), from the standard library's hasher seeds.
fn random_unit() -> f64 {
    let bits = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Builds a [`TokenCache`] with other than the default timings, or with a
/// shared cache under it.
#[derive(Debug, Clone)]
pub struct TokenCacheBuilder {
    config: Config,
    shared: Option<SharedStore>,
}

/// A shared cache, as the builder holds it.
#[derive(Clone)]
struct SharedStore(Arc<dyn SharedTokenCache>);

impl fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedTokenCache")
    }
}

impl TokenCacheBuilder {
    /// Refresh once a token has lived this share of its lifetime (0 to 1).
    /// Default 0.8.
    pub fn refresh_share(mut self, share: f64) -> Self {
        self.config.refresh_share = share.clamp(0.0, 1.0);
        self
    }

    /// Refresh up to this share of the lifetime earlier, at random (0 to 1).
    /// Default 0.1.
    pub fn jitter_share(mut self, share: f64) -> Self {
        self.config.jitter_share = share.clamp(0.0, 1.0);
        self
    }

    /// The first wait after a failed fetch, doubled after each further
    /// failure up to `max`. Default 500 ms to 30 s.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.min_backoff = min;
        self.config.max_backoff = max.max(min);
        self
    }

    /// Puts `cache` under this one (L2 under L1): shared by the processes
    /// of a fleet, so that one of them fetches a token for all. Only bound
    /// tokens are shared by default, and only with sources that can bind
    /// a shared token to their own key material
    /// ([`TokenSource::bind_shared`]); a shared cache that fails or is slow
    /// is skipped (the source is asked directly).
    ///
    /// ```
    /// # #[cfg(feature = "redis")]
    /// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use tower_token_binding::token::{RedisTokenCache, TokenCache};
    ///
    /// let builder = TokenCache::builder()
    ///     .shared(RedisTokenCache::connect("redis://127.0.0.1:6379").await?);
    /// # let _ = builder;
    /// # Ok(())
    /// # }
    /// ```
    pub fn shared(mut self, cache: impl SharedTokenCache) -> Self {
        self.shared = Some(SharedStore(Arc::new(cache)));
        self
    }

    /// This builder, with `previous`' shared cache if it has none.
    pub(crate) fn keep_shared(mut self, previous: TokenCacheBuilder) -> Self {
        if self.shared.is_none() {
            self.shared = previous.shared;
        }
        self
    }

    /// Builds the cache in front of `source`.
    ///
    /// The shared cache is left out when nothing could be shared: the
    /// source cannot bind a shared token
    /// ([`TokenSource::bind_shared`] answers `None` for a token of its
    /// current key) and bearer tokens are not allowed
    /// ([`SharedCachePolicy::allow_bearer_tokens`](super::SharedCachePolicy::allow_bearer_tokens)).
    /// Each process then fetches by itself, without waiting on the others.
    pub fn build(self, source: impl TokenSource) -> TokenCache {
        // Shared entries live until the earliest refresh point.
        let ttl_share = self.config.refresh_share - self.config.jitter_share;
        let shared = self.shared.and_then(|store| {
            if store.0.policy().allows_bearer_tokens() {
                return Some(store);
            }
            let key = source.cache_key();
            let probe = Token::new("probe").expires_in(Duration::from_secs(60));
            if source.bind_shared(&key, probe).is_some() {
                Some(store)
            } else {
                tracing::debug!(
                    "the token source cannot bind shared tokens and bearer tokens are not shared: the shared cache is not used"
                );
                None
            }
        });
        TokenCache {
            inner: Arc::new(Inner {
                source: Box::new(source),
                current: ArcSwapOption::empty(),
                flight: Mutex::new(Flight::default()),
                shared: shared.map(|store| SharedTier::new(store.0, ttl_share)),
                config: self.config,
                fetches: AtomicU64::new(0),
                hits: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                fallbacks: AtomicU64::new(0),
                rejections: Arc::new(AtomicU32::new(0)),
            }),
        }
    }
}

impl TokenCache {
    /// A cache with the default timings in front of `source`.
    pub fn new(source: impl TokenSource) -> Self {
        Self::builder().build(source)
    }

    /// A builder, to change the refresh share, jitter or backoff.
    pub fn builder() -> TokenCacheBuilder {
        TokenCacheBuilder {
            config: Config {
                refresh_share: 0.8,
                jitter_share: 0.1,
                min_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(30),
            },
            shared: None,
        }
    }

    /// The counters.
    pub fn stats(&self) -> CacheStats {
        let i = &self.inner;
        CacheStats {
            fetches: i.fetches.load(Ordering::Relaxed),
            hits: i.hits.load(Ordering::Relaxed),
            failures: i.failures.load(Ordering::Relaxed),
            unbound_fallbacks: i.fallbacks.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_fallback(&self) {
        self.inner.fallbacks.fetch_add(1, Ordering::Relaxed);
        crate::metrics::unbound_fallback();
    }

    /// A valid token, fetching one if needed.
    pub fn get(&self) -> Acquire {
        match self.try_get() {
            Some(hit) => Acquire(AcquireState::Ready(Some(Ok(hit)))),
            None => Acquire(AcquireState::Waiting(self.clone().slow_get().boxed())),
        }
    }

    /// The fast path: a usable token under the current key, without waiting.
    /// Starts a background refresh when the token is due for one.
    pub(crate) fn try_get(&self) -> Option<Arc<CachedToken>> {
        let key = self.inner.source.cache_key();
        let now = crate::clock::now();
        let entry = self.usable(&key, now)?;
        if now >= entry.refresh_at {
            self.refresh_in_background(&entry, key, now);
        }
        self.inner.hits.fetch_add(1, Ordering::Relaxed);
        crate::metrics::token_cache_hit();
        Some(entry)
    }

    async fn slow_get(self) -> Result<Arc<CachedToken>, TokenUnavailable> {
        if let Some(hit) = self.try_get() {
            return Ok(hit);
        }
        crate::metrics::token_cache_miss();
        match self.join_or_fetch()? {
            Joined::Cached(entry) => Ok(entry),
            Joined::Fetch(fetch) => fetch.await,
        }
    }

    /// The part of a miss that decides under the flight lock: the token a
    /// fetch published since the caller's miss, the fetch in flight, the
    /// backoff's error, or a new fetch.
    ///
    /// The cache is looked at again under the lock: a fetch publishes its
    /// token and clears the flight in one critical section of that lock
    /// ([`finish_fetch`](Self::finish_fetch)), so a caller that finds no
    /// fetch in flight also finds the token of one that has succeeded, and
    /// never starts a second fetch for a token already cached.
    fn join_or_fetch(&self) -> Result<Joined, TokenUnavailable> {
        let key = self.inner.source.cache_key();
        let mut flight = self.lock_flight();
        if let Some(entry) = self.usable(&key, crate::clock::now()) {
            return Ok(Joined::Cached(entry));
        }
        match &flight.fetch {
            Some(fetch) => {
                crate::metrics::token_cache_waiter();
                Ok(Joined::Fetch(fetch.clone()))
            }
            None => {
                if let (Some(retry_at), Some(error)) = (flight.retry_at, &flight.last_error) {
                    if crate::clock::now() < retry_at {
                        return Err(error.backing_off());
                    }
                }
                Ok(Joined::Fetch(self.start_fetch(&mut flight, key)))
            }
        }
    }

    /// The cached token if it is usable under `key` at `now`, without
    /// counting a hit or starting a refresh.
    fn usable(&self, key: &CacheKey, now: Instant) -> Option<Arc<CachedToken>> {
        let current = self.inner.current.load();
        current
            .as_ref()
            .filter(|entry| entry.key.same(key) && entry.usable_at(now))
            .cloned()
    }

    /// Starts a refresh of `seen`, the token a caller found due, unless a
    /// fetch is in flight, the backoff holds, or `seen` is no longer the
    /// token cached.
    fn refresh_in_background(&self, seen: &Arc<CachedToken>, key: CacheKey, now: Instant) {
        let Ok(mut flight) = self.inner.flight.try_lock() else {
            // Someone else is deciding right now.
            return;
        };
        if flight.fetch.is_some() || flight.retry_at.is_some_and(|at| now < at) {
            return;
        }
        // The caller saw `seen` due before taking the lock; a refresh may
        // have published a fresh token since (and cleared the flight).
        // Looked at again here, so one refresh stays one.
        let still_seen = self
            .inner
            .current
            .load()
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, seen));
        if !still_seen {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let fetch = self.start_fetch(&mut flight, key);
        drop(flight);
        crate::metrics::token_refresh_ahead();
        runtime.spawn(fetch);
    }

    fn lock_flight(&self) -> std::sync::MutexGuard<'_, Flight> {
        self.inner.flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the one fetch; the caller holds the flight lock.
    fn start_fetch(&self, flight: &mut Flight, key: CacheKey) -> SharedFetch {
        let this = self.clone();
        let fetch = async move {
            let ask = || {
                this.inner.fetches.fetch_add(1, Ordering::Relaxed);
                this.inner.source.fetch()
            };
            let result = match &this.inner.shared {
                Some(tier) => {
                    let bind = |token| this.inner.source.bind_shared(&key, token);
                    tier.fetch(&key, ask, bind).await
                }
                None => ask().await,
            };
            this.finish_fetch(result, key)
        }
        .boxed()
        .shared();
        flight.fetch = Some(fetch.clone());
        fetch
    }

    fn finish_fetch(
        &self,
        result: Result<Token, BoxError>,
        key: CacheKey,
    ) -> Result<Arc<CachedToken>, TokenUnavailable> {
        crate::metrics::token_fetch(super::endpoint_error::fetch_outcome(&result));
        match result {
            Ok(token) => {
                let entry = Arc::new(CachedToken::new(token, key, &self.inner));
                // Publish and clear in one critical section of the flight
                // lock (which `join_or_fetch` holds when it looks again): no
                // caller can see "no token and no fetch" once a fetch has
                // succeeded.
                let mut flight = self.lock_flight();
                self.inner.current.store(Some(entry.clone()));
                *flight = Flight {
                    drops_paced_until: flight.drops_paced_until,
                    ..Flight::default()
                };
                drop(flight);
                tracing::debug!(key = ?entry.key, "access token fetched");
                Ok(entry)
            }
            Err(e) => {
                self.inner.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "access token fetch failed");
                let error = TokenUnavailable::new(TokenUnavailableKind::Fetch, Some(e));
                let mut flight = self.lock_flight();
                let config = &self.inner.config;
                let backoff = config
                    .min_backoff
                    .saturating_mul(1u32 << flight.failures.min(16))
                    .min(config.max_backoff);
                flight.failures = flight.failures.saturating_add(1);
                flight.retry_at = Some(crate::clock::now() + backoff);
                flight.last_error = Some(error.clone());
                flight.fetch = None;
                Err(error)
            }
        }
    }

    /// Drops `token` if it is the one cached, now, so that the next request
    /// fetches a new one. Returns whether it was dropped; a token already
    /// replaced is left alone, so many calls for one token lead to one new
    /// fetch. With a shared cache, the token is never taken from it again
    /// either.
    ///
    /// This is the explicit drop, for a caller that knows the token is bad.
    /// The drops [`TokenBindingLayer`](crate::TokenBindingLayer) and
    /// [`InvalidTokenRetry`](crate::binding::InvalidTokenRetry) make on a
    /// `401 invalid_token` are paced instead: the first since a token was
    /// [accepted](Self::accepted) happens at once (a key rotated at the
    /// issuer, a revoked token); after each, a rejection within the cache's
    /// backoff (500 ms by default, doubled with each drop in a row, at most
    /// 30 s) leaves the token cached, and the request that carried it keeps
    /// its `401`. A server that refuses every token (or one API of several
    /// that share the token) thus costs the authorization server one fetch
    /// per backoff, never one per request, and never keeps the other APIs
    /// from the token they accept.
    pub fn invalidate(&self, token: &AccessToken) -> bool {
        self.drop_current(token, false)
    }

    /// Drops `token` as a server's rejection of it: paced, as
    /// [`invalidate`](Self::invalidate) says.
    pub(crate) fn reject(&self, token: &AccessToken) -> bool {
        self.drop_current(token, true)
    }

    fn drop_current(&self, token: &AccessToken, paced: bool) -> bool {
        // Under the flight lock, as every write of `current`.
        let mut flight = self.lock_flight();
        let now = crate::clock::now();
        // Written only under the flight lock: no other writer between this
        // look and the store below.
        if !self
            .inner
            .current
            .load()
            .as_ref()
            .is_some_and(|entry| entry.token.access_token() == token)
        {
            return false;
        }
        if paced && flight.drops_paced_until.is_some_and(|until| now < until) {
            tracing::debug!("access token rejected again within the backoff; kept for now");
            return false;
        }
        self.inner.current.store(None);
        if let Some(tier) = &self.inner.shared {
            tier.reject(token);
        }
        if !paced {
            tracing::debug!("access token invalidated");
            return true;
        }
        let streak = self.inner.rejections.fetch_add(1, Ordering::Relaxed) + 1;
        let config = &self.inner.config;
        let backoff = config
            .min_backoff
            .saturating_mul(1u32 << (streak - 1).min(16))
            .min(config.max_backoff);
        flight.drops_paced_until = Some(now + backoff);
        if streak > 1 {
            tracing::warn!(
                rejected = streak,
                backoff_ms = backoff.as_millis() as u64,
                "the resource server rejected another new access token; the next one is dropped no sooner than the backoff"
            );
        } else {
            tracing::debug!("access token rejected and dropped");
        }
        true
    }

    /// Notes that a server accepted `token` (answered other than `401`): a
    /// streak of rejections ends, so the next drop's backoff starts again
    /// from the shortest (the drop right after one is still paced).
    /// [`TokenBindingLayer`](crate::TokenBindingLayer) calls it for each
    /// answer; it costs one atomic load when there is no streak.
    pub fn accepted(&self, token: &AccessToken) {
        if self.inner.rejections.load(Ordering::Relaxed) == 0 {
            return;
        }
        // Only the token cached now ends the streak: an answer to an older
        // one, arriving late, says nothing of the tokens since.
        let is_current = self
            .inner
            .current
            .load()
            .as_ref()
            .is_some_and(|entry| entry.token.access_token() == token);
        if is_current {
            self.inner.rejections.store(0, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The future of [`TokenCache::get`]: ready at once on a cache hit.
pub struct Acquire(AcquireState);

enum AcquireState {
    Ready(Option<Result<Arc<CachedToken>, TokenUnavailable>>),
    Waiting(BoxFuture<'static, Result<Arc<CachedToken>, TokenUnavailable>>),
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire").finish_non_exhaustive()
    }
}

impl Future for Acquire {
    type Output = Result<Arc<CachedToken>, TokenUnavailable>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            AcquireState::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(TokenUnavailable::new(
                    TokenUnavailableKind::Fetch,
                    Some("polled after completion".into()),
                ))
            })),
            AcquireState::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

/// [`TokenSource`] with its future boxed, so the cache is not generic.
trait DynSource: Send + Sync + 'static {
    fn fetch(&self) -> BoxFuture<'static, Result<Token, BoxError>>;
    fn cache_key(&self) -> CacheKey;
    fn bind_shared(&self, key: &CacheKey, token: Token) -> Option<Token>;
}

impl<S: TokenSource> DynSource for S {
    /// The source's fetch, a panic in it an error: the one shared fetch
    /// must end with an answer, or every caller waiting on it (and every
    /// later one) would panic too.
    fn fetch(&self) -> BoxFuture<'static, Result<Token, BoxError>> {
        std::panic::AssertUnwindSafe(TokenSource::fetch(self))
            .catch_unwind()
            .map(|outcome| outcome.unwrap_or_else(|_| Err("the token source panicked".into())))
            .boxed()
    }

    fn cache_key(&self) -> CacheKey {
        TokenSource::cache_key(self)
    }

    fn bind_shared(&self, key: &CacheKey, token: Token) -> Option<Token> {
        TokenSource::bind_shared(self, key, token)
    }
}

#[cfg(test)]
mod tests {
    //! The interleavings of the single flight, forced step by step: a test
    //! calls the halves of a miss (`try_get`, then `join_or_fetch`) itself,
    //! and lets a fetch land in between.

    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Semaphore;

    use super::*;

    /// A source whose fetches each wait for a permit of `gate`.
    fn gated(gate: Arc<Semaphore>, asked: Arc<AtomicUsize>) -> impl TokenSource {
        move || {
            let gate = gate.clone();
            let asked = asked.clone();
            async move {
                let n = asked.fetch_add(1, Ordering::SeqCst);
                gate.acquire().await?.forget();
                Ok::<_, BoxError>(
                    Token::new(format!("token {n}")).expires_in(Duration::from_secs(600)),
                )
            }
        }
    }

    /// A cache over a [`gated`] source, with its gate and its count.
    fn gated_cache() -> (TokenCache, Arc<Semaphore>, Arc<AtomicUsize>) {
        let gate = Arc::new(Semaphore::new(0));
        let asked = Arc::new(AtomicUsize::new(0));
        let cache = TokenCache::new(gated(gate.clone(), asked.clone()));
        (cache, gate, asked)
    }

    async fn until(mut done: impl FnMut() -> bool) {
        while !done() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_caller_that_missed_before_a_fetch_landed_takes_its_token() {
        let (cache, gate, asked) = gated_cache();

        // The first caller starts the fetch, which waits at the gate.
        let first = tokio::spawn(cache.get());
        until(|| asked.load(Ordering::SeqCst) == 1).await;

        // A second caller misses: no token yet.
        assert!(cache.try_get().is_none());

        // The fetch lands (token published, flight cleared) before the
        // second caller takes the flight lock.
        gate.add_permits(1);
        let token = first.await.unwrap().unwrap();

        // The second caller goes on from its miss: it takes the token just
        // published, and starts no fetch.
        gate.add_permits(1);
        match cache.join_or_fetch() {
            Ok(Joined::Cached(entry)) => assert!(Arc::ptr_eq(&entry, &token)),
            Ok(Joined::Fetch(fetch)) => {
                let _ = fetch.await;
                panic!("a second fetch started for a token already cached");
            }
            Err(e) => panic!("{e}"),
        }
        assert_eq!(cache.stats().fetches, 1);
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_caller_that_missed_during_a_fetch_waits_for_it() {
        let (cache, gate, asked) = gated_cache();

        let first = tokio::spawn(cache.get());
        until(|| asked.load(Ordering::SeqCst) == 1).await;
        assert!(cache.try_get().is_none());
        let Ok(Joined::Fetch(joined)) = cache.join_or_fetch() else {
            panic!("the fetch in flight is joined");
        };
        gate.add_permits(1);
        let (first, joined) = (first.await.unwrap().unwrap(), joined.await.unwrap());
        assert!(Arc::ptr_eq(&first, &joined));
        assert_eq!(cache.stats().fetches, 1);
    }

    #[tokio::test]
    async fn many_concurrent_callers_one_fetch() {
        let (cache, gate, asked) = gated_cache();
        let callers: Vec<_> = (0..1000).map(|_| tokio::spawn(cache.get())).collect();
        until(|| asked.load(Ordering::SeqCst) == 1).await;
        gate.add_permits(1000);
        for caller in callers {
            caller.await.unwrap().unwrap();
        }
        assert_eq!(cache.stats().fetches, 1);
    }

    #[tokio::test]
    async fn a_refresh_that_landed_is_not_started_again_by_a_stale_caller() {
        let (cache, gate, asked) = gated_cache();
        let key = cache.inner.source.cache_key();

        // A token due for refresh (but still usable) is cached.
        let now = Instant::now();
        let mut due = CachedToken::new(
            Token::new("due").expires_in(Duration::from_secs(600)),
            key.clone(),
            &cache.inner,
        );
        due.refresh_at = now;
        cache.inner.current.store(Some(Arc::new(due)));

        // A caller is served it and starts the refresh ahead.
        let served = cache.try_get().expect("a usable token");
        let seen = served.clone();
        assert_eq!(served.token().access_token().secret(), "due");
        until(|| asked.load(Ordering::SeqCst) == 1).await;

        // Another caller read the due token too, and is about to ask for a
        // refresh when the first refresh lands.
        let stale_now = Instant::now();
        gate.add_permits(2);
        until(|| {
            cache
                .usable(&key, Instant::now())
                .is_some_and(|entry| entry.token().access_token().secret() == "token 0")
        })
        .await;
        until(|| cache.lock_flight().fetch.is_none()).await;

        cache.refresh_in_background(&seen, key, stale_now);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1, "a second refresh started");
        assert_eq!(cache.stats().fetches, 1);
    }
}
