use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use super::{ReplayError, ReplayErrorKind, ReplayKey, ReplayStore};
use crate::redis_link::{RedisLink, clean_prefix, tagged_key};

pub use crate::redis_link::RedisConnectError;

/// A [`ReplayStore`] in Redis (or Valkey), shared by a fleet of servers: a
/// proof accepted by one of them is refused by all the others.
///
/// - **One command per proof**: `SET <prefix>{<key>} 1 NX PX <ms>`.
///   `OK` means the key was new (accept the proof); no answer means it was
///   there (a replay). The entry expires by itself once the proof could no
///   longer be accepted anyway, plus a margin.
/// - **Relative expiry, with a margin**: `<ms>` is the time left until the
///   proof's expiry by this server's clock, plus
///   [`DEFAULT_EXPIRY_MARGIN`](Self::DEFAULT_EXPIRY_MARGIN) (5 s, the
///   default DPoP and SHR future-`iat`/`ts` leeway; see
///   [`expiry_margin`](Self::expiry_margin)). Being relative, it does not
///   depend on Redis' clock agreeing with ours (an absolute `PXAT` in
///   Redis' past would be answered `OK` and keep nothing); the margin
///   covers servers of the fleet whose clocks are a little behind the one
///   that stored the key. A proof whose expiry has already passed is
///   refused without asking Redis, so no key is ever written with an
///   expiry in the past.
/// - **Keys**: a [`ReplayKey`] is a SHA-256 digest, so the proof, the token
///   and the `jti` never reach Redis; in the key it is base64url, inside
///   braces, a Redis Cluster hash tag: each proof its own slot, spread over
///   the cluster. The prefix (default `ttb:replay:`) separates services
///   sharing one Redis.
/// - **Fail closed**: no answer within the timeout (default 50 ms), an
///   unreachable Redis or an unexpected answer is a
///   [`ReplayErrorKind::Unavailable`] error: the request is refused with
///   `503` and `Retry-After` (and a `warn` event), never accepted unchecked.
/// - **Heals by itself**: one multiplexed connection per store, shared by
///   every request (no pool of blocking connections); after a loss it is
///   made again in the background, and the first commands after Redis is
///   back succeed, without restarting the server. A connection that goes
///   silent without an error (a partition) is made anew after a second
///   in which no command was answered (at most one new connection a
///   second); TCP keepalive and, on Linux, `TCP_USER_TIMEOUT` (10 s) are
///   set on every connection.
/// - **No share per key**: every new proof is stored, whatever its key
///   already holds
///   ([`insert_if_absent_for`](ReplayStore::insert_if_absent_for) is
///   `insert_if_absent`), unlike
///   [`MemoryReplayStore`](super::MemoryReplayStore#a-share-per-key).
///   Counting per key would cost a second command per proof (Redis does
///   not lower a count when a key expires, so a counter per key and time
///   window, `INCR` and `PEXPIRE`), for a store that holds far more: about
///   160 bytes per proof, so a gigabyte holds some 6.5 million. Give Redis
///   `maxmemory` room for the fleet's proofs over their lifetime, with the
///   `noeviction` policy: a Redis out of memory refuses writes, and DPoP
///   and `PoP` requests then get `503` (fail closed), whereas an evicting
///   policy would forget proofs that could then be replayed. A client
///   flooding with one valid token is best stopped before the store, by
///   rate limiting per client.
/// - The servers' clocks should agree (NTP), as they must for token expiry
///   anyway; differences up to the margin are covered.
///
/// Cloning is cheap; clones share the connection.
///
/// ```no_run
/// use tower_token_binding::replay::RedisReplayStore;
/// use tower_token_binding::server::ResourceServer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let store = RedisReplayStore::connect("redis://127.0.0.1:6379").await?;
/// let server = ResourceServer::builder()
///     .issuer("https://login.example.com")
///     .audience("https://api.example.com")
///     .replay_store(store);
/// # let _ = server;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisReplayStore {
    inner: Arc<Inner>,
}

struct Inner {
    link: RedisLink,
    prefix: String,
    timeout: Duration,
    margin: Duration,
}

