//! The shared tier against a store in memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A store in memory that can fail, and whose lock can be held by
/// someone else forever.
#[derive(Default)]
struct Fake {
    values: Mutex<HashMap<String, Vec<u8>>>,
    locked_elsewhere: bool,
    failing: bool,
    /// `get` fails from this call on (counted from 0).
    get_fails_from: Option<usize>,
    /// `put` never answers.
    put_hangs: bool,
    /// Written by "another process" when `try_lock` is called: a token it
    /// stored (and a lock it freed) between our look and our lock.
    written_before_lock: Mutex<Option<Vec<u8>>>,
    /// The policy allows bearer tokens.
    allow_bearer: bool,
    /// The policy, in place of the one `policy` makes.
    policy: Option<SharedCachePolicy>,
    gets: AtomicUsize,
    puts: AtomicUsize,
    unlocks: AtomicUsize,
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
        let n = self.gets.fetch_add(1, Ordering::SeqCst);
        let fail = self.failing || self.get_fails_from.is_some_and(|from| n >= from);
        done(fail, value)
    }
    fn put(
        &self,
        key: &SharedKey,
        value: Vec<u8>,
        _ttl: Duration,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if self.put_hangs {
            return Box::pin(std::future::pending());
        }
        self.values.lock().unwrap().insert(key.to_string(), value);
        done(self.failing, ())
    }
    fn try_lock(
        &self,
        key: &SharedKey,
        _owner: &LockOwner,
        _ttl: Duration,
    ) -> BoxFuture<'static, Result<bool, BoxError>> {
        if let Some(value) = self.written_before_lock.lock().unwrap().take() {
            self.values.lock().unwrap().insert(key.to_string(), value);
        }
        done(self.failing, !self.locked_elsewhere)
    }
    fn unlock(
        &self,
        _key: &SharedKey,
        _owner: &LockOwner,
    ) -> BoxFuture<'static, Result<(), BoxError>> {
        self.unlocks.fetch_add(1, Ordering::SeqCst);
        done(self.failing, ())
    }
    fn policy(&self) -> SharedCachePolicy {
        if let Some(policy) = &self.policy {
            return policy.clone();
        }
        let policy = SharedCachePolicy::default()
            .lock_ttl(Duration::from_millis(20))
            .max_wait(Duration::from_millis(30))
            .poll_interval(Duration::from_millis(1), Duration::from_millis(5));
        if self.allow_bearer {
            policy.allow_bearer_tokens()
        } else {
            policy
        }
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
    // Not allowed: no token stored, only the marker that lets waiters go.
    tokio::task::yield_now().await;
    let values = fake.values.lock().unwrap().clone();
    assert_eq!(values.len(), 1);
    let marker = String::from_utf8(values.into_values().next().unwrap()).unwrap();
    assert!(
        marker.contains("\"unshareable\":true") && !marker.contains("one"),
        "{marker}"
    );
    assert_eq!(fake.events(), [E::Miss, E::FetchedUnderLock]);

    let allowed = SharedCachePolicy::default().allow_bearer_tokens();
    let shared = SharedKey::of(&key());
    let (value, _ttl) = tier
        .entry_for(&shared, &allowed, &token, &unbindable)
        .unwrap();
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
    assert!(
        tier.entry_for(&shared, &policy, &bound, &unbindable)
            .is_err()
    );

    let rebind = move |token: Token| Some(token.dpop_bound(proofs.clone()));
    let (value, _ttl) = tier.entry_for(&shared, &policy, &bound, &rebind).unwrap();
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

#[cfg(feature = "test-util")]
#[tokio::test]
async fn a_token_is_stored_only_if_bound_as_its_source_binds_it_again() {
    let fake = Arc::new(Fake::default());
    let tier = tier(&fake);
    let shared = SharedKey::of(&key());
    let policy = SharedCachePolicy::default();
    let identity = crate::test_util::svc_identity();
    let proofs = crate::proof::dpop::DpopProofs::new(
        crate::proof::ProofKey::generate(crate::proof::Algorithm::Es256).unwrap(),
    );
    // A DPoP source with a certificate: a token without `cnf` travels over
    // the certificate's connection but is bound to nothing.
    let unbound = Token::new("unbound")
        .expires_in(Duration::from_secs(600))
        .with_identity(identity.clone());
    assert_eq!(unbound.binding(), Binding::None);
    let rebind = {
        let (identity, proofs) = (identity.clone(), proofs.clone());
        move |token: Token| {
            Some(
                token
                    .with_identity(identity.clone())
                    .dpop_bound(proofs.clone()),
            )
        }
    };
    assert!(tier.entry_for(&shared, &policy, &unbound, &rebind).is_err());
    // Bound otherwise than the source binds it again: not stored either.
    let certificate = Token::new("cert")
        .expires_in(Duration::from_secs(600))
        .bound_to(identity);
    assert!(
        tier.entry_for(&shared, &policy, &certificate, &rebind)
            .is_err()
    );
    let dpop = certificate.clone().dpop_bound(proofs);
    assert!(tier.entry_for(&shared, &policy, &dpop, &rebind).is_ok());
}

#[tokio::test]
async fn an_unshareable_marker_sends_waiters_to_the_source_at_once() {
    use SharedCacheEvent as E;
    let fake = Arc::new(Fake {
        locked_elsewhere: true,
        ..Fake::default()
    });
    let shared = SharedKey::of(&key());
    let marker = serde_json::to_vec(&Unshareable {
        v: FORMAT,
        key: shared.to_string(),
        unshareable: true,
    })
    .unwrap();
    fake.values
        .lock()
        .unwrap()
        .insert(shared.to_string(), marker);
    let token = tier(&fake)
        .fetch(&key(), fetch("mine"), unbindable)
        .await
        .unwrap();
    assert_eq!(token.access_token().secret(), "mine");
    // No lock asked for, no waiting.
    assert_eq!(fake.events(), [E::FetchedDirectly]);
}

#[tokio::test]
async fn a_write_that_hangs_is_bounded_and_ends_the_store_calls() {
    // The write never answers: the caller is back after the policy's
    // timeout, with its token, having tried once to free its lock.
    let fake = Arc::new(Fake {
        put_hangs: true,
        policy: Some(
            SharedCachePolicy::default()
                .allow_bearer_tokens()
                .shared_cache_timeout(Duration::from_millis(100)),
        ),
        ..Fake::default()
    });
    let tier = tier(&fake);
    let token = tier
        .fetch(&key(), fetch("prompt"), unbindable)
        .await
        .unwrap();
    assert_eq!(token.access_token().secret(), "prompt");
    assert_eq!(fake.puts.load(Ordering::SeqCst), 1);
    assert_eq!(fake.unlocks.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn after_a_failure_only_the_lock_is_freed() {
    use SharedCacheEvent as E;
    // The first look answers, the lock is taken, the second look fails.
    let fake = Arc::new(Fake {
        get_fails_from: Some(1),
        ..Fake::default()
    });
    let token = tier(&fake)
        .fetch(&key(), fetch("after-failure"), unbindable)
        .await
        .unwrap();
    assert_eq!(token.access_token().secret(), "after-failure");
    tokio::task::yield_now().await;
    assert_eq!(fake.gets.load(Ordering::SeqCst), 2);
    // No write; one try to free the lock it holds.
    assert_eq!(fake.puts.load(Ordering::SeqCst), 0);
    assert_eq!(fake.unlocks.load(Ordering::SeqCst), 1);
    assert_eq!(fake.events(), [E::Miss, E::Unavailable, E::FetchedDirectly]);
}

#[tokio::test]
async fn a_token_stored_between_our_look_and_our_lock_is_taken() {
    use SharedCacheEvent as E;
    let fake = Arc::new(Fake {
        allow_bearer: true,
        ..Fake::default()
    });
    let tier = tier(&fake);
    let shared = SharedKey::of(&key());
    let theirs = Token::new("theirs").expires_in(Duration::from_secs(600));
    let (value, _ttl) = tier
        .entry_for(&shared, &fake.policy(), &theirs, &unbindable)
        .unwrap();
    // We look and find nothing; another process stores its token and frees
    // the lock; then we win the lock.
    *fake.written_before_lock.lock().unwrap() = Some(value);
    let token = tier
        .fetch(
            &key(),
            || -> BoxFuture<'static, Result<Token, BoxError>> {
                panic!("fetched from the source although the fleet's token was stored")
            },
            unbindable,
        )
        .await
        .unwrap();
    // Its token, found by the look under the lock, and our lock freed once.
    assert_eq!(token.access_token().secret(), "theirs");
    assert_eq!(fake.gets.load(Ordering::SeqCst), 2);
    assert_eq!(fake.puts.load(Ordering::SeqCst), 0);
    assert_eq!(fake.unlocks.load(Ordering::SeqCst), 1);
    assert_eq!(fake.events(), [E::Miss, E::Hit]);
}
