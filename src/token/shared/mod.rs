//! A token cache shared by many processes (L2), under each process's
//! [`TokenCache`](super::TokenCache) (L1).
//!
//! 100 replicas of one workload, sharing one certificate (or one DPoP
//! key), would otherwise fetch 100 tokens per token lifetime and meet the
//! authorization server's throttling. With a shared cache, when a
//! process's L1 has no usable token (its single flight already made that
//! one task per process), it asks the shared cache; on a miss, one process
//! in the fleet takes a short lock and fetches; the others wait for its
//! token with a bounded backoff, take the lock when it frees, and fetch
//! themselves only when the store fails or after a hard cap
//! ([`SharedCachePolicy::max_wait`]). The holder extends its lock while its
//! fetch runs ([`SharedTokenCache::extend_lock`]), then writes the token
//! and releases the lock before it answers, each bounded by the policy's
//! timeout, so that a process that ends right after its first request has
//! still shared its token and freed the lock. After the first failure of
//! the store, a fetch makes no more calls to it but one bounded try to
//! release its lock (else the fleet would wait out the lock's lifetime).
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
//!   reads the shared cache can then use them. What counts is how the token
//!   is actually bound ([`Token::binding`]), never merely that it travels
//!   over a connection with a client certificate: a JWT counts as bound
//!   only with a matching `cnf`; a DPoP or PoP token without `cnf` is a
//!   bearer token even when a certificate authenticated the client; an
//!   opaque token fetched with a certificate counts as certificate-bound
//!   only when its source says the server binds such tokens
//!   ([`entra_mtls_pop`](crate::source::ClientCredentialsBuilder::entra_mtls_pop)
//!   or
//!   [`opaque_tokens_certificate_bound`](crate::source::ClientCredentialsBuilder::opaque_tokens_certificate_bound)):
//!   RFC 8705 gives the client no sign of it in the token response. A token
//!   is written only when its source binds a copy read back the same way.
//! - **Unshareable tokens do not queue the fleet**: a cache whose source
//!   cannot bind shared tokens
//!   ([`TokenSource::bind_shared`](super::TokenSource::bind_shared) is
//!   `None`), with bearer tokens not allowed, does not use the shared cache
//!   at all. When a fetched token cannot be shared (a bearer token, one
//!   living less than a second), the fetching process writes a short
//!   marker instead (10 s), so that the processes waiting for it fetch at
//!   once rather than one after another.
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
//! lock, unlock), and a fifth with a default (extend a lock). `RedisTokenCache` (feature `redis`) is the provided
//! implementation.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{AccessToken, BoxError, CacheKey, Token};
use crate::cnf::Binding;

mod key;
mod policy;
#[cfg(feature = "redis")]
mod redis;

pub use self::key::{LockOwner, SharedKey};
pub use self::policy::{SharedCacheEvent, SharedCachePolicy};

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

    /// Extends the lock of `key` to `ttl` from now if `owner` still holds
    /// it: the holder calls it while its fetch runs, so that a slow token
    /// endpoint does not let the lock expire under it. Default: nothing
    /// (the lock lives its first `ttl`; choose
    /// [`SharedCachePolicy::lock_ttl`] longer than a fetch).
    fn extend_lock(
        &self,
        _key: &SharedKey,
        _owner: &LockOwner,
        _ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }

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

/// What a process writes when the token it fetched cannot be shared, so
/// that the processes waiting for it fetch at once.
#[derive(Serialize, Deserialize)]
struct Unshareable {
    /// Format version.
    v: u32,
    /// The shared key again.
    key: String,
    unshareable: bool,
}

/// How long an [`Unshareable`] marker lives.
const UNSHAREABLE_TTL: Duration = Duration::from_secs(10);

/// The kind of binding a token has, as stored: how it is actually bound,
/// never the identity that merely carries it.
fn binding_of(token: &Token) -> &'static str {
    match token.binding() {
        Binding::Dpop => "jkt",
        Binding::Pop => "kid",
        Binding::Certificate => "x5t#S256",
        _ => "none",
    }
}

/// What a look in the store found.
enum Look {
    Found(Token),
    Nothing,
    /// The fetching process said its token cannot be shared.
    Unshareable,
}

