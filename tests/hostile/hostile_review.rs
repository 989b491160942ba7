//! Hostile inputs against what the client and the server parse: PoP SHR
//! targets and `q`, token responses' `expires_in`, the plain-HTTP rule, and
//! resource servers' answers to the client. Each test's comment says the
//! attack it tries (each once succeeded); the test shows it no longer does.
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::dpop;
use crate::support::pop_setup;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::Empty;
use serde_json::json;
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};
use tower_token_binding::TokenBindingLayer;
use tower_token_binding::proof::pop::{PopProofs, PopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::source::ClientCredentials;
use tower_token_binding::test_util::{Fault, TestIssuer, TestPki};
use tower_token_binding::token::{Token, TokenCache};

/// When the request's absolute-form authority differs from `Host` (or
/// `Host` has user info), `validation::pop::verify` gets no absolute URI
/// and checks the SHR against `Uri::from_static("/")`: `u` against the
/// `Host` header, and `p`/`q` against `/` and an empty query instead of
/// the request's path and query. An SHR made for `GET /` then passes on
/// `GET https://other.example/admin/delete-everything` (any path, any
/// query), which the router dispatches by its real path. DPoP refuses the
/// same requests ("the request URI given to the verifier is not
/// absolute").
#[tokio::test]
async fn a_pop_shr_for_the_root_path_does_not_pass_when_the_target_is_not_hosts() {
    let s = pop_setup::setup(Algorithm::Es256).await;
    let api = dpop::start(&s.pki, pop_setup::every_binding(&s)).await;
    let api_uri = dpop::uri(&api);
    let host = api_uri.authority().unwrap().to_string();
    let port = api_uri.port_u16().unwrap();
    let root = format!("https://{host}/");
    let key = s.shrs.key();
    let header = json!({"alg": "ES256", "typ": "pop"});
    // A fresh SHR for `GET /` each time (each is new to the replay store).
    let shr_for_root =
        || pop_setup::hand_made(key, &header, &pop_setup::good_payload(key, &root, &s.token));

    // Sanity: the root SHR on another path, target and Host agreeing: 401.
    let answer = support::raw_tls(
        &s.pki,
        port,
        format!(
            "GET /admin/delete-everything HTTP/1.1\r\nHost: {host}\r\nAuthorization: PoP {}\r\nConnection: close\r\n\r\n",
            shr_for_root()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    let mut passed = Vec::new();
    // The same SHR for `/`, on another path with an absolute-form target
    // naming another authority than Host.
    let answer = support::raw_tls(
        &s.pki,
        port,
        format!(
            "GET https://other.example/admin/delete-everything?all=1 HTTP/1.1\r\nHost: {host}\r\nAuthorization: PoP {}\r\nConnection: close\r\n\r\n",
            shr_for_root()
        ),
    )
    .await;
    if !answer.starts_with("HTTP/1.1 401") {
        passed.push(format!("absolute-form target, other authority:\n{answer}"));
    }

    // Same with user info in Host and an origin-form target.
    let answer = support::raw_tls(
        &s.pki,
        port,
        format!(
            "GET /admin/delete-everything HTTP/1.1\r\nHost: x@{host}\r\nAuthorization: PoP {}\r\nConnection: close\r\n\r\n",
            shr_for_root()
        ),
    )
    .await;
    if !answer.starts_with("HTTP/1.1 401") {
        passed.push(format!("Host with user info:\n{answer}"));
    }
    assert!(
        passed.is_empty(),
        "an SHR for / passed on /admin/delete-everything:\n{}",
        passed.join("\n")
    );
}

/// `q` covers `amount=1`; the request adds `%61mount=1000000`. The
/// verifier looks names up raw, so `%61mount` is "another" parameter and
/// the repeat of a covered name is not seen, but form decoders
/// (form_urlencoded here, so serde_urlencoded and axum's `Query`) read it
/// as a second `amount`, and a map keeps the last: the handler sees
/// 1000000 under an SHR that signed 1. (`amount=1&amount=1000000` is
/// refused.)
#[test]
fn a_q_covered_parameter_repeated_in_another_spelling_is_refused() {
    let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let signed: Uri = "https://api.example/transfer?amount=1".parse().unwrap();
    let verify = |sent: &Uri| {
        let shr = shrs
            .signer(&Method::POST, &signed, "the-token")
            .query()
            .sign()
            .unwrap();
        PopVerifier::new().verify(
            &shr,
            &Method::POST,
            sent,
            &HeaderMap::new(),
            None,
            SystemTime::now(),
        )
    };
    assert!(verify(&signed).is_ok());
    let repeated: Uri = "https://api.example/transfer?amount=1&amount=1000000"
        .parse()
        .unwrap();
    assert!(verify(&repeated).is_err(), "a plain repeat is refused");

    for sent in [
        "https://api.example/transfer?amount=1&%61mount=1000000",
        "https://api.example/transfer?amount=1&amoun%74=1000000",
        "https://api.example/transfer?amount=1&%61%6d%6f%75%6e%74=1000000",
    ] {
        let sent: Uri = sent.parse().unwrap();
        // What the handler reads.
        let params: HashMap<String, String> =
            form_urlencoded::parse(sent.query().unwrap().as_bytes())
                .into_owned()
                .collect();
        assert_eq!(params["amount"], "1000000", "{sent}");
        assert!(
            verify(&sent).is_err(),
            "{sent}: accepted under q covering amount=1"
        );
    }
}

/// `expires_in` of `1e-300` (or `1e-9`) is positive, not 0 and under the
/// maximum, so it is taken: `Duration::from_secs_f64` makes it a zero (or
/// one nanosecond) lifetime, a token expired as it arrives. The cache then
/// fetches a new token for every request, which is exactly what refusing
/// `expires_in: 0` was meant to prevent.
#[tokio::test]
async fn a_vanishing_expires_in_does_not_make_the_cache_fetch_per_request() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder().start(&pki).await.unwrap();
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let source = ClientCredentials::builder()
        .client_id("svc")
        .root_store(pki.root_store())
        .token_timeout(Duration::from_secs(5))
        .token_endpoint(issuer.token_endpoint())
        .tls_client_auth(identity)
        .build()
        .unwrap();
    let mut per_request = Vec::new();
    for expires_in in ["1e-300", "5e-324", "1e-9", "0.000001"] {
        issuer.set_fault(Some(Fault::ExpiresIn(expires_in.to_owned())));
        let before = issuer.token_requests();
        let cache = TokenCache::new(source.clone());
        for _ in 0..5 {
            let _ = cache.get().await;
        }
        let fetched = issuer.token_requests() - before;
        if fetched > 1 {
            per_request.push(format!(
                "expires_in {expires_in}: 5 requests, {fetched} token requests"
            ));
        }
    }
    assert!(per_request.is_empty(), "{per_request:#?}");
}

/// The plain-HTTP rule lets through every URI without a scheme, meaning
/// origin-form ones; an authority-form URI (`CONNECT 127.0.0.1:PORT`) has
/// no scheme either, and hyper-util's client sends it over plain TCP.
/// The bearer token goes out in clear to a non-loopback-allowed layer
/// (`allow_http_to_loopback` is off; `http://127.0.0.1:PORT/` is refused).
#[tokio::test]
async fn a_connect_request_does_not_carry_the_token_over_plain_tcp() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let _ = seen_tx.send(String::from_utf8_lossy(&buf).into_owned());
        let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
    });

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(TokenBindingLayer::bearer(|| async {
            Ok(Token::new("the-secret-access-token").expires_in(Duration::from_secs(600)))
        }))
        .service(client);

    // Sanity: the same address as an http URI is refused.
    let refused = service
        .clone()
        .oneshot(
            Request::get(format!("http://127.0.0.1:{port}/"))
                .body(Empty::new())
                .unwrap(),
        )
        .await;
    assert!(refused.is_err());

    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        service.oneshot(
            Request::connect(format!("127.0.0.1:{port}"))
                .body(Empty::new())
                .unwrap(),
        ),
    )
    .await;
    let seen = tokio::time::timeout(Duration::from_secs(5), seen_rx)
        .await
        .map(|r| r.unwrap_or_default())
        .unwrap_or_default();
    assert!(
        !seen.contains("the-secret-access-token"),
        "the token went over plain TCP:\n{seen}"
    );
}

