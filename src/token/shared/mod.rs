//! A token cache shared by many processes (L2), under each process's
//! [`TokenCache`](super::TokenCache) (L1).
//!
//! 100 replicas of one workload, sharing one certificate (or one DPoP
//! key), would otherwise fetch 100 tokens per token lifetime and meet the
//! authorization server's throttling. With a shared cache, when a
//! process's L1 has no usable token (its single flight already made that
//! one task per process), it asks the shared cache; on a miss, one process
//! in the fleet takes a short lock and fetches; the others wait for its
//! token with a bounded backoff, and fetch themselves if the lock expires.
//!
//! - **Keys**: SHA-256 over the [`CacheKey`]: token
//!   endpoint, client id, client authentication, scope, resource, the
//!   binding mode and what the tokens are bound to (`x5t#S256`, `jkt`,
//!   `kid`). Never a secret.
//! - **Values**: the access token, its type, its expiry and its binding
//!   (JSON). Never a private key, a DPoP key or a client secret: a process
//!   that reads a token binds it to its own key material, which must be the
//!   one in the key (the same certificate, or the same DPoP key file).
//! - **Only bound tokens by default**: a stolen certificate- or DPoP-bound
//!   token is useless without the private key. Bearer tokens are shared
//!   only after [`SharedCachePolicy::allow_bearer_tokens`], a risk: whoever
//!   reads the shared cache can then use them.
//! - **Lifetime**: an entry lives until the token's refresh point (the
//!   L1's refresh share less its jitter share, 70 % of the lifetime by
//!   default), so the fleet refreshes well before expiry.
//! - **Outages never fail a request**: a shared cache that errs or is slow
//!   (each operation is bounded by a timeout, default 500 ms: it is asked only when a process has no fresh token, where a token fetch would take as long) is skipped
//!   and the process fetches from the authorization server itself, the
//!   source of truth, and counts it.
//! - **Garbage is a miss**: an entry that does not parse, belongs to another
//!   key, has expired, or cannot be bound here is ignored (and logged), and
//!   a fresh token replaces it.
//!
//! [`SharedTokenCache`] is the extension point: four operations (get, put,
//! lock, unlock). `RedisTokenCache` (feature `redis`) is the provided
//! implementation.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{AccessToken, BoxError, CacheKey, Token};

#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisCacheStats, RedisTokenCache};

/// A store of tokens shared by processes, with a lock per key: the L2
/// under a [`TokenCache`](super::TokenCache). Set it with
/// [`TokenCacheBuilder::shared`](super::TokenCacheBuilder::shared) or
/// `BoundClientBuilder::shared_token_cache`.
///
/// The cache decides when to read, lock, fetch, wait and write; an
/// implementation only stores bytes. Each operation should be one round
/// trip; the cache bounds it with [`SharedCachePolicy::timeout`] and
/// treats an error like a miss it cannot wait on (it fetches directly).
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use futures_util::future::BoxFuture;
/// use tower_token_binding::token::{BoxError, LockOwner, SharedKey, SharedTokenCache};
///
/// /// One process's map, for a test: no expiry, no real sharing.
/// #[derive(Default)]
/// struct InMemory(Arc<Mutex<HashMap<String, Vec<u8>>>>);
///
/// impl SharedTokenCache for InMemory {
///     fn get(&self, key: &SharedKey) -> BoxFuture<'static, Result<Option<Vec<u8>>, BoxError>> {
///         let value = self.0.lock().unwrap().get(&key.to_string()).cloned();
///         Box::pin(async move { Ok(value) })
///     }
///     fn put(&self, key: &SharedKey, value: Vec<u8>, _ttl: Duration) -> BoxFuture<'static, Result<(), BoxError>> {
///         self.0.lock().unwrap().insert(key.to_string(), value);
///         Box::pin(async { Ok(()) })
///     }
///     fn try_lock(&self, _key: &SharedKey, _owner: &LockOwner, _ttl: Duration) -> BoxFuture<'static, Result<bool, BoxError>> {
///         Box::pin(async { Ok(true) })
///     }
///     fn unlock(&self, _key: &SharedKey, _owner: &LockOwner) -> BoxFuture<'static, Result<(), BoxError>> {
///         Box::pin(async { Ok(()) })
///     }
/// }
/// # let _ = InMemory::default();
/// ```
pub trait SharedTokenCache: Send + Sync + 'static {
    /// The value stored under `key`, if any (and not expired).
    fn get(&self, key: &SharedKey) -> BoxFuture<'static, Result<Option<Vec<u8>>, BoxError>>;

    /// Stores `value` under `key` for `ttl`, replacing what is there.
    fn put(
        &self,
        key: &SharedKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BoxError>>;

    /// Takes the lock of `key` for `owner`, for at most `ttl`, unless
    /// someone holds it: `true` when taken.
    fn try_lock(
        &self,
        key: &SharedKey,
        owner: &LockOwner,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, BoxError>>;

    /// Releases the lock of `key` if `owner` still holds it (never someone
    /// else's lock, taken after ours expired).
    fn unlock(
        &self,
        key: &SharedKey,
        owner: &LockOwner,
    ) -> BoxFuture<'static, Result<(), BoxError>>;

    /// The rules the cache follows with this store. Default:
    /// [`SharedCachePolicy::default`].
    fn policy(&self) -> SharedCachePolicy {
        SharedCachePolicy::default()
    }

    /// Told what happened, for counters. Default: nothing.
    fn record(&self, event: SharedCacheEvent) {
        let _ = event;
    }
}

/// The key of a token in a shared cache: SHA-256 over its
/// [`CacheKey`]. Its text form
/// ([`Display`](fmt::Display)) is base64url, 43 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedKey([u8; 32]);

impl SharedKey {
    /// The key of tokens cached under `key`.
    pub fn of(key: &CacheKey) -> Self {
        Self(key.digest())
    }

    /// A key from a digest made elsewhere (the introspection validator's
    /// answers, under the SHA-256 of their token).
    #[cfg(feature = "server")]
    pub(crate) const fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The 32 bytes of the digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedKey({self})")
    }
}

