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
//!
//! Neither reconnects when the connection goes silent without an error (a
//! network partition that drops packets, a peer gone without a reset): the
//! callers' timeouts fire and nothing else happens, for as long as the
//! kernel keeps the socket (up to a quarter of an hour). Two guards:
//!
//! - TCP settings on every connection: `TCP_NODELAY`, keepalive probes
//!   after 10 s idle, and (on Linux) `TCP_USER_TIMEOUT` of 10 s, so the
//!   kernel itself fails a connection whose data goes unacknowledged and
//!   the reconnection above takes over.
//! - A watch on the answers: when, for at least [`STALL`], every command
//!   went unanswered (its caller gave up: dropped before an answer) and
//!   none was answered, the connection is made anew in the background and
//!   swapped in; at most one rebuild at a time, the first at least
//!   [`REBUILD_INTERVAL`] after the one before, and each that does not
//!   bring answers back waits twice as long for the next (up to
//!   [`MAX_REBUILD_INTERVAL`]), so neither an outage nor a Redis that is
//!   merely slow gets a reconnect storm from a fleet.
//!   Commands in flight on the old connection end with their callers'
//!   timeouts; the next ones go to the new connection.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::io::tcp::socket2::TcpKeepalive;
use redis::{Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};

/// How long a new connection may take to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long commands may all go unanswered before the connection is made
/// anew.
const STALL: Duration = Duration::from_secs(1);

/// How many unanswered commands, at least, over [`STALL`] make a rebuild
/// (one slow command alone does not).
const STALL_COMMANDS: u64 = 3;

/// The least time between two rebuilds.
const REBUILD_INTERVAL: Duration = Duration::from_secs(1);

/// The longest time between two rebuilds, however long answers stay away.
const MAX_REBUILD_INTERVAL: Duration = Duration::from_secs(30);

/// Idle time before the first TCP keepalive probe, and between probes.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// How long sent data may stay unacknowledged before the kernel fails the
/// connection (`TCP_USER_TIMEOUT`, Linux).
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
const USER_TIMEOUT: Duration = Duration::from_secs(10);

/// "None" in the atomics of [`Health`].
const NEVER: u64 = u64::MAX;

/// A connection to a Redis node or cluster. Cloning is cheap: clones share
/// the connection (and its replacement, after a rebuild).
#[derive(Clone)]
pub(crate) struct RedisLink {
    shared: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<Conn>,
    maker: Maker,
    health: Health,
}

/// One live connection.
#[derive(Clone)]
enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

/// How to make a connection again.
enum Maker {
    Node(redis::Client, ConnectionManagerConfig),
    Cluster(ClusterClient),
}

impl Maker {
    async fn make(&self) -> RedisResult<Conn> {
        match self {
            Self::Node(client, config) => Ok(Conn::Node(
                ConnectionManager::new_with_config(client.clone(), config.clone()).await?,
            )),
            Self::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
        }
    }
}

/// The TCP settings of every connection (see the module docs).
fn tcp_settings() -> TcpSettings {
    let keepalive = TcpKeepalive::new().with_time(KEEPALIVE);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "windows"
    ))]
    let keepalive = keepalive.with_interval(KEEPALIVE);
    let settings = TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(keepalive);
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let settings = settings.set_user_timeout(USER_TIMEOUT);
    settings
}

fn with_tcp_settings(url: &str) -> RedisResult<ConnectionInfo> {
    Ok(url.into_connection_info()?.set_tcp_settings(tcp_settings()))
}

