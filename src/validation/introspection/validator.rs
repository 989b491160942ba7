use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt as _;

use super::answers::{Answers, InFlight, Lookup};
use super::builder::IntrospectionValidatorBuilder;
use super::exchange::Exchange;
use super::response::{Expectations, Refused, check_answer};
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
/// - `exp` not passed and `nbf` not ahead (with a leeway, default 30 s);
///   `iss` exactly the [issuer](IntrospectionValidatorBuilder::issuer) and
///   `aud` naming an [audience](IntrospectionValidatorBuilder::audience),
///   each required when configured (`exp` with
///   [`require_exp`](IntrospectionValidatorBuilder::require_exp));
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
/// each. Concurrent requests with the same unknown token share one call.
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
///     .timeout(Duration::from_secs(2))
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
    pub(super) cache_ttl: Duration,
    pub(super) inactive_ttl: Duration,
    pub(super) answers: Answers,
    /// The fleet's shared answers (L2), if set.
    pub(super) shared: Option<super::shared::SharedAnswers>,
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
            .finish_non_exhaustive()
    }
}

impl IntrospectionValidator {
    /// A builder.
    pub fn builder() -> IntrospectionValidatorBuilder {
        IntrospectionValidatorBuilder::default()
    }

    /// Asks the endpoint, remembers a definitive answer, and leaves the
    /// in-flight map. Runs in its own task.
    async fn call(self, token: String, key: TokenDigest) -> Result<VerifiedToken, TokenError> {
        let inner = &self.inner;
        // The fleet's shared answers (L2) first, when set.
        let recall = match super::shared::recall(inner, &key).await {
            super::shared::Recall::Found(found) => {
                inner.answers.finished(&key);
                return found;
            }
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
        inner.answers.finished(&key);
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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ValidateToken for IntrospectionValidator {
    type Future = IntrospectionFuture;

    fn validate(&self, token: &str) -> IntrospectionFuture {
        let key = digest(token);
        let now = now();
        if let Some(known) = self.inner.answers.remembered(&key, now) {
            crate::metrics::validation_cache(Validator::Introspection, true);
            return IntrospectionFuture::ready(known);
        }
        let lookup = self.inner.answers.lookup_or_start(key, now, || {
            let call = self.clone().call(token.to_owned(), key);
            // In its own task: a request that goes away must not cancel the
            // call the others wait for.
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let task = runtime.spawn(call);
                    async move {
                        task.await.unwrap_or_else(|_| {
                            Err(TokenError::with_detail(
                                TokenErrorKind::IntrospectionUnavailable,
                                "the introspection task ended without an answer",
                            ))
                        })
                    }
                    .boxed()
                    .shared()
                }
                Err(_) => call.boxed().shared(),
            }
        });
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