/// Who holds a lock: 128 random bits, new for each attempt to fetch.
#[derive(Clone, PartialEq, Eq)]
pub struct LockOwner(String);

impl LockOwner {
    /// A new random owner.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // Without randomness, a clock-based owner still differs between
        // attempts and processes well enough for a lock that only saves
        // fetches.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            bytes = (nanos ^ u128::from(std::process::id())).to_be_bytes();
        }
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Its text, stored as the lock's value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LockOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockOwner({})", self.0)
    }
}

/// How a [`TokenCache`](super::TokenCache) uses a [`SharedTokenCache`].
#[derive(Clone, Debug)]
pub struct SharedCachePolicy {
    allow_bearer: bool,
    timeout: Duration,
    lock_ttl: Duration,
    poll: (Duration, Duration),
}

impl Default for SharedCachePolicy {
    /// Bound tokens only; 500 ms per operation; a lock lives 5 s at most;
    /// waiters look every 10 ms at first, backing off to every 200 ms.
    fn default() -> Self {
        Self {
            allow_bearer: false,
            timeout: Duration::from_millis(500),
            lock_ttl: Duration::from_secs(5),
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
    /// token fetch; a short timeout under CPU load would cost fetches).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a lock lives at most: longer than a token fetch takes
    /// (the token endpoint's timeout, 10 s by default, is a safe bound;
    /// default 5 s). A process that waited this long (and a little more)
    /// fetches itself.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl.max(Duration::from_millis(10));
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
/// [`SharedTokenCache::record`].
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
    /// or the lock was held too long.
    FetchedDirectly,
}

/// What goes into the shared store: no key material.
#[derive(Serialize, Deserialize)]
struct Entry {
    /// Format version.
    v: u32,
    /// The shared key again, so an entry found under another key is
    /// refused.
    key: String,
    access_token: String,
    token_type: String,
    /// Unix time, milliseconds.
    expires_at: u64,
    /// `x5t#S256`, `jkt`, `kid` or `none`.
    binding: String,
}

const FORMAT: u32 = 1;

/// The kind of binding a token has, as stored.
fn binding_of(token: &Token) -> &'static str {
    if token.dpop_proofs().is_some() {
        "jkt"
    } else if token.pop_requests().is_some() {
        "kid"
    } else if token.identity().is_some() {
        "x5t#S256"
    } else {
        "none"
    }
}

/// The L1's view of its L2: the store, and the token a server rejected
/// last (never taken from the store again).
pub(crate) struct SharedTier {
    store: Arc<dyn SharedTokenCache>,
    /// The share of a token's lifetime an entry lives.
    ttl_share: f64,
    rejected: Mutex<Option<AccessToken>>,
}

impl SharedTier {
    pub(crate) fn new(store: Arc<dyn SharedTokenCache>, ttl_share: f64) -> Self {
        Self {
            store,
            ttl_share: ttl_share.clamp(0.05, 1.0),
            rejected: Mutex::new(None),
        }
    }

