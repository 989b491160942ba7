//! Introspection answers shared by a fleet through a real Redis, under each
//! replica's in-memory answers: two validators (two replicas, separate
//! memories) sharing one Redis ask the issuer once per token, active or
//! not; the binding is still checked on every request; Redis killed, the
//! replicas ask the endpoint (counted) and no request fails, and so when
//! it is slower than the timeout; garbage in
//! Redis is a miss; neither keys nor values hold the token; and the same
//! against a three-node Redis Cluster.
#![cfg(all(feature = "test-util", feature = "redis"))]

use crate::support;
use crate::support::introspection;
use crate::support::redis as redis_support;
use std::time::Duration;

use http::StatusCode;
use introspection::{Setup, assert_invalid_token, bearer, setup, start};
use redis_support::{RedisCluster, RedisServer};
use support::https_client;
use tower_token_binding::token::{RedisCacheStats, RedisTokenCache, SharedCachePolicy};
use tower_token_binding::validation::{
    CnfValidationLayer, IntrospectionValidator, TokenErrorKind, ValidateToken,
};

const PREFIX: &str = "ttb:introspection:";

/// A connection of one replica. Commands get 2 s rather than the default
/// 100 ms: these tests count calls, and a debug build on a busy machine
/// can be slow to poll an answer; a timeout would be a (counted, harmless)
/// extra call.
async fn connect(url: &str) -> RedisTokenCache {
    RedisTokenCache::connect(url)
        .await
        .unwrap()
        .prefix(PREFIX)
        .unwrap()
        .policy(SharedCachePolicy::default().shared_cache_timeout(Duration::from_secs(2)))
}

/// One replica's validator: its own memory, the shared cache given.
fn replica(s: &Setup, shared: &RedisTokenCache) -> IntrospectionValidator {
    s.validator()
        .shared_cache(shared.clone())
        .shared_cache_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// Asserts that no key and no value in `redis` holds `token`; returns the
/// keys.
fn assert_token_absent(redis: &RedisServer, token: &str) -> Vec<String> {
    let keys = redis.keys();
    for key in &keys {
        assert!(key.starts_with(&format!("{PREFIX}{{")), "{key}");
        assert!(!key.contains(token), "the token in a key");
        let value = redis.command(&["GET", key]);
        assert!(!value.contains(token), "the token in a value");
    }
    keys
}

fn stats(hits: u64, misses: u64, unusable: u64, stored: u64) -> (u64, u64, u64, u64) {
    (hits, misses, unusable, stored)
}

fn of(s: RedisCacheStats) -> (u64, u64, u64, u64) {
    (s.hits, s.misses, s.unusable, s.stored)
}

pub(crate) async fn two_replicas_ask_the_issuer_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = setup().await;
    let (first, second) = (connect(&redis.url()).await, connect(&redis.url()).await);
    let one = replica(&s, &first);
    let two = replica(&s, &second);
    let token = s.bound_to_client();

    let a = one.validate(&token).await.unwrap();
    let b = two.validate(&token).await.unwrap();
    assert_eq!(a.subject(), b.subject());
    assert_eq!(a.claims(), b.claims());
    assert_eq!(s.issuer.introspection_calls(), 1);
    assert_eq!(of(first.stats()), stats(0, 1, 0, 1));
    assert_eq!(of(second.stats()), stats(1, 0, 0, 0));

    // The second replica remembers it: no more Redis lookups.
    two.validate(&token).await.unwrap();
    assert_eq!(second.stats().hits, 1);

    let keys = assert_token_absent(&redis, &token);
    assert_eq!(keys.len(), 1);
    let ttl: i64 = redis.command(&["PTTL", &keys[0]]).parse().unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");

    // The binding is checked on every request by the replica that got the
    // answer from Redis.
    let api = start(&s.pki, CnfValidationLayer::new(replica(&s, &second))).await;
    let answer = bearer(&https_client(&s.pki, Some(&s.client)), &api, &token).await;
    assert_eq!(answer.status, StatusCode::OK);
    let other = s
        .pki
        .client_cert("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let answer = bearer(&https_client(&s.pki, Some(&other)), &api, &token).await;
    assert_invalid_token(&answer, "bound to a different client certificate");
    assert_eq!(s.issuer.introspection_calls(), 1);
}

pub(crate) async fn inactive_answers_are_shared_briefly() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = setup().await;
    let (first, second) = (connect(&redis.url()).await, connect(&redis.url()).await);
    let one = replica(&s, &first);
    let two = replica(&s, &second);

    let revoked = s.bound_to_client();
    assert!(s.issuer.revoke(&revoked));
    for token in [revoked.as_str(), "junk-token-nobody-issued"] {
        let before = s.issuer.introspection_calls();
        for validator in [&one, &two, &two] {
            let error = validator.validate(token).await.unwrap_err();
            assert_eq!(error.kind(), TokenErrorKind::Inactive);
        }
        assert_eq!(s.issuer.introspection_calls(), before + 1);
        for key in assert_token_absent(&redis, token) {
            let ttl: i64 = redis.command(&["PTTL", &key]).parse().unwrap();
            // inactive_ttl, 10 s by default.
            assert!(ttl > 0 && ttl <= 10_000, "{ttl}");
        }
    }
    assert_eq!(of(first.stats()), stats(0, 2, 0, 2));
    assert_eq!(of(second.stats()), stats(2, 0, 0, 0));
}

