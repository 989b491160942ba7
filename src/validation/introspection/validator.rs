use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use futures_util::FutureExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::answers::{Answers, InFlight, Lookup};
use super::builder::IntrospectionValidatorBuilder;
use super::exchange::Exchange;
use super::response::{Expectations, Refused, check_answer};
use super::shape::ShapeCheck;
use crate::metrics::{Introspection, Validator};
use crate::validation::cache::{TokenDigest, digest};
use crate::validation::{TokenError, TokenErrorKind, ValidateToken, VerifiedToken};

/// Validates opaque access tokens by asking the authorization server about
/// them: OAuth 2.0 Token Introspection (RFC 7662), with the `cnf` of RFC
/// 8705 section 3.2 and RFC 9449 section 6.2.
///
/// For a token it has no answer for, it POSTs
/// `token=...&token_type_hint=access_token` to the introspection endpoint
/// (configured, or found in the issuer's metadata), authenticated with
/// `client_secret_basic`, `client_secret_post` or `tls_client_auth`, and
/// checks the answer as strictly as a JWT:
///
/// - a JSON object that names no member twice, `active` a boolean and
///   `true` (`false` is `401 invalid_token`);
/// - `exp` not passed and `nbf` not ahead (with a leeway, default 30 s;
///   `exp` required with
///   [`require_exp`](IntrospectionValidatorBuilder::require_exp));
/// - `iss` present and exactly the
///   [issuer](IntrospectionValidatorBuilder::issuer), and `aud` present and
///   naming an [audience](IntrospectionValidatorBuilder::audience), as for
///   a JWT: both settings are required; an answer without `aud` is
///   accepted only with
///   [`allow_missing_audience`](IntrospectionValidatorBuilder::allow_missing_audience)
///   (a present `aud` is still checked);
/// - `cnf` well-formed, and `token_type`, when present, consistent with it
///   (`DPoP` with `cnf.jkt`, anything else without).
///
/// The answer becomes a [`VerifiedToken`] (its members are the claims), so
/// [`CnfValidationLayer`](crate::CnfValidationLayer) checks the binding its
/// `cnf` names exactly as for a JWT: the client certificate for
/// `x5t#S256`, a DPoP proof for `jkt`, on every request, whether the answer
/// came from the cache or not.
///
/// Answers are remembered under the SHA-256 digest of the token (never the
/// token): an active one until the earlier of its `exp` and
/// [`cache_ttl`](IntrospectionValidatorBuilder::cache_ttl) (default 60 s),
/// a refusal for [`inactive_ttl`](IntrospectionValidatorBuilder::inactive_ttl)
/// (default 10 s); at most
/// [`cache_capacity`](IntrospectionValidatorBuilder::cache_capacity) of
/// each. Concurrent requests with the same unknown token share one call,
/// and at most
/// [`max_concurrent_calls`](IntrospectionValidatorBuilder::max_concurrent_calls)
/// calls (default 64) are in flight: a token that would need one more gets
/// [`TokenErrorKind::IntrospectionUnavailable`] at once, without a call.
/// An eighth of them
/// ([`recheck_reserve`](IntrospectionValidatorBuilder::recheck_reserve))
/// is kept for re-checks, tokens the endpoint said were active before
/// whose remembered answer has ended, so that a flood of made-up tokens
/// cannot keep the clients this resource server knows out; a token never
/// seen active still gets `503` while the flood holds the other slots.
///
/// Before any call, a token that cannot be the issuer's is refused with
/// [`TokenErrorKind::UnexpectedShape`] (`401 invalid_token`): longer than
/// [`max_token_length`](IntrospectionValidatorBuilder::max_token_length)
/// (default 4 KiB), or refused by the issuer's
/// [`token_shape`](IntrospectionValidatorBuilder::token_shape).
///
/// An endpoint that is down, slower than the
/// [timeout](IntrospectionValidatorBuilder::timeout) (default 5 s), or that
/// answers anything but a `200` with a usable RFC 7662 object (up to
/// 64 KiB) gives [`TokenErrorKind::IntrospectionUnavailable`]: `503` with
/// `Retry-After`, and a `warn` event. Such failures are not remembered.
/// Neither the token nor the client secret reaches `Debug` or the logs.
///
/// ```
/// use std::time::Duration;
/// use tower_token_binding::CnfValidationLayer;
/// use tower_token_binding::validation::IntrospectionValidator;
///
/// let validator = IntrospectionValidator::builder()
///     .discover("https://login.example.com")
///     .client_id("orders-api")
///     .client_secret_basic("s3cret")
///     .issuer("https://login.example.com")
///     .audience("https://orders.example.com")
///     .introspection_timeout(Duration::from_secs(2))
///     .build()
///     .unwrap();
/// assert!(!format!("{validator:?}").contains("s3cret"));
/// let layer = CnfValidationLayer::new(validator);
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct IntrospectionValidator {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) exchange: Exchange,
    pub(super) expect: Expectations,
    /// What is refused before any call.
    pub(super) shape: ShapeCheck,
    pub(super) cache_ttl: Duration,
    pub(super) inactive_ttl: Duration,
    pub(super) answers: Answers,
    /// One permit per call in flight, for any token: the
    /// [`max_concurrent_calls`](IntrospectionValidatorBuilder::max_concurrent_calls)
    /// less the [`recheck_reserve`](IntrospectionValidatorBuilder::recheck_reserve).
    pub(super) calls: Arc<Semaphore>,
    /// The permits kept for re-checks: calls for tokens the endpoint said
    /// were active before, taken when `calls` has none left.
    pub(super) rechecks: Arc<Semaphore>,
    pub(super) max_calls: usize,
    pub(super) recheck_reserve: usize,
    /// When (Unix seconds) the last "too many calls" warning went out: at
    /// most one a second.
    pub(super) last_overload_warning: AtomicU64,
    /// The fleet's shared answers (L2), if set.
    pub(super) shared: Option<super::shared::SharedAnswers>,
}

