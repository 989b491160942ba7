//! `CnfValidationLayer` never panics on malformed `Authorization` headers,
//! JWT segments or DPoP proofs: every input gets a 400 or a 401.
#![cfg(feature = "test-util")]

use std::convert::Infallible;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, Response, StatusCode, header};
use proptest::prelude::*;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_token_binding::proof::dpop::{DPOP, DpopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey, jws};
use tower_token_binding::validation::{
    CnfValidationLayer, JwksSource, JwtValidator, TokenError, VerifiedToken,
};

fn service() -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    let jwks = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
    let validator = JwtValidator::builder()
        .issuer("https://issuer.test")
        .audience("https://api.test")
        .jwks(JwksSource::from_json(jwks).unwrap())
        .build()
        .unwrap();
    ServiceBuilder::new()
        .layer(CnfValidationLayer::new(validator))
        .service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("in")))
        })
}

/// A route that accepts DPoP, with a validator that takes any token as
/// valid and bound to a DPoP key: only the proof stands in the way.
fn dpop_service()
-> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    let jkt = tower_token_binding::proof::JwkThumbprint::from_digest([5; 32]);
    let validator = move |_: &str| async move {
        let claims = serde_json::json!({ "sub": "any", "cnf": { "jkt": jkt.to_string() } });
        Ok::<_, TokenError>(
            VerifiedToken::from_claims(claims.as_object().cloned().unwrap()).unwrap(),
        )
    };
    ServiceBuilder::new()
        .layer(CnfValidationLayer::new(validator).accept_dpop(DpopVerifier::new()))
        .service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::from("in")))
        })
}

/// The answer to `Authorization: DPoP token` with `proof` as the `DPoP`
/// header, to `https://api.test/x`.
fn dpop_answer(proof: HeaderValue) -> StatusCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let request = Request::get("https://api.test/x")
        .header(header::AUTHORIZATION, "DPoP token")
        .header(DPOP, proof)
        .body(())
        .unwrap();
    runtime
        .block_on(dpop_service().oneshot(request))
        .unwrap()
        .status()
}

fn answer(value: HeaderValue) -> StatusCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut request = Request::new(());
    request.headers_mut().insert(header::AUTHORIZATION, value);
    runtime
        .block_on(service().oneshot(request))
        .unwrap()
        .status()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
    ))]

    #[test]
    fn arbitrary_authorization_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let status = answer(value);
            prop_assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED, "{status}");
        }
    }

    #[test]
    fn arbitrary_bearer_strings(token in "[ -~]{0,120}", word in "(?i:bearer|mtls_pop)") {
        if let Ok(value) = HeaderValue::from_str(&format!("{word} {token}")) {
            let status = answer(value);
            prop_assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED, "{status}");
        }
    }

    #[test]
    fn arbitrary_jwt_segments(
        head in proptest::collection::vec(any::<u8>(), 0..80),
        body in proptest::collection::vec(any::<u8>(), 0..120),
        sig in proptest::collection::vec(any::<u8>(), 0..80),
        json_head in any::<bool>(),
    ) {
        let head = if json_head {
            format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"k","x":{:?}}}"#, String::from_utf8_lossy(&head)).into_bytes()
        } else {
            head
        };
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(head),
            URL_SAFE_NO_PAD.encode(body),
            URL_SAFE_NO_PAD.encode(sig)
        );
        let status = answer(HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn arbitrary_dpop_header_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let status = dpop_answer(value);
            prop_assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED, "{status}");
        }
    }

    /// Proofs shaped like a JWS, with a real public key in the header and a
    /// real signature over random claims (or random segments).
    #[test]
    fn arbitrary_dpop_proof_segments(
        claims in proptest::collection::vec(any::<u8>(), 0..160),
        sig in proptest::collection::vec(any::<u8>(), 0..80),
        json_claims in any::<bool>(),
        signed in any::<bool>(),
    ) {
        let key = ProofKey::generate(Algorithm::Es256).unwrap();
        let header = jws::encode_segment(format!(
            r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{}}}"#,
            key.public_jwk().as_json()
        ).as_bytes());
        let claims = if json_claims {
            format!(
                r#"{{"jti":"j","htm":"GET","htu":"https://api.test/x","iat":1,"x":{:?}}}"#,
                String::from_utf8_lossy(&claims)
            ).into_bytes()
        } else {
            claims
        };
        let proof = if signed {
            jws::sign(&key, &header, &claims).unwrap()
        } else {
            format!("{header}.{}.{}", URL_SAFE_NO_PAD.encode(&claims), URL_SAFE_NO_PAD.encode(sig))
        };
        let status = dpop_answer(HeaderValue::from_str(&proof).unwrap());
        prop_assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
