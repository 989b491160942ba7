//! The setup of the `PoP` (signed HTTP request) validation tests: a test
//! issuer and a TLS server with `CnfValidationLayer`, requests as sent and
//! answers as seen, good and hand-made SHRs, and the layers of the routes.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::HttpsClient;
use crate::support::dpop::{bound_token, jwk_of, uri};
use crate::support::{self, dpop};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use tower_token_binding::proof::dpop::DpopVerifier;
use tower_token_binding::proof::pop::{PopProofs, PopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey, jws};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{CnfValidationLayer, JwtValidator};

pub struct Setup {
    pub pki: TestPki,
    pub issuer: TestIssuer,
    pub shrs: PopProofs,
    /// A token bound to `shrs`' key (`cnf.kid`).
    pub token: String,
}

pub async fn setup(alg: Algorithm) -> Setup {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .default_scope("read")
        .start(&pki)
        .await
        .unwrap();
    let shrs = PopProofs::new(ProofKey::generate(alg).unwrap());
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
pub struct Call {
    pub method: Method,
    pub url: String,
    pub authorization: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: &'static [u8],
}

impl Call {
    pub fn pop(url: &str, shr: String) -> Self {
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
pub struct Answer {
    pub status: StatusCode,
    pub challenge: String,
    pub retry_after: Option<String>,
    pub body: String,
}

pub async fn send(client: &HttpsClient, call: &Call) -> Answer {
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
pub fn good_payload(key: &ProofKey, url: &str, at: &str) -> Value {
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

pub fn hand_made(key: &ProofKey, header: &Value, payload: &Value) -> String {
    let header = jws::encode_segment(header.to_string().as_bytes());
    jws::sign(key, &header, payload.to_string().as_bytes()).unwrap()
}

/// A route that accepts every binding: certificates, DPoP and PoP.
pub fn every_binding(s: &Setup) -> CnfValidationLayer<JwtValidator> {
    layer_of(&s.pki, &s.issuer)
        .accept_dpop(DpopVerifier::new())
        .accept_pop(PopVerifier::new())
}

pub fn layer_of(pki: &TestPki, issuer: &TestIssuer) -> CnfValidationLayer<JwtValidator> {
    CnfValidationLayer::new(support::jwt_validator(
        pki,
        issuer,
        Duration::from_secs(3600),
    ))
}
