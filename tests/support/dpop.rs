//! Helpers for the DPoP tests: a server behind `CnfValidationLayer` that
//! says which binding it saw, tokens with a given `cnf`, requests with
//! `DPoP` headers, hand-made proofs.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri, header};
use http_body_util::Full;
use serde_json::{Value, json};
use tower_token_binding::ProvenBinding;
use tower_token_binding::proof::dpop::{DPOP, DPOP_NONCE, DpopProofs};
use tower_token_binding::proof::{Algorithm, ProofKey, jws};
use tower_token_binding::replay::{ReplayError, ReplayKey};
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{CnfValidationLayer, JwtValidator, VerifiedToken};

use crate::support::{self, HttpsClient};

/// The algorithms of the default verifier, as its challenges name them.
pub const ALGS: &str = "algs=\"ES256 ES384 PS256 RS256 EdDSA\"";

pub struct Setup {
    pub pki: TestPki,
    pub issuer: TestIssuer,
    pub proofs: DpopProofs,
    /// A token bound to `proofs`' key.
    pub token: String,
}

pub async fn setup() -> Setup {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .default_scope("read")
        .start(&pki)
        .await
        .unwrap();
    let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let token = bound_token(&issuer, &json!({ "jkt": proofs.thumbprint().to_string() }));
    Setup {
        pki,
        issuer,
        proofs,
        token,
    }
}

/// A token from the issuer with `cnf` as given (`null`: none).
pub fn bound_token(issuer: &TestIssuer, cnf: &Value) -> String {
    let mut claims = issuer.claims("svc", None);
    let map = claims.as_object_mut().unwrap();
    map.remove("cnf");
    if !cnf.is_null() {
        map.insert("cnf".into(), cnf.clone());
    }
    issuer.sign(&claims).unwrap()
}

/// Says which binding the layer proved.
pub async fn binding(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let token = request.extensions().get::<VerifiedToken>();
    let binding = match token.map(VerifiedToken::binding) {
        Some(ProvenBinding::Dpop(jkt)) => format!("dpop {jkt}"),
        Some(ProvenBinding::Pop(kid)) => format!("pop {kid}"),
        Some(ProvenBinding::Certificate(x5t)) => format!("certificate {x5t}"),
        Some(ProvenBinding::None) => "none".to_owned(),
        other => format!("{other:?}"),
    };
    Ok(Response::new(Full::new(Bytes::from(binding))))
}

/// Serves [`binding`] behind `layer` over TLS (client certificates optional,
/// any accepted); returns `https://localhost:PORT/whoami`.
pub async fn start(pki: &TestPki, layer: CnfValidationLayer<JwtValidator>) -> String {
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .service_fn(binding);
    tokio::spawn(server::serve(listener, tls, service).into_future());
    format!("https://localhost:{port}/whoami")
}

pub fn layer(s: &Setup) -> CnfValidationLayer<JwtValidator> {
    CnfValidationLayer::new(support::jwt_validator(
        &s.pki,
        &s.issuer,
        Duration::from_secs(3600),
    ))
}

/// A request as sent.
#[derive(Clone)]
pub struct Call {
    pub method: Method,
    pub url: String,
    pub authorization: String,
    pub proofs: Vec<String>,
}

impl Call {
    pub fn dpop(url: &str, token: &str, proof: String) -> Self {
        Self {
            method: Method::GET,
            url: url.to_owned(),
            authorization: format!("DPoP {token}"),
            proofs: vec![proof],
        }
    }
}

/// What came back: status, `WWW-Authenticate`, `DPoP-Nonce`, body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub challenge: String,
    pub nonce: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

pub async fn send(client: &HttpsClient, call: &Call) -> Answer {
    use http_body_util::BodyExt as _;
    let mut request = Request::builder()
        .method(call.method.clone())
        .uri(&call.url)
        .header(header::AUTHORIZATION, &call.authorization);
    for proof in &call.proofs {
        request = request.header(DPOP, proof);
    }
    let response = client
        .request(request.body(Full::<Bytes>::default()).unwrap())
        .await
        .expect("request");
    let text = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let challenge = text(header::WWW_AUTHENTICATE).unwrap_or_default();
    let nonce = text(DPOP_NONCE);
    let retry_after = text(header::RETRY_AFTER);
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        challenge,
        nonce,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub fn uri(url: &str) -> Uri {
    url.parse().unwrap()
}

/// A proof signed by `key` with the header and claims given as JSON.
pub fn hand_made(key: &ProofKey, header: &Value, claims: &Value) -> String {
    let header = jws::encode_segment(header.to_string().as_bytes());
    jws::sign(key, &header, claims.to_string().as_bytes()).unwrap()
}

/// The claims a good proof for `GET url` with `token` carries.
pub fn good_claims(url: &str, token: &str) -> Value {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut htu = uri(url);
    htu = Uri::builder()
        .scheme(htu.scheme().unwrap().clone())
        .authority(htu.authority().unwrap().clone())
        .path_and_query(htu.path())
        .build()
        .unwrap();
    json!({
        "jti": format!("jti-{}", rand_suffix()),
        "htm": "GET",
        "htu": htu.to_string(),
        "iat": now,
        "ath": tower_token_binding::proof::dpop::access_token_hash(token),
    })
}

pub fn rand_suffix() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn jwk_of(key: &ProofKey) -> Value {
    serde_json::from_str(key.public_jwk().as_json()).unwrap()
}

/// A store that counts its calls and answers as told.
pub fn counting_store(
    calls: Arc<AtomicUsize>,
    answer: fn() -> Result<bool, ReplayError>,
) -> impl Fn(ReplayKey, SystemTime) -> std::future::Ready<Result<bool, ReplayError>>
+ Clone
+ Send
+ Sync
+ 'static {
    move |_key, _expires_at| {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(answer())
    }
}
