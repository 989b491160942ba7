//! The client side of the fleet tests: a world (PKI, issuer, an API that
//! checks certificate-bound tokens, one workload certificate), client
//! stacks that share tokens through a `RedisTokenCache`, and counting.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use futures_util::future::join_all;
use http::StatusCode;
use tower_token_binding::test_util::{TestCert, TestIssuer, TestPki};
use tower_token_binding::token::{RedisCacheStats, RedisTokenCache, SharedCachePolicy};
use tower_token_binding::{BoundClient, CnfValidationLayer};

use crate::support;

/// A connection to the shared cache. Commands get 2 s rather than the
/// default 500 ms: these tests count fetches, and a debug build making
/// hundreds of TLS handshakes on a busy machine can be slow to poll an
/// answer; a timeout would be a (counted, harmless) extra fetch.
pub async fn connect(url: &str) -> RedisTokenCache {
    RedisTokenCache::connect(url)
        .await
        .unwrap()
        .policy(SharedCachePolicy::default().shared_cache_timeout(Duration::from_secs(2)))
}

pub async fn connect_cluster(urls: &[String]) -> RedisTokenCache {
    RedisTokenCache::connect_cluster(urls)
        .await
        .unwrap()
        .policy(SharedCachePolicy::default().shared_cache_timeout(Duration::from_secs(2)))
}

pub struct World {
    pub pki: TestPki,
    pub issuer: TestIssuer,
    pub api: String,
    pub cert: TestCert,
}

impl World {
    pub async fn start() -> Self {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        let layer = CnfValidationLayer::new(support::jwt_validator(
            &pki,
            &issuer,
            Duration::from_secs(1),
        ));
        let api = support::start_api(&pki, layer).await;
        // One workload: every replica has the same certificate.
        let cert = pki.client_cert("svc.example").unwrap();
        Self {
            pki,
            issuer,
            api,
            cert,
        }
    }

    /// One process's client stack: its own in-memory cache and pool, the
    /// shared cache given.
    pub fn stack(&self, shared: RedisTokenCache) -> BoundClient {
        BoundClient::builder()
            .token_endpoint(self.issuer.mtls_token_endpoint())
            .client_id("svc")
            .identity(self.cert.identity().unwrap())
            .root_store(self.pki.root_store())
            .shared_token_cache(shared)
            .build()
            .unwrap()
    }
}

/// `per_stack` concurrent calls on every stack at once; how many failed.
pub async fn calls(world: &World, stacks: &[BoundClient], per_stack: usize) -> usize {
    let all = stacks.iter().flat_map(|stack| {
        (0..per_stack).map(move |_| async move {
            match stack.get(&world.api).await {
                Ok(response) if response.status() == StatusCode::OK => 0,
                Ok(response) => {
                    eprintln!("failed call: {}", response.status());
                    1
                }
                Err(e) => {
                    eprintln!("failed call: {e}");
                    1
                }
            }
        })
    });
    join_all(all).await.into_iter().sum()
}

pub fn fetches(stacks: &[BoundClient]) -> u64 {
    stacks
        .iter()
        .map(|s| s.cache().unwrap().stats().fetches)
        .sum()
}

pub fn sum(stats: &[RedisCacheStats]) -> RedisCacheStats {
    let mut total = RedisCacheStats::default();
    for s in stats {
        total.hits += s.hits;
        total.misses += s.misses;
        total.unusable += s.unusable;
        total.fetched_under_lock += s.fetched_under_lock;
        total.waited += s.waited;
        total.stored += s.stored;
        total.unavailable += s.unavailable;
        total.fetched_directly += s.fetched_directly;
    }
    total
}

pub async fn one_fetch_for_300_cold_calls(world: &World, shared: [RedisTokenCache; 3]) {
    let stacks: Vec<BoundClient> = shared.iter().map(|s| world.stack(s.clone())).collect();
    let failed = calls(world, &stacks, 100).await;
    assert_eq!(failed, 0);
    let stats = sum(&shared
        .iter()
        .map(RedisTokenCache::stats)
        .collect::<Vec<_>>());
    assert_eq!(
        world.issuer.tokens_issued(),
        1,
        "one token for the fleet: {stats:?}"
    );
    assert_eq!(fetches(&stacks), 1);
    let stats = sum(&shared
        .iter()
        .map(RedisTokenCache::stats)
        .collect::<Vec<_>>());
    assert_eq!(stats.fetched_under_lock, 1, "{stats:?}");
    assert_eq!(stats.hits, 2, "the two other processes: {stats:?}");
    assert_eq!(stats.stored, 1, "{stats:?}");
    assert_eq!(stats.unavailable + stats.fetched_directly, 0, "{stats:?}");
}
