//! DPoP over real TLS, continued from `tests/server/dpop_validation.rs`: server
//! nonces (missing, stale, forged, then accepted with the nonce given), the
//! replay store's place in the checks (last, once per accepted request,
//! never for a refused one) and its failure (503 with `Retry-After`, fail
//! closed).
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::dpop;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dpop::{Call, bound_token, counting_store, layer, send, setup, start, uri};
use http::{Method, StatusCode};
use serde_json::json;
use support::https_client;
use tower_token_binding::proof::dpop::{DpopProofs, DpopVerifier, StatelessNonces};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::replay::{ReplayError, ReplayErrorKind};

#[tokio::test]
async fn server_nonces() {
    let s = setup().await;
    let secret = [42u8; 32];
    let nonces = StatelessNonces::new(&secret).unwrap();
    let verifier = DpopVerifier::builder().nonces(nonces.clone()).build();
    // As behind a proxy: clients address https://api.example.com, the
    // server listens elsewhere; the origin decides what `htu` must be.
    let api = start(
        &s.pki,
        layer(&s)
            .public_origin("https://api.example.com")
            .accept_dpop(verifier),
    )
    .await;
    let public = "https://api.example.com/whoami";
    let client = https_client(&s.pki, None);
    let proof = |nonce: Option<&str>| {
        s.proofs
            .proof_at(
                &Method::GET,
                &uri(public),
                Some(&s.token),
                nonce,
                SystemTime::now(),
            )
            .unwrap()
    };
    let call = |proof: String| Call::dpop(&api, &s.token, proof);

    let stale = nonces.current(SystemTime::now() - Duration::from_secs(180));
    let forged = URL_SAFE_NO_PAD.encode([1u8; 32]);
    let other_secret = StatelessNonces::new(&[43u8; 32])
        .unwrap()
        .current(SystemTime::now());
    for (name, nonce) in [
        ("missing", None),
        ("stale", Some(stale.as_str())),
        ("forged", Some(forged.as_str())),
        ("another server's", Some(other_secret.as_str())),
    ] {
        let answer = send(&client, &call(proof(nonce))).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{name}: {answer:?}"
        );
        assert!(
            answer
                .challenge
                .starts_with("DPoP error=\"use_dpop_nonce\""),
            "{name}: {answer:?}"
        );
        let fresh = answer.nonce.expect("a fresh DPoP-Nonce");
        assert!(nonces.is_valid(&fresh, SystemTime::now()), "{name}");
    }

    // Retried with the nonce given: accepted, and the answer carries the
    // current nonce too.
    let current = nonces.current(SystemTime::now());
    let answer = send(&client, &call(proof(Some(&current)))).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.nonce.as_deref(), Some(current.as_str()));
    // The proof names the public origin, not the address the server was
    // reached at: a proof for the local URL is refused.
    let local = s
        .proofs
        .proof_at(
            &Method::GET,
            &uri(&api),
            Some(&s.token),
            Some(&current),
            SystemTime::now(),
        )
        .unwrap();
    let answer = send(&client, &call(local)).await;
    assert!(
        answer
            .challenge
            .starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{answer:?}"
    );
}

