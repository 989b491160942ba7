//! Opaque access tokens checked by token introspection (RFC 7662), over real
//! TLS on loopback: the test issuer keeps the tokens and answers the
//! introspection calls (counting them), the API runs `CnfValidationLayer`
//! with an `IntrospectionValidator`, clients present certificates or DPoP
//! proofs. The binding checks are the same as for JWTs, on every request.
//! How the resource server authenticates, `ResourceServer`, the example and
//! the logs are in `tests/server/introspection_deployment.rs`.
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::introspection;
use std::time::Duration;

use http::{Method, StatusCode};
use introspection::{assert_invalid_token, assert_unavailable, bearer, call, setup, start};
use serde_json::{Value, json};
use support::https_client;
use tower_token_binding::proof::dpop::{DpopProofs, DpopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::test_util::IntrospectionFault;
use tower_token_binding::validation::{CnfValidationLayer, JwtOrIntrospection, ValidateToken};

#[tokio::test]
async fn certificate_bound_opaque_token_needs_its_certificate() {
    let s = setup().await;
    let api = start(
        &s.pki,
        CnfValidationLayer::new(s.validator().build().unwrap()),
    )
    .await;
    let token = s.bound_to_client();

    let right = https_client(&s.pki, Some(&s.client));
    let answer = bearer(&right, &api, &token).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body,
        json!({ "sub": "svc", "binding": "certificate" })
    );

    let other = s
        .pki
        .client_cert("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let answer = bearer(&https_client(&s.pki, Some(&other)), &api, &token).await;
    assert_invalid_token(&answer, "bound to a different client certificate");

    let answer = bearer(&https_client(&s.pki, None), &api, &token).await;
    assert_invalid_token(&answer, "no client certificate was presented");

    // The binding was checked per request; the issuer was asked once.
    assert_eq!(s.issuer.introspection_calls(), 1);

    // A token without cnf: refused where binding is required.
    let unbound = s.opaque(Value::Null);
    let answer = bearer(&right, &api, &unbound).await;
    assert_invalid_token(&answer, "not bound");
}

#[tokio::test]
async fn dpop_bound_opaque_token_needs_a_proof_by_its_key() {
    let s = setup().await;
    let layer =
        CnfValidationLayer::new(s.validator().build().unwrap()).accept_dpop(DpopVerifier::new());
    let api = start(&s.pki, layer).await;
    let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let token = s.opaque(json!({ "jkt": proofs.thumbprint().to_string() }));
    let client = https_client(&s.pki, None);

    let proof = proofs
        .proof(&Method::GET, &api.parse().unwrap(), Some(&token))
        .unwrap();
    let answer = call(&client, &api, &format!("DPoP {token}"), Some(&proof)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.challenge);
    assert_eq!(answer.body["binding"], "dpop");

    // As a bearer token: a downgrade.
    let answer = bearer(&client, &api, &token).await;
    assert_invalid_token(&answer, "DPoP-bound");

    // A proof by another key.
    let other = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let proof = other
        .proof(&Method::GET, &api.parse().unwrap(), Some(&token))
        .unwrap();
    let answer = call(&client, &api, &format!("DPoP {token}"), Some(&proof)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.challenge.contains("another key"),
        "{}",
        answer.challenge
    );
    assert_eq!(s.issuer.introspection_calls(), 1);
}

#[tokio::test]
async fn revoked_unknown_and_foreign_tokens_are_refused() {
    let s = setup().await;
    let api = start(
        &s.pki,
        CnfValidationLayer::new(s.validator().build().unwrap()),
    )
    .await;
    let client = https_client(&s.pki, Some(&s.client));

    let token = s.bound_to_client();
    assert!(s.issuer.revoke(&token));
    assert_invalid_token(&bearer(&client, &api, &token).await, "not active");
    assert_invalid_token(&bearer(&client, &api, "never-issued").await, "not active");

    // Active, but for another resource, or from another issuer.
    let mut claims = s.issuer.claims("svc", Some(s.client.thumbprint()));
    claims["aud"] = json!("https://elsewhere.test");
    let token = s.issuer.issue_opaque(&claims).unwrap();
    assert_invalid_token(
        &bearer(&client, &api, &token).await,
        "not meant for this resource",
    );
    let mut claims = s.issuer.claims("svc", Some(s.client.thumbprint()));
    claims["iss"] = json!("https://evil.test");
    let token = s.issuer.issue_opaque(&claims).unwrap();
    assert_invalid_token(&bearer(&client, &api, &token).await, "wrong issuer");
    let mut claims = s.issuer.claims("svc", Some(s.client.thumbprint()));
    claims.as_object_mut().unwrap().remove("exp");
    let token = s.issuer.issue_opaque(&claims).unwrap();
    assert_invalid_token(&bearer(&client, &api, &token).await, "valid exp claim");
    // DPoP token_type without cnf.jkt.
    let mut claims = s.issuer.claims("svc", Some(s.client.thumbprint()));
    claims["token_type"] = json!("DPoP");
    let token = s.issuer.issue_opaque(&claims).unwrap();
    assert_invalid_token(&bearer(&client, &api, &token).await, "type does not match");
}

#[tokio::test]
async fn answers_are_cached_by_token_and_refusals_briefly() {
    let s = setup().await;
    let api = start(
        &s.pki,
        CnfValidationLayer::new(s.validator().build().unwrap()),
    )
    .await;
    let client = https_client(&s.pki, Some(&s.client));
    let token = s.bound_to_client();
    for _ in 0..10 {
        assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);
    }
    assert_eq!(s.issuer.introspection_calls(), 1);
    // Revoked after it was cached: served from the cache until the entry
    // ends (at most the cache lifetime).
    s.issuer.revoke(&token);
    assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);
    assert_eq!(s.issuer.introspection_calls(), 1);

    // A junk token: one call, then the remembered refusal.
    for _ in 0..10 {
        assert_invalid_token(&bearer(&client, &api, "junk").await, "not active");
    }
    assert_eq!(s.issuer.introspection_calls(), 2);

    // Without the caches, every request asks.
    let validator = s
        .validator()
        .cache_ttl(Duration::ZERO)
        .inactive_ttl(Duration::ZERO)
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    let live = s.bound_to_client();
    for _ in 0..3 {
        assert_eq!(bearer(&client, &api, &live).await.status, StatusCode::OK);
        assert_invalid_token(&bearer(&client, &api, "junk").await, "not active");
    }
    assert_eq!(s.issuer.introspection_calls(), 2 + 6);
    // And a revocation shows at once.
    s.issuer.revoke(&live);
    assert_invalid_token(&bearer(&client, &api, &live).await, "not active");
}

