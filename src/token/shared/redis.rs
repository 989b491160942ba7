use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{LockOwner, SharedCacheEvent, SharedCachePolicy, SharedKey, SharedTokenCache};
use crate::BoxError;
use crate::redis_link::{RedisConnectError, RedisLink, clean_prefix, tagged_key};

/// Releases a lock only if its value is still ours: compare and delete, in
/// one step on the server.
static UNLOCK: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
    )
});

/// Extends a lock only if its value is still ours: compare and `PEXPIRE`,
/// in one step on the server.
static EXTEND: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end",
    )
});

/// A [`SharedTokenCache`] in Redis (or Valkey, or a Redis Cluster): the
/// tokens of a fleet, under each process's in-memory
/// [`TokenCache`](crate::token::TokenCache).
///
/// - A token: `SET <prefix>{<key>} <json> PX <ttl>`, read with `GET`; the
///   lock: `SET <prefix>{<key>}:lock <random owner> NX PX <lock ttl>`,
///   extended by its holder while it fetches (a compare-and-`PEXPIRE`
///   script) and released by a compare-and-delete script. The digest in braces is a
///   hash tag: a token and its lock share a slot; tokens spread over a
///   cluster. Default prefix `ttb:token:`.
/// - Costs: nothing while the in-memory cache has a fresh token (nearly
///   every request); one `GET` when a process needs a token the fleet
///   has; `GET`, `SET NX`, `GET`, `SET`, `EVALSHA` for the one process
///   that fetches (the last two after its caller has the token), and one
///   `EVALSHA` per third of the lock's lifetime while its fetch runs.
/// - Only bound tokens by default (see
///   [`SharedCachePolicy::allow_bearer_tokens`] for the risky opt-in);
///   never keys or secrets.
/// - Values are at most [`MAX_VALUE_LEN`](Self::MAX_VALUE_LEN) bytes
///   (64 KiB): a larger one read from Redis is garbage (a miss, replaced
///   by the next fetch), never parsed; a larger one is never written.
/// - Redis down or slow (each command bounded, 500 ms by default): the
///   process fetches directly and [counts it](Self::stats); a request never
///   fails because of Redis. The connection heals by itself.
///
/// Cloning is cheap; clones share the connection and the counters, and so
/// do the caches made from one with [`prefix`](Self::prefix) or
/// [`policy`](Self::policy).
///
/// ```no_run
/// use tower_token_binding::BoundClient;
/// use tower_token_binding::token::RedisTokenCache;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let client = BoundClient::builder()
///     .issuer("https://login.example.com")
///     .client_id("my-service")
///     .identity_files("/etc/tls/client.pem", "/etc/tls/client.key")
///     .shared_token_cache(RedisTokenCache::connect("redis://127.0.0.1:6379").await?)
///     .build()?;
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisTokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    link: RedisLink,
    prefix: String,
    policy: SharedCachePolicy,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    unusable: AtomicU64,
    fetched_under_lock: AtomicU64,
    waited: AtomicU64,
    stored: AtomicU64,
    unavailable: AtomicU64,
    fetched_directly: AtomicU64,
}

/// Counters of a [`RedisTokenCache`] (and its clones, and the caches made
/// from it with another prefix or policy), since it was made.
/// Given to an introspection validator's
/// [`shared_cache`](crate::validation::IntrospectionValidatorBuilder::shared_cache),
/// the same counters count its answers (no locks there: `hits`, `misses`,
/// `unusable`, `stored`, `unavailable`, `fetched_directly`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisCacheStats {
    /// Tokens found in Redis and used.
    pub hits: u64,
    /// Looks that found nothing.
    pub misses: u64,
    /// Values found and ignored (garbage, another key, expired, rejected,
    /// bound otherwise).
    pub unusable: u64,
    /// Fetches from the token source by this process, holding the lock.
    pub fetched_under_lock: u64,
    /// Times this process waited for another's fetch.
    pub waited: u64,
    /// Tokens written.
    pub stored: u64,
    /// Commands that failed or timed out.
    pub unavailable: u64,
    /// Fetches from the token source without the lock: Redis unavailable,
    /// or the lock held too long.
    pub fetched_directly: u64,
}

