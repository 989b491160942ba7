//! The `metrics` feature: exact counts for known runs with real parts (the
//! test authorization server, `BoundClient`, a resource server behind
//! `CnfValidationLayer`, TLS over loopback), and no label value that could
//! carry a secret or grow without bound.
//!
//! Each test records into its own `DebuggingRecorder`, installed for the
//! test's thread only (`metrics::with_local_recorder`), and runs everything
//! (clients, servers, the authorization server) on a current-thread runtime
//! on that thread, so tests run in parallel without seeing each other's
//! counts. A count recorded off that thread would be missing, and the exact
//! assertions would say so. The pool-clients gauge is the exception: it is
//! set to the process's count, which other tests' pools share, so here it
//! is only bounded below; `tests/metrics_pool_clients.rs`, a binary of its
//! own, checks it exactly.
#![cfg(feature = "metrics")]

mod support;

use support::{dpop, introspection};

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use tower::ServiceExt as _;
use tower::retry::RetryLayer;
use tower_token_binding::TokenBindingLayer;
use tower_token_binding::pool::MtlsClientPool;
use tower_token_binding::proof::pop::{PopProofs, PopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::replay::{ReplayError, ReplayErrorKind};
use tower_token_binding::token::{Token, TokenCache};

use dpop::{Call, send, start, uri};
use http::{Method, Request, StatusCode, header};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;
use tower_token_binding::binding::Scheme;
use tower_token_binding::metrics::{
    ACCEPTED, CLIENT_RETRIES, FORWARDED_CERTIFICATES, INTROSPECTIONS, JWKS_FETCHES, NAMES,
    POOL_CLIENTS, POOL_TLS_CONNECTIONS, REPLAY_CHECKS, TOKEN_CACHE_LOOKUPS, TOKEN_CACHE_WAITERS,
    TOKEN_FETCHES, TOKEN_REFRESHES_AHEAD, VALIDATION_CACHE_LOOKUPS, VALIDATIONS,
};
use tower_token_binding::proof::dpop::{DpopVerifier, StatelessNonces};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::{BoundClient, CnfValidationLayer};

/// Runs `test` on a current-thread runtime with a recorder of its own;
/// `test` reads the recorder through the snapshotter it is given.
fn run<F, Fut>(test: F)
where
    F: FnOnce(Snapshotter) -> Fut,
    Fut: Future<Output = ()>,
{
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(test(snapshotter));
    });
}

/// What was recorded, by `name{label=value,...}`.
#[derive(Debug)]
struct Seen(BTreeMap<String, DebugValue>);

impl Seen {
    /// Takes a snapshot (which resets the recorder's values: once per test).
    fn take(snapshotter: &Snapshotter) -> Self {
        let map = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                (format!("{}{{{}}}", key.name(), labels.join(",")), value)
            })
            .collect();
        Self(map)
    }

    /// A counter's value; 0 when never recorded.
    fn count(&self, name: &str, labels: &str) -> u64 {
        match self.0.get(&format!("{name}{{{labels}}}")) {
            None => 0,
            Some(DebugValue::Counter(n)) => *n,
            Some(other) => panic!("{name}{{{labels}}} is {other:?}"),
        }
    }

    /// A gauge's value; 0 when never recorded.
    fn gauge(&self, name: &str) -> f64 {
        match self.0.get(&format!("{name}{{}}")) {
            None => 0.0,
            Some(DebugValue::Gauge(value)) => value.into_inner(),
            Some(other) => panic!("{name} is {other:?}"),
        }
    }

    /// Checks every key: a documented name, and label values that are short
    /// lowercase words, none holding any of `secrets` (tokens, thumbprints,
    /// client ids, URLs, paths).
    fn assert_bounded(&self, secrets: &[&str]) {
        assert!(!self.0.is_empty());
        for key in self.0.keys() {
            let (name, labels) = key.split_once('{').unwrap();
            assert!(NAMES.contains(&name), "{key}: not a documented name");
            let labels = labels.trim_end_matches('}');
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let (label, value) = pair.split_once('=').unwrap();
                for word in [label, value] {
                    assert!(
                        !word.is_empty()
                            && word.len() <= 32
                            && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                        "{key}: {word:?} is not a short lowercase word"
                    );
                }
                for secret in secrets {
                    assert!(!secret.is_empty());
                    assert!(!key.contains(secret), "{key} holds {secret:?}");
                }
            }
        }
    }
}