impl RedisReplayStore {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "ttb:replay:";
    /// The default time Redis has to answer.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
    /// How much longer than a proof's expiry its key is kept by default:
    /// 5 s, at least the default future leeway of
    /// [`DpopVerifier`](crate::proof::dpop::DpopVerifier) and
    /// [`PopVerifier`](crate::proof::pop::PopVerifier), for clock skew
    /// between the servers of a fleet.
    pub const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(5);

    /// Connects to the Redis node at `url` (`redis://[user:password@]host:port[/db]`,
    /// `rediss://...` for TLS, `redis+unix:///path`). Fails when the URL is
    /// invalid or the node cannot be reached now; later outages are healed.
    pub async fn connect(url: &str) -> Result<Self, RedisConnectError> {
        let link = RedisLink::connect(url)
            .await
            .map_err(RedisConnectError::new)?;
        Ok(Self::from_link(link))
    }

    /// Connects to the Redis Cluster that the nodes at `urls` belong to (one
    /// reachable node is enough to find the others).
    ///
    /// ```no_run
    /// use tower_token_binding::replay::RedisReplayStore;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let store = RedisReplayStore::connect_cluster([
    ///     "redis://10.0.0.1:6379",
    ///     "redis://10.0.0.2:6379",
    ///     "redis://10.0.0.3:6379",
    /// ])
    /// .await?;
    /// # let _ = store;
    /// # Ok(())
    /// # }
    /// ```
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
                timeout: Self::DEFAULT_TIMEOUT,
                margin: Self::DEFAULT_EXPIRY_MARGIN,
            }),
        }
    }

    /// Uses `prefix` before every key instead of `ttb:replay:`. A prefix
    /// with braces is refused: they would change the hash tag.
    pub fn prefix(self, prefix: &str) -> Result<Self, RedisConnectError> {
        let prefix = clean_prefix(prefix).map_err(RedisConnectError::config)?;
        Ok(self.with(|inner| inner.prefix = prefix))
    }

    /// How long Redis has to answer before the request is refused (`503`).
    /// Default 50 ms: a loopback or same-zone round trip takes well under
    /// a millisecond, so anything close to the timeout is an outage.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|inner| inner.timeout = timeout)
    }

    /// How much longer than a proof's expiry its key is kept in Redis
    /// (default [`DEFAULT_EXPIRY_MARGIN`](Self::DEFAULT_EXPIRY_MARGIN)):
    /// at least the largest clock difference between the servers sharing
    /// the store, and at least the verifiers' future leeway.
    pub fn expiry_margin(self, margin: Duration) -> Self {
        self.with(|inner| inner.margin = margin)
    }

    fn with(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            link: self.inner.link.clone(),
            prefix: self.inner.prefix.clone(),
            timeout: self.inner.timeout,
            margin: self.inner.margin,
        };
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The Redis key for `key`: the prefix and the digest in a hash tag.
    ///
    /// ```no_run
    /// # use tower_token_binding::replay::{RedisReplayStore, ReplayKey};
    /// # async fn run(store: RedisReplayStore) {
    /// let key = ReplayKey::from_parts("dpop", &[b"jkt", b"htu", b"jti"]);
    /// assert_eq!(store.redis_key(&key), format!("ttb:replay:{{{key}}}"));
    /// # }
    /// ```
    pub fn redis_key(&self, key: &ReplayKey) -> String {
        tagged_key(&self.inner.prefix, &key.to_string())
    }
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("link", &self.inner.link)
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("expiry_margin", &self.inner.margin)
            .finish()
    }
}

impl ReplayStore for RedisReplayStore {
    type Future = RedisReplayFuture;