impl RedisTokenCache {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "ttb:token:";
    /// The largest value read or written, in bytes: 64 KiB, far above a
    /// token entry or an introspection answer (a few KiB), far below
    /// what would cost much to parse. A larger value read from Redis is
    /// treated as garbage (a miss) before any parsing.
    pub const MAX_VALUE_LEN: usize = 64 * 1024;

    /// Connects to the Redis node at `url` (`redis://`, `rediss://`,
    /// `redis+unix://`). Fails when the URL is invalid or the node cannot be
    /// reached now; later outages are healed.
    pub async fn connect(url: &str) -> Result<Self, RedisConnectError> {
        let link = RedisLink::connect(url)
            .await
            .map_err(RedisConnectError::new)?;
        Ok(Self::from_link(link))
    }

    /// Connects to the Redis Cluster that the nodes at `urls` belong to.
    pub async fn connect_cluster<I, U>(urls: I) -> Result<Self, RedisConnectError>
    where
        I: IntoIterator<Item = U>,
        U: AsRef<str>,
    {
        let link = RedisLink::connect_cluster(urls)
            .await
            .map_err(RedisConnectError::new)?;
        Ok(Self::from_link(link))
    }

    fn from_link(link: RedisLink) -> Self {
        Self {
            inner: Arc::new(Inner {
                link,
                prefix: Self::DEFAULT_PREFIX.to_owned(),
                policy: SharedCachePolicy::default(),
                counters: Arc::default(),
            }),
        }
    }

    /// Uses `prefix` before every key instead of `ttb:token:`. A prefix with
    /// braces is refused: they would change the hash tag.
    pub fn prefix(self, prefix: &str) -> Result<Self, RedisConnectError> {
        let prefix = clean_prefix(prefix).map_err(RedisConnectError::config)?;
        Ok(self.with(|inner| inner.prefix = prefix))
    }

    /// Uses `policy` (bearer tokens, timeouts, lock lifetime, polling)
    /// instead of the default.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tower_token_binding::token::{RedisTokenCache, SharedCachePolicy};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let cache = RedisTokenCache::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .policy(SharedCachePolicy::default().shared_cache_timeout(Duration::from_millis(50)));
    /// # let _ = cache;
    /// # Ok(())
    /// # }
    /// ```
    pub fn policy(self, policy: SharedCachePolicy) -> Self {
        self.with(|inner| inner.policy = policy)
    }

    fn with(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            link: self.inner.link.clone(),
            prefix: self.inner.prefix.clone(),
            policy: self.inner.policy.clone(),
            counters: Arc::clone(&self.inner.counters),
        };
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The counters.
    pub fn stats(&self) -> RedisCacheStats {
        let c = &self.inner.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RedisCacheStats {
            hits: n(&c.hits),
            misses: n(&c.misses),
            unusable: n(&c.unusable),
            fetched_under_lock: n(&c.fetched_under_lock),
            waited: n(&c.waited),
            stored: n(&c.stored),
            unavailable: n(&c.unavailable),
            fetched_directly: n(&c.fetched_directly),
        }
    }

    fn token_key(&self, key: &SharedKey) -> String {
        tagged_key(&self.inner.prefix, &key.to_string())
    }

    fn lock_key(&self, key: &SharedKey) -> String {
        let mut text = self.token_key(key);
        text.push_str(":lock");
        text
    }
}

impl fmt::Debug for RedisTokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTokenCache")
            .field("link", &self.inner.link)
            .field("prefix", &self.inner.prefix)
            .field("policy", &self.inner.policy)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A value read from Redis, or, when it is over
/// [`RedisTokenCache::MAX_VALUE_LEN`], nothing: garbage, never parsed.
fn within_limit(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() > RedisTokenCache::MAX_VALUE_LEN {
        Vec::new()
    } else {
        bytes
    }
}

/// A `SET ... NX` answer: `OK` when set, nil when not.
fn was_set(value: &redis::Value) -> Result<bool, BoxError> {
    match value {
        redis::Value::Okay => Ok(true),
        redis::Value::SimpleString(s) if s == "OK" => Ok(true),
        redis::Value::Nil => Ok(false),
        _ => Err("unexpected answer to SET NX".into()),
    }
}