/// A resource server behind `CnfValidationLayer` (keys from the issuer's
/// JWKS over HTTPS); returns its URL, `https://localhost:PORT/whoami`.
async fn start_api(pki: &TestPki, issuer: &TestIssuer) -> String {
    let validator = support::jwt_validator(pki, issuer, Duration::from_secs(3600));
    support::start_api(pki, CnfValidationLayer::new(validator)).await
}

#[test]
fn ten_requests_one_token_fetch_and_nine_cache_hits() {
    run(|snapshotter| async move {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        let api = start_api(&pki, &issuer).await;
        let cert = pki.client_cert("svc.example").unwrap();
        let client = BoundClient::builder()
            .issuer(issuer.issuer())
            .client_id("svc")
            .identity(cert.identity().unwrap())
            .root_store(pki.root_store())
            .build()
            .unwrap();
        for _ in 0..10 {
            let response = client.get(&api).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
        let seen = Seen::take(&snapshotter);

        // The client: one fetch, then the cache.
        assert_eq!(seen.count(TOKEN_FETCHES, "outcome=ok"), 1, "{seen:?}");
        assert_eq!(issuer.tokens_issued(), 1);
        assert_eq!(seen.count(TOKEN_CACHE_LOOKUPS, "result=miss"), 1);
        assert_eq!(seen.count(TOKEN_CACHE_LOOKUPS, "result=hit"), 9);
        assert_eq!(seen.count(TOKEN_CACHE_WAITERS, ""), 0);
        assert_eq!(seen.count(CLIENT_RETRIES, "reason=invalid_token"), 0);
        // One client for the identity in the token endpoint's pool, one in
        // the API's; one mTLS connection each, kept alive (the issuer's
        // metadata came over the token endpoint's). The gauge counts the
        // whole process's, other tests' too.
        assert!(seen.gauge(POOL_CLIENTS) >= 2.0, "{seen:?}");
        assert_eq!(client.pool().stats().identities, 1);
        assert_eq!(seen.count(POOL_TLS_CONNECTIONS, "client_cert=yes"), 2);
        assert_eq!(seen.count(POOL_TLS_CONNECTIONS, "client_cert=no"), 0);

        // The server: ten accepted, the token verified once, keys fetched
        // once.
        assert_eq!(seen.count(VALIDATIONS, "outcome=ok,scheme=bearer"), 10);
        assert_eq!(seen.count(ACCEPTED, "binding=certificate"), 10);
        let cache = VALIDATION_CACHE_LOOKUPS;
        assert_eq!(seen.count(cache, "validator=jwt,result=miss"), 1);
        assert_eq!(seen.count(cache, "validator=jwt,result=hit"), 9);
        assert_eq!(seen.count(JWKS_FETCHES, "outcome=ok"), 1);
        assert_eq!(seen.0.len(), 10, "nothing else: {seen:?}");

        let token = client.cache().unwrap().get().await.unwrap();
        let token = token.token().access_token().secret().to_owned();
        let thumbprint = cert.thumbprint().to_string();
        seen.assert_bounded(&[&token, &thumbprint, "svc", "whoami", "localhost"]);

        // Dropping the client drops its pools' clients: the gauge is set
        // to what is left, never below zero.
        drop(client);
        let left = Seen::take(&snapshotter);
        assert!(left.gauge(POOL_CLIENTS) >= 0.0, "{left:?}");
    });
}

#[test]
fn concurrent_requests_wait_for_one_fetch() {
    run(|snapshotter| async move {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        let api = start_api(&pki, &issuer).await;
        let cert = pki.client_cert("svc.example").unwrap();
        let client = BoundClient::builder()
            .token_endpoint(issuer.mtls_token_endpoint())
            .client_id("svc")
            .identity(cert.identity().unwrap())
            .root_store(pki.root_store())
            .build()
            .unwrap();
        let calls = (0..10).map(|_| client.get(&api));
        for response in futures_util::future::join_all(calls).await {
            assert_eq!(response.unwrap().status(), StatusCode::OK);
        }
        let seen = Seen::take(&snapshotter);
        assert_eq!(seen.count(TOKEN_FETCHES, "outcome=ok"), 1, "{seen:?}");
        assert_eq!(seen.count(TOKEN_CACHE_LOOKUPS, "result=miss"), 10);
        assert_eq!(seen.count(TOKEN_CACHE_WAITERS, ""), 9);
        assert_eq!(seen.count(TOKEN_CACHE_LOOKUPS, "result=hit"), 0);
        assert_eq!(seen.count(VALIDATIONS, "outcome=ok,scheme=bearer"), 10);
        seen.assert_bounded(&[&cert.thumbprint().to_string(), "svc"]);
    });
}

#[test]
fn refusals_are_counted_by_reason() {
    run(|snapshotter| async move {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        let api = start_api(&pki, &issuer).await;
        let bound = pki.client_cert("svc.example").unwrap();
        let other = pki.client_cert("other.example").unwrap();
        let token = issuer
            .sign(&issuer.claims("svc", Some(bound.thumbprint())))
            .unwrap();
        let mut expired_claims = issuer.claims("svc", Some(bound.thumbprint()));
        expired_claims["exp"] = json!(1_000_000_000);
        expired_claims["iat"] = json!(999_999_000);
        let expired = issuer.sign(&expired_claims).unwrap();

        let call = |identity: Option<&tower_token_binding::ClientIdentity>, token: Option<&str>| {
            let client = support::https_client(&pki, identity);
            let mut request = Request::get(&api);
            if let Some(token) = token {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let request = request.body(Default::default()).unwrap();
            async move { support::send(&client, request).await.0 }
        };
        let right = bound.identity().unwrap();
        let wrong = other.identity().unwrap();
        // Another certificate than the token's.
        assert_eq!(
            call(Some(&wrong), Some(&token)).await,
            StatusCode::UNAUTHORIZED
        );
        // No certificate at all.
        assert_eq!(call(None, Some(&token)).await, StatusCode::UNAUTHORIZED);
        // No token.
        assert_eq!(call(Some(&right), None).await, StatusCode::UNAUTHORIZED);
        // Expired.
        assert_eq!(
            call(Some(&right), Some(&expired)).await,
            StatusCode::UNAUTHORIZED
        );
        // Right.
        assert_eq!(call(Some(&right), Some(&token)).await, StatusCode::OK);

        let seen = Seen::take(&snapshotter);
        let v = VALIDATIONS;
        assert_eq!(
            seen.count(v, "outcome=binding_mismatch,scheme=bearer"),
            1,
            "{seen:?}"
        );
        assert_eq!(
            seen.count(v, "outcome=no_client_certificate,scheme=bearer"),
            1
        );
        assert_eq!(seen.count(v, "outcome=missing_credentials,scheme=none"), 1);
        assert_eq!(seen.count(v, "outcome=expired,scheme=bearer"), 1);
        assert_eq!(seen.count(v, "outcome=ok,scheme=bearer"), 1);
        assert_eq!(seen.count(ACCEPTED, "binding=certificate"), 1);
        // The token was verified once and its binding checked each time.
        let cache = VALIDATION_CACHE_LOOKUPS;
        assert_eq!(seen.count(cache, "validator=jwt,result=miss"), 2);
        assert_eq!(seen.count(cache, "validator=jwt,result=hit"), 2);
        assert_eq!(seen.count(JWKS_FETCHES, "outcome=ok"), 1);
        seen.assert_bounded(&[
            &token,
            &expired,
            &bound.thumbprint().to_string(),
            &other.thumbprint().to_string(),
            "svc",
            "whoami",
        ]);
    });
}

#[test]
fn a_replayed_dpop_proof_is_counted_once() {
    run(|snapshotter| async move {
        let s = dpop::setup().await;
        let api = start(&s.pki, dpop::layer(&s).accept_dpop(DpopVerifier::new())).await;
        let client = support::https_client(&s.pki, None);
        let proof = s
            .proofs
            .proof(&Method::GET, &uri(&api), Some(&s.token))
            .unwrap();
        let call = Call::dpop(&api, &s.token, proof.clone());
        assert_eq!(send(&client, &call).await.status, StatusCode::OK);
        assert_eq!(send(&client, &call).await.status, StatusCode::UNAUTHORIZED);

        let seen = Seen::take(&snapshotter);
        assert_eq!(
            seen.count(VALIDATIONS, "outcome=ok,scheme=dpop"),
            1,
            "{seen:?}"
        );
        assert_eq!(seen.count(VALIDATIONS, "outcome=replayed,scheme=dpop"), 1);
        assert_eq!(seen.count(ACCEPTED, "binding=dpop"), 1);
        assert_eq!(seen.count(REPLAY_CHECKS, "proof=dpop,result=fresh"), 1);
        assert_eq!(seen.count(REPLAY_CHECKS, "proof=dpop,result=replayed"), 1);
        seen.assert_bounded(&[&s.token, &proof, &s.proofs.thumbprint().to_string(), "svc"]);
    });
}

#[test]
fn a_replayed_pop_request_and_a_failing_replay_store() {
    run(|snapshotter| async move {
        let s = dpop::setup().await;
        let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
        let token = dpop::bound_token(
            &s.issuer,
            &json!({ "kid": shrs.kid().to_string(), "xms_ksl": "sw" }),
        );
        let api = start(&s.pki, dpop::layer(&s).accept_pop(PopVerifier::new())).await;
        let client = support::https_client(&s.pki, None);
        let shr = shrs.sign(&Method::GET, &uri(&api), &token).unwrap();
        let call = Call {
            method: Method::GET,
            url: api.clone(),
            authorization: format!("PoP {shr}"),
            proofs: Vec::new(),
        };
        assert_eq!(send(&client, &call).await.status, StatusCode::OK);
        assert_eq!(send(&client, &call).await.status, StatusCode::UNAUTHORIZED);

        // A store that cannot answer: refused with 503.
        let calls = Arc::new(AtomicUsize::new(0));
        let store = dpop::counting_store(calls.clone(), || {
            Err(ReplayError::new(ReplayErrorKind::Unavailable))
        });
        let failing = start(
            &s.pki,
            dpop::layer(&s)
                .replay_store(store)
                .accept_dpop(DpopVerifier::new()),
        )
        .await;
        let proof = s
            .proofs
            .proof(&Method::GET, &uri(&failing), Some(&s.token))
            .unwrap();
        let answer = send(&client, &Call::dpop(&failing, &s.token, proof)).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let seen = Seen::take(&snapshotter);
        let v = VALIDATIONS;
        assert_eq!(seen.count(v, "outcome=ok,scheme=pop"), 1, "{seen:?}");
        assert_eq!(seen.count(v, "outcome=replayed,scheme=pop"), 1);
        assert_eq!(
            seen.count(v, "outcome=replay_store_unavailable,scheme=dpop"),
            1
        );
        assert_eq!(seen.count(ACCEPTED, "binding=pop"), 1);
        assert_eq!(seen.count(REPLAY_CHECKS, "proof=pop,result=fresh"), 1);
        assert_eq!(seen.count(REPLAY_CHECKS, "proof=pop,result=replayed"), 1);
        assert_eq!(
            seen.count(REPLAY_CHECKS, "proof=dpop,result=unavailable"),
            1
        );
        let kid = shrs.kid().to_string();
        seen.assert_bounded(&[&token, &shr, &kid, &s.token, "svc", "whoami"]);
    });
}

#[test]
fn an_invalid_token_answer_is_one_retry_with_a_new_token() {
    run(|snapshotter| async move {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        let api = start_api(&pki, &issuer).await;
        let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
        // The first token is for another audience; the next ones are good.
        let mut wrong = issuer.claims("svc", Some(identity.thumbprint()));
        wrong["aud"] = json!("https://elsewhere.example");
        let tokens = [
            issuer.sign(&wrong).unwrap(),
            issuer
                .sign(&issuer.claims("svc", Some(identity.thumbprint())))
                .unwrap(),
        ];
        let fetches = Arc::new(AtomicUsize::new(0));
        let source = {
            let (identity, tokens, fetches) = (identity.clone(), tokens.clone(), fetches.clone());
            move || {
                let n = fetches.fetch_add(1, Ordering::SeqCst).min(1);
                let token = Token::new(tokens[n].clone())
                    .expires_in(Duration::from_secs(600))
                    .bound_to(identity.clone());
                async move { Ok(token) }
            }
        };
        let binding = TokenBindingLayer::bound(source);
        let pool: MtlsClientPool<Empty<Bytes>> = MtlsClientPool::builder()
            .root_store(pki.root_store())
            .build()
            .unwrap();
        let client = tower::ServiceBuilder::new()
            .layer(RetryLayer::new(binding.retry_policy()))
            .layer(binding)
            .service(pool.clone());
        let request = Request::get(&api).body(Empty::new()).unwrap();
        let response = client.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(fetches.load(Ordering::SeqCst), 2);

        let seen = Seen::take(&snapshotter);
        assert_eq!(
            seen.count(CLIENT_RETRIES, "reason=invalid_token"),
            1,
            "{seen:?}"
        );
        assert_eq!(seen.count(TOKEN_FETCHES, "outcome=ok"), 2);
        assert_eq!(seen.count(TOKEN_CACHE_LOOKUPS, "result=miss"), 2);
        let v = VALIDATIONS;
        assert_eq!(seen.count(v, "outcome=wrong_audience,scheme=bearer"), 1);
        assert_eq!(seen.count(v, "outcome=ok,scheme=bearer"), 1);
        // One client for the identity (held while the pool lives), one
        // connection for both tries (the gauge counts other tests' too).
        assert!(seen.gauge(POOL_CLIENTS) >= 1.0, "{seen:?}");
        assert_eq!(pool.stats().identities, 1);
        assert_eq!(seen.count(POOL_TLS_CONNECTIONS, "client_cert=yes"), 1);
        let thumbprint = identity.thumbprint().to_string();
        seen.assert_bounded(&[&tokens[0], &tokens[1], &thumbprint, "svc", "whoami"]);
    });
}

#[test]
fn a_token_due_for_refresh_is_refreshed_ahead_in_the_background() {
    run(|snapshotter| async move {
        // Due for refresh as soon as it is fetched.
        let cache = TokenCache::builder()
            .refresh_share(0.0)
            .jitter_share(0.0)
            .build(|| async { Ok(Token::new("t0k3n").expires_in(Duration::from_secs(600))) });
        cache.get().await.unwrap();
        // Served at once, and a refresh starts in the background.
        cache.get().await.unwrap();
        for _ in 0..1000 {
            if cache.stats().fetches == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(cache.stats().fetches, 2);

        let seen = Seen::take(&snapshotter);
        assert_eq!(seen.count(TOKEN_FETCHES, "outcome=ok"), 2, "{seen:?}");
        assert_eq!(seen.count(TOKEN_CACHE_LOOKUPS, "result=miss"), 1);
        assert_eq!(seen.count(TOKEN_CACHE_LOOKUPS, "result=hit"), 1);
        assert_eq!(seen.count(TOKEN_REFRESHES_AHEAD, ""), 1);
        seen.assert_bounded(&["t0k3n"]);
    });
}

#[test]
fn a_dpop_nonce_challenge_is_one_retry() {
    run(|snapshotter| async move {
        const SECRET: &str = "s3cret";
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::builder()
            .client_secret("svc", SECRET)
            .start(&pki)
            .await
            .unwrap();
        let validator = support::jwt_validator(&pki, &issuer, Duration::from_secs(3600));
        let nonces = StatelessNonces::new(&[7u8; 32]).unwrap();
        let layer = CnfValidationLayer::new(validator)
            .accept_dpop(DpopVerifier::builder().nonces(nonces).build());
        let api = support::start_api(&pki, layer).await;
        let client = BoundClient::builder()
            .issuer(issuer.issuer())
            .client_id("svc")
            .client_secret_basic(SECRET)
            .root_store(pki.root_store())
            .scheme(Scheme::Dpop)
            .build()
            .unwrap();
        for _ in 0..3 {
            assert_eq!(client.get(&api).await.unwrap().status(), StatusCode::OK);
        }

        let seen = Seen::take(&snapshotter);
        assert_eq!(
            seen.count(CLIENT_RETRIES, "reason=use_dpop_nonce"),
            1,
            "{seen:?}"
        );
        assert_eq!(
            seen.count(VALIDATIONS, "outcome=nonce_required,scheme=dpop"),
            1
        );
        assert_eq!(seen.count(VALIDATIONS, "outcome=ok,scheme=dpop"), 3);
        assert_eq!(seen.count(ACCEPTED, "binding=dpop"), 3);
        assert_eq!(seen.count(REPLAY_CHECKS, "proof=dpop,result=fresh"), 3);
        assert_eq!(seen.count(TOKEN_FETCHES, "outcome=ok"), 1);
        // No certificate anywhere: no per-identity client.
        assert_eq!(seen.gauge(POOL_CLIENTS), 0.0);
        assert_eq!(seen.count(POOL_TLS_CONNECTIONS, "client_cert=yes"), 0);
        let jkt = client.dpop_proofs().unwrap().thumbprint().to_string();
        seen.assert_bounded(&[&jkt, "svc", SECRET, "whoami"]);
    });
}

#[test]
fn introspection_calls_and_its_answer_cache() {
    run(|snapshotter| async move {
        let s = introspection::setup().await;
        let api = introspection::start(
            &s.pki,
            CnfValidationLayer::new(s.validator().build().unwrap()),
        )
        .await;
        let client = support::https_client(&s.pki, Some(&s.client));

        // A bound opaque token, three times: one call, then two answers
        // from the cache.
        let token = s.bound_to_client();
        for _ in 0..3 {
            let answer = introspection::bearer(&client, &api, &token).await;
            assert_eq!(answer.status, StatusCode::OK);
        }
        // A revoked one, twice: one call, answered "inactive".
        let revoked = s.bound_to_client();
        assert!(s.issuer.revoke(&revoked));
        for _ in 0..2 {
            let answer = introspection::bearer(&client, &api, &revoked).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(s.issuer.introspection_calls(), 2);

        let seen = Seen::take(&snapshotter);
        assert_eq!(seen.count(INTROSPECTIONS, "outcome=active"), 1);
        assert_eq!(seen.count(INTROSPECTIONS, "outcome=inactive"), 1);
        let lookups = |result| {
            seen.count(
                VALIDATION_CACHE_LOOKUPS,
                &format!("validator=introspection,result={result}"),
            )
        };
        assert_eq!((lookups("hit"), lookups("miss")), (3, 2));
        assert_eq!(seen.count(VALIDATIONS, "outcome=ok,scheme=bearer"), 3);
        assert_eq!(seen.count(VALIDATIONS, "outcome=inactive,scheme=bearer"), 2);
        seen.assert_bounded(&[&token, &revoked, introspection::RS_ID]);
    });
}

#[test]
fn forwarded_certificate_headers_by_result() {
    use tower_token_binding::server::ConnectionInfo;
    use tower_token_binding::server::forwarded::{
        ForwardedClientCertLayer, X_FORWARDED_CLIENT_CERT,
    };

    run(|snapshotter| async move {
        let cert = TestPki::self_signed_client("client.example").unwrap();
        let hash: String = cert
            .thumbprint()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let service = tower::ServiceBuilder::new()
            .layer(
                ForwardedClientCertLayer::xfcc()
                    .trusted_proxy("10.0.0.0/8".parse().unwrap())
                    .build()
                    .unwrap(),
            )
            .service_fn(|_: Request<()>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(()))
            });
        let from = |remote: &str, xfcc: &str| {
            let mut request = Request::get("/")
                .header(X_FORWARDED_CLIENT_CERT, xfcc)
                .body(())
                .unwrap();
            request.extensions_mut().insert(ConnectionInfo::new(
                remote.parse().unwrap(),
                "10.0.0.1:443".parse().unwrap(),
            ));
            request
        };
        let one = format!("Hash={hash}");
        let two = format!("Hash={hash},Hash={hash}");
        for (remote, xfcc, status) in [
            ("10.1.2.3:5000", one.as_str(), StatusCode::OK),
            ("10.1.2.3:5000", one.as_str(), StatusCode::OK),
            ("10.1.2.3:5000", two.as_str(), StatusCode::OK),
            ("10.1.2.3:5000", "Hash=abc", StatusCode::BAD_REQUEST),
            ("203.0.113.9:5000", one.as_str(), StatusCode::OK),
        ] {
            let response = service.clone().oneshot(from(remote, xfcc)).await.unwrap();
            assert_eq!(response.status(), status, "{remote} {xfcc}");
        }
        let seen = Seen::take(&snapshotter);
        let count = |result: &str| seen.count(FORWARDED_CERTIFICATES, &format!("result={result}"));
        assert_eq!(
            [
                count("used"),
                count("none_taken"),
                count("malformed"),
                count("ignored")
            ],
            [2, 1, 1, 1]
        );
        seen.assert_bounded(&[&hash]);
    });
}

#[test]
fn escaped_pem_headers_by_result() {
    use tower_token_binding::server::ConnectionInfo;
    use tower_token_binding::server::forwarded::{ForwardedClientCertLayer, NGINX};

    run(|snapshotter| async move {
        let cert = TestPki::self_signed_client("client.example").unwrap();
        let escaped = support::nginx_escape(cert.cert_pem());
        let service = tower::ServiceBuilder::new()
            .layer(
                ForwardedClientCertLayer::escaped_pem(NGINX)
                    .trusted_proxy("10.0.0.0/8".parse().unwrap())
                    .build()
                    .unwrap(),
            )
            .service_fn(|_: Request<()>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(()))
            });
        let from = |remote: &str, value: &str| {
            let mut request = Request::get("/").header(NGINX, value).body(()).unwrap();
            request.extensions_mut().insert(ConnectionInfo::new(
                remote.parse().unwrap(),
                "10.0.0.1:443".parse().unwrap(),
            ));
            request
        };
        for (remote, value, status) in [
            ("10.1.2.3:5000", escaped.as_str(), StatusCode::OK),
            ("10.1.2.3:5000", "", StatusCode::OK),
            ("10.1.2.3:5000", "%zz", StatusCode::BAD_REQUEST),
            ("203.0.113.9:5000", escaped.as_str(), StatusCode::OK),
        ] {
            let response = service.clone().oneshot(from(remote, value)).await.unwrap();
            assert_eq!(response.status(), status, "{remote} {value:.40}");
        }
        let seen = Seen::take(&snapshotter);
        let count = |result: &str| seen.count(FORWARDED_CERTIFICATES, &format!("result={result}"));
        assert_eq!(
            [
                count("used"),
                count("none_taken"),
                count("malformed"),
                count("ignored")
            ],
            [1, 1, 1, 1]
        );
        seen.assert_bounded(&[&escaped]);
    });
}