pub(crate) async fn redis_killed_the_endpoint_is_asked() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let s = setup().await;
    let (first, second) = (connect(&redis.url()).await, connect(&redis.url()).await);
    let one = replica(&s, &first);
    let two = replica(&s, &second);
    let token = s.bound_to_client();
    one.validate(&token).await.unwrap();

    redis.kill();
    two.validate(&token).await.unwrap();
    let junk = "junk-while-redis-is-down";
    assert_eq!(
        two.validate(junk).await.unwrap_err().kind(),
        TokenErrorKind::Inactive
    );
    assert_eq!(s.issuer.introspection_calls(), 3);
    let down = second.stats();
    assert_eq!((down.fetched_directly, down.stored), (2, 0), "{down:?}");
    // Not written either: one failure per token.
    assert_eq!(down.unavailable, 2, "{down:?}");

    // The answers are remembered in memory meanwhile.
    two.validate(&token).await.unwrap();
    assert_eq!(s.issuer.introspection_calls(), 3);
}

pub(crate) async fn redis_slower_than_the_timeout_is_down() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = setup().await;
    let shared = connect(&redis.url()).await;
    // The default timeout, 100 ms, against a Redis that answers after 3 s.
    let validator = s.validator().shared_cache(shared.clone()).build().unwrap();
    let token = s.bound_to_client();
    redis.pause(3_000);
    validator.validate(&token).await.unwrap();
    redis.unpause();
    assert_eq!(s.issuer.introspection_calls(), 1);
    let slow = shared.stats();
    assert_eq!(
        (slow.unavailable, slow.fetched_directly, slow.stored),
        (1, 1, 0),
        "{slow:?}"
    );
}

pub(crate) async fn garbage_in_redis_is_a_miss() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = setup().await;
    let first = connect(&redis.url()).await;
    let token = s.bound_to_client();
    replica(&s, &first).validate(&token).await.unwrap();
    let key = redis.keys().pop().unwrap();
    let good = redis.command(&["GET", &key]);
    assert!(good.contains("\"active\":true"), "{good}");

    let garbage = [
        "not json".to_owned(),
        "[1,2,3]".to_owned(),
        "{\"v\":1}".to_owned(),
        good.replace("\"v\":1", "\"v\":2"),
        good.replace("\"active\":true", "\"active\":\"yes\""),
        good.replace("\"v\":1", "\"v\":1,\"v\":1"),
        "{\"v\":1,\"until\":1,\"answer\":{\"active\":false}}".to_owned(),
    ];
    for (i, garbage) in garbage.iter().enumerate() {
        assert_eq!(redis.command(&["SET", &key, garbage]), "OK");
        let shared = connect(&redis.url()).await;
        let before = s.issuer.introspection_calls();
        replica(&s, &shared).validate(&token).await.unwrap();
        assert_eq!(s.issuer.introspection_calls(), before + 1, "garbage {i}");
        assert_eq!(of(shared.stats()), stats(0, 0, 1, 1), "garbage {i}");
    }
    // Another type under the key: a miss too, replaced.
    redis.command(&["DEL", &key]);
    redis.command(&["HSET", &key, "a", "b"]);
    let shared = connect(&redis.url()).await;
    replica(&s, &shared).validate(&token).await.unwrap();
    assert_eq!(of(shared.stats()), stats(0, 0, 1, 1));
    // And what replaced it is used.
    let shared = connect(&redis.url()).await;
    let before = s.issuer.introspection_calls();
    replica(&s, &shared).validate(&token).await.unwrap();
    assert_eq!(s.issuer.introspection_calls(), before);
    assert_eq!(of(shared.stats()), stats(1, 0, 0, 0));
    assert_token_absent(&redis, &token);
}

pub(crate) async fn the_same_against_a_three_node_cluster() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let s = setup().await;
    let connect_cluster = |urls: Vec<String>| async move {
        RedisTokenCache::connect_cluster(urls)
            .await
            .unwrap()
            .prefix(PREFIX)
            .unwrap()
    };
    let first = connect_cluster(cluster.urls()).await;
    let second = connect_cluster(cluster.urls()[1..].to_vec()).await;
    let one = replica(&s, &first);
    let two = replica(&s, &second);
    let tokens: Vec<String> = (0..6).map(|_| s.bound_to_client()).collect();
    for token in &tokens {
        one.validate(token).await.unwrap();
        two.validate(token).await.unwrap();
    }
    assert_eq!(s.issuer.introspection_calls(), tokens.len());
    assert_eq!(second.stats().hits, tokens.len() as u64);
    assert_eq!(cluster.keys_per_node().iter().sum::<usize>(), tokens.len());
    for node in cluster.nodes() {
        for token in &tokens {
            assert!(node.keys().iter().all(|k| !k.contains(token.as_str())));
        }
    }
}
