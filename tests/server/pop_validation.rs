//! `CnfValidationLayer` with Microsoft's signed HTTP requests (`PoP`) over
//! real TLS on loopback: tokens signed by the test issuer with `cnf.kid`,
//! SHRs made by `proof::pop` (or by hand, for the hostile ones). One table
//! holds every refusal of the negative list of issue 16, each row with the
//! status and the challenge it must get; then round trips for PS256 and
//! ES256, the replay store and the challenges of routes with and without
//! `PoP`.
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::dpop;
use crate::support::pop_setup;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dpop::{bound_token, start, uri};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use pop_setup::*;
use serde_json::{Value, json};
use support::{https_client, https_client_http1};
use tower_token_binding::proof::dpop::DpopProofs;
use tower_token_binding::proof::pop::PopProofs;
use tower_token_binding::proof::{Algorithm, ProofKey};

/// One row: a name, the request, and the answer it must get.
struct Row {
    name: &'static str,
    call: Call,
    status: StatusCode,
    /// The `WWW-Authenticate` value must start with this.
    challenge: String,
}

/// A refusal in the challenge of `scheme`: `invalid_token`, its
/// `error_description` starting with `says`.
fn refused(name: &'static str, call: Call, scheme: &str, says: &str) -> Row {
    Row {
        name,
        call,
        status: StatusCode::UNAUTHORIZED,
        challenge: format!("{scheme} error=\"invalid_token\", error_description=\"{says}"),
    }
}