impl SharedTokenCache for RedisTokenCache {
    fn get(&self, key: &SharedKey) -> BoxFuture<'static, Result<Option<Vec<u8>>, BoxError>> {
        let link = self.inner.link.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.token_key(key));
        Box::pin(async move {
            match link.query::<redis::Value>(&cmd).await {
                Ok(redis::Value::Nil) => Ok(None),
                Ok(redis::Value::BulkString(bytes)) => Ok(Some(within_limit(bytes))),
                Ok(redis::Value::SimpleString(text)) => Ok(Some(within_limit(text.into_bytes()))),
                // Some other type under our key: garbage, to be replaced.
                Ok(_) => Ok(Some(Vec::new())),
                Err(e) if e.code() == Some("WRONGTYPE") => Ok(Some(Vec::new())),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn put(
        &self,
        key: &SharedKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        if value.len() > Self::MAX_VALUE_LEN {
            // It would be read back as garbage: not written.
            return Box::pin(std::future::ready(Err(format!(
                "a value of {} bytes, over the {}-byte limit, was not stored",
                value.len(),
                Self::MAX_VALUE_LEN
            )
            .into())));
        }
        let link = self.inner.link.clone();
        let mut cmd = redis::cmd("SET");
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        cmd.arg(self.token_key(key)).arg(value).arg("PX").arg(ms);
        Box::pin(async move {
            let answer: redis::Value = link.query(&cmd).await?;
            if was_set(&answer)? {
                Ok(())
            } else {
                Err("SET was not done".into())
            }
        })
    }

    fn try_lock(
        &self,
        key: &SharedKey,
        owner: &LockOwner,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, BoxError>> {
        let link = self.inner.link.clone();
        let mut cmd = redis::cmd("SET");
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        cmd.arg(self.lock_key(key))
            .arg(owner.as_str())
            .arg("NX")
            .arg("PX")
            .arg(ms);
        Box::pin(async move {
            let answer: redis::Value = link.query(&cmd).await?;
            was_set(&answer)
        })
    }

    fn unlock(
        &self,
        key: &SharedKey,
        owner: &LockOwner,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        let link = self.inner.link.clone();
        let lock = self.lock_key(key);
        let owner = owner.as_str().to_owned();
        Box::pin(async move {
            let mut invocation = UNLOCK.prepare_invoke();
            invocation.key(lock).arg(owner);
            let _released: redis::Value = link.invoke(invocation).await?;
            Ok(())
        })
    }

    fn extend_lock(
        &self,
        key: &SharedKey,
        owner: &LockOwner,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        let link = self.inner.link.clone();
        let lock = self.lock_key(key);
        let owner = owner.as_str().to_owned();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Box::pin(async move {
            let mut invocation = EXTEND.prepare_invoke();
            invocation.key(lock).arg(owner).arg(ms);
            let _extended: redis::Value = link.invoke(invocation).await?;
            Ok(())
        })
    }

    fn policy(&self) -> SharedCachePolicy {
        self.inner.policy.clone()
    }

    fn record(&self, event: SharedCacheEvent) {
        let c = &self.inner.counters;
        let counter = match event {
            SharedCacheEvent::Hit => &c.hits,
            SharedCacheEvent::Miss => &c.misses,
            SharedCacheEvent::Unusable => &c.unusable,
            SharedCacheEvent::FetchedUnderLock => &c.fetched_under_lock,
            SharedCacheEvent::Waited => &c.waited,
            SharedCacheEvent::Stored => &c.stored,
            SharedCacheEvent::Unavailable => &c.unavailable,
            SharedCacheEvent::FetchedDirectly => &c.fetched_directly,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_answers_are_read_strictly() {
        assert!(was_set(&redis::Value::Okay).unwrap());
        assert!(!was_set(&redis::Value::Nil).unwrap());
        assert!(was_set(&redis::Value::Int(1)).is_err());
    }

    #[test]
    fn values_over_the_limit_are_garbage() {
        let max = RedisTokenCache::MAX_VALUE_LEN;
        assert_eq!(within_limit(vec![b' '; max]).len(), max);
        assert!(within_limit(vec![b' '; max + 1]).is_empty());
    }
}
