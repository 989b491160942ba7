//! Helpers for the introspection tests: a test issuer that knows the
//! resource server, opaque tokens with a given `cnf`, an API behind
//! `CnfValidationLayer` that says which binding it saw, and requests.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::future::IntoFuture as _;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use tower_token_binding::proof::dpop::DPOP;
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{
    CnfValidationLayer, IntrospectionValidator, IntrospectionValidatorBuilder, ValidateToken,
    VerifiedToken,
};
use tower_token_binding::{ClientIdentity, ProvenBinding};

use crate::support::HttpsClient;

pub const RS_ID: &str = "orders-api";
pub const RS_SECRET: &str = "rs-s3cret";

pub struct Setup {
    pub pki: TestPki,
    pub issuer: TestIssuer,
    /// The client whose certificate tokens are bound to.
    pub client: ClientIdentity,
}

pub async fn setup() -> Setup {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret(RS_ID, RS_SECRET)
        .start(&pki)
        .await
        .unwrap();
    let client = pki.client_cert("svc.example").unwrap().identity().unwrap();
    Setup {
        pki,
        issuer,
        client,
    }
}

impl Setup {
    /// A validator that discovers the endpoint and authenticates with a
    /// client secret.
    pub fn validator(&self) -> IntrospectionValidatorBuilder {
        IntrospectionValidator::builder()
            .discover(self.issuer.issuer())
            .client_id(RS_ID)
            .client_secret_basic(RS_SECRET)
            .issuer(self.issuer.issuer())
            .audience(self.issuer.audience())
            .require_exp()
            .root_store(self.pki.root_store())
    }

    /// An opaque token with `cnf` as given (`null`: none).
    pub fn opaque(&self, cnf: Value) -> String {
        let mut claims = self.issuer.claims("svc", None);
        if !cnf.is_null() {
            claims["cnf"] = cnf;
        }
        self.issuer.issue_opaque(&claims).unwrap()
    }

    pub fn bound_to_client(&self) -> String {
        self.opaque(json!({ "x5t#S256": self.client.thumbprint().to_string() }))
    }
}

/// Says who called and which binding the layer proved.
pub async fn whoami(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let token = request.extensions().get::<VerifiedToken>();
    let binding = match token.map(VerifiedToken::binding) {
        Some(ProvenBinding::Certificate(_)) => "certificate",
        Some(ProvenBinding::Dpop(_)) => "dpop",
        Some(ProvenBinding::None) => "none",
        _ => "other",
    };
    let body = json!({ "sub": token.and_then(|t| t.subject()), "binding": binding });
    Ok(Response::new(Full::new(Bytes::from(body.to_string()))))
}

/// Serves [`whoami`] behind `layer`; returns its URL.
pub async fn start<V: ValidateToken>(pki: &TestPki, layer: CnfValidationLayer<V>) -> String {
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = tower::ServiceBuilder::new().layer(layer).service_fn(whoami);
    tokio::spawn(server::serve(listener, tls, service).into_future());
    format!("https://localhost:{port}/whoami")
}

pub struct Answer {
    pub status: StatusCode,
    pub challenge: String,
    pub retry_after: Option<String>,
    pub body: Value,
}

pub async fn call(
    client: &HttpsClient,
    url: &str,
    authorization: &str,
    proof: Option<&str>,
) -> Answer {
    let mut request = Request::get(url).header(header::AUTHORIZATION, authorization);
    if let Some(proof) = proof {
        request = request.header(DPOP, proof);
    }
    let response = client
        .request(request.body(Full::default()).unwrap())
        .await
        .unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let challenge = header(header::WWW_AUTHENTICATE).unwrap_or_default();
    let retry_after = header(header::RETRY_AFTER);
    let status = response.status();
    use http_body_util::BodyExt as _;
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        challenge,
        retry_after,
        body,
    }
}

pub async fn bearer(client: &HttpsClient, url: &str, token: &str) -> Answer {
    call(client, url, &format!("Bearer {token}"), None).await
}

pub fn assert_invalid_token(answer: &Answer, says: &str) {
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        answer.challenge
    );
    assert!(
        answer
            .challenge
            .starts_with("Bearer error=\"invalid_token\""),
        "{}",
        answer.challenge
    );
    assert!(answer.challenge.contains(says), "{}", answer.challenge);
}

pub fn assert_unavailable(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.retry_after.as_deref(), Some("5"));
    assert_eq!(answer.challenge, "", "no challenge: the token may be fine");
}
