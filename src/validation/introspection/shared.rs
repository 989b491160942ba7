//! The answers of a fleet (L2): what one replica's introspection call
//! learned, shared with the other replicas through a [`SharedTokenCache`]
//! (in Redis: `RedisTokenCache`, feature `redis`), under each replica's
//! in-memory answers (L1).
//!
//! - **Key**: the store's prefix, then, as a hash tag, SHA-256 over a fixed
//!   label and the token's SHA-256 (base64url). Never the token; the label
//!   keeps these keys apart from the token cache's.
//! - **Value**: JSON `{"v":1,"until":<unix s>,"answer":{...}}`: the answer's
//!   members after the strict check (RFC 7662 answers carry no token;
//!   members that could, such as `token` or `access_token`, are dropped,
//!   and an answer that still contains the token is not shared), or
//!   `{"active":false}` for an inactive token.
//! - **Lifetime**: as in L1: an active answer until the earlier of its
//!   `exp` and `cache_ttl`, an inactive one for `inactive_ttl` (a flood of
//!   junk tokens reaches the endpoint once for the whole fleet). Other
//!   refusals (wrong audience, expired) depend on a replica's settings
//!   and are not shared.
//! - **Read back strictly**: a value found is checked again like an
//!   answer from the endpoint (with this replica's issuer, audiences and
//!   clock); anything else (garbage, another version, expired) is a miss,
//!   logged at `debug`, counted `Unusable`, and replaced.
//! - **Outages never fail a request**: each operation is bounded (100 ms
//!   by default); a store that errs or is slow is skipped (the endpoint is
//!   asked, the source of truth), counted `Unavailable` and
//!   `FetchedDirectly`, and logged at `warn` at most every 10 s (`debug`
//!   otherwise).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::builder::IntrospectionValidatorBuilder;
use super::response::{Refused, check_answer};
use super::validator::{Inner, now};
use crate::json::strict_value;
use crate::token::{BoxError, SharedCacheEvent, SharedKey, SharedTokenCache};
use crate::validation::cache::TokenDigest;
use crate::validation::{TokenError, TokenErrorKind, VerifiedToken};
use crate::warn_limit::WarnLimit;

/// How long one operation on the store may take by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);

/// What the token's digest is hashed with, for the store's key.
const LABEL: &[u8] = b"tower-token-binding introspection answer\0";

/// Members that could carry a token (none of them is RFC 7662's).
const TOKEN_MEMBERS: [&str; 4] = ["token", "access_token", "refresh_token", "id_token"];

/// At most one `warn` event per this many seconds.
const WARN_EVERY_SECS: u64 = 10;

/// The format of the values.
const VERSION: u32 = 1;

impl IntrospectionValidatorBuilder {
    /// Shares answers with the other replicas of a fleet through `cache`
    /// (such as a `RedisTokenCache`, feature `redis`; give it its own
    /// prefix), under the in-memory answers: a token unknown here is
    /// looked up there first (one `GET`), and an answer from the endpoint
    /// is written there (one `SET`), active ones for as long as they are
    /// kept in memory, inactive ones for
    /// [`inactive_ttl`](Self::inactive_ttl). Keys are digests of the
    /// tokens; values are the checked answers, never a token. The binding
    /// is still checked on every request.
    ///
    /// A cache that fails or is slower than
    /// [`shared_cache_timeout`](Self::shared_cache_timeout) is skipped and
    /// the endpoint asked: it never fails a request.
    ///
    /// Whoever can write to the cache can make a token look active (a
    /// value found is checked like an endpoint's answer, against this
    /// validator's issuer and audiences, but it is believed): guard it as
    /// well as the introspection credentials. Validators for different
    /// authorization servers should not share a prefix.
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")]
    /// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use tower_token_binding::token::RedisTokenCache;
    /// use tower_token_binding::validation::IntrospectionValidator;
    ///
    /// let answers = RedisTokenCache::connect("redis://redis:6379")
    ///     .await?
    ///     .prefix("ttb:introspection:")?;
    /// let validator = IntrospectionValidator::builder()
    ///     .discover("https://login.example.com")
    ///     .client_id("orders-api")
    ///     .client_secret_basic("s3cret")
    ///     .shared_cache(answers.clone())
    ///     .build()?;
    /// // answers.stats(): hits, misses, stored, unavailable, ...
    /// # let _ = validator;
    /// # Ok(())
    /// # }
    /// ```
    pub fn shared_cache(mut self, cache: impl SharedTokenCache) -> Self {
        self.shared.store = Some(Arc::new(cache));
        self
    }