fn answer(status: StatusCode, challenge: Option<&str>) -> Response<String> {
    let mut response = Response::new(String::new());
    *response.status_mut() = status;
    if let Some(challenge) = challenge {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge.parse().unwrap());
    }
    response
}

/// One client, two APIs: `a.example` accepts the token, `b.example`
/// refuses every token (`401 invalid_token`; a misconfigured audience, a
/// bad instance behind a balancer, or a hostile server). Each answer from
/// `a` ends the rejection streak, so each rejection from `b` is "the
/// first" and refetched at once: the token endpoint is asked once per
/// request to `b`, the request rate, never paced by the backoff.
#[tokio::test]
async fn a_server_that_refuses_every_token_beside_one_that_accepts_does_not_drive_fetches_at_the_request_rate()
 {
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let binding = TokenBindingLayer::bearer(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok(Token::new(format!("token-{n}")).expires_in(Duration::from_secs(600))) }
    });
    let service =
        ServiceBuilder::new()
            .layer(binding)
            .service_fn(|request: Request<String>| async move {
                Ok::<_, Infallible>(if request.uri().host() == Some("b.example") {
                    answer(
                        StatusCode::UNAUTHORIZED,
                        Some("Bearer error=\"invalid_token\""),
                    )
                } else {
                    answer(StatusCode::OK, None)
                })
            });
    for _ in 0..20 {
        for host in ["a.example", "b.example"] {
            let request = Request::get(format!("https://{host}/"))
                .body(String::new())
                .unwrap();
            let _ = service.clone().oneshot(request).await;
        }
    }
    let fetched = fetches.load(Ordering::SeqCst);
    assert!(
        fetched <= 5,
        "40 requests (20 refused) made {fetched} token fetches"
    );
}

