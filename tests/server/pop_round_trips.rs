//! `CnfValidationLayer` with Microsoft's signed HTTP requests (`PoP`) over
//! real TLS on loopback, beyond the refusals (`pop_validation.rs`): round
//! trips for PS256 and ES256, the replay store last and failing closed, the
//! challenges of routes with and without `PoP`, scopes before the replay
//! store, the bound client against the layer, and the body hash.
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::dpop;
use crate::support::pop_setup;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dpop::{bound_token, counting_store, start, uri};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use pop_setup::*;
use serde_json::json;
use support::https_client;
use tower_token_binding::proof::pop::{PopProofs, PopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::replay::ReplayError;
use tower_token_binding::test_util::{TestIssuer, TestPki};

/// Our signer, our server, each default algorithm: accepted once, with
/// the KID reported to the handler.
#[tokio::test]
async fn round_trips_for_ps256_and_es256() {
    for alg in [Algorithm::Ps256, Algorithm::Es256] {
        let s = setup(alg).await;
        let api = start(
            &s.pki,
            layer_of(&s.pki, &s.issuer).accept_pop(PopVerifier::new()),
        )
        .await;
        let client = https_client(&s.pki, None);
        let uri = uri(&api);
        for method in [Method::GET, Method::DELETE] {
            let shr = s.shrs.sign(&method, &uri, &s.token).unwrap();
            let call = Call {
                method,
                ..Call::pop(&api, shr)
            };
            let answer = send(&client, &call).await;
            assert_eq!(answer.status, StatusCode::OK, "{alg:?}: {answer:?}");
            assert_eq!(answer.body, format!("pop {}", s.shrs.kid()), "{alg:?}");
            // The same SHR again: a replay.
            let answer = send(&client, &call).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{alg:?}");
            assert!(
                answer
                    .challenge
                    .starts_with("PoP error=\"invalid_token\", error_description=\"the PoP SHR has been used before\""),
                "{alg:?}: {answer:?}"
            );
        }
        // The token was validated once, then served from the cache: the
        // keys were fetched once.
        assert_eq!(s.issuer.jwks_fetches(), 1, "{alg:?}");
    }
}

/// The replay store is asked last, once per SHR otherwise accepted; a
/// failing store refuses the request with 503 and `Retry-After`.
#[tokio::test]
async fn the_replay_store_is_last_and_fails_closed() {
    let s = setup(Algorithm::Es256).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = start(
        &s.pki,
        layer_of(&s.pki, &s.issuer)
            .accept_pop(PopVerifier::new())
            .replay_store(counting_store(calls.clone(), || {
                Err(ReplayError::new(
                    tower_token_binding::replay::ReplayErrorKind::Unavailable,
                ))
            })),
    )
    .await;
    let client = https_client(&s.pki, None);
    let shr = s.shrs.sign(&Method::GET, &uri(&failing), &s.token).unwrap();
    let answer = send(&client, &Call::pop(&failing, shr)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.retry_after.as_deref(), Some("5"));
    assert_eq!(answer.challenge, "");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Refused before the store: a stale SHR, a token bound to another key.
    let stale = s
        .shrs
        .signer(&Method::GET, &uri(&failing), &s.token)
        .at_time(SystemTime::now() - Duration::from_secs(600))
        .sign()
        .unwrap();
    let other = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let foreign = bound_token(&s.issuer, &json!({ "kid": other.kid().to_string() }));
    for shr in [
        stale,
        s.shrs.sign(&Method::GET, &uri(&failing), &foreign).unwrap(),
    ] {
        let answer = send(&client, &Call::pop(&failing, shr)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "refused SHRs never reach the store"
    );

    // One store for DPoP proofs and SHRs: the in-memory default, shared by
    // clones of the layer.
    let shared = every_binding(&s);
    let a = start(&s.pki, shared.clone()).await;
    let shr = s.shrs.sign(&Method::GET, &uri(&a), &s.token).unwrap();
    assert_eq!(
        send(&client, &Call::pop(&a, shr.clone())).await.status,
        StatusCode::OK
    );
    assert_eq!(
        send(&client, &Call::pop(&a, shr)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn challenges_list_pop_where_it_is_accepted() {
    let s = setup(Algorithm::Ps256).await;
    let client = https_client(&s.pki, None);
    let basic = |url: &str| Call {
        authorization: "Basic dXNlcjpwYXNz".to_owned(),
        ..Call::pop(url, String::new())
    };
    let pop = start(
        &s.pki,
        layer_of(&s.pki, &s.issuer).accept_pop(PopVerifier::new()),
    )
    .await;
    let answer = send(&client, &basic(&pop)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.challenge, "Bearer, PoP");
    let all = start(&s.pki, every_binding(&s)).await;
    let answer = send(&client, &basic(&all)).await;
    assert_eq!(
        answer.challenge,
        format!("Bearer, DPoP {}, PoP", dpop::ALGS)
    );

    // A terse route: the error without its description.
    let terse = start(
        &s.pki,
        layer_of(&s.pki, &s.issuer)
            .accept_pop(PopVerifier::new())
            .terse(),
    )
    .await;
    let other = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let foreign = bound_token(&s.issuer, &json!({ "kid": other.kid().to_string() }));
    let shr = s.shrs.sign(&Method::GET, &uri(&terse), &foreign).unwrap();
    let answer = send(&client, &Call::pop(&terse, shr)).await;
    assert_eq!(answer.challenge, "PoP error=\"invalid_token\", Bearer");

    // A route without PoP: the scheme is not understood, and a PoP token is
    // not a binding it knows.
    let plain = start(&s.pki, layer_of(&s.pki, &s.issuer)).await;
    let shr = s.shrs.sign(&Method::GET, &uri(&plain), &s.token).unwrap();
    let answer = send(&client, &Call::pop(&plain, shr)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.challenge, "Bearer", "PoP is not offered here");
    let bare = Call {
        authorization: format!("Bearer {}", s.token),
        ..basic(&plain)
    };
    let answer = send(&client, &bare).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.challenge.starts_with(
            "Bearer error=\"invalid_token\", error_description=\"the access token cnf claim names no binding this server accepts\""
        ),
        "{answer:?}"
    );
}

/// Scopes are checked after the binding and before the replay store: a
/// token without a required scope gets `403 insufficient_scope` in the
/// `PoP` challenge, and its SHR never reaches the store.
#[tokio::test]
async fn scopes_before_the_replay_store() {
    let s = setup(Algorithm::Es256).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let api = start(
        &s.pki,
        layer_of(&s.pki, &s.issuer)
            .accept_pop(PopVerifier::new())
            .required_scope("write")
            .replay_store(counting_store(calls.clone(), || Ok(true))),
    )
    .await;
    let client = https_client(&s.pki, None);
    let shr = s.shrs.sign(&Method::GET, &uri(&api), &s.token).unwrap();
    let answer = send(&client, &Call::pop(&api, shr)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{answer:?}");
    assert!(
        answer
            .challenge
            .starts_with("PoP error=\"insufficient_scope\""),
        "{answer:?}"
    );
    assert!(answer.challenge.contains("scope=\"write\""), "{answer:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let mut claims = s.issuer.claims("svc", None);
    claims["cnf"] = json!({ "kid": s.shrs.kid().to_string() });
    claims["scope"] = json!("read write");
    let writer = s.issuer.sign(&claims).unwrap();
    let shr = s.shrs.sign(&Method::GET, &uri(&api), &writer).unwrap();
    let answer = send(&client, &Call::pop(&api, shr)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Our client, our server: `BoundClient` with the `PoP` scheme gets a
/// `cnf.kid` token from the test issuer (`token_type=pop`, `req_cnf`) and
/// signs every request; the layer accepts each, for the default RSA key
/// (PS256) and an ES256 one.
#[tokio::test]
async fn bound_client_to_the_layer_ps256_and_es256() {
    use tower_token_binding::BoundClient;
    use tower_token_binding::binding::Scheme;

    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", "s3cret")
        .start(&pki)
        .await
        .unwrap();
    let api = start(&pki, layer_of(&pki, &issuer).accept_pop(PopVerifier::new())).await;
    let builder = || {
        BoundClient::builder()
            .token_endpoint(issuer.token_endpoint())
            .client_id("svc")
            .client_secret_basic("s3cret")
            .root_store(pki.root_store())
            .scheme(Scheme::Pop)
    };
    let es256 = ProofKey::generate(Algorithm::Es256).unwrap();
    for (alg, client) in [
        (Algorithm::Ps256, builder().build().unwrap()),
        (Algorithm::Es256, builder().pop_key(es256).build().unwrap()),
    ] {
        let shrs = client.pop_proofs().unwrap().clone();
        assert_eq!(shrs.key().algorithm(), alg);
        for _ in 0..2 {
            let response = client.get(&format!("{api}?page=2")).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{alg:?}: {response:?}");
            assert_eq!(
                response.body().as_ref(),
                format!("pop {}", shrs.kid()).as_bytes(),
                "{alg:?}"
            );
        }
    }
}

/// With a `BufferBodyLayer` outside the validation layer, the body hash `b`
/// is checked: the body signed is accepted, another refused, one over the
/// limit never read; a verifier that requires `b` refuses an SHR without.
#[tokio::test]
async fn the_body_hash_with_a_buffered_body() {
    use std::future::IntoFuture as _;
    use tower_token_binding::server::{self, AnyClientCertVerifier};
    use tower_token_binding::validation::BufferBodyLayer;

    let s = setup(Algorithm::Es256).await;
    let serve = |verifier: PopVerifier| {
        let tls = s
            .pki
            .server_config(Arc::new(AnyClientCertVerifier::optional()))
            .unwrap();
        let service = tower::ServiceBuilder::new()
            .layer(BufferBodyLayer::new(64))
            .layer(layer_of(&s.pki, &s.issuer).accept_pop(verifier))
            .service_fn(|request: Request<Full<Bytes>>| async move {
                let body = request.into_body().collect().await.unwrap().to_bytes();
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(body)))
            });
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(server::serve(listener, tls, service).into_future());
            format!("https://localhost:{port}/items")
        }
    };
    let api = serve(PopVerifier::new()).await;
    let client = https_client(&s.pki, None);
    let post = |shr: String, body: &'static [u8]| Call {
        method: Method::POST,
        body,
        ..Call::pop(&api, shr)
    };
    let signed = |body: &[u8]| {
        s.shrs
            .signer(&Method::POST, &uri(&api), &s.token)
            .body(body)
            .sign()
            .unwrap()
    };

    let answer = send(&client, &post(signed(b"abcd"), b"abcd")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body, "abcd", "the handler gets the body too");
    let answer = send(&client, &post(signed(b"abcd"), b"abce")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.challenge.starts_with(
            "PoP error=\"invalid_token\", error_description=\"the PoP SHR body hash b does not match the request\""
        ),
        "{answer:?}"
    );
    let big: &'static [u8] = &[b'x'; 65];
    let answer = send(&client, &post(signed(big), big)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{answer:?}");
    // Without `b`, where it is optional: accepted, the body unsigned.
    let plain = s.shrs.sign(&Method::POST, &uri(&api), &s.token).unwrap();
    let answer = send(&client, &post(plain, b"anything")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    let strict = serve(PopVerifier::builder().require_body(true).build()).await;
    let plain = s.shrs.sign(&Method::POST, &uri(&strict), &s.token).unwrap();
    let answer = send(
        &client,
        &Call {
            url: strict.clone(),
            ..post(plain, b"abcd")
        },
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer
            .challenge
            .contains("the PoP SHR lacks a valid b claim"),
        "{answer:?}"
    );
    let with_b = s
        .shrs
        .signer(&Method::POST, &uri(&strict), &s.token)
        .body(b"abcd")
        .sign()
        .unwrap();
    let answer = send(
        &client,
        &Call {
            url: strict.clone(),
            ..post(with_b, b"abcd")
        },
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}