/// What a process writes after its fetch.
enum Write {
    Token(Vec<u8>, Duration),
    Marker(Vec<u8>),
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
        let started = crate::clock::now();
        let mut delay = policy.poll.0;
        let mut first = true;
        loop {
            match self.look(&shared, &policy, &bind).await {
                Ok(Look::Found(token)) => return Ok(token),
                Ok(Look::Nothing) => {}
                Ok(Look::Unshareable) | Err(()) => return self.fetch_directly(fetch).await,
            }
            if first {
                store.record(SharedCacheEvent::Miss);
            }
            match bounded(
                store,
                &policy,
                store.try_lock(&shared, &owner, policy.lock_ttl),
            )
            .await
            {
                Ok(true) => {
                    return self
                        .fetch_locked(&shared, &owner, &policy, fetch, &bind)
                        .await;
                }
                Ok(false) => {}
                Err(()) => return self.fetch_directly(fetch).await,
            }
            if crate::clock::now().saturating_duration_since(started) >= policy.max_wait {
                tracing::warn!(
                    key = %shared,
                    "the shared token cache's lock was held too long: fetching directly"
                );
                let result = self.fetch_directly(fetch).await;
                if let Ok(token) = &result {
                    self.finish(&shared, &policy, token, &bind, None).await;
                }
                return result;
            }
            if first {
                store.record(SharedCacheEvent::Waited);
                first = false;
            }
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2).min(policy.poll.1);
        }
    }

    /// The usable token in the store, if any; `Err` when the store failed.
    async fn look<B>(
        &self,
        shared: &SharedKey,
        policy: &SharedCachePolicy,
        bind: &B,
    ) -> Result<Look, ()>
    where
        B: Fn(Token) -> Option<Token>,
    {
        let Some(bytes) = bounded(&*self.store, policy, self.store.get(shared)).await? else {
            return Ok(Look::Nothing);
        };
        if let Ok(marker) = serde_json::from_slice::<Unshareable>(&bytes) {
            if marker.v == FORMAT && marker.unshareable && marker.key == shared.to_string() {
                tracing::debug!(key = %shared, "the fleet's token cannot be shared: fetching directly");
                return Ok(Look::Unshareable);
            }
        }
        match self.read_entry(&bytes, shared, policy, bind) {
            Ok(token) => {
                self.store.record(SharedCacheEvent::Hit);
                tracing::debug!(key = %shared, "access token from the shared cache");
                Ok(Look::Found(token))
            }
            Err(reason) => {
                self.store.record(SharedCacheEvent::Unusable);
                tracing::warn!(key = %shared, reason, "a shared token cache entry was ignored");
                Ok(Look::Nothing)
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
        let expires_at = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_millis(entry.expires_at))
            .ok_or("an expiry out of range")?;
        let remaining = expires_at
            .duration_since(crate::clock::wall())
            .map_err(|_| "an expired token")?;
        let expiry = crate::clock::now()
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
        bind: &B,
    ) -> Result<Token, BoxError>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Token, BoxError>>,
        B: Fn(Token) -> Option<Token>,
    {
        // Another process may have stored a token and released the lock
        // between our look and our lock.
        match self.look(shared, policy, bind).await {
            Ok(Look::Found(token)) => {
                self.release(shared, owner, policy).await;
                return Ok(token);
            }
            Ok(Look::Nothing | Look::Unshareable) => {}
            // The store failed: one bounded try to free our lock, then no
            // more calls to it for this fetch.
            Err(()) => {
                self.release(shared, owner, policy).await;
                return self.fetch_directly(fetch).await;
            }
        }
        self.store.record(SharedCacheEvent::FetchedUnderLock);
        let (result, store_ok) = self.fetch_extending(shared, owner, policy, fetch).await;
        if !store_ok {
            // One bounded try to free the lock, so that the fleet does not
            // wait out its lifetime; then no more calls.
            self.release(shared, owner, policy).await;
            return result;
        }
        match &result {
            Ok(token) => self.finish(shared, policy, token, bind, Some(owner)).await,
            Err(_) => {
                self.release(shared, owner, policy).await;
            }
        }
        result
    }

    /// Runs `fetch`, extending the lock every third of its lifetime until
    /// the fetch ends; the flag is `false` when the store failed meanwhile.
    async fn fetch_extending<F>(
        &self,
        shared: &SharedKey,
        owner: &LockOwner,
        policy: &SharedCachePolicy,
        fetch: F,
    ) -> (Result<Token, BoxError>, bool)
    where
        F: FnOnce() -> BoxFuture<'static, Result<Token, BoxError>>,
    {
        let mut fetch = fetch();
        let every = (policy.lock_ttl / 3).max(Duration::from_millis(1));
        loop {
            tokio::select! {
                result = &mut fetch => return (result, true),
                () = tokio::time::sleep(every) => {}
            }
            let extend = self.store.extend_lock(shared, owner, policy.lock_ttl);
            if bounded(&*self.store, policy, extend).await.is_err() {
                return (fetch.await, false);
            }
        }
    }

    /// Releasing `owner`'s lock (bounded by the policy's timeout).
    fn release(
        &self,
        shared: &SharedKey,
        owner: &LockOwner,
        policy: &SharedCachePolicy,
    ) -> BoxFuture<'static, ()> {
        let store = Arc::clone(&self.store);
        let (shared, owner, policy) = (*shared, owner.clone(), policy.clone());
        Box::pin(async move {
            if bounded(&*store, &policy, store.unlock(&shared, &owner))
                .await
                .is_err()
            {
                tracing::debug!(key = %shared, "cannot release the shared token cache's lock; it expires by itself");
            }
        })
    }

    /// After a fetch: writes the token if it may be shared, else a marker
    /// that lets waiting processes fetch at once; then releases `owner`'s
    /// lock, if any (also after a failed write: one bounded try).
    async fn finish<B>(
        &self,
        shared: &SharedKey,
        policy: &SharedCachePolicy,
        token: &Token,
        bind: &B,
        owner: Option<&LockOwner>,
    ) where
        B: Fn(Token) -> Option<Token>,
    {
        let write = match self.entry_for(shared, policy, token, bind) {
            Ok((value, ttl)) => Write::Token(value, ttl),
            Err(reason) => {
                tracing::debug!(key = %shared, reason, "the token is not shared");
                let marker = Unshareable {
                    v: FORMAT,
                    key: shared.to_string(),
                    unshareable: true,
                };
                match serde_json::to_vec(&marker) {
                    Ok(value) => Write::Marker(value),
                    Err(_) => Write::Marker(Vec::new()),
                }
            }
        };
        match write {
            Write::Token(value, ttl) => {
                let put = self.store.put(shared, value, ttl);
                if bounded(&*self.store, policy, put).await.is_ok() {
                    self.store.record(SharedCacheEvent::Stored);
                }
            }
            Write::Marker(value) if value.is_empty() => {}
            Write::Marker(value) => {
                let put = self.store.put(shared, value, UNSHAREABLE_TTL);
                let _ = bounded(&*self.store, policy, put).await;
            }
        }
        // Even after a failed write, one bounded try to free the lock, so
        // that the fleet does not wait out its lifetime.
        if let Some(owner) = owner {
            self.release(shared, owner, policy).await;
        }
    }

    async fn fetch_directly<F>(&self, fetch: F) -> Result<Token, BoxError>
    where
        F: FnOnce() -> BoxFuture<'static, Result<Token, BoxError>>,
    {
        self.store.record(SharedCacheEvent::FetchedDirectly);
        fetch().await
    }

    /// The value to write for `token` and its lifetime in the store; `Err`
    /// (why) when it may not be shared: a bearer token without the opt-in,
    /// a token that does not live long enough, or one that a source like
    /// ours would not bind the same way when it reads it back (else no
    /// process could use it, or one would take a bearer token for a bound
    /// one).
    fn entry_for<B>(
        &self,
        shared: &SharedKey,
        policy: &SharedCachePolicy,
        token: &Token,
        bind: &B,
    ) -> Result<(Vec<u8>, Duration), &'static str>
    where
        B: Fn(Token) -> Option<Token>,
    {
        let binding = token.binding();
        if binding == Binding::None && !policy.allow_bearer {
            return Err("a bearer token, and bearer tokens are not shared here");
        }
        let expiry = token.expiry().ok_or("a token without an expiry")?;
        if binding != Binding::None {
            let bare = Token::new(token.access_token().secret())
                .with_token_type(token.token_type())
                .expires_at(expiry);
            let rebound = bind(bare).ok_or("a token its source cannot bind again")?;
            if rebound.binding() != binding {
                return Err("a token its source would bind otherwise");
            }
        }
        let lifetime = expiry.saturating_duration_since(crate::clock::now());
        let ttl = lifetime.mul_f64(self.ttl_share);
        if ttl < Duration::from_secs(1) {
            return Err("a token that expires too soon");
        }
        let since_epoch = crate::clock::wall()
            .checked_add(lifetime)
            .ok_or("an expiry out of range")?
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| "an expiry out of range")?;
        let entry = Entry {
            v: FORMAT,
            key: shared.to_string(),
            access_token: token.access_token().secret().to_owned(),
            token_type: token.token_type().to_owned(),
            expires_at: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
            binding: binding_of(token).to_owned(),
        };
        let value = serde_json::to_vec(&entry).map_err(|_| "a token that does not serialise")?;
        Ok((value, ttl))
    }
}

/// Runs one store operation within the policy's timeout; a failure is
/// logged, counted, and `Err(())`.
async fn bounded<T>(
    store: &dyn SharedTokenCache,
    policy: &SharedCachePolicy,
    operation: BoxFuture<'static, Result<T, BoxError>>,
) -> Result<T, ()> {
    let failure = match tokio::time::timeout(policy.timeout, operation).await {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {:?}", policy.timeout),
    };
    store.record(SharedCacheEvent::Unavailable);
    tracing::warn!(error = %failure, "the shared token cache failed: going on without it");
    Err(())
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
