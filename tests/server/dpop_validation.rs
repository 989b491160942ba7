//! `CnfValidationLayer` with DPoP (RFC 9449) over real TLS on loopback:
//! tokens signed by the test issuer with `cnf.jkt`, proofs made by
//! `DpopProofs` (or by hand, for the hostile ones). One table holds every
//! refusal of the server checklist of issue 15, each row with the status,
//! the error code and the challenge it must get; then the challenges of
//! routes that accept one binding or both. Nonces and the replay store are
//! in `tests/server/dpop_replay_nonces.rs`.
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::dpop;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dpop::{
    ALGS, Call, bound_token, good_claims, hand_made, jwk_of, layer, send, setup, start, uri,
};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::{https_client, https_client_http1};
use tower_token_binding::Thumbprint;
use tower_token_binding::proof::dpop::{DpopProofs, DpopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey, jws};

/// One row: a name, the request, and the answer it must get.
struct Row {
    name: &'static str,
    call: Call,
    status: StatusCode,
    /// The whole `WWW-Authenticate` value must start with this (empty for
    /// a success).
    challenge: String,
}

/// A refusal: the challenge of `scheme` with `error` first, its
/// `error_description` saying `says`.
fn refused(
    name: &'static str,
    call: Call,
    status: StatusCode,
    scheme: &str,
    error: &str,
    says: &str,
) -> Row {
    Row {
        name,
        call,
        status,
        challenge: format!("{scheme} error=\"{error}\", error_description=\"{says}"),
    }
}