impl RedisLink {
    /// Connects to the node at `url` (`redis://`, `rediss://`,
    /// `redis+unix://`), once, now: an unreachable node is an error here.
    /// Later losses are healed in the background.
    pub(crate) async fn connect(url: &str) -> RedisResult<Self> {
        let client = redis::Client::open(with_tcp_settings(url)?)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // The callers bound every command themselves; a timeout of the
            // manager's own would answer first with an error that hides the
            // silence from the stall watch.
            .set_response_timeout(None)
            // A few quick tries per loss; the next command after a failed
            // round starts another, so a node that comes back is found
            // again without a restart.
            .set_number_of_retries(3)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(500));
        let maker = Maker::Node(client, config);
        let conn = maker.make().await?;
        Ok(Self::from_parts(conn, maker))
    }

    /// Connects to the cluster that the nodes at `urls` (any of its nodes)
    /// belong to.
    pub(crate) async fn connect_cluster<I, U>(urls: I) -> RedisResult<Self>
    where
        I: IntoIterator<Item = U>,
        U: AsRef<str>,
    {
        let nodes = urls
            .into_iter()
            .map(|u| with_tcp_settings(u.as_ref()))
            .collect::<RedisResult<Vec<ConnectionInfo>>>()?;
        let client = ClusterClient::builder(nodes)
            .connection_timeout(CONNECT_TIMEOUT)
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(200)
            .build()?;
        let maker = Maker::Cluster(client);
        let conn = maker.make().await?;
        Ok(Self::from_parts(conn, maker))
    }

    fn from_parts(conn: Conn, maker: Maker) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(conn),
                maker,
                health: Health::new(),
            }),
        }
    }

    /// Runs `cmd`.
    pub(crate) async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        let mut conn = Conn::clone(&self.shared.current.load());
        let watch = Watch::new(self);
        let result = cmd.query_async(&mut conn).await;
        watch.done(&result);
        result
    }

    /// Runs `invocation` (EVALSHA, falling back to EVAL once).
    #[cfg_attr(not(feature = "client"), allow(dead_code))]
    pub(crate) async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        let mut conn = Conn::clone(&self.shared.current.load());
        let watch = Watch::new(self);
        let result = invocation.invoke_async(&mut conn).await;
        watch.done(&result);
        result
    }

    /// `"node"` or `"cluster"`, for `Debug`.
    pub(crate) fn kind(&self) -> &'static str {
        match **self.shared.current.load() {
            Conn::Node(_) => "node",
            Conn::Cluster(_) => "cluster",
        }
    }

    /// A command went unanswered (its caller gave up); makes the
    /// connection anew when that has been all for a while.
    fn unanswered(&self) {
        let now = self.shared.health.now_ms();
        if !self.shared.health.unanswered(now) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Outside a runtime (a drop at shutdown): nothing to run it on.
            self.shared.health.rebuilt();
            return;
        };
        let shared = self.shared.clone();
        tracing::warn!("Redis has answered no command for {STALL:?}: making the connection anew");
        // Whatever becomes of the task (it ends, or its runtime shuts down
        // and drops it), the next rebuild may start afterwards.
        let done = RebuildDone(shared.clone());
        runtime.spawn(async move {
            let _done = done;
            match tokio::time::timeout(CONNECT_TIMEOUT, shared.maker.make()).await {
                Ok(Ok(conn)) => {
                    shared.current.store(Arc::new(conn));
                    tracing::info!("a new Redis connection replaced the silent one");
                }
                Ok(Err(e)) => tracing::warn!(
                    error_kind = ?e.kind(),
                    "a new Redis connection could not be made; keeping the old one"
                ),
                Err(_) => tracing::warn!(
                    "a new Redis connection did not come up within {CONNECT_TIMEOUT:?}; \
                     keeping the old one"
                ),
            }
        });
    }
}

/// Ends a rebuild when dropped: when its task ends, or is dropped unrun.
struct RebuildDone(Arc<Shared>);

impl Drop for RebuildDone {
    fn drop(&mut self) {
        self.0.health.rebuilt();
    }
}

/// Whether commands are being answered, and when the connection was last
/// made anew: times in milliseconds since `start`, [`NEVER`] for none.
struct Health {
    start: Instant,
    /// When the first command of the current run of unanswered ones gave
    /// up.
    stall_since: AtomicU64,
    /// How many commands gave up unanswered in the current run.
    unanswered: AtomicU64,
    /// When the last rebuild started.
    last_rebuild: AtomicU64,
    /// The time the next rebuild waits after the last, in milliseconds:
    /// doubled by each rebuild, back to [`REBUILD_INTERVAL`] at an answer.
    interval_ms: AtomicU64,
    rebuilding: AtomicBool,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(NEVER)
}

