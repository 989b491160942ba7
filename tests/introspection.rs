//! Opaque access tokens checked by token introspection (RFC 7662), over real
//! TLS on loopback: the test issuer keeps the tokens and answers the
//! introspection calls (counting them), the API runs `CnfValidationLayer`
//! with an `IntrospectionValidator`, clients present certificates or DPoP
//! proofs. The binding checks are the same as for JWTs, on every request.
#![cfg(feature = "test-util")]

mod support;

use std::convert::Infallible;
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use support::{HttpsClient, https_client};
use tower_token_binding::proof::dpop::{DPOP, DpopProofs, DpopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::test_util::{IntrospectionFault, TestIssuer, TestPki};
use tower_token_binding::validation::{
    CnfValidationLayer, IntrospectionValidator, IntrospectionValidatorBuilder, JwtOrIntrospection,
    ValidateToken, VerifiedToken,
};
use tower_token_binding::{ClientIdentity, ProvenBinding};

const RS_ID: &str = "orders-api";
const RS_SECRET: &str = "rs-s3cret";

struct Setup {
    pki: TestPki,
    issuer: TestIssuer,
    /// The client whose certificate tokens are bound to.
    client: ClientIdentity,
}

async fn setup() -> Setup {
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
    fn validator(&self) -> IntrospectionValidatorBuilder {
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
    fn opaque(&self, cnf: Value) -> String {
        let mut claims = self.issuer.claims("svc", None);
        if !cnf.is_null() {
            claims["cnf"] = cnf;
        }
        self.issuer.issue_opaque(&claims).unwrap()
    }

    fn bound_to_client(&self) -> String {
        self.opaque(json!({ "x5t#S256": self.client.thumbprint().to_string() }))
    }
}

/// Says who called and which binding the layer proved.
async fn whoami(
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
async fn start<V: ValidateToken>(pki: &TestPki, layer: CnfValidationLayer<V>) -> String {
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = tower::ServiceBuilder::new().layer(layer).service_fn(whoami);
    tokio::spawn(server::serve(listener, tls, service).into_future());
    format!("https://localhost:{port}/whoami")
}

struct Answer {
    status: StatusCode,
    challenge: String,
    retry_after: Option<String>,
    body: Value,
}

async fn call(client: &HttpsClient, url: &str, authorization: &str, proof: Option<&str>) -> Answer {
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

async fn bearer(client: &HttpsClient, url: &str, token: &str) -> Answer {
    call(client, url, &format!("Bearer {token}"), None).await
}

fn assert_invalid_token(answer: &Answer, says: &str) {
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

fn assert_unavailable(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.retry_after.as_deref(), Some("5"));
    assert_eq!(answer.challenge, "", "no challenge: the token may be fine");
}

#[tokio::test]
async fn certificate_bound_opaque_token_needs_its_certificate() {
    let s = setup().await;
    let api = start(
        &s.pki,
        CnfValidationLayer::new(s.validator().build().unwrap()),
    )
    .await;
    let token = s.bound_to_client();

    let right = https_client(&s.pki, Some(&s.client));
    let answer = bearer(&right, &api, &token).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.body,
        json!({ "sub": "svc", "binding": "certificate" })
    );

    let other = s
        .pki
        .client_cert("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let answer = bearer(&https_client(&s.pki, Some(&other)), &api, &token).await;
    assert_invalid_token(&answer, "bound to a different client certificate");

    let answer = bearer(&https_client(&s.pki, None), &api, &token).await;
    assert_invalid_token(&answer, "no client certificate was presented");

    // The binding was checked per request; the issuer was asked once.
    assert_eq!(s.issuer.introspection_calls(), 1);

    // A token without cnf: refused where binding is required.
    let unbound = s.opaque(Value::Null);
    let answer = bearer(&right, &api, &unbound).await;
    assert_invalid_token(&answer, "not bound");
}

#[tokio::test]
async fn dpop_bound_opaque_token_needs_a_proof_by_its_key() {
    let s = setup().await;
    let layer =
        CnfValidationLayer::new(s.validator().build().unwrap()).accept_dpop(DpopVerifier::new());
    let api = start(&s.pki, layer).await;
    let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let token = s.opaque(json!({ "jkt": proofs.thumbprint().to_string() }));
    let client = https_client(&s.pki, None);

    let proof = proofs
        .proof(&Method::GET, &api.parse().unwrap(), Some(&token))
        .unwrap();
    let answer = call(&client, &api, &format!("DPoP {token}"), Some(&proof)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.challenge);
    assert_eq!(answer.body["binding"], "dpop");

    // As a bearer token: a downgrade.
    let answer = bearer(&client, &api, &token).await;
    assert_invalid_token(&answer, "DPoP-bound");

    // A proof by another key.
    let other = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let proof = other
        .proof(&Method::GET, &api.parse().unwrap(), Some(&token))
        .unwrap();
    let answer = call(&client, &api, &format!("DPoP {token}"), Some(&proof)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(
        answer.challenge.contains("another key"),
        "{}",
        answer.challenge
    );
    assert_eq!(s.issuer.introspection_calls(), 1);
}

#[tokio::test]
async fn revoked_unknown_and_foreign_tokens_are_refused() {
    let s = setup().await;
    let api = start(
        &s.pki,
        CnfValidationLayer::new(s.validator().build().unwrap()),
    )
    .await;
    let client = https_client(&s.pki, Some(&s.client));

    let token = s.bound_to_client();
    assert!(s.issuer.revoke(&token));
    assert_invalid_token(&bearer(&client, &api, &token).await, "not active");
    assert_invalid_token(&bearer(&client, &api, "never-issued").await, "not active");

    // Active, but for another resource, or from another issuer.
    let mut claims = s.issuer.claims("svc", Some(s.client.thumbprint()));
    claims["aud"] = json!("https://elsewhere.test");
    let token = s.issuer.issue_opaque(&claims).unwrap();
    assert_invalid_token(
        &bearer(&client, &api, &token).await,
        "not meant for this resource",
    );
    let mut claims = s.issuer.claims("svc", Some(s.client.thumbprint()));
    claims["iss"] = json!("https://evil.test");
    let token = s.issuer.issue_opaque(&claims).unwrap();
    assert_invalid_token(&bearer(&client, &api, &token).await, "wrong issuer");
    let mut claims = s.issuer.claims("svc", Some(s.client.thumbprint()));
    claims.as_object_mut().unwrap().remove("exp");
    let token = s.issuer.issue_opaque(&claims).unwrap();
    assert_invalid_token(&bearer(&client, &api, &token).await, "valid exp claim");
    // DPoP token_type without cnf.jkt.
    let mut claims = s.issuer.claims("svc", Some(s.client.thumbprint()));
    claims["token_type"] = json!("DPoP");
    let token = s.issuer.issue_opaque(&claims).unwrap();
    assert_invalid_token(&bearer(&client, &api, &token).await, "type does not match");
}

#[tokio::test]
async fn answers_are_cached_by_token_and_refusals_briefly() {
    let s = setup().await;
    let api = start(
        &s.pki,
        CnfValidationLayer::new(s.validator().build().unwrap()),
    )
    .await;
    let client = https_client(&s.pki, Some(&s.client));
    let token = s.bound_to_client();
    for _ in 0..10 {
        assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);
    }
    assert_eq!(s.issuer.introspection_calls(), 1);
    // Revoked after it was cached: served from the cache until the entry
    // ends (at most the cache lifetime).
    s.issuer.revoke(&token);
    assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);
    assert_eq!(s.issuer.introspection_calls(), 1);

    // A junk token: one call, then the remembered refusal.
    for _ in 0..10 {
        assert_invalid_token(&bearer(&client, &api, "junk").await, "not active");
    }
    assert_eq!(s.issuer.introspection_calls(), 2);

    // Without the caches, every request asks.
    let validator = s
        .validator()
        .cache_ttl(Duration::ZERO)
        .inactive_ttl(Duration::ZERO)
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    let live = s.bound_to_client();
    for _ in 0..3 {
        assert_eq!(bearer(&client, &api, &live).await.status, StatusCode::OK);
        assert_invalid_token(&bearer(&client, &api, "junk").await, "not active");
    }
    assert_eq!(s.issuer.introspection_calls(), 2 + 6);
    // And a revocation shows at once.
    s.issuer.revoke(&live);
    assert_invalid_token(&bearer(&client, &api, &live).await, "not active");
}

#[tokio::test]
async fn one_call_for_fifty_concurrent_requests() {
    let s = setup().await;
    let api = start(
        &s.pki,
        CnfValidationLayer::new(s.validator().build().unwrap()),
    )
    .await;
    let client = https_client(&s.pki, Some(&s.client));
    let token = s.bound_to_client();
    // The answer waits a little, so that the requests overlap.
    s.issuer
        .set_introspection_fault(Some(IntrospectionFault::Delay(Duration::from_millis(300))));
    let requests = (0..50).map(|_| bearer(&client, &api, &token));
    let answers = futures_util::future::join_all(requests).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(s.issuer.introspection_calls(), 1);

    // The same straight on the validator, for an inactive token.
    let validator = s.validator().build().unwrap();
    let calls = (0..50).map(|_| validator.validate("nobody-knows-me"));
    let results = futures_util::future::join_all(calls).await;
    assert!(results.iter().all(|r| r.is_err()));
    assert_eq!(s.issuer.introspection_calls(), 2);
}

#[tokio::test]
async fn an_endpoint_down_slow_or_talking_garbage_is_a_503() {
    let s = setup().await;
    let client = https_client(&s.pki, Some(&s.client));
    let token = s.bound_to_client();

    // Down: nothing listens at the endpoint.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let validator = s
        .validator()
        .endpoint(format!("https://127.0.0.1:{closed}/introspect"))
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    assert_unavailable(&bearer(&client, &api, &token).await);

    let validator = s
        .validator()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    let faults = [
        IntrospectionFault::Delay(Duration::from_secs(3)),
        IntrospectionFault::Unavailable,
        IntrospectionFault::Garbage,
        IntrospectionFault::Answer(r#"{"active":"true"}"#.into()),
        IntrospectionFault::Answer(r#"{"active":true,"active":true}"#.into()),
        IntrospectionFault::Answer(r#"{"active":false,"active":true}"#.into()),
        IntrospectionFault::Answer(r#"{"active":true,"exp":"tomorrow"}"#.into()),
        IntrospectionFault::Answer(r#"["active"]"#.into()),
        IntrospectionFault::Answer(format!(
            r#"{{"active":true,"pad":"{}"}}"#,
            "x".repeat(100_000)
        )),
    ];
    for fault in faults {
        s.issuer.set_introspection_fault(Some(fault.clone()));
        let answer = bearer(&client, &api, &token).await;
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{fault:?}");
        assert_unavailable(&answer);
    }
    // Failures are not remembered: once the endpoint is back, the token works.
    s.issuer.set_introspection_fault(None);
    assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);

    // Credentials the issuer refuses are the server's problem, not the client's.
    let validator = s.validator().client_secret_basic("wrong").build().unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    assert_unavailable(&bearer(&client, &api, &token).await);
}

#[tokio::test]
async fn jwts_and_opaque_tokens_by_shape() {
    let s = setup().await;
    let jwt = support::jwt_validator(&s.pki, &s.issuer, Duration::from_secs(3600));
    let both = JwtOrIntrospection::new(jwt, s.validator().build().unwrap());
    let api = start(&s.pki, CnfValidationLayer::new(both)).await;
    let client = https_client(&s.pki, Some(&s.client));

    let jwt = s
        .issuer
        .sign(&s.issuer.claims("svc", Some(s.client.thumbprint())))
        .unwrap();
    assert_eq!(bearer(&client, &api, &jwt).await.status, StatusCode::OK);
    assert_eq!(
        s.issuer.introspection_calls(),
        0,
        "a JWT is checked locally"
    );
    assert_eq!(s.issuer.jwks_fetches(), 1);

    let opaque = s.bound_to_client();
    assert_eq!(bearer(&client, &api, &opaque).await.status, StatusCode::OK);
    assert_eq!(s.issuer.introspection_calls(), 1);

    // A JWT-shaped token goes to the JWT validator, however bad.
    assert_invalid_token(&bearer(&client, &api, "a.b.c").await, "well-formed JWT");
    assert_eq!(s.issuer.introspection_calls(), 1);

    // Introspection only: the JWT is introspected (and unknown there).
    let only = JwtOrIntrospection::introspection_only(s.validator().build().unwrap());
    let api = start(&s.pki, CnfValidationLayer::new(only)).await;
    assert_invalid_token(&bearer(&client, &api, &jwt).await, "not active");
    assert_eq!(s.issuer.introspection_calls(), 2);
}

#[tokio::test]
async fn the_resource_server_authenticates_with_its_certificate_or_a_post_secret() {
    let s = setup().await;
    let rs = s
        .pki
        .client_cert("orders-api.example")
        .unwrap()
        .identity()
        .unwrap();
    let issuer = TestIssuer::builder()
        .introspection_certificate(RS_ID, rs.thumbprint())
        .client_secret("posting-api", "p0st")
        .start(&s.pki)
        .await
        .unwrap();
    let claims = issuer.claims("svc", Some(s.client.thumbprint()));
    let token = issuer.issue_opaque(&claims).unwrap();
    let client = https_client(&s.pki, Some(&s.client));
    let builder = || {
        IntrospectionValidator::builder()
            .discover(issuer.issuer())
            .root_store(s.pki.root_store())
    };

    // tls_client_auth, to the mTLS alias found in the metadata.
    let validator = builder()
        .client_id(RS_ID)
        .tls_client_auth(rs.clone())
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);

    // Another certificate is not the resource server.
    let stranger = s
        .pki
        .client_cert("orders-api.example")
        .unwrap()
        .identity()
        .unwrap();
    let validator = builder()
        .client_id(RS_ID)
        .tls_client_auth(stranger)
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    assert_unavailable(&bearer(&client, &api, &token).await);

    // client_secret_post.
    let validator = builder()
        .client_id("posting-api")
        .client_secret_post("p0st")
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);
    assert_eq!(issuer.introspection_calls(), 3);
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn resource_server_with_opaque_tokens_from_the_token_endpoint() {
    use axum::{Router, routing::get};
    use tower_token_binding::BoundClient;
    use tower_token_binding::server::ResourceServer;

    async fn hello(token: VerifiedToken) -> String {
        format!("hello {}", token.subject().unwrap_or("?"))
    }

    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .opaque_tokens()
        .client_secret(RS_ID, RS_SECRET)
        .start(&pki)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "server")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/hello",
        listener.local_addr().unwrap().port()
    );
    let server = ResourceServer::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .tls_pem_files(&cert, &key)
        .issuer_root_store(pki.root_store())
        .introspection(
            IntrospectionValidator::builder()
                .client_id(RS_ID)
                .client_secret_post(RS_SECRET)
                .issuer(issuer.issuer())
                .audience(issuer.audience()),
        )
        .build()
        .unwrap();
    assert!(!format!("{server:?}").contains(RS_SECRET));
    tokio::spawn(
        server
            .serve(listener, Router::new().route("/hello", get(hello)))
            .into_future(),
    );

    let identity = TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let client = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .self_signed_tls_client_auth()
        .identity(identity)
        .root_store(pki.root_store())
        .build()
        .unwrap();
    for _ in 0..3 {
        let response = client.get(&url).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "hello svc");
    }
    assert_eq!(issuer.tokens_issued(), 1);
    assert_eq!(issuer.introspection_calls(), 1);
    assert_eq!(issuer.jwks_fetches(), 0, "no JWT, no JWKS");
}

/// Everything logged in this test binary from the moment the log test
/// starts (one global subscriber, at trace level).
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

#[tokio::test]
async fn tokens_and_secrets_stay_out_of_logs_and_debug() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");

    let s = setup().await;
    let validator = s.validator().build().unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator.clone())).await;
    let client = https_client(&s.pki, Some(&s.client));
    let token = s.bound_to_client();
    let inactive = "an-inactive-token-value";

    assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);
    assert_invalid_token(&bearer(&client, &api, inactive).await, "not active");
    let fresh = s.bound_to_client();
    s.issuer
        .set_introspection_fault(Some(IntrospectionFault::Garbage));
    assert_unavailable(&bearer(&client, &api, &fresh).await);
    let failed = validator.validate(&fresh).await.unwrap_err();
    assert_eq!(
        failed.kind(),
        tower_token_binding::validation::TokenErrorKind::IntrospectionUnavailable
    );

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("token introspection failed")),
        "{text}"
    );
    let debug = format!(
        "{validator:?} {failed:?} {failed} {:?} {:?}",
        validator.validate(&token).await,
        validator.validate(inactive).await
    );
    for secret in [token.as_str(), fresh.as_str(), inactive, RS_SECRET] {
        assert!(!text.contains(secret), "{secret} in the logs:\n{text}");
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[tokio::test]
async fn the_example_resource_server_with_introspection_flags() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret(RS_ID, RS_SECRET)
        .start(&pki)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "server")
        .unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let args = [
        "--listen".to_owned(),
        "127.0.0.1:0".into(),
        "--tls-cert".into(),
        path(&cert),
        "--tls-key".into(),
        path(&key),
        "--issuer".into(),
        issuer.issuer().into(),
        "--audience".into(),
        issuer.audience().into(),
        "--issuer-ca".into(),
        path(&ca),
        "--introspection-client-id".into(),
        RS_ID.into(),
        "--introspection-secret".into(),
        RS_SECRET.into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_child, url) = support::spawn_announcing("resource_server", &args).await;
    let whoami = format!("{url}/whoami");

    let client = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let token = issuer
        .issue_opaque(&issuer.claims("svc", Some(client.thumbprint())))
        .unwrap();
    let answer = bearer(&https_client(&pki, Some(&client)), &whoami, &token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.challenge);
    assert_eq!(answer.body["binding"], "certificate");
    let other = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let answer = bearer(&https_client(&pki, Some(&other)), &whoami, &token).await;
    assert_invalid_token(&answer, "bound to a different client certificate");
    assert!(issuer.revoke(&token));
    let fresh = issuer
        .issue_opaque(&issuer.claims("svc", Some(client.thumbprint())))
        .unwrap();
    issuer.revoke(&fresh);
    let answer = bearer(&https_client(&pki, Some(&client)), &whoami, &fresh).await;
    assert_invalid_token(&answer, "not active");
    assert_eq!(issuer.introspection_calls(), 2);
}
