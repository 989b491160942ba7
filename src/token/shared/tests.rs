//! The shared tier against a store in memory.

use std::collections::HashMap;

use super::*;

/// A store in memory that can fail, and whose lock can be held by
/// someone else forever.
#[derive(Default)]
struct Fake {
    values: Mutex<HashMap<String, Vec<u8>>>,
    locked_elsewhere: bool,
    failing: bool,
    events: Mutex<Vec<SharedCacheEvent>>,
}

impl Fake {
    fn events(&self) -> Vec<SharedCacheEvent> {
        self.events.lock().unwrap().clone()
    }
}

fn done<T: Send + 'static>(fail: bool, value: T) -> BoxFuture<'static, Result<T, BoxError>> {
    Box::pin(async move { if fail { Err("down".into()) } else { Ok(value) } })
}

impl SharedTokenCache for Arc<Fake> {
    fn get(&self, key: &SharedKey) -> BoxFuture<'static, Result<Option<Vec<u8>>, BoxError>> {
        let value = self.values.lock().unwrap().get(&key.to_string()).cloned();
        done(self.failing, value)
    }
    fn put(
        &self,
        key: &SharedKey,
        value: Vec<u8>,
        _ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        self.values.lock().unwrap().insert(key.to_string(), value);
        done(self.failing, ())
    }
    fn try_lock(
        &self,
        _key: &SharedKey,
        _owner: &LockOwner,
        _ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, BoxError>> {
        done(self.failing, !self.locked_elsewhere)
    }
    fn unlock(
        &self,
        _key: &SharedKey,
        _owner: &LockOwner,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        done(self.failing, ())
    }
    fn policy(&self) -> SharedCachePolicy {
        SharedCachePolicy::default()
            .lock_ttl(Duration::from_millis(20))
            .poll_interval(Duration::from_millis(1), Duration::from_millis(5))
    }
    fn record(&self, event: SharedCacheEvent) {
        self.events.lock().unwrap().push(event);
    }
}

fn key() -> CacheKey {
    CacheKey::builder().part("client_id", "svc").build()
}

fn fetch(token: &'static str) -> impl FnOnce() -> BoxFuture<'static, Result<Token, BoxError>> {
    move || Box::pin(async move { Ok(Token::new(token).expires_in(Duration::from_secs(600))) })
}

/// Binding as a source with no key material would: not at all.
fn unbindable(_: Token) -> Option<Token> {
    None
}

fn tier(fake: &Arc<Fake>) -> SharedTier {
    SharedTier::new(Arc::new(fake.clone()), 0.7)
}

#[tokio::test]
async fn bearer_tokens_round_trip_only_when_allowed_and_never_after_a_rejection() {
    use SharedCacheEvent as E;
    let fake = Arc::new(Fake::default());
    let tier = tier(&fake);
    let token = tier.fetch(&key(), fetch("one"), unbindable).await.unwrap();
    assert_eq!(token.access_token().secret(), "one");
    // Not allowed: nothing stored.
    assert!(fake.values.lock().unwrap().is_empty());
    assert_eq!(fake.events(), [E::Miss, E::FetchedUnderLock]);

    let allowed = SharedCachePolicy::default().allow_bearer_tokens();
    let shared = SharedKey::of(&key());
    tier.store_token(&shared, &allowed, &token, &unbindable)
        .await;
    let value = fake.values.lock().unwrap()[&shared.to_string()].clone();
    let read = tier
        .read_entry(&value, &shared, &allowed, &unbindable)
        .unwrap();
    assert_eq!(read.access_token().secret(), "one");
    assert!(read.expiry().is_some());
    let text = String::from_utf8(value.clone()).unwrap();
    assert!(text.contains("\"binding\":\"none\""), "{text}");

    // Refused: by default, under another key, once rejected, garbage.
    let default = SharedCachePolicy::default();
    assert!(
        tier.read_entry(&value, &shared, &default, &unbindable)
            .is_err()
    );
    let other = SharedKey::of(&CacheKey::builder().part("client_id", "x").build());
    assert!(
        tier.read_entry(&value, &other, &allowed, &unbindable)
            .is_err()
    );
    tier.reject(read.access_token());
    assert!(
        tier.read_entry(&value, &shared, &allowed, &unbindable)
            .is_err()
    );
    for garbage in [&b"x"[..], b"{}", b"{\"v\":2}", b"null"] {
        assert!(
            tier.read_entry(garbage, &shared, &allowed, &unbindable)
                .is_err()
        );
    }
}

#[tokio::test]
async fn bound_tokens_are_stored_only_if_they_can_be_bound_again() {
    let fake = Arc::new(Fake::default());
    let tier = tier(&fake);
    let shared = SharedKey::of(&key());
    let proofs = crate::proof::dpop::DpopProofs::new(
        crate::proof::ProofKey::generate(crate::proof::Algorithm::Es256).unwrap(),
    );
    let bound = Token::new("bound")
        .expires_in(Duration::from_secs(600))
        .dpop_bound(proofs.clone());
    let policy = SharedCachePolicy::default();
    tier.store_token(&shared, &policy, &bound, &unbindable)
        .await;
    assert!(fake.values.lock().unwrap().is_empty());

    let rebind = move |token: Token| Some(token.dpop_bound(proofs.clone()));
    tier.store_token(&shared, &policy, &bound, &rebind).await;
    let value = fake.values.lock().unwrap()[&shared.to_string()].clone();
    let read = tier.read_entry(&value, &shared, &policy, &rebind).unwrap();
    assert_eq!(read.access_token().secret(), "bound");
    assert!(read.dpop_proofs().is_some());
    assert!(
        String::from_utf8(value)
            .unwrap()
            .contains("\"binding\":\"jkt\"")
    );
}

#[tokio::test]
async fn a_failing_store_means_a_direct_fetch() {
    use SharedCacheEvent as E;
    let fake = Arc::new(Fake {
        failing: true,
        ..Fake::default()
    });
    let token = tier(&fake)
        .fetch(&key(), fetch("direct"), unbindable)
        .await
        .unwrap();
    assert_eq!(token.access_token().secret(), "direct");
    assert_eq!(fake.events(), [E::Unavailable, E::FetchedDirectly]);
}

#[tokio::test]
async fn a_lock_held_too_long_means_a_direct_fetch() {
    use SharedCacheEvent as E;
    let fake = Arc::new(Fake {
        locked_elsewhere: true,
        ..Fake::default()
    });
    let token = tier(&fake)
        .fetch(&key(), fetch("waited"), unbindable)
        .await
        .unwrap();
    assert_eq!(token.access_token().secret(), "waited");
    let events = fake.events();
    assert_eq!(events[..2], [E::Miss, E::Waited]);
    assert_eq!(events.last(), Some(&E::FetchedDirectly));
}

#[test]
fn keys_and_owners() {
    let a = SharedKey::of(&key());
    assert_eq!(a, SharedKey::of(&key()));
    assert_eq!(a.to_string().len(), 43);
    assert_ne!(
        a,
        SharedKey::of(&CacheKey::builder().part("client_id", "svc2").build())
    );
    assert_ne!(LockOwner::random(), LockOwner::random());
    assert!(format!("{a:?}").starts_with("SharedKey("));
}