impl Health {
    fn new() -> Self {
        Self {
            start: crate::clock::now(),
            stall_since: AtomicU64::new(NEVER),
            unanswered: AtomicU64::new(0),
            last_rebuild: AtomicU64::new(NEVER),
            interval_ms: AtomicU64::new(millis(REBUILD_INTERVAL)),
            rebuilding: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(
            crate::clock::now()
                .saturating_duration_since(self.start)
                .as_millis(),
        )
        .unwrap_or(NEVER - 1)
    }

    /// Redis answered a command: the run of unanswered ones is over.
    fn answered(&self) {
        let base = millis(REBUILD_INTERVAL);
        if self.interval_ms.load(Ordering::Relaxed) != base {
            self.interval_ms.store(base, Ordering::Relaxed);
        }
        if self.stall_since.load(Ordering::Relaxed) != NEVER {
            self.stall_since.store(NEVER, Ordering::Relaxed);
            self.unanswered.store(0, Ordering::Relaxed);
        }
    }

    /// A command gave up unanswered at `now`; `true` when a rebuild must
    /// start (and is then marked as started: the caller starts it and
    /// calls [`rebuilt`](Self::rebuilt) when it is over).
    fn unanswered(&self, now: u64) -> bool {
        let since = match self.stall_since.compare_exchange(
            NEVER,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => now,
            Err(since) => since,
        };
        let count = self
            .unanswered
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if now.saturating_sub(since) < millis(STALL) || count < STALL_COMMANDS {
            return false;
        }
        let last = self.last_rebuild.load(Ordering::Relaxed);
        let interval_ms = self.interval_ms.load(Ordering::Relaxed);
        if last != NEVER && now.saturating_sub(last) < interval_ms {
            return false;
        }
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.last_rebuild.store(now, Ordering::Relaxed);
        // If this one does not bring answers back, the next waits longer.
        self.interval_ms.store(
            interval_ms
                .saturating_mul(2)
                .min(millis(MAX_REBUILD_INTERVAL)),
            Ordering::Relaxed,
        );
        // A new run: the next rebuild needs another stall of its own.
        self.stall_since.store(NEVER, Ordering::Relaxed);
        self.unanswered.store(0, Ordering::Relaxed);
        true
    }

    /// The rebuild is over, done or not.
    fn rebuilt(&self) {
        self.rebuilding.store(false, Ordering::Release);
    }
}

/// Watches one command: answered (any reply from Redis, an error reply
/// included), or dropped before an answer (its caller's timeout).
struct Watch<'a> {
    link: &'a RedisLink,
    finished: bool,
}

impl<'a> Watch<'a> {
    fn new(link: &'a RedisLink) -> Self {
        Self {
            link,
            finished: false,
        }
    }

    fn done<T>(mut self, result: &RedisResult<T>) {
        self.finished = true;
        match result {
            // An error reply came over the connection: it is alive.
            Ok(_) => self.link.shared.health.answered(),
            Err(e) if e.code().is_some() => self.link.shared.health.answered(),
            // The client's own response timeout (the cluster client keeps
            // one): no answer, as when the caller's timeout drops the
            // command.
            Err(e) if e.is_timeout() => self.link.unanswered(),
            // Lost connections are the connection manager's to heal.
            Err(_) => {}
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.link.unanswered();
        }
    }
}

impl fmt::Debug for RedisLink {
    // No URL: it may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisLink").field(&self.kind()).finish()
    }
}

impl ConnectionLike for Conn {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuild_after_a_second_of_only_unanswered_commands() {
        let health = Health::new();
        // Unanswered commands, 50 ms apart: no rebuild before a full
        // second of them.
        let mut rebuilds = Vec::new();
        for t in (0..=1_000).step_by(50) {
            if health.unanswered(t) {
                rebuilds.push(t);
            }
        }
        assert_eq!(rebuilds, [1_000]);
        // While it runs, and for a second after it started, no other.
        for t in (1_050..=2_500).step_by(50) {
            assert!(!health.unanswered(t), "{t}");
        }
        health.rebuilt();
        // Still silent: each rebuild that brought no answer doubles the
        // wait for the next (2 s, 4 s, 8 s, 16 s, then 30 s at most),
        // however many commands give up meanwhile.
        let mut rebuilds = Vec::new();
        for t in (1_050..=120_000).step_by(50) {
            if health.unanswered(t) {
                rebuilds.push(t);
                health.rebuilt();
            }
        }
        assert_eq!(rebuilds, [3_000, 7_000, 15_000, 31_000, 61_000, 91_000]);
        // An answer: the next stall is rebuilt after a second again.
        health.answered();
        let mut after = None;
        for t in (120_050..=125_000).step_by(50) {
            if health.unanswered(t) {
                after = Some(t);
                break;
            }
        }
        assert_eq!(after, Some(121_050));
    }

    #[test]
    fn an_answer_ends_the_stall_and_one_slow_command_is_not_one() {
        let health = Health::new();
        assert!(!health.unanswered(0));
        assert!(!health.unanswered(500));
        health.answered();
        // A new run: from 900, not from 0.
        assert!(!health.unanswered(900));
        assert!(!health.unanswered(1_500));
        assert!(!health.unanswered(1_899));
        // Two commands a second apart are not enough.
        let lone = Health::new();
        assert!(!lone.unanswered(0));
        assert!(!lone.unanswered(5_000));
        assert!(lone.unanswered(5_001));
    }

    #[test]
    fn connections_get_keepalive_and_nodelay() {
        let settings = tcp_settings();
        assert!(settings.nodelay());
        assert!(settings.keepalive().is_some());
        let info = with_tcp_settings("redis://127.0.0.1:6379").unwrap();
        assert!(info.tcp_settings().nodelay());
    }
}