#[tokio::test]
async fn one_call_for_fifty_concurrent_requests() {
    let s = setup().await;
    // Nothing remembered: only single flight can make it one call.
    let uncached = || {
        s.validator()
            .cache_ttl(Duration::ZERO)
            .inactive_ttl(Duration::ZERO)
            .introspection_timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    };
    let api = start(&s.pki, CnfValidationLayer::new(uncached())).await;
    let client = https_client(&s.pki, Some(&s.client));
    let token = s.bound_to_client();
    // The answer waits, so that the requests overlap.
    s.issuer
        .set_introspection_fault(Some(IntrospectionFault::Delay(Duration::from_secs(3))));
    let requests = (0..50).map(|_| bearer(&client, &api, &token));
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(s.issuer.introspection_calls(), 1);

    // The same straight on the validator, for an inactive token.
    s.issuer.set_introspection_fault(None);
    let validator = uncached();
    let calls = (0..50).map(|_| validator.validate("nobody-knows-me"));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.is_err()));
    assert_eq!(s.issuer.introspection_calls(), 2);
}

#[tokio::test]
async fn an_endpoint_down_slow_or_talking_garbage_is_a_503() {
    let s = setup().await;
    let client = https_client(&s.pki, Some(&s.client));
    let token = s.bound_to_client();

    // Down: nothing listens at the endpoint.
    let (_held, closed) = support::refusing_address();
    let closed = closed.port();
    let validator = s
        .validator()
        .endpoint(format!("https://127.0.0.1:{closed}/introspect"))
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    assert_unavailable(&bearer(&client, &api, &token).await);

    let validator = s
        .validator()
        .introspection_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    let faults = [
        IntrospectionFault::Delay(Duration::from_secs(3)),
        IntrospectionFault::Unavailable,
        IntrospectionFault::Garbage,
        IntrospectionFault::Answer(r#"{"active":"true"}"#.into()),
        IntrospectionFault::Answer(r#"{"active":true,"active":true}"#.into()),
        IntrospectionFault::Answer(r#"{"active":false,"active":true}"#.into()),
        IntrospectionFault::Answer(r#"{"active":true,"exp":"tomorrow"}"#.into()),
        IntrospectionFault::Answer(r#"["active"]"#.into()),
        IntrospectionFault::Answer(format!(
            r#"{{"active":true,"pad":"{}"}}"#,
            "x".repeat(100_000)
        )),
    ];
    for fault in faults {
        s.issuer.set_introspection_fault(Some(fault.clone()));
        let answer = bearer(&client, &api, &token).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{fault:?}");
        assert_unavailable(&answer);
    }
    // Failures are not remembered: once the endpoint is back, the token works.
    s.issuer.set_introspection_fault(None);
    assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);

    // Credentials the issuer refuses are the server's problem, not the client's.
    let validator = s.validator().client_secret_basic("wrong").build().unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    assert_unavailable(&bearer(&client, &api, &token).await);
}

#[tokio::test]
async fn jwts_and_opaque_tokens_by_shape() {
    let s = setup().await;
    let jwt = support::jwt_validator(&s.pki, &s.issuer, Duration::from_secs(3600));
    let both = JwtOrIntrospection::new(jwt, s.validator().build().unwrap());
    let api = start(&s.pki, CnfValidationLayer::new(both)).await;
    let client = https_client(&s.pki, Some(&s.client));

    let jwt = s
        .issuer
        .sign(&s.issuer.claims("svc", Some(s.client.thumbprint())))
        .unwrap();
    assert_eq!(bearer(&client, &api, &jwt).await.status, StatusCode::OK);
    assert_eq!(
        s.issuer.introspection_calls(),
        0,
        "a JWT is checked locally"
    );
    assert_eq!(s.issuer.jwks_fetches(), 1);

    let opaque = s.bound_to_client();
    assert_eq!(bearer(&client, &api, &opaque).await.status, StatusCode::OK);
    assert_eq!(s.issuer.introspection_calls(), 1);

    // A JWT-shaped token goes to the JWT validator, however bad.
    assert_invalid_token(&bearer(&client, &api, "a.b.c").await, "well-formed JWT");
    assert_eq!(s.issuer.introspection_calls(), 1);

    // Introspection only: the JWT is introspected (and unknown there).
    let only = JwtOrIntrospection::introspection_only(s.validator().build().unwrap());
    let api = start(&s.pki, CnfValidationLayer::new(only)).await;
    assert_invalid_token(&bearer(&client, &api, &jwt).await, "not active");
    assert_eq!(s.issuer.introspection_calls(), 2);
}

#[tokio::test]
async fn a_fractional_exp_ends_the_cached_answer() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let unix_now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let s = setup().await;
    let validator = s.validator().leeway(Duration::ZERO).build().unwrap();
    // RFC 7519 NumericDates may have a fraction: a few seconds ahead.
    let exp = unix_now().as_secs() as f64 + 4.5;
    let mut claims = s.issuer.claims("svc", None);
    claims["exp"] = json!(exp);
    let token = s.issuer.issue_opaque(&claims).unwrap();
    let first = validator.validate(&token).await.unwrap();
    assert_eq!(first.expires_at(), Some(exp.floor() as u64));
    assert!(validator.validate(&token).await.is_ok());
    assert_eq!(s.issuer.introspection_calls(), 1, "cached before exp");
    // Once the clock reaches exp (rounded down), the answer is not used
    // again: the issuer is asked anew (whatever it says). Tokio's clock
    // jumps to a quarter second past exp rounded down, still short of exp.
    let exp_floor = Duration::from_secs(exp.floor() as u64);
    support::advance(exp_floor + Duration::from_millis(250) - unix_now()).await;
    let _ = validator.validate(&token).await;
    assert_eq!(s.issuer.introspection_calls(), 2, "not cached past exp");
}

#[tokio::test]
async fn calls_beyond_the_limit_are_a_503_at_once() {
    use futures_util::FutureExt as _;
    use tower_token_binding::validation::TokenErrorKind;
    let s = setup().await;
    let validator = s
        .validator()
        .max_concurrent_calls(2)
        // Both slots for tokens not seen before (the slots kept for
        // re-checks: a_flood_of_junk_leaves_slots_for_tokens_seen_active).
        .recheck_reserve(0)
        .introspection_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator.clone())).await;
    let client = https_client(&s.pki, Some(&s.client));
    // The issuer holds every answer: the calls stay in flight.
    let hold = s.issuer.hold_introspection();
    let tokens: Vec<String> = (0..5).map(|_| s.bound_to_client()).collect();
    let held: Vec<_> = tokens[..2].iter().map(|t| validator.validate(t)).collect();
    // Distinct unknown tokens beyond the limit: refused at once, no call.
    for token in &tokens[2..] {
        let refused = validator.validate(token).now_or_never().expect("at once");
        assert_eq!(
            refused.unwrap_err().kind(),
            TokenErrorKind::IntrospectionUnavailable
        );
    }
    // Over HTTP: 503 with Retry-After, the client keeps its token.
    assert_unavailable(&bearer(&client, &api, &s.bound_to_client()).await);
    // A token whose call is in flight still joins it.
    assert!(validator.validate(&tokens[0]).now_or_never().is_none());
    // The issuer sees the two calls, and no more.
    tokio::time::timeout(Duration::from_secs(30), hold.until_waiting(2))
        .await
        .expect("the two calls reach the issuer");
    assert_eq!(s.issuer.introspection_calls(), 2);
    drop(held);
    hold.release();
}

#[tokio::test]
async fn concurrent_first_calls_share_one_discovery() {
    let s = setup().await;
    let validator = s.validator().build().unwrap();
    let tokens: Vec<String> = (0..20).map(|_| s.bound_to_client()).collect();
    let calls = tokens.iter().map(|t| validator.validate(t));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(s.issuer.introspection_calls(), 20, "distinct tokens");
    assert_eq!(s.issuer.metadata_requests(), 1, "one discovery");

    // A failed lookup (the issuer is down; it counts no request then) is
    // shared by those who waited for it, and tried again by the next call.
    let validator = s.validator().build().unwrap();
    s.issuer.set_down(true);
    let tokens: Vec<String> = (0..20).map(|_| s.bound_to_client()).collect();
    let calls = tokens.iter().map(|t| validator.validate(t));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_err));
    s.issuer.set_down(false);
    assert!(validator.validate(&tokens[0]).await.is_ok());
    assert_eq!(s.issuer.metadata_requests(), 2);
}