    /// Remembers that a server rejected `token`: an entry holding it is
    /// unusable from now on.
    pub(crate) fn reject(&self, token: &AccessToken) {
        *self.rejected.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
    }

    fn is_rejected(&self, token: &str) -> bool {
        self.rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|t| *t == AccessToken::new(token))
    }

    /// A token for `key`: from the store, else fetched by one process of
    /// the fleet under the lock, else fetched directly. Never fails because
    /// of the store: only `fetch`'s error comes back.
    pub(crate) async fn fetch<F, B>(
        &self,
        key: &CacheKey,
        fetch: F,
        bind: B,
    ) -> Result<Token, BoxError>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Token, BoxError>>,
        B: Fn(Token) -> Option<Token>,
    {
        let store = &*self.store;
        let policy = store.policy();
        let shared = SharedKey::of(key);
        let owner = LockOwner::random();
        let started = Instant::now();
        let give_up = policy.lock_ttl + policy.lock_ttl / 2;
        let mut delay = policy.poll.0;
        let mut first = true;
        loop {
            match self.look(&shared, &policy, &bind).await {
                Ok(Some(token)) => return Ok(token),
                Ok(None) => {}
                Err(()) => return self.fetch_directly(fetch).await,
            }
            if first {
                store.record(SharedCacheEvent::Miss);
            }
            match self
                .bounded(&policy, store.try_lock(&shared, &owner, policy.lock_ttl))
                .await
            {
                Ok(true) => {
                    return self
                        .fetch_locked(&shared, &owner, &policy, fetch, bind)
                        .await;
                }
                Ok(false) => {}
                Err(()) => return self.fetch_directly(fetch).await,
            }
            if started.elapsed() >= give_up {
                tracing::warn!(
                    key = %shared,
                    "the shared token cache's lock was held too long: fetching directly"
                );
                let result = self.fetch_directly(fetch).await;
                if let Ok(token) = &result {
                    self.store_token(&shared, &policy, token, &bind).await;
                }
                return result;
            }
            if first {
                store.record(SharedCacheEvent::Waited);
                first = false;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(policy.poll.1);
        }
    }

    /// The usable token in the store, if any; `Err` when the store failed.
    async fn look<B>(
        &self,
        shared: &SharedKey,
        policy: &SharedCachePolicy,
        bind: &B,
    ) -> Result<Option<Token>, ()>
    where
        B: Fn(Token) -> Option<Token>,
    {
        let Some(bytes) = self.bounded(policy, self.store.get(shared)).await? else {
            return Ok(None);
        };
        match self.read_entry(&bytes, shared, policy, bind) {
            Ok(token) => {
                self.store.record(SharedCacheEvent::Hit);
                tracing::debug!(key = %shared, "access token from the shared cache");
                Ok(Some(token))
            }
            Err(reason) => {
                self.store.record(SharedCacheEvent::Unusable);
                tracing::warn!(key = %shared, reason, "a shared token cache entry was ignored");
                Ok(None)
            }
        }
    }

    fn read_entry<B>(
        &self,
        bytes: &[u8],
        shared: &SharedKey,
        policy: &SharedCachePolicy,
        bind: &B,
    ) -> Result<Token, &'static str>
    where
        B: Fn(Token) -> Option<Token>,
    {
        let entry: Entry = serde_json::from_slice(bytes).map_err(|_| "not a token entry")?;
        if entry.v != FORMAT {
            return Err("another format version");
        }
        if entry.key != shared.to_string() {
            return Err("an entry of another key");
        }
        if entry.access_token.is_empty() || entry.token_type.is_empty() {
            return Err("an empty token");
        }
        if self.is_rejected(&entry.access_token) {
            return Err("the token a server rejected");
        }
        let expires_at = SystemTime::UNIX_EPOCH + Duration::from_millis(entry.expires_at);
        let remaining = expires_at
            .duration_since(SystemTime::now())
            .map_err(|_| "an expired token")?;
        let expiry = Instant::now()
            .checked_add(remaining)
            .ok_or("an expiry out of range")?;
        let token = Token::new(entry.access_token)
            .with_token_type(entry.token_type)
            .expires_at(expiry);
        match entry.binding.as_str() {
            "none" if policy.allow_bearer => Ok(token),
            "none" => Err("a bearer token, and bearer tokens are not shared here"),
            expected @ ("x5t#S256" | "jkt" | "kid") => {
                let bound = bind(token).ok_or("a token this source cannot bind")?;
                if binding_of(&bound) == expected {
                    Ok(bound)
                } else {
                    Err("a token bound otherwise than this source binds")
                }
            }
            _ => Err("an unknown binding"),
        }
    }

    async fn fetch_locked<F, B>(
        &self,
        shared: &SharedKey,
        owner: &LockOwner,
        policy: &SharedCachePolicy,
        fetch: F,
        bind: B,
    ) -> Result<Token, BoxError>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Token, BoxError>>,
        B: Fn(Token) -> Option<Token>,
    {
        // Another process may have stored a token and released the lock
        // between our look and our lock.
        let result = match self.look(shared, policy, &bind).await {
            Ok(Some(token)) => Ok(token),
            Ok(None) | Err(()) => {
                self.store.record(SharedCacheEvent::FetchedUnderLock);
                let result = fetch().await;
                if let Ok(token) = &result {
                    self.store_token(shared, policy, token, &bind).await;
                }
                result
            }
        };
        if self
            .bounded(policy, self.store.unlock(shared, owner))
            .await
            .is_err()
        {
            tracing::debug!(key = %shared, "cannot release the shared token cache's lock; it expires by itself");
        }
        result
    }

    async fn fetch_directly<F>(&self, fetch: F) -> Result<Token, BoxError>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Token, BoxError>>,
    {
        self.store.record(SharedCacheEvent::FetchedDirectly);
        fetch().await
    }

    /// Writes `token` if it may be shared, lives long enough and, when
    /// bound, can be bound again by a source like ours (else no process
    /// could use it).
    async fn store_token<B>(
        &self,
        shared: &SharedKey,
        policy: &SharedCachePolicy,
        token: &Token,
        bind: &B,
    ) where
        B: Fn(Token) -> Option<Token>,
    {
        let binding = binding_of(token);
        if binding == "none" && !policy.allow_bearer {
            tracing::debug!("a bearer token is not shared (not allowed)");
            return;
        }
        let Some(expiry) = token.expiry() else {
            return;
        };
        if binding != "none" {
            let bare = Token::new(token.access_token().secret())
                .with_token_type(token.token_type())
                .expires_at(expiry);
            if bind(bare).is_none() {
                tracing::debug!("a token its source cannot bind again is not shared");
                return;
            }
        }
        let lifetime = expiry.saturating_duration_since(Instant::now());
        let ttl = lifetime.mul_f64(self.ttl_share);
        if ttl < Duration::from_secs(1) {
            return;
        }
        let expires_at = SystemTime::now() + lifetime;
        let Ok(since_epoch) = expires_at.duration_since(SystemTime::UNIX_EPOCH) else {
            return;
        };
        let entry = Entry {
            v: FORMAT,
            key: shared.to_string(),
            access_token: token.access_token().secret().to_owned(),
            token_type: token.token_type().to_owned(),
            expires_at: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
            binding: binding.to_owned(),
        };
        let Ok(value) = serde_json::to_vec(&entry) else {
            return;
        };
        if self
            .bounded(policy, self.store.put(shared, value, ttl))
            .await
            .is_ok()
        {
            self.store.record(SharedCacheEvent::Stored);
        }
    }

    /// Runs one store operation within the policy's timeout; a failure is
    /// logged, counted, and `Err(())`.
    async fn bounded<T>(
        &self,
        policy: &SharedCachePolicy,
        operation: BoxFuture<'static, Result<T, BoxError>>,
    ) -> Result<T, ()> {
        let failure = match tokio::time::timeout(policy.timeout, operation).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", policy.timeout),
        };
        self.store.record(SharedCacheEvent::Unavailable);
        tracing::warn!(error = %failure, "the shared token cache failed: going on without it");
        Err(())
    }
}

impl fmt::Debug for SharedTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTier")
            .field("ttl_share", &self.ttl_share)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
