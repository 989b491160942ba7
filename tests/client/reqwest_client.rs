//! reqwest with bound tokens (`tower_token_binding::reqwest`), against the
//! embedded issuer and resource servers over real TLS on loopback: a
//! certificate-bound call over the client of the token's certificate, DPoP
//! with nonces both ways, PoP with the server's nonce, rotation to a new
//! certificate, 1,000 concurrent calls sharing one fetch, the
//! `invalid_token` retry, the crate's errors through
//! `reqwest_middleware::Error`, and `configure_reqwest` on every client.
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::{dpop_api, pop_api};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;
use tower_token_binding::binding::{InsecureTransport, Scheme};
use tower_token_binding::client::BoundClientBuilder;
use tower_token_binding::identity::ReloadingIdentity;
use tower_token_binding::pool::MtlsClientPool;
use tower_token_binding::proof::pop::PopVerifier;
use tower_token_binding::reqwest::{MtlsReqwestPool, TokenBindingMiddleware};
use tower_token_binding::server::{self, AnyClientCertVerifier, PeerCertificate};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::{Token, TokenUnavailable};
use tower_token_binding::{BoundClient, ClientIdentity, CnfValidationLayer, TokenBindingLayer};

const SECRET: &str = "s3cret";

/// The API every certificate-bound test calls: `CnfValidationLayer` over the
/// issuer's tokens, answering who called (`x5t#S256`: the certificate of
/// the connection).
async fn mtls_api(pki: &TestPki, issuer: &TestIssuer) -> String {
    let layer =
        CnfValidationLayer::new(support::jwt_validator(pki, issuer, Duration::from_secs(1)));
    support::start_api(pki, layer).await
}

fn mtls_client(pki: &TestPki, issuer: &TestIssuer, identity: ClientIdentity) -> BoundClientBuilder {
    BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .identity(identity)
        .root_store(pki.root_store())
}

/// A reqwest client trusting the test CA, presenting no certificate: a
/// user's own, or a thief's.
fn plain_reqwest(pki: &TestPki) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

async fn json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_certificate_bound_call_presents_the_tokens_certificate_and_a_thief_is_refused() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let api = mtls_api(&pki, &issuer).await;
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let client = mtls_client(&pki, &issuer, identity.clone())
        .build_reqwest()
        .unwrap();

    let (status, body) = json(client.get(&api).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["x5t#S256"], identity.thumbprint().to_string());
    assert_eq!(body["client_id"], "svc");

    // The same token, stolen, from a client without the certificate.
    let stolen = support::bound_token(&pki, &issuer, &identity).await;
    let response = plain_reqwest(&pki)
        .get(&api)
        .bearer_auth(&stolen)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("invalid_token"), "{challenge}");
}

