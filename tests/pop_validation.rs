//! `CnfValidationLayer` with Microsoft's signed HTTP requests (`PoP`) over
//! real TLS on loopback: tokens signed by the test issuer with `cnf.kid`,
//! SHRs made by `proof::shr` (or by hand, for the hostile ones). One table
//! holds every refusal of the negative list of issue 16, each row with the
//! status and the challenge it must get; then round trips for PS256 and
//! ES256, the replay store and the challenges of routes with and without
//! `PoP`.
#![cfg(feature = "test-util")]

#[path = "support/dpop.rs"]
mod dpop;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use dpop::{bound_token, counting_store, jwk_of, start, uri};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use support::{HttpsClient, https_client, https_client_http1};
use tower_token_binding::proof::dpop::{DpopProofs, DpopVerifier};
use tower_token_binding::proof::shr::{ShrVerifier, SignedHttpRequests};
use tower_token_binding::proof::{Algorithm, ProofKey, jws};
use tower_token_binding::replay::ReplayError;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{CnfValidationLayer, JwtValidator};

struct Setup {
    pki: TestPki,
    issuer: TestIssuer,
    shrs: SignedHttpRequests,
    /// A token bound to `shrs`' key (`cnf.kid`).
    token: String,
}

async fn setup(alg: Algorithm) -> Setup {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .default_scope("read")
        .start(&pki)
        .await
        .unwrap();
    let shrs = SignedHttpRequests::new(ProofKey::generate(alg).unwrap());
    let token = bound_token(
        &issuer,
        &json!({ "kid": shrs.kid().to_string(), "xms_ksl": "sw" }),
    );
    Setup {
        pki,
        issuer,
        shrs,
        token,
    }
}

/// A request as sent.
#[derive(Clone, Debug)]
struct Call {
    method: Method,
    url: String,
    authorization: String,
    headers: Vec<(&'static str, String)>,
    body: &'static [u8],
}

impl Call {
    fn pop(url: &str, shr: String) -> Self {
        Self {
            method: Method::GET,
            url: url.to_owned(),
            authorization: format!("PoP {shr}"),
            headers: Vec::new(),
            body: b"",
        }
    }
}

#[derive(Debug)]
struct Answer {
    status: StatusCode,
    challenge: String,
    retry_after: Option<String>,
    body: String,
}

async fn send(client: &HttpsClient, call: &Call) -> Answer {
    let mut request = Request::builder()
        .method(call.method.clone())
        .uri(&call.url)
        .header(header::AUTHORIZATION, &call.authorization);
    for (name, value) in &call.headers {
        request = request.header(*name, value);
    }
    let response = client
        .request(
            request
                .body(Full::new(Bytes::from_static(call.body)))
                .unwrap(),
        )
        .await
        .expect("request");
    let text = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &HeaderValue| v.to_str().unwrap().to_owned())
    };
    let challenge = text(header::WWW_AUTHENTICATE).unwrap_or_default();
    let retry_after = text(header::RETRY_AFTER);
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        challenge,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The claims of a good SHR for `GET url` (no query) with `at`, signed by
/// `key`: for hand-made ones.
fn good_payload(key: &ProofKey, url: &str, at: &str) -> Value {
    let url = uri(url);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "at": at,
        "ts": now,
        "m": "GET",
        "u": format!("{}:{}", url.host().unwrap(), url.port_u16().unwrap()),
        "p": url.path(),
        "nonce": format!("n-{}", dpop::rand_suffix()),
        "cnf": { "jwk": jwk_of(key) },
    })
}

fn hand_made(key: &ProofKey, header: &Value, payload: &Value) -> String {
    let header = jws::encode_segment(header.to_string().as_bytes());
    jws::sign(key, &header, payload.to_string().as_bytes()).unwrap()
}

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

/// A route that accepts every binding: certificates, DPoP and PoP.
fn every_binding(s: &Setup) -> CnfValidationLayer<JwtValidator> {
    layer_of(&s.pki, &s.issuer)
        .accept_dpop(DpopVerifier::new())
        .accept_pop(ShrVerifier::new())
}

fn layer_of(pki: &TestPki, issuer: &TestIssuer) -> CnfValidationLayer<JwtValidator> {
    CnfValidationLayer::new(support::jwt_validator(
        pki,
        issuer,
        Duration::from_secs(3600),
    ))
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

    let other = SignedHttpRequests::new(ProofKey::generate(Algorithm::Es256).unwrap());
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

/// Our signer, our server, each default algorithm: accepted once, with
/// the KID reported to the handler.
#[tokio::test]
async fn round_trips_for_ps256_and_es256() {
    for alg in [Algorithm::Ps256, Algorithm::Es256] {
        let s = setup(alg).await;
        let api = start(
            &s.pki,
            layer_of(&s.pki, &s.issuer).accept_pop(ShrVerifier::new()),
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
            .accept_pop(ShrVerifier::new())
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
    let other = SignedHttpRequests::new(ProofKey::generate(Algorithm::Es256).unwrap());
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
        layer_of(&s.pki, &s.issuer).accept_pop(ShrVerifier::new()),
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
            .accept_pop(ShrVerifier::new())
            .terse(),
    )
    .await;
    let other = SignedHttpRequests::new(ProofKey::generate(Algorithm::Es256).unwrap());
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
            .accept_pop(ShrVerifier::new())
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
    let api = start(&pki, layer_of(&pki, &issuer).accept_pop(ShrVerifier::new())).await;
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
        let shrs = client.pop_requests().unwrap().clone();
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
    let serve = |verifier: ShrVerifier| {
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
    let api = serve(ShrVerifier::new()).await;
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

    let strict = serve(ShrVerifier::builder().require_body(true).build()).await;
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