#[tokio::test]
async fn a_failing_replay_store_refuses_with_503_never_200() {
    let s = setup().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let store = counting_store(calls.clone(), || {
        Err(ReplayError::with_source(
            ReplayErrorKind::Unavailable,
            "connection refused",
        ))
    });
    let api = start(
        &s.pki,
        layer(&s)
            .replay_store(store)
            .accept_dpop(DpopVerifier::new()),
    )
    .await;
    let client = https_client(&s.pki, None);
    for _ in 0..3 {
        let proof = s
            .proofs
            .proof(&Method::GET, &uri(&api), Some(&s.token))
            .unwrap();
        let answer = send(&client, &Call::dpop(&api, &s.token, proof)).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
        assert_eq!(answer.retry_after.as_deref(), Some("5"));
        assert_eq!(answer.challenge, "", "not the client's fault: no challenge");
        assert_eq!(
            answer.body, "the replay check is unavailable\n",
            "the handler never ran; the body names the class of fault"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_replay_store_is_asked_last_and_proofs_are_never_cached() {
    let s = setup().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let api = start(
        &s.pki,
        layer(&s)
            .required_scope("read")
            .accept_dpop(DpopVerifier::new())
            .replay_store(counting_store(calls.clone(), || Ok(true))),
    )
    .await;
    let client = https_client(&s.pki, None);
    let proof = |token: &str| {
        s.proofs
            .proof(&Method::GET, &uri(&api), Some(token))
            .unwrap()
    };

    // Refused before the store: a bad proof, a token bound to another key,
    // a downgrade, a missing scope.
    let other_key = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let other = bound_token(
        &s.issuer,
        &json!({ "jkt": other_key.thumbprint().to_string() }),
    );
    let mut no_scope_claims = s.issuer.claims("svc", None);
    no_scope_claims["scope"] = json!("write");
    no_scope_claims["cnf"] = json!({ "jkt": s.proofs.thumbprint().to_string() });
    let no_scope = s.issuer.sign(&no_scope_claims).unwrap();
    let mut bad_signature = proof(&s.token);
    bad_signature.replace_range(bad_signature.len() - 4.., "AAAA");
    let mut downgrade = Call::dpop(&api, &s.token, proof(&s.token));
    downgrade.authorization = format!("Bearer {}", s.token);
    for (call, status) in [
        (
            Call::dpop(&api, &s.token, bad_signature),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Call::dpop(&api, &other, proof(&other)),
            StatusCode::UNAUTHORIZED,
        ),
        (downgrade, StatusCode::UNAUTHORIZED),
        (
            Call::dpop(&api, &no_scope, proof(&no_scope)),
            StatusCode::FORBIDDEN,
        ),
    ] {
        assert_eq!(send(&client, &call).await.status, status);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "refused proofs never reach the store"
    );

    // Accepted: the store is asked once per request, though the token is
    // served from the validator's cache after the first.
    for _ in 0..3 {
        let answer = send(&client, &Call::dpop(&api, &s.token, proof(&s.token))).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The same token with a bad proof after those successes: the proof
    // is checked every time, never remembered with the token.
    let stale = s
        .proofs
        .proof_at(
            &Method::GET,
            &uri(&api),
            Some(&s.token),
            None,
            SystemTime::now() - Duration::from_secs(300),
        )
        .unwrap();
    let answer = send(&client, &Call::dpop(&api, &s.token, stale)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.issuer.jwks_fetches(), 1);
}

/// A proof verified while fresh, but whose token takes longer to validate
/// than the proof's `iat` window has left: refused as too old, and the
/// replay store is never asked (a store must not be asked to remember a
/// proof past its lifetime, nor could it).
#[tokio::test]
async fn a_proof_that_ages_out_during_a_slow_validation_is_refused() {
    use http::Request;
    use http_body_util::Full;
    use tower::{ServiceBuilder, ServiceExt as _};
    use tower_token_binding::proof::dpop::DPOP;
    use tower_token_binding::validation::ValidateToken as _;

    let s = setup().await;
    let jwt = support::jwt_validator(&s.pki, &s.issuer, Duration::from_secs(3600));
    // Longer than the window below (1 s back) plus the second of rounding
    // in `iat`; tokio's clock, which the proof's age is read from, jumps
    // ahead.
    let slow = move |token: &str| {
        let validation = jwt.validate(token);
        async move {
            support::advance(Duration::from_millis(2_100)).await;
            validation.await
        }
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let service = ServiceBuilder::new()
        .layer(
            tower_token_binding::validation::CnfValidationLayer::new(slow)
                .accept_dpop(
                    DpopVerifier::builder()
                        .max_age(Duration::from_secs(1))
                        .build(),
                )
                .replay_store(counting_store(calls.clone(), || Ok(true))),
        )
        .service_fn(|_request: Request<Full<bytes::Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::<bytes::Bytes>::default()))
        });
    let api = "https://api.example/slow";
    let proof = s
        .proofs
        .proof(&Method::GET, &uri(api), Some(&s.token))
        .unwrap();
    let request = Request::get(api)
        .header(http::header::AUTHORIZATION, format!("DPoP {}", s.token))
        .header(DPOP, proof)
        .body(Full::default())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        challenge.starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the store is never asked");
}

/// A replay store that is down refuses every DPoP request, but warns at
/// most once a second per layer, not once per request.
#[tokio::test]
async fn a_failing_replay_store_does_not_flood_the_logs() {
    use http::Request;
    use http_body_util::Full;
    use tower::{Service as _, ServiceBuilder, ServiceExt as _};
    use tower_token_binding::proof::dpop::DPOP;

    let (logs, _guard) = support::Logs::capture(tracing::Level::WARN);

    let s = setup().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let store = counting_store(calls.clone(), || {
        Err(ReplayError::with_source(
            ReplayErrorKind::Unavailable,
            "connection refused",
        ))
    });
    let mut service = ServiceBuilder::new()
        .layer(
            layer(&s)
                .accept_dpop(DpopVerifier::new())
                .replay_store(store),
        )
        .service_fn(|_request: Request<Full<bytes::Bytes>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::<bytes::Bytes>::default()))
        });
    let api = "https://api.example/flood";
    const REQUESTS: usize = 40;
    for _ in 0..REQUESTS {
        let proof = s
            .proofs
            .proof(&Method::GET, &uri(api), Some(&s.token))
            .unwrap();
        let request = Request::get(api)
            .header(http::header::AUTHORIZATION, format!("DPoP {}", s.token))
            .header(DPOP, proof)
            .body(Full::default())
            .unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(calls.load(Ordering::SeqCst), REQUESTS);
    let text = logs.text();
    let warnings = text.matches("the replay store failed").count();
    assert!(
        (1..REQUESTS / 4).contains(&warnings),
        "{warnings} warnings for {REQUESTS} refusals:\n{text}"
    );
    assert!(text.contains("suppressed=0"), "{text}");
}