#[tokio::test]
async fn dpop_with_nonces_at_the_issuer_and_the_api() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", SECRET)
        .require_dpop_nonce()
        .start(&pki)
        .await
        .unwrap();
    let api = dpop_api::start_api(&pki, dpop_api::Nonces::Required).await;
    let middleware = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .client_secret_basic(SECRET)
        .root_store(pki.root_store())
        .scheme(Scheme::Dpop)
        .build_reqwest_middleware()
        .unwrap();
    // DPoP needs no certificate: no pool, and the requests go down the
    // chain, to the reqwest client under it.
    assert!(middleware.pool().is_none());
    let cache = middleware.cache().unwrap().clone();
    let client = reqwest_middleware::ClientBuilder::new(plain_reqwest(&pki))
        .with(middleware)
        .build();

    let url = format!("{}/orders?page=2", api.base);
    let (status, body) = json(client.get(&url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = cache.get().await.unwrap();
    let jkt = token.token().dpop_proofs().unwrap().thumbprint();
    assert_eq!(body["jkt"], jkt.to_string());
    // Each side asked for a nonce once; the retried request carried the
    // API's.
    assert_eq!(issuer.dpop_nonce_challenges(), 1);
    assert_eq!(api.requests.load(Ordering::SeqCst), 2);
    {
        let seen = api.seen.lock().unwrap();
        assert!(seen[0].claims.get("nonce").is_none());
        assert!(seen[1].claims["nonce"].is_string());
        assert_eq!(seen[1].claims["htu"], format!("{}/orders", api.base));
        assert!(seen[1].authorization.starts_with("DPoP "));
    }

    // The API's next nonce came with the answer: no more retries.
    for _ in 0..3 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(api.requests.load(Ordering::SeqCst), 5);
    assert_eq!(cache.stats().fetches, 1);
}

#[tokio::test]
async fn pop_with_the_servers_nonce() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("svc", SECRET)
        .start(&pki)
        .await
        .unwrap();
    let api =
        pop_api::start_api_demanding(&pki, PopVerifier::new(), pop_api::NonceDemand::Required)
            .await;
    let client = BoundClient::builder()
        .token_endpoint(issuer.token_endpoint())
        .client_id("svc")
        .client_secret_basic(SECRET)
        .root_store(pki.root_store())
        .scheme(Scheme::Pop)
        .build_reqwest()
        .unwrap();

    let url = format!("{}/orders", api.base);
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A random nonce, the challenge, one retry with the server's.
    assert_eq!(api.requests.load(Ordering::SeqCst), 2);
    assert_eq!(*api.challenged.lock().unwrap(), [pop_api::server_nonce(1)]);
    let seen = api.seen.lock().unwrap();
    assert_eq!(seen[1].claims["nonce"], pop_api::server_nonce(1));
    assert_eq!(seen[0].claims["at"], seen[1].claims["at"]);
    assert!(seen[1].authorization.starts_with("PoP "));
}