#[tokio::test]
async fn tokens_longer_than_the_cap_or_not_b64token_make_no_call() {
    use tower_token_binding::validation::TokenErrorKind;
    let s = setup().await;
    let validator = s.validator().build().unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator.clone())).await;
    let client = https_client(&s.pki, Some(&s.client));

    // Longer than the cap (4 KiB by default): refused as not one of the
    // issuer's, without asking it.
    let oversized = "a".repeat(4097);
    assert_invalid_token(
        &bearer(&client, &api, &oversized).await,
        "cannot be one of this issuer's tokens",
    );
    let refused = validator.validate(&oversized).await.unwrap_err();
    assert_eq!(refused.kind(), TokenErrorKind::UnexpectedShape);
    // Outside RFC 6750's b64token alphabet: the layer refuses the header
    // before any validator sees it.
    for malformed in [
        "Bearer not%a-token",
        "Bearer a b",
        "Bearer to\"ken",
        "Bearer =",
    ] {
        let answer = call(&client, &api, malformed, None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{malformed}");
    }
    assert_eq!(s.issuer.introspection_calls(), 0);

    // At the cap, the issuer is asked; the cap is a setting.
    let at_cap = "a".repeat(4096);
    assert_invalid_token(&bearer(&client, &api, &at_cap).await, "not active");
    assert_eq!(s.issuer.introspection_calls(), 1);
    let capped = s.validator().max_token_length(43).build().unwrap();
    let refused = capped.validate(&"a".repeat(44)).await.unwrap_err();
    assert_eq!(refused.kind(), TokenErrorKind::UnexpectedShape);
    assert!(capped.validate(&s.bound_to_client()).await.is_ok());
    assert_eq!(s.issuer.introspection_calls(), 2);
}

