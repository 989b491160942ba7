//! Tokens shared by a fleet of clients through a real Redis, under each
//! process's in-memory cache: three client stacks (separate in-memory
//! caches, one certificate) make 300 concurrent cold calls and the issuer
//! issues one token; Redis killed during 2,000 calls fails none of them
//! (the fetches without it are counted); garbage in Redis is a miss;
//! bearer tokens are shared only when allowed; DPoP-bound tokens are
//! shared by processes with the same DPoP key only; and the same against a
//! three-node Redis Cluster, a node of it killed included. What may be
//! shared and how the lock behaves: `tests/fleet/fleet_token_locks.rs`.
#![cfg(all(feature = "test-util", feature = "redis"))]

use crate::support;
use crate::support::dpop;
use crate::support::fleet_clients;
use crate::support::redis as redis_support;
use fleet_clients::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use http::StatusCode;
use redis_support::{RedisCluster, RedisServer};
use tower_token_binding::binding::Scheme;
use tower_token_binding::proof::dpop::DpopVerifier;
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::{RedisTokenCache, SharedCachePolicy, Token, TokenCache};
use tower_token_binding::{BoundClient, CnfValidationLayer};

pub(crate) async fn three_stacks_300_cold_calls_one_fetch_at_the_issuer() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let world = World::start().await;
    let shared = [
        connect(&redis.url()).await,
        connect(&redis.url()).await,
        connect(&redis.url()).await,
    ];
    one_fetch_for_300_cold_calls(&world, shared).await;

    // What Redis holds: the token under a digest, its lock released; the
    // token, its type, expiry and binding, no key material.
    let keys = redis.keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("ttb:token:{") && keys[0].ends_with('}'));
    let value = redis.command(&["GET", &keys[0]]);
    let entry: serde_json::Value = serde_json::from_str(&value).unwrap();
    assert_eq!(entry["binding"], "x5t#S256");
    assert_eq!(entry["token_type"], "Bearer");
    assert!(!value.contains("PRIVATE") && !value.contains(world.cert.key_pem()));
    let ttl: i64 = redis.command(&["PTTL", &keys[0]]).parse().unwrap();
    // Until the refresh point: 70 % of an hour, at most.
    assert!(ttl > 0 && ttl <= 2_520_000, "{ttl}");
}

pub(crate) async fn redis_killed_during_2000_calls_fails_none() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let world = World::start().await;
    let mut shared = Vec::new();
    for _ in 0..3 {
        shared.push(connect(&redis.url()).await);
    }
    let stacks: Vec<BoundClient> = shared.iter().map(|s| world.stack(s.clone())).collect();
    let stats = || {
        sum(&shared
            .iter()
            .map(RedisTokenCache::stats)
            .collect::<Vec<_>>())
    };

    let mut failed = 0;
    let mut direct_while_down = 0;
    // 20 rounds of 100 calls (34 + 33 + 33): 2,000. Before each, one
    // stack's token is dropped (as after a 401), so that tokens are
    // fetched while Redis is up, down, and back.
    for round in 0..20 {
        if round == 6 {
            redis.kill();
        }
        if round == 14 {
            redis.restart();
        }
        let stack = &stacks[round % 3];
        if round > 0 {
            let cache = stack.cache().unwrap();
            let current = cache.get().await.unwrap();
            assert!(cache.invalidate(current.token().access_token()));
        }
        let before = stats().fetched_directly;
        let per_stack = [34, 33, 33];
        let all = stacks.iter().zip(per_stack).flat_map(|(stack, n)| {
            let api = &world.api;
            (0..n).map(move |_| async move { stack.get(api).await })
        });
        for result in join_all(all).await {
            match result {
                Ok(response) if response.status() == StatusCode::OK => {}
                other => {
                    eprintln!("failed call: {:?}", other.map(|r| r.status()));
                    failed += 1;
                }
            }
        }
        if (6..14).contains(&round) {
            direct_while_down += stats().fetched_directly - before;
        }
    }
    assert_eq!(failed, 0, "a Redis outage fails no call");
    let stats = stats();
    // Every fetch is counted at the issuer and in the caches.
    assert_eq!(world.issuer.tokens_issued() as u64, fetches(&stacks));
    assert_eq!(
        fetches(&stacks),
        stats.fetched_under_lock + stats.fetched_directly,
        "{stats:?}"
    );
    // While Redis was down, each dropped token was fetched directly.
    assert_eq!(direct_while_down, 8, "{stats:?}");
    assert!(stats.unavailable >= 8, "{stats:?}");
    // Back up: tokens are shared again without restarting anything.
    assert!(stats.fetched_under_lock >= 2, "{stats:?}");
    assert_eq!(redis.keys().len(), 1, "{:?}", redis.keys());
}