/// Takes the token's call out of the in-flight map when dropped: when the
/// call ends, and also when its task is cancelled (its runtime shuts down)
/// or panics, or is dropped before it ever ran, so that no later request
/// waits on a call that will never answer.
struct Finished {
    validator: IntrospectionValidator,
    key: TokenDigest,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.validator.inner.answers.finished(&self.key);
    }
}

impl fmt::Debug for IntrospectionValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("IntrospectionValidator")
            .field("endpoint", &inner.exchange.endpoint)
            .field("client_id", &inner.exchange.client_id)
            .field("auth", &inner.exchange.auth.name())
            .field("issuer", &inner.expect.issuer)
            .field("audiences", &inner.expect.audiences)
            .field("timeout", &inner.exchange.timeout)
            .field("cache_ttl", &inner.cache_ttl)
            .field("inactive_ttl", &inner.inactive_ttl)
            .field("max_concurrent_calls", &inner.max_calls)
            .field("recheck_reserve", &inner.recheck_reserve)
            .field("max_token_length", &inner.shape.max_length)
            .field("token_shape", &inner.shape.shape.as_ref().map(|_| "set"))
            .finish_non_exhaustive()
    }
}

impl IntrospectionValidator {
    /// A builder.
    pub fn builder() -> IntrospectionValidatorBuilder {
        IntrospectionValidatorBuilder::default()
    }

    /// The call for `token`, to be spawned, and the shared future of its
    /// answer. The call holds `permit` and the [`Finished`] guard, made
    /// here (not at its first poll), so that it leaves the in-flight map
    /// however it ends; if it ends without an answer, the waiters get
    /// `IntrospectionUnavailable`.
    fn start_call(
        &self,
        token: String,
        key: TokenDigest,
        permit: OwnedSemaphorePermit,
    ) -> (impl Future<Output = ()> + Send + 'static, InFlight) {
        let (answer, answered) = oneshot::channel();
        let finished = Finished {
            validator: self.clone(),
            key,
        };
        let this = self.clone();
        let call = async move {
            let result = this.call(token, key).await;
            // Out of the in-flight map before the waiters hear: a request
            // that comes after finds the remembered answer, or starts anew.
            drop(finished);
            drop(permit);
            let _ = answer.send(result);
        };
        let in_flight = async move {
            answered.await.unwrap_or_else(|_| {
                Err(TokenError::with_detail(
                    TokenErrorKind::IntrospectionUnavailable,
                    "the introspection call ended without an answer",
                ))
            })
        }
        .boxed()
        .shared();
        (call, in_flight)
    }

    /// A call slot for the token: any free one, else, for a token the
    /// endpoint said was active before (a re-check), one of those kept for
    /// re-checks; else the refusal of [`overloaded`](Self::overloaded).
    fn permit(&self, key: &TokenDigest, now: u64) -> Result<OwnedSemaphorePermit, TokenError> {
        let inner = &self.inner;
        if let Ok(permit) = inner.calls.clone().try_acquire_owned() {
            return Ok(permit);
        }
        if inner.recheck_reserve > 0 && inner.answers.was_active(key, now) {
            if let Ok(permit) = inner.rechecks.clone().try_acquire_owned() {
                return Ok(permit);
            }
        }
        Err(self.overloaded(now))
    }