#[tokio::test]
async fn a_renewed_certificate_gets_a_new_token_over_a_new_client() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let api = mtls_api(&pki, &issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let a = pki.client_cert("svc.example").unwrap();
    let b = pki.client_cert("svc.example").unwrap();
    let (cert, key) = a.write_pem_files(dir.path(), "client").unwrap();
    let identity = ReloadingIdentity::builder(&cert, &key).build().unwrap();
    let middleware = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .identity(identity.clone())
        .root_store(pki.root_store())
        .build_reqwest_middleware()
        .unwrap();
    let pool = middleware.pool().unwrap().clone();
    let client = reqwest_middleware::ClientBuilder::new(plain_reqwest(&pki))
        .with(middleware)
        .build();

    let (status, body) = json(client.get(&api).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["x5t#S256"], a.thumbprint().to_string());

    // The renewal agent writes B; the identity reloads it.
    b.write_pem_files(dir.path(), "client").unwrap();
    identity.reload_now().await;
    let (status, body) = json(client.get(&api).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["x5t#S256"], b.thumbprint().to_string());

    // A new token for B, over B's own client; A's client went with the
    // first request after the renewal.
    assert_eq!(issuer.tokens_issued(), 2);
    assert!(!pool.holds(&a.thumbprint()));
    assert!(pool.holds(&b.thumbprint()));
    let stats = pool.stats();
    assert_eq!(
        (stats.identities, stats.clients_built, stats.retired),
        (1, 2, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_share_one_token_fetch_and_one_client() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let api = mtls_api(&pki, &issuer).await;
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let middleware = mtls_client(&pki, &issuer, identity.clone())
        .build_reqwest_middleware()
        .unwrap();
    let (cache, pool) = (
        middleware.cache().unwrap().clone(),
        middleware.pool().unwrap().clone(),
    );
    let client = reqwest_middleware::ClientBuilder::new(plain_reqwest(&pki))
        .with(middleware)
        .build();

    let calls = (0..1000).map(|_| {
        let (client, api) = (client.clone(), api.clone());
        tokio::spawn(async move { client.get(&api).send().await.map(|r| r.status()) })
    });
    for call in futures_util::future::join_all(calls).await {
        assert_eq!(call.unwrap().unwrap(), StatusCode::OK);
    }
    assert_eq!(issuer.token_requests(), 1);
    assert_eq!(cache.stats().fetches, 1);
    assert_eq!(pool.stats().clients_built, 1);
}

/// Serves over TLS a resource that refuses the first token it sees with
/// `401 invalid_token` and answers the others with the `Authorization` and
/// the body it got.
async fn refusing_the_first_token(pki: &TestPki) -> (String, Arc<AtomicUsize>) {
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/",
        listener.local_addr().unwrap().port()
    );
    let requests = Arc::new(AtomicUsize::new(0));
    let service = {
        let requests = requests.clone();
        tower::service_fn(move |request: Request<Incoming>| {
            let n = requests.fetch_add(1, Ordering::SeqCst);
            let auth = request.headers()[header::AUTHORIZATION].clone();
            async move {
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let answer = format!(
                    "{} {}",
                    auth.to_str().unwrap(),
                    String::from_utf8_lossy(&body)
                );
                let mut response = Response::new(Full::new(Bytes::from(answer)));
                if n == 0 {
                    *response.status_mut() = StatusCode::UNAUTHORIZED;
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        "Bearer error=\"invalid_token\"".parse().unwrap(),
                    );
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    tokio::spawn(server::serve(listener, tls, service).into_future());
    (url, requests)
}

/// A bearer source that numbers its tokens.
fn numbered_tokens() -> (TokenBindingLayer, Arc<AtomicUsize>) {
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = TokenBindingLayer::bearer({
        let fetches = fetches.clone();
        move || {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            async move { Ok(Token::new(format!("token-{n}")).expires_in(Duration::from_secs(600))) }
        }
    });
    (layer, fetches)
}

#[tokio::test]
async fn invalid_token_drops_the_token_and_sends_the_request_again_with_its_body() {
    let pki = TestPki::new().unwrap();
    let (url, requests) = refusing_the_first_token(&pki).await;
    let (layer, fetches) = numbered_tokens();
    let client = reqwest_middleware::ClientBuilder::new(plain_reqwest(&pki))
        .with(TokenBindingMiddleware::new(layer))
        .build();

    let response = client.post(&url).body("a body").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "Bearer token-1 a body");
    assert_eq!(requests.load(Ordering::SeqCst), 2);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // With retries off, the 401 is the answer.
    let (url, requests) = refusing_the_first_token(&pki).await;
    let (layer, fetches) = numbered_tokens();
    let retry = layer.retry_policy().attempts(0);
    let client = reqwest_middleware::ClientBuilder::new(plain_reqwest(&pki))
        .with(TokenBindingMiddleware::new(layer).retry_policy(retry))
        .build();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
}

/// The crate's error of type `T` in a middleware error.
fn error_of<T: std::error::Error + Send + Sync + 'static>(
    error: &reqwest_middleware::Error,
) -> Option<&T> {
    match error {
        reqwest_middleware::Error::Middleware(e) => e.downcast_ref::<T>(),
        reqwest_middleware::Error::Reqwest(_) => None,
    }
}

#[tokio::test]
async fn the_crates_errors_come_through_as_they_are() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let client = mtls_client(&pki, &issuer, identity.clone())
        .build_reqwest()
        .unwrap();

    // A token over plain http: refused before any token is fetched.
    let error = client
        .get("http://127.0.0.1:9/orders")
        .send()
        .await
        .unwrap_err();
    let refused = error_of::<InsecureTransport>(&error).expect("InsecureTransport");
    assert_eq!(refused.uri_scheme(), "http");
    assert_eq!(issuer.token_requests(), 0);

    // The issuer down: the cache's error, with the cause in its chain.
    issuer.set_down(true);
    let error = client.get(issuer.jwks_uri()).send().await.unwrap_err();
    assert!(error_of::<TokenUnavailable>(&error).is_some(), "{error:?}");

    // A certificate-bound token and no pool to present the certificate:
    // never sent over a connection without it.
    let source = {
        let identity = identity.clone();
        move || {
            let identity = identity.clone();
            async move { Ok(Token::new("bound").bound_to(identity)) }
        }
    };
    let client = reqwest_middleware::ClientBuilder::new(plain_reqwest(&pki))
        .with(TokenBindingMiddleware::new(TokenBindingLayer::bound(
            source,
        )))
        .build();
    let error = client.get("https://localhost:9/").send().await.unwrap_err();
    assert!(error.to_string().contains("MtlsReqwestPool"), "{error}");
}

#[tokio::test]
async fn the_pool_keeps_one_client_per_certificate_within_its_bound() {
    let pki = TestPki::new().unwrap();
    let pool = MtlsReqwestPool::new(
        MtlsClientPool::builder()
            .root_store(pki.root_store())
            .max_identities(2),
    )
    .unwrap();
    let ids: Vec<ClientIdentity> = (0..3)
        .map(|_| pki.client_cert("svc.example").unwrap().identity().unwrap())
        .collect();
    pool.client(&ids[0]).unwrap();
    pool.client(&ids[0]).unwrap();
    pool.client(&ids[1]).unwrap();
    assert_eq!(pool.stats().clients_built, 2);
    // A third identity evicts the least recently used.
    pool.client(&ids[2]).unwrap();
    let stats = pool.stats();
    assert_eq!(
        (stats.identities, stats.clients_built, stats.evicted),
        (2, 3, 1)
    );
    assert!(!pool.holds(&ids[0].thumbprint()));
}

/// Serves over TLS a resource that answers with the request's user agent
/// and the certificate of its connection.
async fn echo_user_agent(pki: &TestPki) -> String {
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/",
        listener.local_addr().unwrap().port()
    );
    let service = tower::service_fn(|request: Request<Incoming>| async move {
        let agent = request
            .headers()
            .get(header::USER_AGENT)
            .map(|v| v.to_str().unwrap().to_owned());
        let peer = request
            .extensions()
            .get::<PeerCertificate>()
            .map(|p| p.thumbprint().to_string());
        let body = serde_json::json!({ "agent": agent, "peer": peer }).to_string();
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    });
    tokio::spawn(server::serve(listener, tls, service).into_future());
    url
}

#[tokio::test]
async fn configure_reqwest_reaches_every_client_the_builder_makes() {
    let pki = TestPki::new().unwrap();
    let url = echo_user_agent(&pki).await;
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let agent = |client: reqwest::ClientBuilder| client.user_agent("orders-sync/1.0");
    // Certificate-bound: over the pool's client for the certificate.
    let bound = {
        let identity = identity.clone();
        move || {
            let identity = identity.clone();
            async move {
                Ok(Token::new("bound")
                    .expires_in(Duration::from_secs(600))
                    .bound_to(identity))
            }
        }
    };
    let client = BoundClient::builder()
        .token_source(bound)
        .root_store(pki.root_store())
        .configure_reqwest(agent)
        .build_reqwest()
        .unwrap();
    let (_, body) = json(client.get(&url).send().await.unwrap()).await;
    assert_eq!(body["agent"], "orders-sync/1.0");
    assert_eq!(body["peer"], identity.thumbprint().to_string());

    // Bearer: over the client under the middleware.
    let client = BoundClient::builder()
        .token_source(|| async { Ok(Token::new("plain")) })
        .scheme(Scheme::Bearer)
        .root_store(pki.root_store())
        .configure_reqwest(agent)
        .build_reqwest()
        .unwrap();
    let (_, body) = json(client.get(&url).send().await.unwrap()).await;
    assert_eq!(body["agent"], "orders-sync/1.0");
    assert_eq!(body["peer"], Value::Null);
}
