//! One multiplexed, self-healing connection to Redis (or Valkey), a single
//! node or a cluster, shared by the Redis replay store and the Redis token
//! cache.
//!
//! A single node goes through redis' `ConnectionManager`: one multiplexed
//! connection (every command of every request pipelined on it, no pool of
//! blocking connections) that reconnects by itself after an I/O error. A
//! cluster goes through redis' async `ClusterConnection`, which does the same
//! per node and follows slot moves. Commands are bounded by the caller's
//! timeout, never by waiting on a reconnection.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

/// How long a new connection may take to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to a Redis node or cluster. Cloning is cheap: clones share
/// the connection.
#[derive(Clone)]
pub(crate) enum RedisLink {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisLink {
    /// Connects to the node at `url` (`redis://`, `rediss://`,
    /// `redis+unix://`), once, now: an unreachable node is an error here.
    /// Later losses are healed in the background.
    pub(crate) async fn connect(url: &str) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // A few quick tries per loss; the next command after a failed
            // round starts another, so a node that comes back is found
            // again without a restart.
            .set_number_of_retries(3)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        Ok(Self::Node(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }

    /// Connects to the cluster that the nodes at `urls` (any of its nodes)
    /// belong to.
    pub(crate) async fn connect_cluster<I, U>(urls: I) -> RedisResult<Self>
    where
        I: IntoIterator<Item = U>,
        U: AsRef<str>,
    {
        let nodes: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        let client = ClusterClient::builder(nodes)
            .connection_timeout(CONNECT_TIMEOUT)
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .build()?;
        Ok(Self::Cluster(client.get_async_connection().await?))
    }

    /// Runs `cmd`.
    pub(crate) async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        let mut link = self.clone();
        cmd.query_async(&mut link).await
    }

    /// Runs `invocation` (EVALSHA, falling back to EVAL once).
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        let mut link = self.clone();
        invocation.invoke_async(&mut link).await
    }

    /// `"node"` or `"cluster"`, for `Debug`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Node(_) => "node",
            Self::Cluster(_) => "cluster",
        }
    }
}

impl fmt::Debug for RedisLink {
    // No URL: it may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisLink").field(&self.kind()).finish()
    }
}

impl ConnectionLike for RedisLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The text of a key: `prefix`, then the digest (base64url) in braces, a
/// Redis Cluster hash tag: each digest its own slot (keys spread over the
/// cluster), and everything named after one digest (a token and its lock)
/// in the same slot.
pub(crate) fn tagged_key(prefix: &str, digest: &str) -> String {
    let mut key = String::with_capacity(prefix.len() + digest.len() + 2);
    key.push_str(prefix);
    key.push('{');
    key.push_str(digest);
    key.push('}');
    key
}

/// A prefix fit for keys: without braces (they would change the hash
/// tag), and not too long.
pub(crate) fn clean_prefix(prefix: &str) -> Result<String, String> {
    if prefix.contains(['{', '}']) {
        return Err(format!(
            "a Redis key prefix must not contain braces (they would change the hash tag): {prefix:?}"
        ));
    }
    if prefix.len() > 200 {
        return Err("a Redis key prefix must be at most 200 bytes".to_owned());
    }
    Ok(prefix.to_owned())
}

/// Why a Redis-backed store or cache could not be set up: an invalid URL
/// or setting, or Redis unreachable when connecting. The message names
/// neither the URL nor its password.
pub struct RedisConnectError {
    message: String,
    source: Option<redis::RedisError>,
}

impl RedisConnectError {
    pub(crate) fn new(source: redis::RedisError) -> Self {
        Self {
            message: format!("cannot connect to Redis ({:?})", source.kind()),
            source: Some(source),
        }
    }

    pub(crate) fn config(message: String) -> Self {
        Self {
            message,
            source: None,
        }
    }

    /// Whether Redis could not be reached (rather than a bad setting).
    pub fn is_connect(&self) -> bool {
        self.source
            .as_ref()
            .is_some_and(|e| e.is_io_error() || e.is_timeout() || e.is_connection_refusal())
    }
}

impl fmt::Debug for RedisConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnectError")
            .field("message", &self.message)
            .field("source", &self.source.as_ref().map(|e| e.kind()))
            .finish()
    }
}

impl fmt::Display for RedisConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RedisConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
