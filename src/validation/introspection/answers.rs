//! What the introspection endpoint said, remembered: active tokens until the
//! earlier of their `exp` and a maximum age, refusals for a short while,
//! which tokens were active before (for the call slots kept for re-checks),
//! and one call in flight per token.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::{BoxFuture, Shared};

use crate::validation::cache::{TokenDigest, VerifiedCache};
use crate::validation::{TokenError, VerifiedToken};

/// The shared outcome of one introspection call.
pub(super) type InFlight = Shared<BoxFuture<'static, Result<VerifiedToken, TokenError>>>;

/// The answers remembered, keyed by the SHA-256 digest of the token (never
/// the token).
pub(super) struct Answers {
    /// Active tokens: the crate's verified-token cache (bounded, evicting
    /// expired entries first, then an eighth, never all at once).
    active: VerifiedCache<TokenDigest>,
    /// Definitive refusals (inactive, expired, not ours), until the given
    /// time. Anyone can send junk tokens, so this map (and the next) hashes
    /// with SipHash under a random key rather than with the digest's own
    /// bytes, which only the cache of verified tokens can afford.
    refused: Mutex<HashMap<TokenDigest, (TokenError, u64)>>,
    /// Tokens the endpoint said were active (the digest, never the
    /// token), until their `exp` plus the leeway, or [`SEEN_WITHOUT_EXP`]
    /// after the last active answer for a token without `exp`; forgotten
    /// at a refusal. Only active answers enter, so junk never does; their
    /// re-checks may take the call slots kept for them. Bounded like the
    /// others: when full, the expired go, then the eighth that expires
    /// first.
    active_before: Mutex<HashMap<TokenDigest, u64>>,
    /// The leeway of `exp` (seconds).
    leeway: u64,
    capacity: usize,
    /// The calls in flight.
    in_flight: Mutex<HashMap<TokenDigest, InFlight>>,
}

/// How long a token without `exp` counts as active before, after its last
/// active answer (seconds): about an access token's usual lifetime.
pub(super) const SEEN_WITHOUT_EXP: u64 = 3600;

/// What [`Answers::lookup`] found.
pub(super) enum Lookup {
    Known(Result<VerifiedToken, TokenError>),
    Waiting(InFlight),
    /// No call was in flight, and `start()` could not start one.
    NotStarted(TokenError),
}

