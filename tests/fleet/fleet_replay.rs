//! DPoP replay detection shared by a fleet through a real Redis: a proof
//! accepted by one server is refused by another; Redis killed under
//! traffic fails closed (503) and the servers recover by themselves when it
//! is back on the same port; Redis slower than the timeout is down; and the
//! same against a three-node Redis Cluster, a node of it killed under
//! traffic included.
#![cfg(all(feature = "test-util", feature = "redis"))]

use crate::support;
use crate::support::dpop;
use crate::support::redis as redis_support;
use std::collections::HashMap;
use std::time::Duration;

use dpop::{Answer, Call, layer, send, setup, start, uri};
use http::{Method, StatusCode};
use redis_support::{RedisCluster, RedisServer};
use support::{HttpsClient, https_client};
use tower_token_binding::proof::dpop::DpopVerifier;
use tower_token_binding::replay::RedisReplayStore;

/// Every replica is addressed by clients as this origin (a load balancer
/// in front), so one proof is valid at any of them.
const ORIGIN: &str = "https://api.example.com";
const PUBLIC: &str = "https://api.example.com/whoami";

struct Fleet {
    s: dpop::Setup,
    apis: Vec<String>,
    client: HttpsClient,
}

impl Fleet {
    /// Two servers, each with its own connection to the store.
    async fn start(stores: [RedisReplayStore; 2]) -> Self {
        let s = setup().await;
        let mut apis = Vec::new();
        for store in stores {
            let layer = layer(&s)
                .public_origin(ORIGIN)
                .accept_dpop(DpopVerifier::new())
                .replay_store(store);
            apis.push(start(&s.pki, layer).await);
        }
        let client = https_client(&s.pki, None);
        Self { s, apis, client }
    }

    fn proof(&self) -> String {
        self.s
            .proofs
            .proof(&Method::GET, &uri(PUBLIC), Some(&self.s.token))
            .unwrap()
    }

    async fn send(&self, server: usize, proof: &str) -> Answer {
        let call = Call::dpop(&self.apis[server], &self.s.token, proof.to_owned());
        send(&self.client, &call).await
    }
}

fn is_replay(answer: &Answer) -> bool {
    answer.status == StatusCode::UNAUTHORIZED && answer.challenge.contains("invalid_dpop_proof")
}

async fn accepted_once_then_refused_everywhere(fleet: &Fleet, proofs: usize) {
    for _ in 0..proofs {
        let proof = fleet.proof();
        let first = fleet.send(0, &proof).await;
        assert_eq!(first.status, StatusCode::OK, "{first:?}");
        for server in [1, 0] {
            let again = fleet.send(server, &proof).await;
            assert!(is_replay(&again), "a replay at server {server}: {again:?}");
        }
    }
}

pub(crate) async fn a_proof_accepted_by_one_server_is_refused_by_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let stores = [
        RedisReplayStore::connect(&redis.url()).await.unwrap(),
        RedisReplayStore::connect(&redis.url())
            .await
            .unwrap()
            .prefix("ttb:replay:")
            .unwrap(),
    ];
    let fleet = Fleet::start(stores).await;
    redis.reset_stats();
    accepted_once_then_refused_everywhere(&fleet, 5).await;

    // One SET per proof checked, nothing else; keys are digests in a hash
    // tag, and nothing of the proof or the token reaches Redis.
    let calls = redis.command_calls();
    assert_eq!(calls.get("set"), Some(&15), "{calls:?}");
    let others: u64 = calls
        .iter()
        .filter(|(name, _)| {
            name.as_str() != "set" && !name.starts_with("config") && !name.starts_with("info")
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(others, 0, "{calls:?}");
    let keys = redis.keys();
    assert_eq!(keys.len(), 5, "{keys:?}");
    for key in &keys {
        assert!(
            key.starts_with("ttb:replay:{") && key.ends_with('}'),
            "{key}"
        );
        assert_eq!(key.len(), "ttb:replay:{}".len() + 43, "{key}");
    }
    let ttl: i64 = redis.command(&["PTTL", &keys[0]]).parse().unwrap();
    assert!(ttl > 0, "entries expire by themselves: {ttl}");
}

/// One proof sent three times, to both servers: the answers.
async fn round(fleet: &Fleet) -> Vec<Answer> {
    let proof = fleet.proof();
    let mut answers = Vec::new();
    for server in [0, 1, 0] {
        answers.push(fleet.send(server, &proof).await);
    }
    answers
}

/// Every answer is an acceptance, a refused replay or a 503 (with
/// `Retry-After`, the handler not run); the proof was accepted at most
/// once. Returns how many times it was accepted (0 or 1).
fn check(phase: &str, answers: Vec<Answer>, seen: &mut HashMap<u16, usize>) -> usize {
    let accepted = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    assert!(
        accepted <= 1,
        "{phase}: a proof accepted twice: {answers:?}"
    );
    for a in &answers {
        assert!(
            a.status == StatusCode::OK
                || is_replay(a)
                || (a.status == StatusCode::SERVICE_UNAVAILABLE
                    && a.retry_after.is_some()
                    // Not the handler's: empty, or the class of fault.
                    && (a.body.is_empty() || a.body == "the replay check is unavailable\n")),
            "{phase}: {a:?}"
        );
        *seen.entry(a.status.as_u16()).or_default() += 1;
    }
    accepted
}

pub(crate) async fn redis_killed_under_traffic_fails_closed_and_recovers_on_the_same_port() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let stores = [
        RedisReplayStore::connect(&redis.url()).await.unwrap(),
        RedisReplayStore::connect(&redis.url()).await.unwrap(),
    ];
    let fleet = Fleet::start(stores).await;
    // status -> count, over every request.
    let mut seen: HashMap<u16, usize> = HashMap::new();

    for _ in 0..20 {
        let answers = round(&fleet).await;
        assert_eq!(check("up", answers, &mut seen), 1);
    }
    redis.kill();
    let mut accepted_while_down = 0;
    for _ in 0..20 {
        let answers = round(&fleet).await;
        accepted_while_down += check("down", answers, &mut seen);
    }
    assert_eq!(
        accepted_while_down, 0,
        "nothing is accepted while Redis is down"
    );
    assert!(seen.get(&503).copied().unwrap_or(0) >= 60, "{seen:?}");

    redis.restart();
    // The servers were not touched: their connections heal by themselves.
    // Bounded: the reconnection runs in the background.
    let mut recovered = false;
    for _ in 0..200 {
        let answers = round(&fleet).await;
        if check("restarted", answers, &mut seen) == 1 {
            recovered = true;
            break;
        }
        support::advance(Duration::from_millis(50)).await;
    }
    assert!(
        recovered,
        "no proof accepted after Redis came back: {seen:?}"
    );
    for _ in 0..20 {
        let answers = round(&fleet).await;
        assert_eq!(check("after", answers, &mut seen), 1);
    }
}