#[tokio::test]
async fn tokens_the_shape_check_refuses_make_no_call() {
    use tower_token_binding::validation::TokenErrorKind;
    let s = setup().await;
    // The test issuer's opaque tokens: 43 base64url characters.
    let validator = s
        .validator()
        .token_shape(|token: &str| token.len() == 43)
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator.clone())).await;
    let client = https_client(&s.pki, Some(&s.client));
    for junk in [
        "junk",
        "a.b",
        &"A".repeat(42),
        &"A".repeat(44),
        &"a".repeat(5000),
    ] {
        assert_invalid_token(
            &bearer(&client, &api, junk).await,
            "cannot be one of this issuer's tokens",
        );
        let refused = validator.validate(junk).await.unwrap_err();
        assert_eq!(refused.kind(), TokenErrorKind::UnexpectedShape);
    }
    assert_eq!(s.issuer.introspection_calls(), 0);

    // The issuer's own tokens pass, and are asked about.
    let token = s.bound_to_client();
    assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);
    // Junk of the right shape is asked about once (then remembered).
    let well_shaped = "B".repeat(43);
    for _ in 0..3 {
        assert_invalid_token(&bearer(&client, &api, &well_shaped).await, "not active");
    }
    assert_eq!(s.issuer.introspection_calls(), 2);
}

