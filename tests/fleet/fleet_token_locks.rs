//! What a fleet's shared token cache stores, and its lock, against a real
//! Redis: an unbound token never goes to Redis; a slow token endpoint still
//! means one fetch (the holder extends its lock); tokens that cannot be
//! shared do not queue the fleet behind the lock; caches made from one
//! another share their counters.
#![cfg(all(feature = "test-util", feature = "redis"))]

use crate::support;
use crate::support::fleet_clients;
use crate::support::redis as redis_support;
use fleet_clients::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::{BoxFuture, join_all};
use redis_support::RedisServer;
use tokio::sync::watch;
use tower_token_binding::binding::Scheme;
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::test_util::{Fault, TestIssuer, TestPki};
use tower_token_binding::token::{
    BoxError, CacheKey, LockOwner, RedisCacheStats, RedisTokenCache, SharedCacheEvent,
    SharedCachePolicy, SharedKey, SharedTokenCache, Token, TokenCache, TokenSource,
};
use tower_token_binding::{BoundClient, CnfValidationLayer};

pub(crate) async fn an_unbound_token_fetched_with_a_certificate_never_goes_to_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    // The API takes plain bearer tokens too: the calls must succeed.
    let layer = CnfValidationLayer::new(support::jwt_validator(
        &pki,
        &issuer,
        Duration::from_secs(1),
    ))
    .allow_unbound();
    let api = support::start_api(&pki, layer).await;
    let cert = pki.client_cert("svc.example").unwrap();
    // No `cnf`: a bearer token, whatever its type and connection.
    issuer.set_fault(Some(Fault::Unbound));
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let shared = three(&redis.url()).await;
    let stacks: Vec<BoundClient> = shared
        .iter()
        .map(|shared| {
            BoundClient::builder()
                .token_endpoint(issuer.mtls_token_endpoint())
                .client_id("svc")
                .identity(cert.identity().unwrap())
                .scheme(Scheme::Dpop)
                .dpop_key(key.clone())
                .allow_unbound_fallback()
                .root_store(pki.root_store())
                .shared_token_cache(shared.clone())
                .build()
                .unwrap()
        })
        .collect();
    let world = World {
        pki,
        issuer,
        api,
        cert,
    };
    assert_eq!(calls(&world, &stacks, 10).await, 0);
    let stats = sum(&shared
        .iter()
        .map(RedisTokenCache::stats)
        .collect::<Vec<_>>());
    assert_eq!(stats.stored, 0, "{stats:?}");
    // At most the marker that sends waiters to the issuer; no token.
    for key in redis.keys() {
        let value = redis.command(&["GET", &key]);
        assert!(
            value.contains("\"unshareable\":true") && !value.contains("access_token"),
            "{key}: {value}"
        );
    }
}

pub(crate) async fn a_token_endpoint_slower_than_the_old_lock_still_means_one_fetch() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let world = World::start().await;
    // Longer than the old 5 s lock, shorter than the endpoint's timeout.
    world
        .issuer
        .set_fault(Some(Fault::Delay(Duration::from_secs(6))));
    let shared = three(&redis.url()).await;
    let stacks: Vec<BoundClient> = shared.iter().map(|s| world.stack(s.clone())).collect();
    assert_eq!(calls(&world, &stacks, 10).await, 0);
    let stats = sum(&shared
        .iter()
        .map(RedisTokenCache::stats)
        .collect::<Vec<_>>());
    assert_eq!(world.issuer.tokens_issued(), 1, "{stats:?}");
    assert_eq!(
        (stats.fetched_under_lock, stats.fetched_directly, stats.hits),
        (1, 0, 2),
        "{stats:?}"
    );
}

/// A source that binds shared tokens but fetches bearer tokens (which the
/// shared cache does not take by default); a fetch ends only once two
/// caches wait for another's fetch (counted by [`CountingWaits`]).
struct BearerFromABindingSource(Arc<AtomicUsize>, Arc<watch::Sender<usize>>);

impl TokenSource for BearerFromABindingSource {
    type Future = BoxFuture<'static, Result<Token, BoxError>>;

    fn fetch(&self) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        let mut waiting = self.1.subscribe();
        Box::pin(async move {
            // Bounded, should the others never wait: the test then fails
            // rather than hangs.
            let two = waiting.wait_for(|waiting| *waiting >= 2);
            if tokio::time::timeout(Duration::from_secs(20), two)
                .await
                .is_err()
            {
                return Err("no two caches waited for this fetch".into());
            }
            Ok(Token::new("bearer").expires_in(Duration::from_secs(600)))
        })
    }

    fn bind_shared(&self, _key: &CacheKey, token: Token) -> Option<Token> {
        Some(token)
    }
}

/// A Redis token cache that also counts the times a cache waited for
/// another's fetch (the `Waited` events it is told of).
struct CountingWaits(RedisTokenCache, Arc<watch::Sender<usize>>);

impl SharedTokenCache for CountingWaits {
    fn get(&self, key: &SharedKey) -> BoxFuture<'static, Result<Option<Vec<u8>>, BoxError>> {
        self.0.get(key)
    }

    fn put(
        &self,
        key: &SharedKey,
        value: Vec<u8>,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        self.0.put(key, value, ttl)
    }

    fn try_lock(
        &self,
        key: &SharedKey,
        owner: &LockOwner,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, BoxError>> {
        self.0.try_lock(key, owner, ttl)
    }

    fn unlock(
        &self,
        key: &SharedKey,
        owner: &LockOwner,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        self.0.unlock(key, owner)
    }

    fn extend_lock(
        &self,
        key: &SharedKey,
        owner: &LockOwner,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        self.0.extend_lock(key, owner, ttl)
    }

    fn policy(&self) -> SharedCachePolicy {
        SharedTokenCache::policy(&self.0)
    }

    fn record(&self, event: SharedCacheEvent) {
        if event == SharedCacheEvent::Waited {
            self.1.send_modify(|waited| *waited += 1);
        }
        self.0.record(event);
    }
}

