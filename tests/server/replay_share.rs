//! One proof key flooding the in-memory replay store, through the real
//! layer over TLS: the flooder is held to its share of the store (`429`
//! with `Retry-After` once over it), and another key's requests are still
//! accepted. DPoP and `PoP` alike.
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::dpop;
use crate::support::pop_setup;
use http::{Method, StatusCode};
use serde_json::json;
use support::https_client;
use tower_token_binding::proof::dpop::{DpopProofs, DpopVerifier};
use tower_token_binding::proof::pop::{PopProofs, PopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::replay::MemoryReplayStore;

/// 16 shards of 16 entries: a few hundred proofs fill every shard.
const CAPACITY: usize = 256;
/// Enough accepted proofs to fill every shard of the store many times
/// over, were one key allowed to.
const FLOOD: usize = 600;

/// What the flood was answered with.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    too_many: usize,
    /// Anything else, by status.
    other: std::collections::BTreeMap<u16, usize>,
}

impl Tally {
    fn add(&mut self, status: StatusCode, retry_after: Option<&str>) {
        match status {
            StatusCode::OK => self.ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(retry_after, Some("5"), "429 says when to come back");
                self.too_many += 1;
            }
            other => *self.other.entry(other.as_u16()).or_default() += 1,
        }
    }

    /// The flooder got in up to its share, then `429`, never a `503`.
    fn check(&self) {
        assert!(self.other.is_empty(), "{self:?}");
        // Its share (25% by default) of each of the 16 shards, 4 entries;
        // 600 proofs spread over 16 shards fill every one's share.
        assert_eq!(self.ok, CAPACITY / 4, "held to its share: {self:?}");
        assert_eq!(self.too_many, FLOOD - CAPACITY / 4, "{self:?}");
    }
}

#[tokio::test]
async fn a_dpop_key_flooding_the_replay_store_does_not_lock_out_other_keys() {
    let s = dpop::setup().await;
    let api = dpop::start(
        &s.pki,
        dpop::layer(&s)
            .accept_dpop(DpopVerifier::new())
            .replay_store(MemoryReplayStore::with_capacity(CAPACITY)),
    )
    .await;
    let client = https_client(&s.pki, None);
    let uri = dpop::uri(&api);

    // The flooder: one valid token, a fresh proof (new `jti`) each time.
    let mut tally = Tally::default();
    for _ in 0..FLOOD {
        let proof = s.proofs.proof(&Method::GET, &uri, Some(&s.token)).unwrap();
        let answer = dpop::send(&client, &dpop::Call::dpop(&api, &s.token, proof)).await;
        tally.add(answer.status, answer.retry_after.as_deref());
    }
    tally.check();

    // Another key, its own token: accepted, request after request.
    let other = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let token = dpop::bound_token(&s.issuer, &json!({ "jkt": other.thumbprint().to_string() }));
    for n in 0..5 {
        let proof = other.proof(&Method::GET, &uri, Some(&token)).unwrap();
        let answer = dpop::send(&client, &dpop::Call::dpop(&api, &token, proof)).await;
        assert_eq!(answer.status, StatusCode::OK, "request {n}: {answer:?}");
        assert_eq!(answer.body, format!("dpop {}", other.thumbprint()));
    }
}

#[tokio::test]
async fn a_pop_key_flooding_the_replay_store_does_not_lock_out_other_keys() {
    let s = pop_setup::setup(Algorithm::Es256).await;
    let api = dpop::start(
        &s.pki,
        pop_setup::layer_of(&s.pki, &s.issuer)
            .accept_pop(PopVerifier::new())
            .replay_store(MemoryReplayStore::with_capacity(CAPACITY)),
    )
    .await;
    let client = https_client(&s.pki, None);
    let uri = dpop::uri(&api);

    // The flooder: one valid token, a fresh SHR (new nonce) each time.
    let mut tally = Tally::default();
    for _ in 0..FLOOD {
        let shr = s.shrs.sign(&Method::GET, &uri, &s.token).unwrap();
        let answer = pop_setup::send(&client, &pop_setup::Call::pop(&api, shr)).await;
        tally.add(answer.status, answer.retry_after.as_deref());
    }
    tally.check();

    // Another key, its own token: accepted, request after request.
    let other = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let token = dpop::bound_token(&s.issuer, &json!({ "kid": other.kid().to_string() }));
    for n in 0..5 {
        let shr = other.sign(&Method::GET, &uri, &token).unwrap();
        let answer = pop_setup::send(&client, &pop_setup::Call::pop(&api, shr)).await;
        assert_eq!(answer.status, StatusCode::OK, "request {n}: {answer:?}");
        assert_eq!(answer.body, format!("pop {}", other.kid()));
    }
}