/// Issue 25, F4: a flood of made-up tokens of the right shape fills the
/// call slots while the endpoint is slow (here: held). A token this
/// validator has seen active before still gets its re-check, in the slots
/// kept for re-checks (an eighth: 8 of the default 64); a token never seen
/// gets `503` with `Retry-After` until the flood drains.
#[tokio::test]
async fn a_flood_of_junk_leaves_slots_for_tokens_seen_active() {
    use futures_util::FutureExt as _;
    use tower_token_binding::validation::TokenErrorKind;
    let s = setup().await;
    // Nothing kept in memory: every request for a known token is a
    // re-check at the endpoint.
    let validator = s
        .validator()
        .cache_ttl(Duration::ZERO)
        .introspection_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator.clone())).await;
    let client = https_client(&s.pki, Some(&s.client));
    let known = s.bound_to_client();
    assert_eq!(bearer(&client, &api, &known).await.status, StatusCode::OK);
    assert_eq!(s.issuer.introspection_calls(), 1);

    // The endpoint answers nothing for now: the calls stay in flight.
    let hold = s.issuer.hold_introspection();
    let junk: Vec<String> = (0..80).map(|i| format!("junk{i:0>39}")).collect();
    let mut flood: Vec<_> = junk.iter().map(|t| validator.validate(t)).collect();
    let mut refused = 0;
    for call in &mut flood {
        if let Some(result) = call.now_or_never() {
            let kind = result.unwrap_err().kind();
            assert_eq!(kind, TokenErrorKind::IntrospectionUnavailable);
            refused += 1;
        }
    }
    hold.until_waiting(56).await;

    // A token seen active: its re-check gets a kept slot, and its answer.
    let recheck = tokio::spawn({
        let (client, api, known) = (client.clone(), api.clone(), known.clone());
        async move { bearer(&client, &api, &known).await }
    });
    // A token never seen: 503 with Retry-After until the flood drains.
    let fresh = s.bound_to_client();
    introspection::assert_unavailable(&bearer(&client, &api, &fresh).await);

    hold.until_waiting(57).await;
    hold.release();
    let answer = recheck.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.challenge);
    // The junk that got a slot is refused by the issuer; the rest never
    // reached it.
    for call in flood {
        let _ = call.await;
    }
    assert_eq!(refused, 80 - 56);
    assert_eq!(s.issuer.introspection_calls(), 1 + 56 + 1);
}