pub(crate) async fn redis_slower_than_the_timeout_is_down() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = || async {
        RedisReplayStore::connect(&redis.url())
            .await
            .unwrap()
            .timeout(Duration::from_millis(250))
    };
    let fleet = Fleet::start([store().await, store().await]).await;
    accepted_once_then_refused_everywhere(&fleet, 2).await;

    redis.pause(3_000);
    for server in [0, 1] {
        let answer = fleet.send(server, &fleet.proof()).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        assert!(answer.retry_after.is_some(), "{answer:?}");
    }
    redis.unpause();
    accepted_once_then_refused_everywhere(&fleet, 2).await;
}

pub(crate) async fn the_same_against_a_three_node_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let stores = [
        RedisReplayStore::connect_cluster(cluster.urls())
            .await
            .unwrap(),
        // Any one node is enough to find the others.
        RedisReplayStore::connect_cluster(&cluster.urls()[2..])
            .await
            .unwrap(),
    ];
    let fleet = Fleet::start(stores).await;
    accepted_once_then_refused_everywhere(&fleet, 30).await;
    // Each proof its own slot: the keys spread over the nodes.
    let per_node = cluster.keys_per_node();
    assert_eq!(per_node.iter().sum::<usize>(), 30, "{per_node:?}");
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "{per_node:?}"
    );
}