#[tokio::test]
async fn every_dpop_check_in_one_table() {
    let s = setup().await;
    let api = start(&s.pki, layer(&s).accept_dpop(DpopVerifier::new())).await;
    let client = https_client(&s.pki, None);
    let key = s.proofs.key();
    let token = &s.token;
    let proof = |method: &Method, url: &str, token: &str| {
        s.proofs.proof(method, &uri(url), Some(token)).unwrap()
    };
    let at = |when: SystemTime| {
        s.proofs
            .proof_at(&Method::GET, &uri(&api), Some(token), None, when)
            .unwrap()
    };
    let good = || Call::dpop(&api, token, proof(&Method::GET, &api, token));
    let with = |proof: String| Call::dpop(&api, token, proof);
    const PROOF: &str = "invalid_dpop_proof";
    const TOKEN: &str = "invalid_token";
    let unauthorized = StatusCode::UNAUTHORIZED;

    // The harness: a good call gets through, over HTTP/2 and HTTP/1.1
    // (`:authority` and `Host`), and says which key was proven.
    for client in [&client, &https_client_http1(&s.pki, None)] {
        let answer = send(client, &good()).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.body, format!("dpop {}", s.proofs.thumbprint()));
        assert_eq!(answer.nonce, None, "nonces are off by default");
    }
    let used = good();
    assert_eq!(send(&client, &used).await.status, StatusCode::OK);

    let port: u16 = uri(&api).port_u16().unwrap();
    let other_port = api.replace(&format!(":{port}/"), &format!(":{}/", port.wrapping_add(1)));
    let other_key = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let typ_jwt = hand_made(
        key,
        &json!({ "typ": "JWT", "alg": "ES256", "jwk": jwk_of(key) }),
        &good_claims(&api, token),
    );
    let none = format!(
        "{}.{}.",
        jws::encode_segment(
            json!({ "typ": "dpop+jwt", "alg": "none", "jwk": jwk_of(key) })
                .to_string()
                .as_bytes()
        ),
        jws::encode_segment(good_claims(&api, token).to_string().as_bytes()),
    );
    let hs256 = {
        let header = jws::encode_segment(
            json!({ "typ": "dpop+jwt", "alg": "HS256", "jwk": jwk_of(key) })
                .to_string()
                .as_bytes(),
        );
        let payload = jws::encode_segment(good_claims(&api, token).to_string().as_bytes());
        let mac_key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            key.public_jwk().as_json().as_bytes(),
        );
        let tag = aws_lc_rs::hmac::sign(&mac_key, format!("{header}.{payload}").as_bytes());
        format!(
            "{header}.{payload}.{}",
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    };
    let mut private_jwk = jwk_of(key);
    private_jwk["d"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    let private_d = hand_made(
        key,
        &json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": private_jwk }),
        &good_claims(&api, token),
    );
    let mut big_claims = good_claims(&api, token);
    big_claims["padding"] = json!("x".repeat(4096));
    let too_large = hand_made(
        key,
        &json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk_of(key) }),
        &big_claims,
    );
    assert!(too_large.len() > 4096);
    // A good proof in every respect but `typ`: the harness works.
    let control = hand_made(
        key,
        &json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk_of(key) }),
        &good_claims(&api, token),
    );
    assert_eq!(send(&client, &with(control)).await.status, StatusCode::OK);

    let unbound = bound_token(&s.issuer, &Value::Null);
    let certificate_bound = bound_token(
        &s.issuer,
        &json!({ "x5t#S256": Thumbprint::from_der(b"a certificate").to_string() }),
    );
    let other_jkt = bound_token(
        &s.issuer,
        &json!({ "jkt": other_key.thumbprint().to_string() }),
    );
    let other_token = bound_token(
        &s.issuer,
        &json!({ "jkt": s.proofs.thumbprint().to_string() }),
    );

    let mut two_headers = good();
    two_headers.proofs.push(proof(&Method::GET, &api, token));
    let mut no_header = good();
    no_header.proofs.clear();
    let mut as_bearer = good();
    as_bearer.authorization = format!("Bearer {token}");
    let mut other_method = with(proof(&Method::POST, &api, token));
    other_method.method = Method::GET;
    let mut with_query = with(proof(&Method::GET, &api, token));
    with_query.url = format!("{api}?page=2&sort=asc");

    let rows = vec![
        refused(
            "replayed proof",
            used.clone(),
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof has been used before",
        ),
        refused(
            "other method",
            other_method,
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof htm does not match",
        ),
        refused(
            "other URI",
            with(proof(
                &Method::GET,
                &api.replace("/whoami", "/other"),
                token,
            )),
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof htu does not match",
        ),
        refused(
            "other port",
            with(proof(&Method::GET, &other_port, token)),
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof htu does not match",
        ),
        Row {
            name: "query ignored",
            call: with_query,
            status: StatusCode::OK,
            challenge: String::new(),
        },
        refused(
            "iat too old",
            with(at(SystemTime::now() - Duration::from_secs(120))),
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof is too old",
        ),
        refused(
            "iat too new",
            with(at(SystemTime::now() + Duration::from_secs(60))),
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof is issued in the future",
        ),
        refused(
            "ath of another token",
            with(proof(&Method::GET, &api, &other_token)),
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof ath does not match",
        ),
        refused(
            "typ JWT",
            with(typ_jwt),
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof is not of type dpop+jwt",
        ),
        refused(
            "alg none",
            with(none),
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof is signed with an algorithm not allowed",
        ),
        refused(
            "alg HS256",
            with(hs256),
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof is signed with an algorithm not allowed",
        ),
        refused(
            "private d in jwk",
            with(private_d),
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof jwk is not an acceptable public key",
        ),
        refused(
            "missing cnf.jkt",
            Call::dpop(&api, &unbound, proof(&Method::GET, &api, &unbound)),
            unauthorized,
            "DPoP",
            TOKEN,
            "the access token sent with the DPoP scheme is not DPoP-bound",
        ),
        refused(
            "certificate-bound token with DPoP",
            Call::dpop(
                &api,
                &certificate_bound,
                proof(&Method::GET, &api, &certificate_bound),
            ),
            unauthorized,
            "DPoP",
            TOKEN,
            "the access token sent with the DPoP scheme is not DPoP-bound",
        ),
        refused(
            "mismatched cnf.jkt",
            Call::dpop(&api, &other_jkt, proof(&Method::GET, &api, &other_jkt)),
            unauthorized,
            "DPoP",
            TOKEN,
            "the access token is bound to another key than the DPoP proof",
        ),
        refused(
            "two DPoP headers",
            two_headers,
            StatusCode::BAD_REQUEST,
            "DPoP",
            "invalid_request",
            "the DPoP proof header was sent more than once",
        ),
        refused(
            "no DPoP header",
            no_header,
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP scheme requires a DPoP proof header",
        ),
        refused(
            "proof over 4 KiB",
            with(too_large),
            unauthorized,
            "DPoP",
            PROOF,
            "the DPoP proof is too large",
        ),
        refused(
            "Bearer downgrade",
            as_bearer,
            unauthorized,
            "Bearer",
            TOKEN,
            "the access token is DPoP-bound",
        ),
    ];

    let mut failures = Vec::new();
    for row in rows {
        let answer = send(&client, &row.call).await;
        let challenge_ok = if row.challenge.is_empty() {
            answer.challenge.is_empty()
        } else {
            answer.challenge.starts_with(&row.challenge)
                && answer.challenge.contains(ALGS)
                && answer.challenge.contains("Bearer")
        };
        if answer.status != row.status || !challenge_ok {
            failures.push(format!("{}: {answer:?}", row.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn challenges_name_each_accepted_scheme() {
    let s = setup().await;
    let both = start(&s.pki, layer(&s).accept_dpop(DpopVerifier::new())).await;
    let only = start(&s.pki, layer(&s).dpop_only(DpopVerifier::new())).await;
    let client = https_client(&s.pki, None);
    let bare = |url: &str| Call {
        method: Method::GET,
        url: url.to_owned(),
        authorization: "Basic dXNlcjpwYXNz".to_owned(),
        proofs: vec![],
    };
    // No credentials: a challenge for each scheme (RFC 9449 section 7.2).
    let answer = send(&client, &bare(&both)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.challenge, format!("Bearer, DPoP {ALGS}"));
    let answer = send(&client, &bare(&only)).await;
    assert_eq!(answer.challenge, format!("DPoP {ALGS}"));

    // A proof error: the DPoP challenge carries it, with the description.
    let stale = s
        .proofs
        .proof_at(
            &Method::GET,
            &uri(&both),
            Some(&s.token),
            None,
            SystemTime::now() - Duration::from_secs(600),
        )
        .unwrap();
    let answer = send(&client, &Call::dpop(&both, &s.token, stale)).await;
    assert_eq!(
        answer.challenge,
        format!(
            "DPoP error=\"invalid_dpop_proof\", error_description=\"the DPoP proof is too old\", {ALGS}, Bearer"
        )
    );

    // A DPoP-only route refuses certificate-bound tokens, certificate or not.
    let cert = s.pki.client_cert("svc.example").unwrap();
    let mtls = https_client(&s.pki, Some(&cert.identity().unwrap()));
    let bound = bound_token(
        &s.issuer,
        &json!({ "x5t#S256": cert.thumbprint().to_string() }),
    );
    let bearer = |url: &str| Call {
        authorization: format!("Bearer {bound}"),
        ..bare(url)
    };
    let answer = send(&mtls, &bearer(&both)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body, format!("certificate {}", cert.thumbprint()));
    let answer = send(&mtls, &bearer(&only)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer
            .challenge
            .starts_with("Bearer error=\"invalid_token\""),
        "{answer:?}"
    );
    assert!(
        answer.challenge.ends_with(&format!("DPoP {ALGS}")),
        "{answer:?}"
    );

    // A DPoP-bound token on a route without DPoP: not a binding it knows.
    let plain = start(&s.pki, layer(&s)).await;
    let answer = send(
        &client,
        &Call::dpop(
            &plain,
            &s.token,
            s.proofs
                .proof(&Method::GET, &uri(&plain), Some(&s.token))
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.challenge, "Bearer",
        "the DPoP scheme is not offered here"
    );
}