    /// The refusal when `max_concurrent_calls` calls are in flight already:
    /// counted, and a `warn` event at most once a second.
    fn overloaded(&self, now: u64) -> TokenError {
        crate::metrics::introspection_call(Introspection::Overloaded);
        let inner = &self.inner;
        let last = inner.last_overload_warning.load(Ordering::Relaxed);
        if last != now
            && inner
                .last_overload_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                endpoint = ?inner.exchange.endpoint,
                max_concurrent_calls = inner.max_calls,
                "too many token introspection calls in flight; answering 503 \
                 (at most one such warning a second)"
            );
        }
        TokenError::with_detail(
            TokenErrorKind::IntrospectionUnavailable,
            "too many introspection calls in flight",
        )
    }

    /// Asks the endpoint and remembers a definitive answer. Runs in its own
    /// task (see [`start_call`](Self::start_call)).
    async fn call(self, token: String, key: TokenDigest) -> Result<VerifiedToken, TokenError> {
        let inner = &self.inner;
        // The fleet's shared answers (L2) first, when set. (The call leaves
        // the in-flight map when its task's `Finished` guard drops.)
        let recall = match super::shared::recall(inner, &key).await {
            super::shared::Recall::Found(found) => return found,
            missed_or_skipped => missed_or_skipped,
        };
        let result = match inner.exchange.introspect(&token).await {
            Ok(body) => {
                let now = now();
                match check_answer(&body, &inner.expect, now) {
                    Ok(verified) => {
                        crate::metrics::introspection_call(Introspection::Active);
                        let max = now.saturating_add(inner.cache_ttl.as_secs());
                        let until = verified.expires_at().map_or(max, |exp| exp.min(max));
                        inner
                            .answers
                            .remember_active(key, verified.clone(), until, now);
                        Ok(verified)
                    }
                    Err(Refused::Token(error)) => {
                        crate::metrics::introspection_call(Introspection::Inactive);
                        let until = now.saturating_add(inner.inactive_ttl.as_secs());
                        inner
                            .answers
                            .remember_refused(key, error.clone(), until, now);
                        Err(error)
                    }
                    Err(Refused::Garbage(why)) => {
                        crate::metrics::introspection_call(Introspection::InvalidResponse);
                        Err(unavailable(&inner.exchange, why))
                    }
                }
            }
            Err(no_answer) => {
                crate::metrics::introspection_call(Introspection::Unavailable);
                Err(unavailable(&inner.exchange, no_answer.0))
            }
        };
        super::shared::share(inner, &recall, &key, &token, &result).await;
        result
    }
}

/// The error for an endpoint that gave no usable answer, with its `warn`
/// event (the endpoint and why; never the token).
fn unavailable(exchange: &Exchange, why: String) -> TokenError {
    tracing::warn!(
        endpoint = ?exchange.endpoint,
        error = %why,
        "token introspection failed; answering 503"
    );
    TokenError::with_detail(TokenErrorKind::IntrospectionUnavailable, why)
}

pub(super) fn now() -> u64 {
    crate::clock::wall()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ValidateToken for IntrospectionValidator {
    type Future = IntrospectionFuture;

    fn validate(&self, token: &str) -> IntrospectionFuture {
        // What cannot be the issuer's costs it nothing: no call, no slot,
        // no remembered refusal (nor the digest of a huge token).
        if let Err(error) = self.inner.shape.check(token) {
            crate::metrics::introspection_call(Introspection::UnexpectedShape);
            return IntrospectionFuture::ready(Err(error));
        }
        let key = digest(token);
        let now = now();
        if let Some(known) = self.inner.answers.remembered(&key, now) {
            crate::metrics::validation_cache(Validator::Introspection, true);
            return IntrospectionFuture::ready(known);
        }
        // Without a runtime there is no task to call from (nor a timer for
        // the timeout): no answer, at once.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return IntrospectionFuture::ready(Err(unavailable(
                &self.inner.exchange,
                "no Tokio runtime to call the introspection endpoint from".to_owned(),
            )));
        };
        let mut call = None;
        let lookup = self.inner.answers.lookup_or_start(key, now, || {
            let permit = self.permit(&key, now)?;
            let (task, in_flight) = self.start_call(token.to_owned(), key, permit);
            call = Some(task);
            Ok(in_flight)
        });
        // In its own task, spawned once the in-flight map is unlocked: a
        // request that goes away must not cancel the call the others wait
        // for.
        if let Some(call) = call {
            runtime.spawn(call);
        }
        match lookup {
            Lookup::Known(known) => {
                crate::metrics::validation_cache(Validator::Introspection, true);
                IntrospectionFuture::ready(known)
            }
            Lookup::Waiting(call) => {
                crate::metrics::validation_cache(Validator::Introspection, false);
                IntrospectionFuture {
                    state: State::Waiting(call),
                }
            }
            Lookup::NotStarted(error) => {
                crate::metrics::validation_cache(Validator::Introspection, false);
                IntrospectionFuture::ready(Err(error))
            }
        }
    }
}