pub(crate) async fn a_cluster_node_killed_under_traffic_fails_closed_and_recovers() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let stores = [
        RedisReplayStore::connect_cluster(cluster.urls())
            .await
            .unwrap(),
        RedisReplayStore::connect_cluster(cluster.urls())
            .await
            .unwrap(),
    ];
    let fleet = Fleet::start(stores).await;
    let mut seen: HashMap<u16, usize> = HashMap::new();
    for _ in 0..10 {
        let answers = round(&fleet).await;
        assert_eq!(check("up", answers, &mut seen), 1);
    }

    // One master gone, no replica to take over: its slots have no server.
    // Proofs whose keys it held cannot be checked, so they are refused
    // (503); the others may pass until the cluster marks itself down. No
    // proof is ever accepted twice.
    cluster.kill(1);
    seen.clear();
    for _ in 0..60 {
        check("node down", round(&fleet).await, &mut seen);
    }
    assert!(
        seen.get(&503).copied().unwrap_or(0) > 0,
        "no proof was refused with a node down: {seen:?}"
    );

    // Back on its port with its slots: the servers heal by themselves.
    cluster.restart(1);
    let mut recovered = 0;
    for _ in 0..400 {
        if check("restarted", round(&fleet).await, &mut seen) == 1 {
            recovered += 1;
            if recovered == 10 {
                break;
            }
        } else {
            recovered = 0;
            support::advance(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        recovered, 10,
        "no steady acceptance after the node came back: {seen:?}"
    );
}

/// An expiry already past is refused without writing anything, and a new
/// proof's key is kept for its time left plus the margin, relatively (`PX`),
/// so it does not depend on Redis' clock.
pub(crate) async fn a_past_expiry_is_refused_and_keys_expire_relatively() {
    use std::time::SystemTime;
    use tower_token_binding::replay::{ReplayKey, ReplayStore as _};

    let Some(redis) = RedisServer::start() else {
        return;
    };
    let store = RedisReplayStore::connect(&redis.url()).await.unwrap();
    redis.reset_stats();
    let key = ReplayKey::from_parts("test", &[b"past"]);
    for past in [Duration::from_secs(1), Duration::from_secs(3600)] {
        let answer = store
            .insert_if_absent(key, SystemTime::now() - past)
            .await
            .unwrap();
        assert!(!answer, "a proof past its expiry is never accepted");
    }
    assert!(redis.keys().is_empty(), "{:?}", redis.keys());
    assert_eq!(redis.command_calls().get("set").copied().unwrap_or(0), 0);

    let fresh = ReplayKey::from_parts("test", &[b"fresh"]);
    let expires_at = SystemTime::now() + Duration::from_secs(60);
    assert!(store.insert_if_absent(fresh, expires_at).await.unwrap());
    assert!(!store.insert_if_absent(fresh, expires_at).await.unwrap());
    let ttl: u64 = redis
        .command(&["PTTL", &store.redis_key(&fresh)])
        .trim()
        .parse()
        .unwrap();
    let margin = RedisReplayStore::DEFAULT_EXPIRY_MARGIN.as_millis() as u64;
    assert!(ttl > 60_000 && ttl <= 60_000 + margin, "{ttl}");
}

/// A loopback TCP proxy in front of Redis that can go silent: while
/// blackholed, it forwards nothing and keeps every socket open (a
/// partition without a reset); a connection that saw the blackhole stays
/// silent for good, and only connections made after it ends are forwarded.
struct SilentProxy {
    port: u16,
    blackhole: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentProxy {
    async fn start(upstream: u16) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let blackhole = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (hole, count) = (blackhole.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let hole = hole.clone();
                tokio::spawn(async move {
                    let (mut from_client, mut to_client) = client.into_split();
                    let mut buf = vec![0u8; 16 * 1024];
                    if hole.load(Ordering::SeqCst) {
                        // Never forwarded: read and drop, socket kept.
                        while let Ok(n) = from_client.read(&mut buf).await {
                            if n == 0 {
                                return;
                            }
                        }
                        return;
                    }
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (mut from_server, mut to_server) = server.into_split();
                    let dead = Arc::new(AtomicBool::new(false));
                    let (hole2, dead2) = (hole.clone(), dead.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n) = from_server.read(&mut buf).await {
                            if n == 0 {
                                return;
                            }
                            if hole2.load(Ordering::SeqCst) {
                                dead2.store(true, Ordering::SeqCst);
                            }
                            if dead2.load(Ordering::SeqCst) {
                                continue;
                            }
                            if to_client.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                    while let Ok(n) = from_client.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        if hole.load(Ordering::SeqCst) {
                            dead.store(true, Ordering::SeqCst);
                        }
                        if dead.load(Ordering::SeqCst) {
                            continue;
                        }
                        if to_server.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            port,
            blackhole,
            connections,
            task,
        }
    }

    fn set_blackhole(&self, on: bool) {
        self.blackhole
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SilentProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection gone silent (no reset, no error, only timeouts) is made
/// anew by the store itself: after the partition ends, proofs are checked
/// again within a bounded number of rounds, without restarting anything,
/// and with far fewer new connections than timeouts (no reconnect storm).
/// A proof accepted before the partition is still refused after it.
pub(crate) async fn a_silent_connection_is_replaced() {
    use std::time::SystemTime;
    use tower_token_binding::replay::{ReplayKey, ReplayStore as _};

    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proxy = SilentProxy::start(redis.port()).await;
    let store = RedisReplayStore::connect(&format!("redis://127.0.0.1:{}", proxy.port))
        .await
        .unwrap()
        .timeout(Duration::from_millis(250));
    let later = || SystemTime::now() + Duration::from_secs(60);
    let key = |n: usize| ReplayKey::from_parts("silent", &[&n.to_be_bytes()]);
    assert!(store.insert_if_absent(key(0), later()).await.unwrap());

    proxy.set_blackhole(true);
    let mut failed = 0;
    for n in 1..=10 {
        let answer = store.insert_if_absent(key(n), later()).await;
        assert!(answer.unwrap_err().is_unavailable());
        failed += 1;
        support::advance(Duration::from_millis(100)).await;
    }
    proxy.set_blackhole(false);

    const ROUNDS: usize = 150;
    let mut recovered_after = None;
    for round in 0..ROUNDS {
        match store.insert_if_absent(key(100 + round), later()).await {
            Ok(fresh) => {
                assert!(fresh, "a new key");
                recovered_after = Some(round);
                break;
            }
            Err(e) => {
                assert!(e.is_unavailable(), "{e}");
                failed += 1;
            }
        }
        support::advance(Duration::from_millis(100)).await;
    }
    let rounds = recovered_after.expect("the store never recovered from the silent connection");
    eprintln!(
        "recovered after {rounds} rounds; {failed} requests failed; {} connections",
        proxy.connections()
    );
    // Proofs seen before the partition are still replays.
    assert!(!store.insert_if_absent(key(0), later()).await.unwrap());
    // Each rebuild takes at least three unanswered commands.
    assert!(
        proxy.connections() <= 2 + failed / 3,
        "{} connections for {failed} failures",
        proxy.connections()
    );
}