pub(crate) async fn garbage_in_redis_is_a_miss() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let world = World::start().await;
    let first = connect(&redis.url()).await;
    let stack = world.stack(first.clone());
    assert_eq!(calls(&world, &[stack], 1).await, 0);
    let key = redis.keys().pop().unwrap();

    for garbage in ["not json", "{\"v\":1}", "[1,2,3]"] {
        assert_eq!(redis.command(&["SET", &key, garbage]), "OK");
        let shared = connect(&redis.url()).await;
        let before = world.issuer.tokens_issued();
        assert_eq!(calls(&world, &[world.stack(shared.clone())], 5).await, 0);
        assert_eq!(world.issuer.tokens_issued(), before + 1);
        let stats = shared.stats();
        assert_eq!((stats.unusable, stats.stored), (2, 1), "{stats:?}");
    }
    // Another type under the key: a miss too, replaced.
    redis.command(&["DEL", &key]);
    redis.command(&["HSET", &key, "a", "b"]);
    let shared = connect(&redis.url()).await;
    assert_eq!(calls(&world, &[world.stack(shared.clone())], 5).await, 0);
    assert_eq!(shared.stats().stored, 1, "{:?}", shared.stats());
}

/// A value over the size limit is garbage, never parsed: a miss, the
/// token fetched again and the value replaced; no call fails. (Here a
/// valid entry padded with 1 MiB of JSON whitespace, which a parser would
/// accept.)
pub(crate) async fn a_huge_value_in_redis_is_a_miss() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let world = World::start().await;
    let first = connect(&redis.url()).await;
    assert_eq!(calls(&world, &[world.stack(first)], 1).await, 0);
    let key = redis.keys().pop().unwrap();
    let entry = redis.command(&["GET", &key]);
    assert!(entry.starts_with('{'), "a token entry is JSON");
    let huge = format!("{entry}{}", " ".repeat(1 << 20));
    assert!(huge.len() > RedisTokenCache::MAX_VALUE_LEN);
    assert_eq!(redis.command(&["SET", &key, &huge]), "OK");

    let shared = connect(&redis.url()).await;
    let before = world.issuer.tokens_issued();
    assert_eq!(calls(&world, &[world.stack(shared.clone())], 5).await, 0);
    assert_eq!(world.issuer.tokens_issued(), before + 1);
    let stats = shared.stats();
    assert_eq!((stats.hits, stats.stored), (0, 1), "{stats:?}");
    assert!(stats.unusable >= 1, "{stats:?}");
    let replaced = redis.command(&["GET", &key]);
    assert!(replaced.len() <= RedisTokenCache::MAX_VALUE_LEN, "replaced");
}

pub(crate) async fn bearer_tokens_are_shared_only_when_allowed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let asked = Arc::new(AtomicUsize::new(0));
    let cache_with = |shared: RedisTokenCache| {
        let asked = asked.clone();
        TokenCache::builder().shared(shared).build(move || {
            asked.fetch_add(1, Ordering::SeqCst);
            async { Ok(Token::new("a bearer token").expires_in(Duration::from_secs(600))) }
        })
    };
    let default = connect(&redis.url()).await;
    cache_with(default.clone()).get().await.unwrap();
    cache_with(default.clone()).get().await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(default.stats().stored, 0);
    assert!(redis.keys().is_empty());

    let allowed = RedisTokenCache::connect(&redis.url())
        .await
        .unwrap()
        .policy(SharedCachePolicy::default().allow_bearer_tokens());
    cache_with(allowed.clone()).get().await.unwrap();
    let token = cache_with(allowed.clone()).get().await.unwrap();
    assert_eq!(token.token().access_token().secret(), "a bearer token");
    assert_eq!(
        asked.load(Ordering::SeqCst),
        3,
        "the second process used the shared one"
    );
    assert_eq!((allowed.stats().stored, allowed.stats().hits), (1, 1));
}