    /// How long one operation on the [shared cache](Self::shared_cache)
    /// may take before it is skipped for this token. Default 100 ms.
    pub fn shared_cache_timeout(mut self, timeout: Duration) -> Self {
        self.shared.timeout = Some(timeout);
        self
    }
}

/// The builder's settings for the shared cache.
#[derive(Clone, Default)]
pub(super) struct SharedSettings {
    store: Option<Arc<dyn SharedTokenCache>>,
    timeout: Option<Duration>,
}

impl SharedSettings {
    pub(super) fn build(self) -> Option<SharedAnswers> {
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        self.store.map(|store| SharedAnswers {
            store,
            timeout,
            warnings: WarnLimit::every(Duration::from_secs(WARN_EVERY_SECS)),
        })
    }
}

/// The shared cache of a validator.
pub(super) struct SharedAnswers {
    store: Arc<dyn SharedTokenCache>,
    timeout: Duration,
    /// At most one `warn` event every [`WARN_EVERY_SECS`].
    warnings: WarnLimit,
}

impl fmt::Debug for SharedAnswers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedAnswers")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What the shared cache said about a token.
pub(super) enum Recall {
    /// An answer, now also in L1.
    Found(Result<VerifiedToken, TokenError>),
    /// Nothing usable: the endpoint's answer is to be written.
    Missed,
    /// No shared cache, or it failed: the endpoint is asked, nothing is
    /// written.
    Skipped,
}

/// What is stored.
#[derive(Serialize, Deserialize)]
struct Entry {
    v: u32,
    /// Unix seconds; not used from then on.
    until: u64,
    /// The answer's members.
    answer: Map<String, Value>,
}

/// The store's key for the token with digest `digest`.
fn store_key(digest: &TokenDigest) -> SharedKey {
    let mut hash = Sha256::new();
    hash.update(LABEL);
    hash.update(digest);
    SharedKey::from_digest(hash.finalize().into())
}

/// Looks the token up in the shared cache, if there is one; an answer
/// found is remembered in L1 as well.
pub(super) async fn recall(inner: &Inner, key: &TokenDigest) -> Recall {
    let Some(shared) = &inner.shared else {
        return Recall::Skipped;
    };
    let found = match shared.bounded(shared.store.get(&store_key(key))).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            shared.store.record(SharedCacheEvent::Miss);
            return Recall::Missed;
        }
        Err(()) => {
            shared.store.record(SharedCacheEvent::FetchedDirectly);
            return Recall::Skipped;
        }
    };
    let now = now();
    let (answer, until) = match read(&found, inner, now) {
        Ok(read) => read,
        Err(why) => {
            shared.store.record(SharedCacheEvent::Unusable);
            tracing::debug!(
                why,
                "an unusable introspection answer in the shared cache: a miss"
            );
            return Recall::Missed;
        }
    };
    shared.store.record(SharedCacheEvent::Hit);
    match &answer {
        Ok(verified) => {
            let max = until.min(now.saturating_add(inner.cache_ttl.as_secs()));
            let until = verified.expires_at().map_or(max, |exp| exp.min(max));
            inner
                .answers
                .remember_active(*key, verified.clone(), until, now);
        }
        Err(error) => {
            let until = until.min(now.saturating_add(inner.inactive_ttl.as_secs()));
            inner
                .answers
                .remember_refused(*key, error.clone(), until, now);
        }
    }
    Recall::Found(answer)
}

/// A value from the store, checked like an answer from the endpoint, and
/// the time it is good until; or why it is unusable.
fn read(
    value: &[u8],
    inner: &Inner,
    now: u64,
) -> Result<(Result<VerifiedToken, TokenError>, u64), &'static str> {
    let value = strict_value(value).map_err(|_| "not strict JSON")?;
    // The error itself is not logged: it could quote the value.
    let entry: Entry = serde_json::from_value(value).map_err(|_| "not an entry")?;
    if entry.v != VERSION {
        return Err("another format version");
    }
    if entry.until <= now {
        return Err("expired");
    }
    let body = serde_json::to_vec(&entry.answer).map_err(|_| "not an entry")?;
    match check_answer(&body, &inner.expect, now) {
        Ok(verified) => Ok((Ok(verified), entry.until)),
        Err(Refused::Token(error)) => Ok((Err(error), entry.until)),
        Err(Refused::Garbage(_)) => Err("not a usable answer"),
    }
}

