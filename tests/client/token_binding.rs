//! `TokenBindingLayer` and `TokenCache` with counting sources: one fetch for
//! many callers, refresh ahead, failures and backoff, invalidation, schemes.
#![cfg(feature = "test-util")]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode, header};
use tower::retry::RetryLayer;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_token_binding::binding::{HeaderWord, Scheme};
use tower_token_binding::test_util::TestPki;
use tower_token_binding::token::{
    BoxError, CacheKey, Token, TokenCache, TokenSource, TokenUnavailable, TokenUnavailableKind,
};
use tower_token_binding::{ClientIdentity, TokenBindingLayer};

use crate::support;

/// What the inner service saw.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    authorization: Option<String>,
    sensitive: bool,
    thumbprint: Option<String>,
}

async fn echo(request: Request<String>) -> Result<Response<Seen>, Infallible> {
    let auth = request.headers().get(header::AUTHORIZATION);
    Ok(Response::new(Seen {
        authorization: auth.map(|v| v.to_str().unwrap().to_owned()),
        sensitive: auth.is_some_and(HeaderValue::is_sensitive),
        thumbprint: request
            .extensions()
            .get::<ClientIdentity>()
            .map(|i| i.thumbprint().to_string()),
    }))
}

/// A source that counts its fetches and yields tokens `token-1`,
/// `token-2`, ... with the lifetime `lifetime(n)`, bound to `identity` if
/// any; fails from fetch number `fail_from` on; from fetch number
/// `held_from` on, stays in flight until [`Counting::release`].
#[derive(Clone)]
struct Counting {
    fetches: Arc<AtomicUsize>,
    lifetime: fn(usize) -> Duration,
    identity: Option<ClientIdentity>,
    fail_from: usize,
    held_from: usize,
    // No permits: held fetches wait until it is closed.
    gate: Arc<tokio::sync::Semaphore>,
}

impl Counting {
    fn new(lifetime: fn(usize) -> Duration) -> Self {
        Self {
            fetches: Arc::new(AtomicUsize::new(0)),
            lifetime,
            identity: None,
            fail_from: usize::MAX,
            held_from: usize::MAX,
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }

    fn bound_to(mut self, identity: ClientIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    fn failing_from(mut self, n: usize) -> Self {
        self.fail_from = n;
        self
    }

    fn held_from(mut self, n: usize) -> Self {
        self.held_from = n;
        self
    }

    /// Lets held fetches, and every later one, go on.
    fn release(&self) {
        self.gate.close();
    }

    fn count(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl TokenSource for Counting {
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Token, BoxError>> + Send>>;

    fn fetch(&self) -> Self::Future {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let (lifetime, identity, fail) = (
            (self.lifetime)(n),
            self.identity.clone(),
            n >= self.fail_from,
        );
        let gate = (n >= self.held_from).then(|| self.gate.clone());
        Box::pin(async move {
            if let Some(gate) = gate {
                // Closed by `release`; no permit is ever added.
                let _ = gate.acquire().await;
            }
            if fail {
                return Err(format!("token endpoint down (fetch {n})").into());
            }
            let token = Token::new(format!("token-{n}")).expires_in(lifetime);
            Ok(match identity {
                Some(identity) => token.bound_to(identity),
                None => token,
            })
        })
    }
}

fn hour(_: usize) -> Duration {
    Duration::from_secs(3600)
}

async fn call_many<S>(service: S, n: usize) -> Vec<Result<Response<Seen>, BoxError>>
where
    S: Service<Request<String>, Response = Response<Seen>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let service = service.clone();
        tasks.spawn(async move { service.oneshot(Request::new(String::new())).await });
    }
    let mut out = Vec::new();
    while let Some(result) = tasks.join_next().await {
        out.push(result.unwrap());
    }
    out
}

/// Sends `n` requests at once, each on a task of its own, while `source`'s
/// held fetch is in flight; releases it once every request has been polled
/// (and so waits on that fetch).
async fn call_many_in_flight<S>(
    service: S,
    n: usize,
    source: &Counting,
) -> Vec<Result<Response<Seen>, BoxError>>
where
    S: Service<Request<String>, Response = Response<Seen>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let polled = Arc::new(AtomicUsize::new(0));
    let all_polled = Arc::new(tokio::sync::Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (service, polled, all_polled) = (service.clone(), polled.clone(), all_polled.clone());
        tasks.spawn(async move {
            let mut call = std::pin::pin!(service.oneshot(Request::new(String::new())));
            let first = std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx)));
            if let std::task::Poll::Ready(done) = first.await {
                panic!(
                    "answered while the fetch is held: {:?}",
                    done.map(|r| r.into_body())
                );
            }
            if polled.fetch_add(1, Ordering::SeqCst) + 1 == n {
                all_polled.notify_one();
            }
            call.await
        });
    }
    all_polled.notified().await;
    source.release();
    let mut out = Vec::new();
    while let Some(result) = tasks.join_next().await {
        out.push(result.unwrap());
    }
    out
}