/// The future of [`IntrospectionValidator`]: ready at once when the answer
/// is remembered, else waiting for the one call in flight for the token.
pub struct IntrospectionFuture {
    state: State,
}

enum State {
    Ready(Option<Result<VerifiedToken, TokenError>>),
    Waiting(InFlight),
}

impl IntrospectionFuture {
    fn ready(result: Result<VerifiedToken, TokenError>) -> Self {
        Self {
            state: State::Ready(Some(result)),
        }
    }
}

impl fmt::Debug for IntrospectionFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionFuture")
            .finish_non_exhaustive()
    }
}

impl Future for IntrospectionFuture {
    type Output = Result<VerifiedToken, TokenError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(TokenError::with_detail(
                    TokenErrorKind::Other,
                    "polled after completion",
                ))
            })),
            State::Waiting(call) => Pin::new(call).poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator() -> IntrospectionValidator {
        IntrospectionValidator::builder()
            .endpoint("https://127.0.0.1:9/introspect")
            .client_id("rs")
            .client_secret_basic("s3cret")
            .issuer("https://as.example")
            .audience("https://api.example")
            .build()
            .unwrap()
    }

    fn in_flight(validator: &IntrospectionValidator) -> usize {
        validator.inner.answers.sizes().2
    }

    #[test]
    fn without_a_runtime_no_answer_at_once() {
        let validator = validator();
        let result = validator.validate("t").now_or_never();
        let error = result.expect("ready at once").unwrap_err();
        assert_eq!(error.kind(), TokenErrorKind::IntrospectionUnavailable);
        assert_eq!(in_flight(&validator), 0);
    }

    #[test]
    fn a_call_that_never_ends_leaves_the_in_flight_map() {
        let validator = validator();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // The call is spawned but never runs: the runtime goes away first,
        // and drops it.
        let entered = runtime.enter();
        let waiting = validator.validate("t");
        drop(entered);
        assert_eq!(in_flight(&validator), 1);
        drop(runtime);
        assert_eq!(in_flight(&validator), 0);
        // The request that waited hears that there is no answer.
        let error = waiting.now_or_never().expect("answered").unwrap_err();
        assert_eq!(error.kind(), TokenErrorKind::IntrospectionUnavailable);
    }

    #[test]
    fn slots_kept_for_tokens_active_before() {
        let validator = IntrospectionValidator::builder()
            .endpoint("https://127.0.0.1:9/introspect")
            .client_id("rs")
            .client_secret_basic("s3cret")
            .issuer("https://as.example")
            .audience("https://api.example")
            .max_concurrent_calls(3)
            .recheck_reserve(1)
            .build()
            .unwrap();
        let inner = &validator.inner;
        let known = digest("known");
        let active = VerifiedToken::from_claims(serde_json::Map::new()).unwrap();
        inner.answers.remember_active(known, active, 0, now());
        let now = now();
        // Two slots for any token; the third only for a re-check.
        let junk: Vec<_> = (0..2)
            .map(|i| validator.permit(&digest(&format!("junk{i}")), now))
            .collect();
        assert!(junk.iter().all(Result::is_ok));
        let refused = validator.permit(&digest("junk2"), now).unwrap_err();
        assert_eq!(refused.kind(), TokenErrorKind::IntrospectionUnavailable);
        let recheck = validator.permit(&known, now).expect("a kept slot");
        // The kept slot is taken: the next re-check waits like the others.
        assert!(validator.permit(&known, now).is_err());
        drop(recheck);
        assert!(validator.permit(&known, now).is_ok());
        // A re-check takes a free slot of the rest first.
        drop(junk);
        let first = validator.permit(&known, now).unwrap();
        let second = validator.permit(&known, now).unwrap();
        assert_eq!(inner.calls.available_permits(), 0);
        assert_eq!(inner.rechecks.available_permits(), 1);
        drop((first, second));
    }

    #[tokio::test]
    async fn a_failed_call_leaves_the_in_flight_map() {
        let validator = validator();
        let error = validator.validate("t").await.unwrap_err();
        assert_eq!(error.kind(), TokenErrorKind::IntrospectionUnavailable);
        assert_eq!(in_flight(&validator), 0);
    }
}