/// The same two APIs behind the retry policy (as `BoundClient` stacks
/// it): `b`'s first refusal drops the token, the retry's refusal of the
/// new one makes a streak of two, and the cache-wide backoff then answers
/// `Rejected` to every request, including those to `a`, which accepts
/// the token. One API that refuses tokens denies the client every other
/// API that shares its token source, for as long as it keeps refusing.
#[tokio::test]
async fn a_server_that_refuses_every_token_does_not_starve_one_that_accepts_it() {
    let binding = TokenBindingLayer::bearer(|| async {
        Ok(Token::new("a token").expires_in(Duration::from_secs(600)))
    });
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(binding.retry_policy()))
        .layer(binding)
        .service_fn(|request: Request<String>| async move {
            Ok::<_, Infallible>(if request.uri().host() == Some("b.example") {
                answer(
                    StatusCode::UNAUTHORIZED,
                    Some("Bearer error=\"invalid_token\""),
                )
            } else {
                answer(StatusCode::OK, None)
            })
        });
    let mut a_failed = 0;
    for _ in 0..20 {
        for host in ["a.example", "b.example"] {
            let request = Request::get(format!("https://{host}/"))
                .body(String::new())
                .unwrap();
            let result = service.clone().oneshot(request).await;
            if host == "a.example" && result.is_err() {
                a_failed += 1;
            }
        }
    }
    assert_eq!(
        a_failed, 0,
        "requests to the API that accepts the token failed"
    );
}

