//! `JwtValidator` with a remote JWKS: fetches survive cancelled requests,
//! and keys are refreshed even when every request is a cache hit.
#![cfg(feature = "test-util")]

use crate::support;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt as _;
use tower_token_binding::Thumbprint;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{JwksSource, JwtValidator, TokenErrorKind, ValidateToken};

fn validator(
    pki: &TestPki,
    issuer: &TestIssuer,
    refresh: Duration,
    cooldown: Duration,
) -> JwtValidator {
    JwtValidator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .jwks(
            JwksSource::remote(&issuer.jwks_uri())
                .unwrap()
                .root_store(pki.root_store())
                .refresh_interval(refresh)
                .unknown_kid_cooldown(cooldown),
        )
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_does_not_waste_the_cooldown() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let validator = validator(
        &pki,
        &issuer,
        Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    let claims = || issuer.claims("svc", Some(Thumbprint::from_der(b"cert")));
    validator
        .validate(&issuer.sign(&claims()).unwrap())
        .await
        .unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);

    // A new key; the first request that shows it is dropped while the fetch
    // it started waits at the issuer.
    issuer.rotate_signing_key().unwrap();
    let token = issuer.sign(&claims()).unwrap();
    let hold = issuer.hold_jwks();
    assert!(
        validator.validate(&token).now_or_never().is_none(),
        "it waits for the JWKS"
    );
    hold.until_waiting(1).await;
    assert_eq!(issuer.jwks_fetches(), 2);

    // The fetch it started still completes, and the next request sees the
    // key, although the cooldown is an hour: no other fetch is made.
    hold.release();
    let verified = validator.validate(&token).await;
    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(issuer.jwks_fetches(), 2);
}

#[tokio::test]
async fn keys_are_refreshed_while_every_request_is_a_cache_hit() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let validator = validator(&pki, &issuer, Duration::from_secs(2), Duration::ZERO);
    let token = issuer
        .sign(&issuer.claims("svc", Some(Thumbprint::from_der(b"cert"))))
        .unwrap();
    validator.validate(&token).await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);
    // A cache hit, well within the refresh interval (2 s of real time, so
    // that a slow machine starts no refresh here, which would fetch the
    // keys rotated below and fail the next check).
    validator.validate(&token).await.unwrap();

    // The issuer drops the key the token was signed with.
    issuer.rotate_signing_key().unwrap();
    issuer.retire_old_keys();

    // A cache hit past the refresh interval refreshes the keys in the
    // background (held at the issuer until it has arrived there); once the
    // key set has changed, the cached verification is not trusted any more
    // and the token, re-checked, fails.
    let hold = issuer.hold_jwks();
    support::advance(Duration::from_millis(2500)).await;
    validator.validate(&token).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), hold.until_waiting(1))
        .await
        .expect("the removed key was never noticed");
    assert!(issuer.jwks_fetches() >= 2);
    // The refresh has landed once a token signed with the new key is
    // verified: its fetch for the unknown `kid` waits for the refresh's
    // lock, and finds the key published.
    hold.release();
    let rotated = issuer
        .sign(&issuer.claims("svc", Some(Thumbprint::from_der(b"cert"))))
        .unwrap();
    validator.validate(&rotated).await.unwrap();
    let refused = validator.validate(&token).await.unwrap_err();
    assert_eq!(refused.kind(), TokenErrorKind::UnknownKey);
    assert!(issuer.jwks_fetches() >= 2);
}

#[tokio::test]
async fn a_key_published_by_a_refresh_in_flight_is_not_fetched_again() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    // Unknown `kid`s may fetch at once: only the fix stops the second fetch.
    let validator = validator(&pki, &issuer, Duration::from_millis(100), Duration::ZERO);
    let claims = || issuer.claims("svc", Some(Thumbprint::from_der(b"cert")));
    let old = issuer.sign(&claims()).unwrap();
    validator.validate(&old).await.unwrap();
    assert_eq!(issuer.jwks_fetches(), 1);

    // The keys are due for a refresh; a cache hit starts it in the
    // background, and it waits at the issuer holding the fetch lock.
    support::advance(Duration::from_millis(150)).await;
    issuer.rotate_signing_key().unwrap();
    let new = issuer.sign(&claims()).unwrap();
    let hold = issuer.hold_jwks();
    validator.validate(&old).await.unwrap();
    hold.until_waiting(1).await;
    assert_eq!(issuer.jwks_fetches(), 2);

    // A request with the new key fails on the keys it has, and asks for a
    // fetch (polled once: it has read the old keys, and waits for the
    // lock).
    let mut request = validator.validate(&new);
    let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut request).poll(cx))).await;
    assert!(polled.is_pending());

    // The refresh lands with the new key: the request takes it, and no
    // second fetch is made.
    hold.release();
    let verified = request.await;
    assert!(verified.is_ok(), "{verified:?}");
    assert_eq!(issuer.jwks_fetches(), 2, "the new key was fetched twice");
}