/// What a flood of made-up tokens costs the authorization server, counted
/// at the test issuer (the numbers in the README's introspection section):
/// one call per distinct token of the right shape (its repeats find the
/// remembered refusal), none for a token the shape check refuses, and at
/// most the slots not kept for re-checks in flight at once.
#[tokio::test]
async fn what_a_flood_of_junk_costs_the_authorization_server() {
    use tower_token_binding::validation::{IntrospectionValidator, TokenErrorKind};
    const K: usize = 200;
    const REPEATS: usize = 3;
    let s = setup().await;
    // Junk that looks like the issuer's tokens (43 base64url characters),
    // and junk that does not (shorter, longer).
    let well_shaped: Vec<String> = (0..K).map(|i| format!("{i:A>43}")).collect();
    let misshapen: Vec<String> = (0..K)
        .map(|i| {
            let width = if i % 2 == 0 { 20 + i % 20 } else { 44 + i % 20 };
            format!("{i:A>width$}")
        })
        .collect();
    let issuer_shape = |token: &str| token.len() == 43;

    // Sends every token REPEATS times, 50 at a time (fewer than the free
    // slots, so that none is refused for overload); returns the calls the
    // issuer saw and how many requests were refused without one.
    let flood = |validator: IntrospectionValidator, tokens: Vec<String>| {
        let issuer = &s.issuer;
        async move {
            let before = issuer.introspection_calls();
            let mut not_asked = 0;
            let requests: Vec<&String> = (0..REPEATS).flat_map(|_| &tokens).collect();
            for wave in requests.chunks(50) {
                let answers =
                    futures_util::future::join_all(wave.iter().map(|t| validator.validate(t)))
                        .await;
                for answer in answers {
                    match answer.unwrap_err().kind() {
                        TokenErrorKind::Inactive => {}
                        TokenErrorKind::UnexpectedShape => not_asked += 1,
                        other => panic!("{other:?}"),
                    }
                }
            }
            (issuer.introspection_calls() - before, not_asked)
        }
    };
    let plain = || s.validator().build().unwrap();
    let shaped = || s.validator().token_shape(issuer_shape).build().unwrap();

    let (no_check, _) = flood(plain(), well_shaped.clone()).await;
    let (no_check_misshapen, _) = flood(plain(), misshapen.clone()).await;
    let (checked_misshapen, refused) = flood(shaped(), misshapen).await;
    let (checked_well_shaped, _) = flood(shaped(), well_shaped.clone()).await;
    let oversized: Vec<String> = (0..K).map(|i| format!("{i:A>4100}")).collect();
    let (capped, refused_by_cap) = flood(plain(), oversized).await;
    let requests = K * REPEATS;
    println!("{K} distinct junk tokens, each sent {REPEATS} times ({requests} requests):");
    println!("  no token_shape, 43-character junk:        {no_check} calls");
    println!("  no token_shape, junk of other lengths:    {no_check_misshapen} calls");
    println!("  no token_shape, junk over 4 KiB:          {capped} calls");
    println!("  token_shape, junk of other lengths:       {checked_misshapen} calls");
    println!("  token_shape, junk of the issuer's shape:  {checked_well_shaped} calls");
    assert_eq!(no_check, K);
    assert_eq!(no_check_misshapen, K);
    assert_eq!((checked_misshapen, refused), (0, requests));
    assert_eq!(checked_well_shaped, K);
    assert_eq!((capped, refused_by_cap), (0, requests));

    // All at once against an endpoint that does not answer: at most the
    // slots not kept for re-checks (56 of 64) are in flight; the rest are
    // refused at once, without a call.
    let validator = s
        .validator()
        .introspection_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let hold = s.issuer.hold_introspection();
    let before = s.issuer.introspection_calls();
    let junk: Vec<String> = (0..1000).map(|i| format!("{i:B>43}")).collect();
    let calls: Vec<_> = junk.iter().map(|t| validator.validate(t)).collect();
    // 56 calls held at once; that no 57th is on its way shows in the
    // count once every answer is in, below.
    hold.until_waiting(56).await;
    let in_flight = s.issuer.introspection_calls() - before;
    hold.release();
    let answers = futures_util::future::join_all(calls).await;
    let overloaded = answers
        .iter()
        .filter(|a| a.as_ref().unwrap_err().kind() == TokenErrorKind::IntrospectionUnavailable)
        .count();
    println!(
        "1000 distinct well-shaped junk tokens at once, endpoint held: {in_flight} calls \
         in flight, {overloaded} refused at once (503), {} calls in all",
        s.issuer.introspection_calls() - before
    );
    assert_eq!(in_flight, 56);
    assert_eq!(overloaded, 1000 - 56);
    assert_eq!(s.issuer.introspection_calls() - before, 56);
}
