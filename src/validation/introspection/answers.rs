//! What the introspection endpoint said, remembered: active tokens until the
//! earlier of their `exp` and a maximum age, refusals for a short while, and
//! one call in flight per token.

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
    active: VerifiedCache,
    /// Definitive refusals (inactive, expired, not ours), until the given
    /// time. Anyone can send junk tokens, so this map (and the next) hashes
    /// with SipHash under a random key rather than with the digest's own
    /// bytes, which only the cache of verified tokens can afford.
    refused: Mutex<HashMap<TokenDigest, (TokenError, u64)>>,
    capacity: usize,
    /// The calls in flight.
    in_flight: Mutex<HashMap<TokenDigest, InFlight>>,
}

/// What [`Answers::lookup`] found.
pub(super) enum Lookup {
    Known(Result<VerifiedToken, TokenError>),
    Waiting(InFlight),
    /// No call was in flight, and `start()` could not start one.
    NotStarted(TokenError),
}

impl Answers {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            active: VerifiedCache::new(capacity),
            refused: Mutex::new(HashMap::new()),
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
        self.active.insert(key, token, until, 0, now);
    }

    pub(super) fn remember_refused(
        &self,
        key: TokenDigest,
        error: TokenError,
        until: u64,
        now: u64,
    ) {
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
        let answers = Answers::new(4);
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
        let answers = Answers::new(8);
        for i in 0..100 {
            let error = TokenError::new(TokenErrorKind::Inactive);
            answers.remember_refused(digest(&i.to_string()), error, 1000, 0);
            assert!(answers.sizes().1 <= 8);
        }
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let answers = Answers::new(0);
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

    #[tokio::test]
    async fn one_call_in_flight_per_token() {
        let answers = Answers::new(4);
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
        let answers = Answers::new(4);
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