pub(crate) async fn unshareable_tokens_do_not_queue_the_fleet() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // A source that cannot bind: the shared cache is not used at all. Each
    // fetch ends only once all three are under way.
    let asked = Arc::new(AtomicUsize::new(0));
    let all_fetching = Arc::new(tokio::sync::Barrier::new(3));
    let shared = three(&redis.url()).await;
    let caches: Vec<TokenCache> = shared
        .iter()
        .map(|shared| {
            let asked = asked.clone();
            let all_fetching = all_fetching.clone();
            TokenCache::builder().shared(shared.clone()).build(move || {
                asked.fetch_add(1, Ordering::SeqCst);
                let all_fetching = all_fetching.clone();
                async move {
                    all_fetching.wait().await;
                    Ok(Token::new("bearer").expires_in(Duration::from_secs(600)))
                }
            })
        })
        .collect();
    for token in join_all(caches.iter().map(TokenCache::get)).await {
        token.unwrap();
    }
    let stats = sum(&shared
        .iter()
        .map(RedisTokenCache::stats)
        .collect::<Vec<_>>());
    assert_eq!(asked.load(Ordering::SeqCst), 3);
    assert_eq!(stats, RedisCacheStats::default(), "no Redis at all");

    // Binds, but its token cannot be shared: the marker frees the waiters
    // (the fetch under the lock ends once the two others wait for it).
    let asked = Arc::new(AtomicUsize::new(0));
    let waited = Arc::new(watch::Sender::new(0));
    let shared = three(&redis.url()).await;
    let caches: Vec<TokenCache> = shared
        .iter()
        .map(|shared| {
            TokenCache::builder()
                .shared(CountingWaits(shared.clone(), waited.clone()))
                .build(BearerFromABindingSource(asked.clone(), waited.clone()))
        })
        .collect();
    for token in join_all(caches.iter().map(TokenCache::get)).await {
        token.unwrap();
    }
    let stats = sum(&shared
        .iter()
        .map(RedisTokenCache::stats)
        .collect::<Vec<_>>());
    assert_eq!(asked.load(Ordering::SeqCst), 3);
    assert_eq!(
        (
            stats.fetched_under_lock,
            stats.fetched_directly,
            stats.stored
        ),
        (1, 2, 0),
        "no chain of locks: {stats:?}"
    );
}

/// A source of DPoP-bound tokens that takes 1.5 s per fetch (a lock of
/// 600 ms below, extended every 200 ms: 400 ms to spare for a busy
/// machine).
struct SlowDpopSource(
    Arc<AtomicUsize>,
    tower_token_binding::proof::dpop::DpopProofs,
);

impl TokenSource for SlowDpopSource {
    type Future = BoxFuture<'static, Result<Token, BoxError>>;

    fn fetch(&self) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        let proofs = self.1.clone();
        Box::pin(async move {
            // Real time, not tokio's: the lock's TTL runs out inside the
            // redis-server process, whose clock cannot be advanced, so the
            // fetch must outlast it for real for the extensions to matter.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let token = Token::new("slow").with_token_type("DPoP");
            Ok(token
                .expires_in(Duration::from_secs(600))
                .dpop_bound(proofs))
        })
    }

    fn bind_shared(&self, _key: &CacheKey, token: Token) -> Option<Token> {
        Some(token.dpop_bound(self.1.clone()))
    }
}

pub(crate) async fn the_lock_holder_extends_its_lock_while_it_fetches() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let proofs = tower_token_binding::proof::dpop::DpopProofs::new(
        ProofKey::generate(Algorithm::Es256).unwrap(),
    );
    let asked = Arc::new(AtomicUsize::new(0));
    let mut caches = Vec::new();
    for _ in 0..3 {
        let policy = SharedCachePolicy::default()
            .shared_cache_timeout(Duration::from_secs(2))
            .lock_ttl(Duration::from_millis(600));
        let shared = RedisTokenCache::connect(&redis.url())
            .await
            .unwrap()
            .policy(policy);
        let source = SlowDpopSource(asked.clone(), proofs.clone());
        caches.push(TokenCache::builder().shared(shared).build(source));
    }
    for token in join_all(caches.iter().map(TokenCache::get)).await {
        assert_eq!(token.unwrap().token().access_token().secret(), "slow");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1, "one fetch for the three");
}

pub(crate) async fn caches_made_with_another_prefix_or_policy_share_the_counters() {
    use tower_token_binding::token::{SharedCacheEvent, SharedTokenCache};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let base = RedisTokenCache::connect(&redis.url()).await.unwrap();
    let derived = base
        .clone()
        .prefix("other:")
        .unwrap()
        .policy(SharedCachePolicy::default());
    derived.record(SharedCacheEvent::Hit);
    assert_eq!((base.stats().hits, derived.stats().hits), (1, 1));
}

async fn three(url: &str) -> Vec<RedisTokenCache> {
    join_all((0..3).map(|_| connect(url))).await
}
