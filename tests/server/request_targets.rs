//! What a proof binds of the request target, over real TLS.
//!
//! - The path as the router will see it: a DPoP proof or a PoP SHR for
//!   `/whoami` does not pass on `/x/../whoami`, `/./whoami` or `/%77hoami`
//!   (a router matches the raw path, so those could reach another route),
//!   over HTTP/1.1 and HTTP/2, sent as written (hyper's client does not
//!   normalise paths).
//! - The authority: an absolute-form target whose authority is not the
//!   `Host` header's matches no proof (the warning of a layer without a
//!   public origin is tested alone, in `public_origin_warning.rs`).
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::dpop;
use crate::support::pop_setup;
use http::{Method, StatusCode};
use serde_json::json;
use support::{HttpsClient, https_client_http1, https_client_http2};
use tower_token_binding::proof::Algorithm;
use tower_token_binding::proof::dpop::DpopVerifier;
use tower_token_binding::test_util::TestPki;

const NOT_NORMAL: [&str; 3] = ["/x/../whoami", "/./whoami", "/%77hoami"];

fn clients(pki: &TestPki) -> [(&'static str, HttpsClient); 2] {
    [
        ("HTTP/1.1", https_client_http1(pki, None)),
        ("HTTP/2", https_client_http2(pki, None)),
    ]
}

/// `https://localhost:PORT` of `https://localhost:PORT/whoami`.
fn origin(api: &str) -> &str {
    api.strip_suffix("/whoami").unwrap()
}

#[tokio::test]
async fn a_dpop_proof_for_a_path_does_not_pass_on_its_variants() {
    let s = dpop::setup().await;
    let api = dpop::start(&s.pki, dpop::layer(&s).accept_dpop(DpopVerifier::new())).await;
    let signed_for = |url: &str| {
        let claims = dpop::good_claims(url, &s.token);
        let header =
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": dpop::jwk_of(s.proofs.key())});
        dpop::hand_made(s.proofs.key(), &header, &claims)
    };
    for (version, client) in clients(&s.pki) {
        // The path as signed: accepted.
        let answer = dpop::send(&client, &dpop::Call::dpop(&api, &s.token, signed_for(&api))).await;
        assert_eq!(answer.status, StatusCode::OK, "{version}: {answer:?}");
        for path in NOT_NORMAL {
            let url = format!("{}{path}", origin(&api));
            let call = dpop::Call::dpop(&url, &s.token, signed_for(&api));
            let answer = dpop::send(&client, &call).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{version} {path}: {answer:?}"
            );
            assert!(
                answer.challenge.contains("error=\"invalid_dpop_proof\""),
                "{version} {path}: {answer:?}"
            );
            // Nor does a proof that names the variant itself: the request
            // path must be in normal form.
            let call = dpop::Call::dpop(&url, &s.token, signed_for(&url));
            let answer = dpop::send(&client, &call).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{version} {path}: {answer:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_pop_shr_for_a_path_does_not_pass_on_its_variants() {
    let s = pop_setup::setup(Algorithm::Es256).await;
    let api = dpop::start(&s.pki, pop_setup::every_binding(&s)).await;
    let key = s.shrs.key();
    let header = json!({"alg": "ES256", "typ": "pop"});
    for (version, client) in clients(&s.pki) {
        let shr = pop_setup::hand_made(key, &header, &pop_setup::good_payload(key, &api, &s.token));
        let answer = pop_setup::send(&client, &pop_setup::Call::pop(&api, shr)).await;
        assert_eq!(answer.status, StatusCode::OK, "{version}: {answer:?}");
        for path in NOT_NORMAL {
            let url = format!("{}{path}", origin(&api));
            for signed in [&api, &url] {
                let mut payload = pop_setup::good_payload(key, &api, &s.token);
                payload["p"] = json!(dpop::uri(signed).path());
                let shr = pop_setup::hand_made(key, &header, &payload);
                let call = pop_setup::Call {
                    method: Method::GET,
                    ..pop_setup::Call::pop(&url, shr)
                };
                let answer = pop_setup::send(&client, &call).await;
                assert_eq!(
                    answer.status,
                    StatusCode::UNAUTHORIZED,
                    "{version} {path}: {answer:?}"
                );
                assert!(
                    answer
                        .challenge
                        .contains("the PoP SHR path p does not match the request"),
                    "{version} {path}: {answer:?}"
                );
            }
        }
    }
}

/// `GET https://other.example/whoami` with `Host: localhost:PORT`, written
/// on a TLS connection as it is, with a proof for the absolute target.
#[tokio::test]
async fn an_absolute_form_target_that_is_not_the_host_matches_no_proof() {
    let s = dpop::setup().await;
    let api = dpop::start(&s.pki, dpop::layer(&s).accept_dpop(DpopVerifier::new())).await;
    let host = dpop::uri(&api).authority().unwrap().to_string();
    let port = dpop::uri(&api).port_u16().unwrap();
    let raw = |target: &str, proof_for: &str| {
        let proof = s
            .proofs
            .proof(&Method::GET, &dpop::uri(proof_for), Some(&s.token))
            .unwrap();
        format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: DPoP {}\r\nDPoP: {proof}\r\nConnection: close\r\n\r\n",
            s.token
        )
    };
    let send = |request: String| support::raw_tls(&s.pki, port, request);
    // The absolute target naming the host that Host names: accepted.
    let answer = send(raw(&api, &api)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Another authority in the target than in Host, with a proof for the
    // target: refused.
    let other = "https://other.example/whoami";
    let answer = send(raw(other, other)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("invalid_dpop_proof"), "{answer}");
}