/// A PoP token the resource server no longer takes: every `401` says
/// `error="invalid_token"` and, as a server that issues nonces does on
/// every challenge, carries a fresh `nonce`. Because "a challenge with a
/// nonce is about the nonce", the token is never dropped: the nonce retry
/// fails with `invalid_token` again, no `invalid_token` retry follows,
/// and every later request sends the same dead token until it expires
/// (up to `max_expires_in`, 24 h) without ever asking for a new one. With
/// a nonce the nonce memory refuses (over 256 bytes), not even the nonce
/// retry happens.
#[tokio::test]
async fn a_pop_token_refused_with_a_nonce_on_every_challenge_is_dropped() {
    let mut kept = Vec::new();
    for nonce_len in [8, 300] {
        let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = fetches.clone();
        let binding = TokenBindingLayer::pop(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let shrs = shrs.clone();
            async move {
                Ok(Token::new(format!("token-{n}"))
                    .with_token_type("pop")
                    .pop_bound(shrs)
                    .expires_in(Duration::from_secs(600)))
            }
        });
        let sent = Arc::new(AtomicUsize::new(0));
        let calls = sent.clone();
        let service = ServiceBuilder::new()
            .layer(RetryLayer::new(binding.retry_policy()))
            .layer(binding)
            .service_fn(move |_: Request<String>| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    let nonce = format!("{n:0>width$}", width = nonce_len);
                    let challenge = format!("PoP error=\"invalid_token\", nonce=\"{nonce}\"");
                    Ok::<_, Infallible>(answer(StatusCode::UNAUTHORIZED, Some(&challenge)))
                }
            });
        for _ in 0..5 {
            let request = Request::get("https://api.example/orders")
                .body(String::new())
                .unwrap();
            let _ = service.clone().oneshot(request).await;
        }
        let fetched = fetches.load(Ordering::SeqCst);
        if fetched < 2 {
            kept.push(format!(
                "nonce of {nonce_len} bytes: {} requests refused with invalid_token, {fetched} token fetch",
                sent.load(Ordering::SeqCst)
            ));
        }
    }
    assert!(
        kept.is_empty(),
        "the refused token is never dropped: {kept:#?}"
    );
}

/// The crate's own client and server disagree on a query whose names
/// differ only in case (`?a=1&A=2`, two parameters to every framework):
/// the signer lists both in `q`, the verifier refuses "q names a
/// parameter twice" (the duplicate check folds case, as for headers).
#[test]
fn a_query_with_names_differing_in_case_signed_by_the_crate_is_accepted_by_it() {
    let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let uri: Uri = "https://api.example/search?a=1&A=2".parse().unwrap();
    let shr = shrs
        .signer(&Method::GET, &uri, "the-token")
        .query()
        .sign()
        .unwrap();
    let verified = PopVerifier::new().verify(
        &shr,
        &Method::GET,
        &uri,
        &HeaderMap::new(),
        None,
        SystemTime::now(),
    );
    assert!(verified.is_ok(), "{:?}", verified.err());
}

/// With no practical maximum (`max_expires_in(Duration::MAX)`, how one
/// says "no limit"), `expires_in: 18446744073709551615` passes the
/// `seconds > max.as_secs_f64()` check (both round to 2^64 as `f64`) and
/// `Duration::from_secs_f64(2^64)` panics inside the token fetch. The
/// fetch is the cache's shared single flight, and a panic never reaches
/// `finish_fetch`, so the poisoned flight stays in place: every later
/// request panics too, and the client never asks for a token again.
#[tokio::test]
async fn an_expires_in_of_two_to_the_64_is_refused_and_the_cache_recovers() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder().start(&pki).await.unwrap();
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let source = ClientCredentials::builder()
        .client_id("svc")
        .root_store(pki.root_store())
        .token_timeout(Duration::from_secs(5))
        .token_endpoint(issuer.token_endpoint())
        .tls_client_auth(identity)
        .max_expires_in(Duration::MAX)
        .build()
        .unwrap();
    issuer.set_fault(Some(Fault::ExpiresIn("18446744073709551615".to_owned())));
    // No backoff, so that the second call asks again at once.
    let cache = TokenCache::builder()
        .backoff(Duration::ZERO, Duration::ZERO)
        .build(source);
    let first = tokio::spawn(cache.get()).await;
    // The issuer now answers well; the cache should recover.
    issuer.set_fault(None);
    let second = tokio::spawn(cache.get()).await;
    assert!(
        first.as_ref().is_ok_and(|r| r.is_err()) && second.as_ref().is_ok_and(|r| r.is_ok()),
        "first: {:?}, second: {:?}",
        first.map(|r| r.map(|_| ())),
        second.map(|r| r.map(|_| ()))
    );
}