#[tokio::test]
async fn every_pop_check_in_one_table() {
    let s = setup(Algorithm::Es256).await;
    let api = start(&s.pki, every_binding(&s)).await;
    let client = https_client(&s.pki, None);
    let token = &s.token;
    let key = s.shrs.key();
    let sign = |method: &Method, url: &str, at: &str| s.shrs.sign(method, &uri(url), at).unwrap();
    let at_time = |when: SystemTime| {
        s.shrs
            .signer(&Method::GET, &uri(&api), token)
            .at_time(when)
            .sign()
            .unwrap()
    };
    let good = || Call::pop(&api, sign(&Method::GET, &api, token));

    // The harness: a good call gets through, over HTTP/2 and HTTP/1.1
    // (`:authority` and `Host`), and says which key was proven.
    for client in [&client, &https_client_http1(&s.pki, None)] {
        let answer = send(client, &good()).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body, format!("pop {}", s.shrs.kid()));
    }
    let used = good();
    assert_eq!(send(&client, &used).await.status, StatusCode::OK);
    // A hand-made SHR good in every respect: the hostile ones below differ
    // from it in one thing each.
    let header = json!({ "alg": "ES256", "typ": "pop", "kid": s.shrs.kid().to_string() });
    let control = hand_made(key, &header, &good_payload(key, &api, token));
    let answer = send(&client, &Call::pop(&api, control)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");

    let other = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let port = uri(&api).port_u16().unwrap();
    let other_port = api.replace(&format!(":{port}/"), &format!(":{}/", port.wrapping_add(1)));
    let other_host = api.replace("localhost", "127.0.0.1");

    // cnf.jwk with a private member; a symmetric jwk; the header kid of
    // another key; a broken signature.
    let mut private = good_payload(key, &api, token);
    private["cnf"]["jwk"]["d"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    let private = hand_made(key, &header, &private);
    let mut symmetric = good_payload(key, &api, token);
    symmetric["cnf"]["jwk"] = json!({ "kty": "oct", "k": URL_SAFE_NO_PAD.encode([9u8; 32]) });
    let symmetric = hand_made(key, &header, &symmetric);
    let other_kid = hand_made(
        key,
        &json!({ "alg": "ES256", "typ": "pop", "kid": other.kid().to_string() }),
        &good_payload(key, &api, token),
    );
    let good_shr = sign(&Method::GET, &api, token);
    let (signed, signature) = good_shr.rsplit_once('.').unwrap();
    let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    signature[10] ^= 1;
    let bad_signature = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature));
    // Signed by another key than its cnf.jwk names.
    let foreign = hand_made(other.key(), &header, &good_payload(key, &api, token));

    // q, h and b, each signed and then not matched by the request.
    let with_query = format!("{api}?b=bar&a=foo");
    let q_shr = s
        .shrs
        .signer(&Method::GET, &uri(&with_query), token)
        .query()
        .sign()
        .unwrap();
    let q_ok = Call {
        url: with_query.clone(),
        ..Call::pop(&api, q_shr.clone())
    };
    let q_other = Call {
        url: format!("{api}?b=bar&a=fou"),
        ..Call::pop(&api, q_shr)
    };
    let mut signed_headers = HeaderMap::new();
    signed_headers.insert("x-request-tag", HeaderValue::from_static("one"));
    let names = [HeaderName::from_static("x-request-tag")];
    let h_shr = s
        .shrs
        .signer(&Method::GET, &uri(&api), token)
        .headers(&signed_headers, &names)
        .sign()
        .unwrap();
    let h_ok = Call {
        headers: vec![("x-request-tag", "one".to_owned())],
        ..Call::pop(&api, h_shr.clone())
    };
    let h_other = Call {
        headers: vec![("x-request-tag", "two".to_owned())],
        ..Call::pop(&api, h_shr.clone())
    };
    let h_absent = Call::pop(&api, h_shr);
    let b_shr = s
        .shrs
        .signer(&Method::POST, &uri(&api), token)
        .body(b"abcd")
        .sign()
        .unwrap();
    let b_other = Call {
        method: Method::POST,
        body: b"abce",
        ..Call::pop(&api, b_shr)
    };

    let mut other_method = Call::pop(&api, sign(&Method::POST, &api, token));
    other_method.method = Method::GET;

    let expired = {
        let mut claims = s.issuer.claims("svc", None);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        claims["cnf"] = json!({ "kid": s.shrs.kid().to_string() });
        claims["iat"] = json!(now - 7200);
        claims["nbf"] = json!(now - 7200);
        claims["exp"] = json!(now - 3600);
        s.issuer.sign(&claims).unwrap()
    };
    let other_key_token = bound_token(&s.issuer, &json!({ "kid": other.kid().to_string() }));
    let unbound = bound_token(&s.issuer, &Value::Null);
    let dpop_bound = {
        let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
        bound_token(
            &s.issuer,
            &json!({ "jkt": proofs.thumbprint().to_string() }),
        )
    };

    let as_bearer = Call {
        authorization: format!("Bearer {}", sign(&Method::GET, &api, token)),
        ..good()
    };
    let bare = Call {
        authorization: format!("Bearer {token}"),
        ..good()
    };
    // The PoP token with a good DPoP proof by the PoP key: DPoP proves no
    // kid.
    let as_dpop = {
        let proofs = DpopProofs::new(key.clone());
        Call {
            authorization: format!("DPoP {token}"),
            headers: vec![(
                "dpop",
                proofs.proof(&Method::GET, &uri(&api), Some(token)).unwrap(),
            )],
            ..good()
        }
    };

    let ok = |name, call| Row {
        name,
        call,
        status: StatusCode::OK,
        challenge: String::new(),
    };
    let rows = vec![
        ok("q over the query", q_ok),
        ok("h over a header", h_ok),
        refused(
            "replayed SHR",
            used,
            "PoP",
            "the PoP SHR has been used before",
        ),
        refused(
            "header kid of another key",
            Call::pop(&api, other_kid),
            "PoP",
            "the PoP SHR kid is not the thumbprint of its cnf.jwk",
        ),
        refused(
            "at bound to another key (wrong KID)",
            Call::pop(&api, sign(&Method::GET, &api, &other_key_token)),
            "PoP",
            "the access token is bound to another key than the PoP SHR",
        ),
        refused(
            "jwk with d",
            Call::pop(&api, private),
            "PoP",
            "the PoP SHR cnf.jwk is not an acceptable public key",
        ),
        refused(
            "symmetric jwk",
            Call::pop(&api, symmetric),
            "PoP",
            "the PoP SHR cnf.jwk is not an acceptable public key",
        ),
        refused(
            "bad signature",
            Call::pop(&api, bad_signature),
            "PoP",
            "the PoP SHR signature is invalid",
        ),
        refused(
            "signed by another key than cnf.jwk",
            Call::pop(&api, foreign),
            "PoP",
            "the PoP SHR signature is invalid",
        ),
        refused(
            "ts 10 minutes old",
            Call::pop(&api, at_time(SystemTime::now() - Duration::from_secs(600))),
            "PoP",
            "the PoP SHR ts is too old",
        ),
        refused(
            "ts 10 minutes ahead",
            Call::pop(&api, at_time(SystemTime::now() + Duration::from_secs(600))),
            "PoP",
            "the PoP SHR ts is in the future",
        ),
        refused(
            "other method",
            other_method,
            "PoP",
            "the PoP SHR method m does not match the request",
        ),
        refused(
            "other host",
            Call::pop(&api, sign(&Method::GET, &other_host, token)),
            "PoP",
            "the PoP SHR host u does not match the request",
        ),
        refused(
            "other port",
            Call::pop(&api, sign(&Method::GET, &other_port, token)),
            "PoP",
            "the PoP SHR host u does not match the request",
        ),
        refused(
            "other path",
            Call::pop(
                &api,
                sign(&Method::GET, &api.replace("/whoami", "/other"), token),
            ),
            "PoP",
            "the PoP SHR path p does not match the request",
        ),
        refused(
            "q mismatch",
            q_other,
            "PoP",
            "the PoP SHR query hash q does not match the request",
        ),
        refused(
            "h mismatch",
            h_other,
            "PoP",
            "the PoP SHR header hash h does not match the request",
        ),
        refused(
            "h over a header not sent",
            h_absent,
            "PoP",
            "the PoP SHR header hash h does not match the request",
        ),
        // This route has no BufferBodyLayer: a `b` cannot be checked and is
        // refused (see `the_body_hash_with_a_buffered_body` for one that
        // can).
        refused(
            "b without a buffered body",
            b_other,
            "PoP",
            "the PoP SHR body hash b does not match the request",
        ),
        refused(
            "at expired",
            Call::pop(&api, sign(&Method::GET, &api, &expired)),
            "PoP",
            "the access token has expired",
        ),
        refused(
            "at without cnf",
            Call::pop(&api, sign(&Method::GET, &api, &unbound)),
            "PoP",
            "the access token in the PoP SHR is not PoP-bound",
        ),
        refused(
            "at DPoP-bound (cnf.jkt)",
            Call::pop(&api, sign(&Method::GET, &api, &dpop_bound)),
            "PoP",
            "the access token in the PoP SHR is not PoP-bound",
        ),
        refused(
            "not an SHR",
            Call::pop(&api, "abc.def.ghi".to_owned()),
            "PoP",
            "the PoP SHR is not a well-formed JWS",
        ),
        refused(
            "PoP SHR sent as Bearer",
            as_bearer,
            "Bearer",
            "a PoP signed HTTP request is not an access token",
        ),
        refused(
            "pop token presented bare",
            bare,
            "Bearer",
            "the access token is PoP-bound",
        ),
        refused(
            "pop token with DPoP",
            as_dpop,
            "DPoP",
            "the access token is PoP-bound",
        ),
    ];

    let mut failures = Vec::new();
    for row in rows {
        let answer = send(&client, &row.call).await;
        let challenge_ok = if row.challenge.is_empty() {
            answer.challenge.is_empty()
        } else {
            // Every scheme of the route is offered, the failing one first.
            answer.challenge.starts_with(&row.challenge)
                && ["Bearer", "DPoP", "PoP"]
                    .iter()
                    .all(|scheme| answer.challenge.contains(scheme))
        };
        if answer.status != row.status || !challenge_ok {
            failures.push(format!("{}: {answer:?}", row.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// An SHR verified while fresh, whose token then takes longer to validate
/// than the SHR's lifetime has left: refused as too old, and the replay
/// store is never asked.
#[tokio::test]
async fn an_shr_that_ages_out_during_a_slow_validation_is_refused() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{ServiceBuilder, ServiceExt as _};
    use tower_token_binding::proof::pop::PopVerifier;
    use tower_token_binding::validation::ValidateToken as _;

    let s = setup(Algorithm::Es256).await;
    let jwt = support::jwt_validator(&s.pki, &s.issuer, Duration::from_secs(3600));
    // Longer than the lifetime below plus the second of rounding in `ts`;
    // tokio's clock, which the proof's age is read from, jumps ahead.
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
                .accept_pop(
                    PopVerifier::builder()
                        .max_age(Duration::from_secs(1))
                        .build(),
                )
                .replay_store(dpop::counting_store(calls.clone(), || Ok(true))),
        )
        .service_fn(
            |_request: http::Request<http_body_util::Full<bytes::Bytes>>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::<
                    bytes::Bytes,
                >::default()))
            },
        );
    let api = "https://api.example:443/slow";
    let shr = s.shrs.sign(&Method::GET, &uri(api), &s.token).unwrap();
    let request = http::Request::get(api)
        .header(http::header::AUTHORIZATION, format!("PoP {shr}"))
        .body(http_body_util::Full::default())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the store is never asked");
}