fn auth(response: &Result<Response<Seen>, BoxError>) -> String {
    response
        .as_ref()
        .unwrap()
        .body()
        .authorization
        .clone()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_on_a_cold_cache_make_one_fetch() {
    let source = Counting::new(hour).held_from(1);
    let layer = TokenBindingLayer::bearer(source.clone());
    let cache = layer.cache().unwrap().clone();
    let service = ServiceBuilder::new().layer(layer).service_fn(echo);
    let responses = call_many_in_flight(service, 1000, &source).await;
    assert_eq!(source.count(), 1);
    assert!(responses.iter().all(|r| auth(r) == "Bearer token-1"));
    assert_eq!(cache.stats().fetches, 1);
}

// Paused time (nothing here does I/O): the clock moves only when told.
#[tokio::test(start_paused = true)]
async fn after_expiry_a_thousand_concurrent_requests_make_one_more_fetch() {
    // The first token lives 300 ms, the next ones an hour.
    let source = Counting::new(|n| {
        if n == 1 {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(3600)
        }
    })
    .held_from(2);
    let service = ServiceBuilder::new()
        .layer(TokenBindingLayer::bearer(source.clone()))
        .service_fn(echo);
    let first = service.clone().oneshot(Request::new(String::new())).await;
    assert_eq!(auth(&first), "Bearer token-1");
    tokio::time::advance(Duration::from_millis(400)).await;
    let responses = call_many_in_flight(service, 1000, &source).await;
    assert_eq!(source.count(), 2);
    assert!(responses.iter().all(|r| auth(r) == "Bearer token-2"));
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_happens_in_the_background_and_nobody_waits() {
    // Lifetime 4 s; refresh due after 1 s; the refresh waits until released.
    let source = Counting::new(|_| Duration::from_secs(4)).held_from(2);
    let cache = TokenCache::builder()
        .refresh_share(0.25)
        .jitter_share(0.0)
        .build(source.clone());
    let service = ServiceBuilder::new()
        .layer(TokenBindingLayer::with_cache(cache.clone(), Scheme::Bearer))
        .service_fn(echo);
    assert_eq!(
        auth(&service.clone().oneshot(Request::new(String::new())).await),
        "Bearer token-1"
    );

    tokio::time::advance(Duration::from_millis(1100)).await;
    // Due for refresh: these are served the current token at once (a
    // request that waited for the refresh would wait until it is released),
    // and start exactly one refresh.
    let responses = tokio::time::timeout(Duration::from_secs(10), call_many(service.clone(), 100))
        .await
        .expect("no request waits for the refresh");
    assert!(responses.iter().all(|r| auth(r) == "Bearer token-1"));
    // The token is still valid: the refresh is ahead of expiry.
    support::until(Duration::from_secs(1), || {
        cache.stats().fetches >= 2 && source.count() >= 2
    })
    .await;
    source.release();
    // Once done (the refresh task has run), requests get the new token.
    tokio::task::yield_now().await;
    let r = service.clone().oneshot(Request::new(String::new())).await;
    assert_eq!(auth(&r), "Bearer token-2", "the refreshed token arrived");
    assert_eq!(source.count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failing_refresh_keeps_serving_the_valid_token_and_backs_off() {
    // Lifetime 10 s; refresh due after 1 s; a backoff of 2 s, far longer
    // than the 50 requests that must all fall within it.
    let source = Counting::new(|_| Duration::from_secs(10)).failing_from(2);
    let cache = TokenCache::builder()
        .refresh_share(0.1)
        .jitter_share(0.0)
        .backoff(Duration::from_secs(2), Duration::from_secs(5))
        .build(source.clone());
    let service = ServiceBuilder::new()
        .layer(TokenBindingLayer::with_cache(cache.clone(), Scheme::Bearer))
        .service_fn(echo);
    assert_eq!(
        auth(&service.clone().oneshot(Request::new(String::new())).await),
        "Bearer token-1"
    );
    tokio::time::advance(Duration::from_millis(1100)).await;

    // Due for refresh; the refresh fails; the valid token is still served.
    for _ in 0..50 {
        let r = service.clone().oneshot(Request::new(String::new())).await;
        assert_eq!(auth(&r), "Bearer token-1");
    }
    support::until(Duration::from_millis(500), || cache.stats().failures >= 1).await;
    // Within the backoff, no new attempt however many requests come.
    for _ in 0..50 {
        assert_eq!(
            auth(&service.clone().oneshot(Request::new(String::new())).await),
            "Bearer token-1"
        );
    }
    assert_eq!(source.count(), 2, "one failed refresh, then backing off");
    // After the backoff, one more attempt; still the valid token.
    tokio::time::advance(Duration::from_millis(2100)).await;
    assert_eq!(
        auth(&service.clone().oneshot(Request::new(String::new())).await),
        "Bearer token-1"
    );
    support::until(Duration::from_millis(500), || cache.stats().failures >= 2).await;
    assert_eq!(source.count(), 3);
    let stats = cache.stats();
    assert_eq!((stats.fetches, stats.failures), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_and_a_failing_source_give_every_caller_the_error() {
    let source = Counting::new(|_| Duration::from_millis(300))
        .failing_from(2)
        .held_from(2);
    // A backoff far longer than the 200 requests take.
    let cache = TokenCache::builder()
        .backoff(Duration::from_secs(10), Duration::from_secs(10))
        .build(source.clone());
    let service = ServiceBuilder::new()
        .layer(TokenBindingLayer::with_cache(cache, Scheme::Bearer))
        .service_fn(echo);
    assert_eq!(
        auth(&service.clone().oneshot(Request::new(String::new())).await),
        "Bearer token-1"
    );
    tokio::time::advance(Duration::from_millis(400)).await;

    let responses = call_many_in_flight(service, 200, &source).await;
    for r in &responses {
        let error = r.as_ref().unwrap_err();
        let unavailable = error
            .downcast_ref::<TokenUnavailable>()
            .expect("a typed error");
        assert!(matches!(
            unavailable.kind(),
            TokenUnavailableKind::Fetch | TokenUnavailableKind::BackingOff
        ));
        // The source's own error is in the chain.
        let source_error = std::error::Error::source(unavailable).unwrap().to_string();
        assert!(
            source_error.contains("token endpoint down"),
            "{source_error}"
        );
    }
    assert_eq!(
        source.count(),
        2,
        "one failed fetch shared by all, then backoff"
    );
}

/// A server that rejects `token-1` with `401 invalid_token`.
async fn rejects_first_token(request: Request<String>) -> Result<Response<Seen>, Infallible> {
    let response = echo(request).await?;
    if response.body().authorization.as_deref() == Some("Bearer token-1") {
        let mut response = response;
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer error=\"invalid_token\", error_description=\"revoked\"",
            ),
        );
        return Ok(response);
    }
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_invalid_token_invalidates_and_the_retry_gets_a_new_token() {
    let source = Counting::new(hour);
    let binding = TokenBindingLayer::bearer(source.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    // All 100 requests arrive with token-1 before any is answered.
    let all_in = Arc::new(tokio::sync::Barrier::new(100));
    let counted = {
        let calls = calls.clone();
        move |request: Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let all_in = all_in.clone();
            async move {
                let first =
                    request.headers().get(header::AUTHORIZATION).unwrap() == "Bearer token-1";
                if first {
                    all_in.wait().await;
                }
                rejects_first_token(request).await
            }
        }
    };
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(binding.retry_policy()))
        .layer(binding.clone())
        .service_fn(counted);
    // Warm the cache with token-1.
    binding.cache().unwrap().get().await.unwrap();

    let responses = call_many(service.map_err(BoxError::from), 100).await;
    for r in &responses {
        let response = r.as_ref().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.body().authorization.as_deref(),
            Some("Bearer token-2")
        );
    }
    assert_eq!(
        source.count(),
        2,
        "many rejections of one token, one new fetch"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        200,
        "each request retried once"
    );
}

#[tokio::test]
async fn the_retry_gives_up_after_one_attempt() {
    // Every token is rejected: one retry, then the 401 is the answer.
    let source = Counting::new(hour);
    let binding = TokenBindingLayer::bearer(source.clone());
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(binding.retry_policy()))
        .layer(binding)
        .service_fn(|request: Request<String>| async move {
            let mut response = echo(request).await?;
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            Ok::<_, Infallible>(response)
        });
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(source.count(), 2);
}

#[tokio::test]
async fn each_scheme_puts_what_it_should_on_the_request() {
    let identity = TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let thumbprint = identity.thumbprint().to_string();
    let bound = Counting::new(hour).bound_to(identity.clone());

    let seen = |layer: TokenBindingLayer| async move {
        ServiceBuilder::new()
            .layer(layer)
            .service_fn(echo)
            .oneshot(Request::new(String::new()))
            .await
            .map(|r| r.into_body())
    };

    // Bearer: the token, no identity (even from a source that binds).
    let s = seen(TokenBindingLayer::bearer(bound.clone()))
        .await
        .unwrap();
    assert_eq!(
        (s.authorization.as_deref(), s.sensitive, s.thumbprint),
        (Some("Bearer token-1"), true, None)
    );
    // Bound, RFC 8705 header word.
    let s = seen(TokenBindingLayer::bound(bound.clone())).await.unwrap();
    assert_eq!(s.authorization.as_deref(), Some("Bearer token-2"));
    assert!(s.sensitive);
    assert_eq!(s.thumbprint.as_deref(), Some(thumbprint.as_str()));
    // Bound, Entra's header word.
    let s = seen(TokenBindingLayer::bound(bound.clone()).header_word(HeaderWord::MtlsPop))
        .await
        .unwrap();
    assert_eq!(s.authorization.as_deref(), Some("mtls_pop token-3"));
    assert_eq!(s.thumbprint.as_deref(), Some(thumbprint.as_str()));
    // mTLS only, with a fixed identity: no header.
    let s = seen(TokenBindingLayer::mtls_only(identity.clone()))
        .await
        .unwrap();
    assert_eq!(
        (s.authorization, s.thumbprint.as_deref()),
        (None, Some(thumbprint.as_str()))
    );
    // mTLS only from a cache: the token's identity, no header.
    let cache = TokenCache::new(bound.clone());
    let s = seen(TokenBindingLayer::with_cache(cache, Scheme::MtlsOnly))
        .await
        .unwrap();
    assert_eq!(
        (s.authorization, s.thumbprint.as_deref()),
        (None, Some(thumbprint.as_str()))
    );
}

#[tokio::test]
async fn falling_back_to_an_unbound_token_happens_only_when_allowed_and_is_counted() {
    let unbound = Counting::new(hour);

    let strict = ServiceBuilder::new()
        .layer(TokenBindingLayer::bound(unbound.clone()))
        .service_fn(echo);
    let error = strict
        .oneshot(Request::new(String::new()))
        .await
        .unwrap_err();
    let error = error.downcast_ref::<TokenUnavailable>().unwrap();
    assert_eq!(error.kind(), TokenUnavailableKind::Unbound);

    let layer = TokenBindingLayer::bound(unbound.clone())
        .header_word(HeaderWord::MtlsPop)
        .allow_unbound_fallback();
    let cache = layer.cache().unwrap().clone();
    let lenient = ServiceBuilder::new().layer(layer).service_fn(echo);
    for _ in 0..3 {
        let s = lenient
            .clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap()
            .into_body();
        // Sent as a plain bearer token, with no identity.
        assert_eq!(s.authorization.as_deref(), Some("Bearer token-2"));
        assert_eq!(s.thumbprint, None);
    }
    assert_eq!(cache.stats().unbound_fallbacks, 3);

    // mTLS only needs an identity too.
    let cache = TokenCache::new(unbound);
    let only = ServiceBuilder::new()
        .layer(TokenBindingLayer::with_cache(cache, Scheme::MtlsOnly))
        .service_fn(echo);
    assert!(only.oneshot(Request::new(String::new())).await.is_err());
}

/// A source whose certificate can be swapped, keyed by its thumbprint.
#[derive(Clone)]
struct Rotating(Arc<RotatingInner>);

struct RotatingInner {
    identity: std::sync::RwLock<ClientIdentity>,
    fetches: AtomicUsize,
}

impl std::ops::Deref for Rotating {
    type Target = RotatingInner;
    fn deref(&self) -> &RotatingInner {
        &self.0
    }
}

impl TokenSource for Rotating {
    type Future = std::future::Ready<Result<Token, BoxError>>;

    fn fetch(&self) -> Self::Future {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let identity = self.identity.read().unwrap().clone();
        std::future::ready(Ok(Token::new(format!("token-{n}"))
            .expires_in(Duration::from_secs(3600))
            .bound_to(identity)))
    }

    fn cache_key(&self) -> CacheKey {
        CacheKey::builder()
            .part("client_id", "svc")
            .thumbprint(self.identity.read().unwrap().thumbprint())
            .build()
    }
}

#[tokio::test]
async fn a_new_certificate_means_a_new_token_at_once() {
    let pki = TestPki::new().unwrap();
    let old = pki.client_cert("svc.example").unwrap();
    let renewed = pki.reissue(&old).unwrap(); // same key, new certificate
    let source = Rotating(Arc::new(RotatingInner {
        identity: std::sync::RwLock::new(old.identity().unwrap()),
        fetches: AtomicUsize::new(0),
    }));
    let service = ServiceBuilder::new()
        .layer(TokenBindingLayer::bound(source.clone()))
        .service_fn(echo);
    let s = service
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap()
        .into_body();
    assert_eq!(s.thumbprint, Some(old.thumbprint().to_string()));

    *source.identity.write().unwrap() = renewed.identity().unwrap();
    let s = service
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap()
        .into_body();
    assert_eq!(s.authorization.as_deref(), Some("Bearer token-2"));
    assert_eq!(s.thumbprint, Some(renewed.thumbprint().to_string()));
    assert_eq!(source.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn readiness_is_honoured_under_a_concurrency_limit() {
    // The inner service admits one request at a time; a cold cache makes the
    // layer move the ready service into its future.
    let source = Counting::new(hour).held_from(1);
    let service = ServiceBuilder::new()
        .buffer(64)
        .layer(TokenBindingLayer::bearer(source.clone()))
        .concurrency_limit(1)
        .service_fn(echo);
    let responses = call_many_in_flight(service.map_err(BoxError::from), 20, &source).await;
    for r in &responses {
        assert_eq!(auth(r), "Bearer token-1");
    }
    assert_eq!(source.count(), 1);
}

#[tokio::test]
async fn debug_output_never_shows_the_token() {
    let layer = TokenBindingLayer::bearer(|| async { Ok(Token::new("s3cr3t-token-value")) });
    let cache = layer.cache().unwrap().clone();
    let token = cache.get().await.unwrap();
    for text in [
        format!("{layer:?}"),
        format!("{cache:?}"),
        format!("{token:?}"),
        format!("{:?}", token.token()),
    ] {
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