impl Answers {
    pub(super) fn new(capacity: usize, leeway: u64) -> Self {
        Self {
            active: VerifiedCache::new(capacity),
            refused: Mutex::new(HashMap::new()),
            active_before: Mutex::new(HashMap::new()),
            leeway,
            capacity,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    fn refused(&self) -> std::sync::MutexGuard<'_, HashMap<TokenDigest, (TokenError, u64)>> {
        self.refused.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<TokenDigest, InFlight>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn active_before(&self) -> std::sync::MutexGuard<'_, HashMap<TokenDigest, u64>> {
        self.active_before.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the endpoint said this token was active, and it may still
    /// be (not past its `exp`, nor refused since).
    pub(super) fn was_active(&self, key: &TokenDigest, now: u64) -> bool {
        let mut seen = self.active_before();
        match seen.get(key) {
            Some(until) if *until > now => true,
            Some(_) => {
                seen.remove(key);
                false
            }
            None => false,
        }
    }

    /// Notes that the token was active, until `until`.
    fn seen_active(&self, key: TokenDigest, until: u64, now: u64) {
        if self.capacity == 0 || until <= now {
            return;
        }
        let mut seen = self.active_before();
        if seen.len() >= self.capacity && !seen.contains_key(&key) {
            seen.retain(|_, until| *until > now);
            if seen.len() >= self.capacity {
                // The eighth that expires first: only tokens that were
                // active are here, so this is rare and costs one pass.
                let drop = (self.capacity / 8).max(1).min(seen.len());
                let mut entries: Vec<(u64, TokenDigest)> =
                    seen.iter().map(|(key, until)| (*until, *key)).collect();
                entries.select_nth_unstable_by_key(drop - 1, |(until, _)| *until);
                for (_, victim) in &entries[..drop] {
                    seen.remove(victim);
                }
            }
        }
        seen.insert(key, until);
    }

    /// A remembered answer, without waiting.
    pub(super) fn remembered(
        &self,
        key: &TokenDigest,
        now: u64,
    ) -> Option<Result<VerifiedToken, TokenError>> {
        if let Some(token) = self.active.get(key, now, 0) {
            return Some(Ok(token));
        }
        if self.capacity == 0 {
            return None;
        }
        let mut refused = self.refused();
        match refused.get(key) {
            Some((error, until)) if *until > now => Some(Err(error.clone())),
            Some(_) => {
                refused.remove(key);
                None
            }
            None => None,
        }
    }

    /// A remembered answer, or the call in flight for this token; or
    /// `start()`'s call, registered as the one in flight (or its error).
    /// Looked up under the in-flight lock, so a call that finishes
    /// meanwhile (it remembers its answer before it leaves the in-flight
    /// map) is never missed; `start()` runs under that lock too, so what it
    /// makes must not leave the map before the lock is released.
    pub(super) fn lookup_or_start(
        &self,
        key: TokenDigest,
        now: u64,
        start: impl FnOnce() -> Result<InFlight, TokenError>,
    ) -> Lookup {
        let mut in_flight = self.in_flight();
        if let Some(known) = self.remembered(&key, now) {
            return Lookup::Known(known);
        }
        if let Some(call) = in_flight.get(&key) {
            return Lookup::Waiting(call.clone());
        }
        match start() {
            Ok(call) => {
                in_flight.insert(key, call.clone());
                Lookup::Waiting(call)
            }
            Err(error) => Lookup::NotStarted(error),
        }
    }

    /// The call for `key` is over.
    pub(super) fn finished(&self, key: &TokenDigest) {
        self.in_flight().remove(key);
    }

    pub(super) fn remember_active(
        &self,
        key: TokenDigest,
        token: VerifiedToken,
        until: u64,
        now: u64,
    ) {
        let seen_until = token
            .expires_at()
            .map_or(now.saturating_add(SEEN_WITHOUT_EXP), |exp| {
                exp.saturating_add(self.leeway)
            });
        self.active.insert(&key, token, until, 0, now);
        self.seen_active(key, seen_until, now);
    }

    pub(super) fn remember_refused(
        &self,
        key: TokenDigest,
        error: TokenError,
        until: u64,
        now: u64,
    ) {
        // Not active any more (revoked, expired): its re-checks are no
        // longer kept slots for.
        self.active_before().remove(&key);
        if self.capacity == 0 {
            return;
        }
        let mut refused = self.refused();
        if refused.len() >= self.capacity && !refused.contains_key(&key) {
            refused.retain(|_, (_, until)| *until > now);
            if refused.len() >= self.capacity {
                let drop = (self.capacity / 8).max(1);
                let victims: Vec<TokenDigest> = refused.keys().take(drop).copied().collect();
                for victim in victims {
                    refused.remove(&victim);
                }
            }
        }
        refused.insert(key, (error, until));
    }

    #[cfg(test)]
    pub(super) fn seen_len(&self) -> usize {
        self.active_before().len()
    }

    #[cfg(test)]
    pub(super) fn sizes(&self) -> (usize, usize, usize) {
        (
            self.active.len(),
            self.refused().len(),
            self.in_flight().len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::TokenErrorKind;
    use crate::validation::cache::digest;
    use futures_util::FutureExt as _;

    fn token() -> VerifiedToken {
        VerifiedToken::from_claims(serde_json::Map::new()).unwrap()
    }

    #[test]
    fn active_and_refused_answers_expire() {
        let answers = Answers::new(4, 0);
        answers.remember_active(digest("a"), token(), 100, 0);
        answers.remember_refused(
            digest("b"),
            TokenError::new(TokenErrorKind::Inactive),
            10,
            0,
        );
        assert!(matches!(answers.remembered(&digest("a"), 99), Some(Ok(_))));
        assert!(matches!(answers.remembered(&digest("b"), 9), Some(Err(_))));
        assert!(answers.remembered(&digest("b"), 10).is_none());
        assert!(answers.remembered(&digest("a"), 100).is_none());
        assert_eq!(answers.sizes(), (0, 0, 0));
    }

    #[test]
    fn refusals_are_bounded() {
        let answers = Answers::new(8, 0);
        for i in 0..100 {
            let error = TokenError::new(TokenErrorKind::Inactive);
            answers.remember_refused(digest(&i.to_string()), error, 1000, 0);
            assert!(answers.sizes().1 <= 8);
        }
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let answers = Answers::new(0, 0);
        answers.remember_active(digest("a"), token(), 100, 0);
        answers.remember_refused(
            digest("b"),
            TokenError::new(TokenErrorKind::Inactive),
            10,
            0,
        );
        assert!(answers.remembered(&digest("a"), 0).is_none());
        assert!(answers.remembered(&digest("b"), 0).is_none());
    }

    fn active_until(exp: Option<u64>) -> VerifiedToken {
        let mut claims = serde_json::Map::new();
        if let Some(exp) = exp {
            claims.insert("exp".into(), exp.into());
        }
        VerifiedToken::from_claims(claims).unwrap()
    }

    #[test]
    fn tokens_active_before_are_known_until_exp_and_until_refused() {
        let answers = Answers::new(4, 30);
        // Remembered for 10 s, but active until its exp (plus the leeway).
        answers.remember_active(digest("a"), active_until(Some(1000)), 10, 0);
        assert!(answers.remembered(&digest("a"), 10).is_none());
        assert!(answers.was_active(&digest("a"), 1029));
        assert!(!answers.was_active(&digest("a"), 1030));
        assert_eq!(answers.seen_len(), 0, "expired entries go when looked at");
        // Without exp: for an hour after the last active answer.
        answers.remember_active(digest("b"), active_until(None), 10, 0);
        assert!(answers.was_active(&digest("b"), SEEN_WITHOUT_EXP - 1));
        answers.remember_active(digest("b"), active_until(None), 10, 100);
        assert!(answers.was_active(&digest("b"), SEEN_WITHOUT_EXP + 99));
        // Refused since (revoked): forgotten.
        let inactive = TokenError::new(TokenErrorKind::Inactive);
        answers.remember_refused(digest("b"), inactive, 10, 200);
        assert!(!answers.was_active(&digest("b"), 200));
        // Junk: refused, never active, never known.
        for i in 0..100 {
            let inactive = TokenError::new(TokenErrorKind::Inactive);
            answers.remember_refused(digest(&format!("junk{i}")), inactive, 10, 0);
        }
        assert_eq!(answers.seen_len(), 0);
        // Nothing remembered at all: nothing known either.
        let none = Answers::new(0, 30);
        none.remember_active(digest("a"), active_until(Some(1000)), 10, 0);
        assert!(!none.was_active(&digest("a"), 0));
    }

    #[test]
    fn tokens_active_before_are_bounded_the_soonest_to_expire_go_first() {
        let answers = Answers::new(8, 0);
        for i in 0..8u64 {
            let token = active_until(Some(1000 + i));
            answers.remember_active(digest(&i.to_string()), token, 10, 0);
        }
        assert_eq!(answers.seen_len(), 8);
        // Full: one more drops an eighth (one), the one that expires first.
        answers.remember_active(digest("late"), active_until(Some(5000)), 10, 0);
        assert_eq!(answers.seen_len(), 8);
        assert!(!answers.was_active(&digest("0"), 0));
        assert!(answers.was_active(&digest("1"), 0));
        assert!(answers.was_active(&digest("late"), 0));
        // Expired entries go before any other.
        answers.remember_active(digest("later"), active_until(Some(6000)), 10, 1003);
        assert!(answers.was_active(&digest("later"), 1003));
        assert!(answers.was_active(&digest("7"), 1003));
        assert!(answers.seen_len() <= 8);
        for i in 0..1000 {
            let token = active_until(Some(2000));
            answers.remember_active(digest(&format!("many{i}")), token, 10, 0);
            assert!(answers.seen_len() <= 8);
        }
    }

    #[tokio::test]
    async fn one_call_in_flight_per_token() {
        let answers = Answers::new(4, 0);
        let mut started = 0;
        let mut calls = Vec::new();
        for _ in 0..3 {
            let lookup = answers.lookup_or_start(digest("t"), 0, || {
                started += 1;
                Ok(async { Ok(token()) }.boxed().shared())
            });
            match lookup {
                Lookup::Waiting(call) => calls.push(call),
                _ => panic!("expected the call in flight"),
            }
        }
        assert_eq!(started, 1);
        for call in calls {
            assert!(call.await.is_ok());
        }
        answers.finished(&digest("t"));
        assert_eq!(answers.sizes().2, 0);
    }

    /// The interleaving of issue 31, forced step by step: a request misses
    /// (`remembered`, without the in-flight lock) while a call is in
    /// flight, the call remembers its answer and leaves the in-flight map,
    /// and only then does the request go on to `lookup_or_start`. It must
    /// find the answer, and start no second call.
    fn missed_then_call_ended(
        remember: impl FnOnce(&Answers, TokenDigest),
    ) -> Result<VerifiedToken, TokenError> {
        let answers = Answers::new(4, 0);
        let key = digest("t");

        // A call starts for the token.
        let lookup = answers.lookup_or_start(key, 0, || Ok(async { Ok(token()) }.boxed().shared()));
        assert!(matches!(lookup, Lookup::Waiting(_)));

        // Another request misses: no answer yet.
        assert!(answers.remembered(&key, 0).is_none());

        // The call ends: its answer remembered, then out of the map.
        remember(&answers, key);
        answers.finished(&key);
        assert_eq!(answers.sizes().2, 0);

        // The request goes on from its miss.
        match answers.lookup_or_start(key, 0, || {
            panic!("a second call started for a token already answered")
        }) {
            Lookup::Known(known) => known,
            Lookup::Waiting(_) => panic!("waiting for a call that is over"),
            Lookup::NotStarted(error) => panic!("{error}"),
        }
    }

    #[test]
    fn a_request_that_missed_before_an_active_answer_takes_it() {
        let known = missed_then_call_ended(|answers, key| {
            answers.remember_active(key, token(), 100, 0);
        });
        assert!(known.is_ok());
    }

    #[test]
    fn a_request_that_missed_before_a_refusal_takes_it() {
        let known = missed_then_call_ended(|answers, key| {
            let error = TokenError::new(TokenErrorKind::Inactive);
            answers.remember_refused(key, error, 100, 0);
        });
        assert_eq!(known.unwrap_err().kind(), TokenErrorKind::Inactive);
    }
}
