//! How a token cache uses its shared cache, and what it tells it.

use std::time::Duration;

/// How a [`TokenCache`](crate::token::TokenCache) uses a
/// [`SharedTokenCache`](super::SharedTokenCache).
#[derive(Clone, Debug)]
pub struct SharedCachePolicy {
    pub(super) allow_bearer: bool,
    pub(super) timeout: Duration,
    pub(super) lock_ttl: Duration,
    pub(super) max_wait: Duration,
    pub(super) poll: (Duration, Duration),
}

impl Default for SharedCachePolicy {
    /// Bound tokens only; 500 ms per operation; a lock lives 30 s unless
    /// extended; waiters look every 10 ms at first, backing off to every
    /// 200 ms, for 60 s at most.
    fn default() -> Self {
        Self {
            allow_bearer: false,
            timeout: Duration::from_millis(500),
            lock_ttl: Duration::from_secs(30),
            max_wait: Duration::from_secs(60),
            poll: (Duration::from_millis(10), Duration::from_millis(200)),
        }
    }
}

impl SharedCachePolicy {
    /// Also shares bearer (unbound) tokens. **A risk**: anyone who can read
    /// the shared store can use them, as they are not bound to a key. Only
    /// where the store is as well guarded as the client secret.
    pub fn allow_bearer_tokens(mut self) -> Self {
        self.allow_bearer = true;
        self
    }

    /// How long one operation may take before the store counts as down for
    /// this fetch. Default 500 ms (the cache is asked only on the way to a
    /// token fetch; a short timeout under CPU load would cost fetches). The
    /// same name as
    /// [`IntrospectionValidatorBuilder::shared_cache_timeout`](crate::validation::IntrospectionValidatorBuilder::shared_cache_timeout).
    pub fn shared_cache_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The old name of [`shared_cache_timeout`](Self::shared_cache_timeout).
    #[deprecated(note = "renamed shared_cache_timeout, as on IntrospectionValidatorBuilder")]
    pub fn timeout(self, timeout: Duration) -> Self {
        self.shared_cache_timeout(timeout)
    }

    /// How long a lock lives unless its holder extends it (it does, every
    /// third of this, while its fetch runs, with stores that implement
    /// [`SharedTokenCache::extend_lock`](super::SharedTokenCache::extend_lock)).
    /// Default 30 s: longer than a token fetch takes with the token endpoint's default timeout (10 s),
    /// even with a DPoP nonce retry, so that a slow authorization server
    /// does not see the whole fleet at once. A process that holds the lock
    /// and dies leaves the others waiting this long.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl.max(Duration::from_millis(10));
        self
    }

    /// How long a process waits for another's fetch at most before it
    /// fetches itself (without the lock). Default 60 s. Waiters keep
    /// looking for the token, and take the lock when it frees, until then;
    /// a store that fails sends them to the source at once.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// How often waiters look for the token: first after `min`, doubling
    /// up to `max`. Default 10 ms to 200 ms.
    pub fn poll_interval(mut self, min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        self.poll = (min, max.max(min));
        self
    }

    /// Whether bearer tokens are shared.
    pub fn allows_bearer_tokens(&self) -> bool {
        self.allow_bearer
    }
}

/// What happened in a shared cache, as told to
/// [`SharedTokenCache::record`](super::SharedTokenCache::record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharedCacheEvent {
    /// A usable token was found.
    Hit,
    /// No token was found (the first look of a fetch).
    Miss,
    /// A value was found and ignored: it does not parse, belongs to
    /// another key, has expired, was rejected by a server, or cannot be
    /// bound here.
    Unusable,
    /// This process took the lock and fetched from the source.
    FetchedUnderLock,
    /// Another process held the lock: this one waited.
    Waited,
    /// A token was written.
    Stored,
    /// An operation failed or timed out.
    Unavailable,
    /// The source was asked without the lock: the store was unavailable,
    /// the lock was held too long, or the token cannot be shared (the
    /// fetching process said so).
    FetchedDirectly,
}