/// Writes the endpoint's definitive answer about `token` to the shared
/// cache, when the lookup missed (not when the cache failed: it would fail
/// again, and the request would wait twice).
pub(super) async fn share(
    inner: &Inner,
    recall: &Recall,
    key: &TokenDigest,
    token: &str,
    result: &Result<VerifiedToken, TokenError>,
) {
    let (Some(shared), Recall::Missed) = (&inner.shared, recall) else {
        return;
    };
    let now = now();
    let (answer, until) = match result {
        Ok(verified) => {
            let max = now.saturating_add(inner.cache_ttl.as_secs());
            let until = verified.expires_at().map_or(max, |exp| exp.min(max));
            match without_token(verified.claims(), token) {
                Some(answer) => (answer, until),
                None => return,
            }
        }
        Err(error) if error.kind() == TokenErrorKind::Inactive => {
            let mut answer = Map::new();
            answer.insert("active".to_owned(), Value::Bool(false));
            (answer, now.saturating_add(inner.inactive_ttl.as_secs()))
        }
        Err(_) => return,
    };
    if until <= now {
        return;
    }
    let entry = Entry {
        v: VERSION,
        until,
        answer,
    };
    let Ok(value) = serde_json::to_vec(&entry) else {
        return;
    };
    let ttl = Duration::from_secs(until - now);
    if shared
        .bounded(shared.store.put(&store_key(key), value, ttl))
        .await
        .is_ok()
    {
        shared.store.record(SharedCacheEvent::Stored);
    }
}

/// The members to share: without those that could carry a token, and
/// `None` when the token still appears anywhere (in a name or a string), so
/// such an answer is not shared at all (rather than shared changed).
fn without_token(claims: &Map<String, Value>, token: &str) -> Option<Map<String, Value>> {
    let mut answer = claims.clone();
    answer.retain(|name, _| !TOKEN_MEMBERS.contains(&name.as_str()));
    if token.is_empty() {
        return Some(answer);
    }
    let mut values: Vec<&Value> = answer.values().collect();
    if answer.keys().any(|name| name.contains(token)) {
        return None;
    }
    while let Some(value) = values.pop() {
        match value {
            Value::String(text) if text.contains(token) => return None,
            Value::Array(items) => values.extend(items),
            Value::Object(members) => {
                if members.keys().any(|name| name.contains(token)) {
                    return None;
                }
                values.extend(members.values());
            }
            _ => {}
        }
    }
    Some(answer)
}

impl SharedAnswers {
    /// Runs one store operation within the timeout; a failure is counted,
    /// logged (`warn` at most every 10 s, `debug` otherwise), and `Err(())`.
    async fn bounded<T>(
        &self,
        operation: BoxFuture<'static, Result<T, BoxError>>,
    ) -> Result<T, ()> {
        let failure = match tokio::time::timeout(self.timeout, operation).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        self.store.record(SharedCacheEvent::Unavailable);
        if let Some(suppressed) = self.warnings.allow() {
            tracing::warn!(
                error = %failure,
                suppressed,
                "the shared introspection cache failed: asking the endpoint (warned at most every 10 s)"
            );
        } else {
            tracing::debug!(
                error = %failure,
                "the shared introspection cache failed: asking the endpoint"
            );
        }
        Err(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn answers_are_shared_without_the_token() {
        let claims = map(json!({
            "active": true, "sub": "svc", "token": "tok-123",
            "access_token": "tok-123", "scope": "read"
        }));
        let shared = without_token(&claims, "tok-123").unwrap();
        assert_eq!(
            shared,
            map(json!({ "active": true, "sub": "svc", "scope": "read" }))
        );
        let echoed = map(json!({ "active": true, "ext": { "list": ["x tok-123 y"] } }));
        assert!(without_token(&echoed, "tok-123").is_none());
        let named = map(json!({ "active": true, "ext": { "tok-123": 1 } }));
        assert!(without_token(&named, "tok-123").is_none());
    }

    #[test]
    fn keys_are_digests_apart_from_the_token_digest() {
        let digest = crate::validation::cache::digest("tok-123");
        let key = store_key(&digest);
        assert_ne!(key.as_bytes(), &digest);
        assert!(!key.to_string().contains("tok-123"));
        assert_eq!(key.to_string().len(), 43);
    }
}