    fn insert_if_absent(&self, key: ReplayKey, expires_at: SystemTime) -> RedisReplayFuture {
        let Some(keep_ms) = keep_for_ms(expires_at, crate::clock::wall(), self.inner.margin) else {
            // Past its lifetime: refused, and nothing written (fail closed).
            return RedisReplayFuture::ready(Ok(false));
        };
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(&key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(keep_ms);
        let link = self.inner.link.clone();
        let timeout = self.inner.timeout;
        RedisReplayFuture {
            inner: Box::pin(async move {
                match tokio::time::timeout(timeout, link.query::<redis::Value>(&cmd)).await {
                    Err(_) => Err(ReplayError::with_source(
                        ReplayErrorKind::Unavailable,
                        format!("Redis did not answer within {timeout:?}"),
                    )),
                    Ok(Err(e)) => Err(ReplayError::with_source(ReplayErrorKind::Unavailable, e)),
                    Ok(Ok(value)) => read_set_answer(&value),
                }
            }),
        }
    }
}

/// How many milliseconds Redis keeps a proof expiring at `expires_at`,
/// asked at `now`: the time left (rounded up) plus `margin`; `None` when
/// `expires_at` is not after `now` (the proof is refused, nothing is
/// written). Never zero, so never an expiry in the past.
fn keep_for_ms(expires_at: SystemTime, now: SystemTime, margin: Duration) -> Option<u64> {
    let left = expires_at
        .duration_since(now)
        .ok()
        .filter(|d| !d.is_zero())?;
    let ms = left.saturating_add(margin).as_nanos().div_ceil(1_000_000);
    Some(u64::try_from(ms).unwrap_or(u64::MAX).max(1))
}

/// `SET ... NX`: `OK` when set (new), nil when the key was there (a
/// replay); anything else is not an answer to trust.
fn read_set_answer(value: &redis::Value) -> Result<bool, ReplayError> {
    match value {
        redis::Value::Okay => Ok(true),
        redis::Value::SimpleString(s) if s == "OK" => Ok(true),
        redis::Value::Nil => Ok(false),
        other => Err(ReplayError::with_source(
            ReplayErrorKind::Unavailable,
            format!("unexpected answer to SET NX: {}", value_kind(other)),
        )),
    }
}

/// What kind of value Redis answered, without its content.
fn value_kind(value: &redis::Value) -> &'static str {
    match value {
        redis::Value::Nil => "nil",
        redis::Value::Int(_) => "an integer",
        redis::Value::BulkString(_) => "a bulk string",
        redis::Value::Array(_) => "an array",
        redis::Value::SimpleString(_) => "a simple string",
        redis::Value::Okay => "OK",
        redis::Value::ServerError(_) => "an error",
        _ => "another type",
    }
}

/// Response future for [`RedisReplayStore`].
pub struct RedisReplayFuture {
    inner: Pin<Box<dyn Future<Output = Result<bool, ReplayError>> + Send>>,
}

impl RedisReplayFuture {
    fn ready(result: Result<bool, ReplayError>) -> Self {
        Self {
            inner: Box::pin(std::future::ready(result)),
        }
    }
}

impl Future for RedisReplayFuture {
    type Output = Result<bool, ReplayError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for RedisReplayFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        assert!(read_set_answer(&redis::Value::Okay).unwrap());
        assert!(read_set_answer(&redis::Value::SimpleString("OK".into())).unwrap());
        assert!(!read_set_answer(&redis::Value::Nil).unwrap());
        let odd = read_set_answer(&redis::Value::Int(1)).unwrap_err();
        assert!(odd.is_unavailable());
        let secret = redis::Value::BulkString(b"secret".to_vec());
        let e = read_set_answer(&secret).unwrap_err();
        let text = std::error::Error::source(&e).unwrap().to_string();
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn the_expiry_is_relative_with_a_margin_and_never_past() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let margin = Duration::from_secs(5);
        assert_eq!(
            keep_for_ms(now + Duration::from_secs(61), now, margin),
            Some(66_000)
        );
        assert_eq!(
            keep_for_ms(now + Duration::from_nanos(1), now, Duration::ZERO),
            Some(1)
        );
        assert_eq!(keep_for_ms(now, now, margin), None);
        assert_eq!(keep_for_ms(now - Duration::from_secs(1), now, margin), None);
        assert_eq!(keep_for_ms(SystemTime::UNIX_EPOCH, now, margin), None);
    }

    #[test]
    fn keys_carry_a_hash_tag_and_no_proof() {
        let key = ReplayKey::from_parts("dpop", &[b"jkt", b"https://api/x", b"jti-1"]);
        let text = tagged_key("ttb:replay:", &key.to_string());
        assert_eq!(text, format!("ttb:replay:{{{key}}}"));
        assert!(!text.contains("jti-1"));
        assert!(clean_prefix("a{b").is_err());
        assert!(clean_prefix("svc:replay:").is_ok());
    }
}