pub(crate) async fn the_same_against_a_three_node_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let world = World::start().await;
    let shared = [
        connect_cluster(&cluster.urls()).await,
        connect_cluster(&cluster.urls()).await,
        // Any node is enough to find the others.
        connect_cluster(&cluster.urls()[1..]).await,
    ];
    one_fetch_for_300_cold_calls(&world, shared).await;
    assert_eq!(cluster.keys_per_node().iter().sum::<usize>(), 1);
}

pub(crate) async fn dpop_bound_tokens_are_shared_by_processes_with_the_same_key_only() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", "s3cret")
        .start(&pki)
        .await
        .unwrap();
    let layer = CnfValidationLayer::new(support::jwt_validator(
        &pki,
        &issuer,
        Duration::from_secs(1),
    ))
    .accept_dpop(DpopVerifier::new());
    let api = dpop::start(&pki, layer).await;
    // Every replica loads the same DPoP key (a file, in practice); the
    // secret authenticates, no certificate.
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let stack = |key: ProofKey, shared: RedisTokenCache| {
        BoundClient::builder()
            .token_endpoint(issuer.token_endpoint())
            .client_id("svc")
            .client_secret_basic("s3cret")
            .scheme(Scheme::Dpop)
            .dpop_key(key)
            .root_store(pki.root_store())
            .shared_token_cache(shared)
            .build()
            .unwrap()
    };
    let mut stacks = Vec::new();
    for _ in 0..3 {
        stacks.push(stack(key.clone(), connect(&redis.url()).await));
    }
    let all = stacks.iter().flat_map(|stack| {
        let api = &api;
        (0..50).map(move |_| async move { stack.get(api).await.unwrap() })
    });
    let expected = format!("dpop {}", stacks[0].dpop_proofs().unwrap().thumbprint());
    for response in join_all(all).await {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), expected.as_bytes());
    }
    assert_eq!(
        issuer.tokens_issued(),
        1,
        "one DPoP-bound token for the three"
    );
    let value = redis.command(&["GET", &redis.keys()[0]]);
    assert!(value.contains("\"binding\":\"jkt\""), "{value}");
    assert!(!value.contains("\"d\""), "no private key: {value}");

    // Another key is another cache entry: its own token.
    let other = stack(
        ProofKey::generate(Algorithm::Es256).unwrap(),
        connect(&redis.url()).await,
    );
    assert_eq!(other.get(&api).await.unwrap().status(), StatusCode::OK);
    assert_eq!(issuer.tokens_issued(), 2);
    assert_eq!(redis.keys().len(), 2);
}

pub(crate) async fn a_cluster_node_killed_fails_no_call() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let world = World::start().await;
    let mut shared = Vec::new();
    for _ in 0..3 {
        shared.push(connect_cluster(&cluster.urls()).await);
    }
    let stacks: Vec<BoundClient> = shared.iter().map(|s| world.stack(s.clone())).collect();
    let stats = || {
        sum(&shared
            .iter()
            .map(RedisTokenCache::stats)
            .collect::<Vec<_>>())
    };
    // Drops one stack's token (as after a 401), then 30 calls per stack.
    let round = |i: usize| {
        let stacks = &stacks;
        let world = &world;
        async move {
            let cache = stacks[i % 3].cache().unwrap();
            if let Ok(current) = cache.get().await {
                cache.invalidate(current.token().access_token());
            }
            calls(world, stacks, 30).await
        }
    };

    assert_eq!(calls(&world, &stacks, 30).await, 0);
    assert_eq!(world.issuer.tokens_issued(), 1);
    // The node that holds the token's key (and its lock's: one hash tag).
    let holder = cluster
        .keys_per_node()
        .iter()
        .position(|n| *n == 1)
        .unwrap();

    cluster.kill(holder);
    let mut failed = 0;
    for i in 0..6 {
        failed += round(i).await;
    }
    assert_eq!(failed, 0, "a cluster node down fails no call");
    let down = stats();
    assert!(down.fetched_directly >= 6, "{down:?}");

    cluster.restart(holder);
    for i in 0..6 {
        failed += round(i).await;
    }
    assert_eq!(failed, 0);
    let up = stats();
    // Back: tokens are shared through the cluster again, with nothing
    // restarted on the client side.
    assert!(up.fetched_under_lock > down.fetched_under_lock, "{up:?}");
    assert_eq!(world.issuer.tokens_issued() as u64, fetches(&stacks));
}
