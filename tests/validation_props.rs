//! `CnfValidationLayer` never panics on malformed `Authorization` headers or
//! JWT segments: every input gets a 400 or a 401.
#![cfg(feature = "test-util")]

use std::convert::Infallible;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, Response, StatusCode, header};
use proptest::prelude::*;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_token_binding::validation::{CnfValidationLayer, JwksSource, JwtValidator};

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
    #![proptest_config(ProptestConfig::with_cases(512))]

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
}
