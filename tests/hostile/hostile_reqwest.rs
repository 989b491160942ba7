//! Attacks on `tower_token_binding::reqwest`, over real TLS on loopback:
//! where a token, a DPoP proof or a client certificate goes when a server
//! answers with a redirect; what the answer of a redirect's target is taken
//! for; headers a caller set; a server that is never satisfied; secrets in
//! `Debug`.
#![cfg(feature = "test-util")]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tower_token_binding::binding::Scheme;
use tower_token_binding::proof::dpop::{DPOP, DPOP_NONCE};
use tower_token_binding::reqwest::TokenBindingMiddleware;
use tower_token_binding::server::{self, AnyClientCertVerifier, PeerCertificate};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::Token;
use tower_token_binding::{BoundClient, TokenBindingLayer};

const SECRET: &str = "s3cret-of-the-client";

/// A request as a site saw it.
struct Seen {
    headers: HeaderMap,
    /// The connection presented a client certificate.
    certificate: bool,
}

/// A site over TLS, and every request it got.
struct Site {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Site {
    fn requests(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// Serves over TLS on 127.0.0.1 (named `host` in its URL; the test
/// certificate is good for `localhost` and `127.0.0.1`, two origins),
/// client certificates asked for but optional, answering each request with
/// `answer(n)` (`n` counting from 0) and recording it.
async fn tls_site<F>(pki: &TestPki, host: &str, answer: F) -> Site
where
    F: Fn(usize) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{host}:{}", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let service = {
        let seen = seen.clone();
        tower::service_fn(move |request: Request<Incoming>| {
            let n = {
                let mut seen = seen.lock().unwrap();
                seen.push(Seen {
                    headers: request.headers().clone(),
                    certificate: request.extensions().get::<PeerCertificate>().is_some(),
                });
                seen.len() - 1
            };
            let response = answer(n);
            async move { Ok::<_, Infallible>(response) }
        })
    };
    tokio::spawn(server::serve(listener, tls, service).into_future());
    Site { base, seen }
}

/// A plain HTTP site on 127.0.0.1: what an eavesdropper reads. Returns its
/// URL and the head of every request it got, lower-cased.
async fn plain_site() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let recorded = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let recorded = recorded.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                recorded
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).to_ascii_lowercase());
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (base, heads)
}

fn redirect_to(location: String) -> impl Fn(usize) -> Response<Full<Bytes>> + Clone + Send + Sync {
    move |_| {
        Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, location.as_str())
            .body(Full::default())
            .unwrap()
    }
}

fn unauthorized(challenge: &'static str, nonce: Option<&'static str>) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(header::WWW_AUTHENTICATE, challenge);
    if let Some(nonce) = nonce {
        response = response.header(DPOP_NONCE, nonce);
    }
    response.body(Full::default()).unwrap()
}

fn ok() -> Response<Full<Bytes>> {
    Response::new(Full::default())
}

/// A reqwest client as a user builds it (redirects followed, reqwest's
/// default), trusting the test CA.
fn users_reqwest(pki: &TestPki) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

/// The claims of the `DPoP` proof in `headers`.
fn proof_claims(headers: &HeaderMap) -> Option<Value> {
    let proof = headers.get(DPOP)?.to_str().ok()?;
    let payload = URL_SAFE_NO_PAD.decode(proof.split('.').nth(1)?).ok()?;
    serde_json::from_slice(&payload).ok()
}

async fn dpop_issuer(pki: &TestPki) -> TestIssuer {
    TestIssuer::builder()
        .client_secret("svc", SECRET)
        .start(pki)
        .await
        .unwrap()
}

fn dpop_client(
    pki: &TestPki,
    issuer: &TestIssuer,
) -> tower_token_binding::client::BoundClientBuilder {
    BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .client_secret_basic(SECRET)
        .root_store(pki.root_store())
        .scheme(Scheme::Dpop)
}

/// An API that answers `307` to an `http://` URL elsewhere: reqwest strips
/// `Authorization` when it follows a redirect to another origin, but not
/// the `DPoP` proof, which would go to the other host in clear text. The
/// client `build_reqwest` makes sends a token and a proof to the URL it is
/// given, never to where a redirect points.
#[tokio::test]
async fn a_dpop_proof_does_not_follow_a_redirect_to_plain_http_elsewhere() {
    let pki = TestPki::new().unwrap();
    let issuer = dpop_issuer(&pki).await;
    let (elsewhere, heads) = plain_site().await;
    let api = tls_site(
        &pki,
        "localhost",
        redirect_to(format!("{elsewhere}/collect")),
    )
    .await;
    let client = dpop_client(&pki, &issuer).build_reqwest().unwrap();

    let response = client
        .get(format!("{}/orders", api.base))
        .send()
        .await
        .unwrap();
    // The API got the token and its proof.
    assert_eq!(api.requests(), 1);
    assert!(api.seen.lock().unwrap()[0].headers.contains_key(DPOP));

    let heads = heads.lock().unwrap();
    for head in heads.iter() {
        assert!(!head.contains("\r\nauthorization:"), "{head}");
        assert!(
            !head.contains("\r\ndpop:"),
            "a DPoP proof sent over plain http: {head}"
        );
    }
    // The redirect is the answer, for the caller to follow (through the
    // middleware again: a new proof for the new URL) or not.
    assert!(heads.is_empty(), "{heads:?}");
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
}

/// A certificate-bound request answered with a redirect to another host:
/// the pool's client does not go there presenting the client certificate
/// (nor, had reqwest not stripped it, with the token).
#[tokio::test]
async fn a_certificate_bound_request_does_not_follow_a_redirect_to_another_host() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let elsewhere = tls_site(&pki, "127.0.0.1", |_| ok()).await;
    let api = tls_site(
        &pki,
        "localhost",
        redirect_to(format!("{}/", elsewhere.base)),
    )
    .await;
    let client = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .identity(identity)
        .root_store(pki.root_store())
        .build_reqwest()
        .unwrap();

    let response = client.get(&api.base).send().await.unwrap();
    {
        let seen = api.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].certificate);
        assert!(seen[0].headers.contains_key(header::AUTHORIZATION));
    }
    for seen in elsewhere.seen.lock().unwrap().iter() {
        assert!(
            !seen.certificate,
            "the client certificate was presented to another host"
        );
        assert!(!seen.headers.contains_key(header::AUTHORIZATION));
    }
    assert_eq!(elsewhere.requests(), 0);
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
}

/// With a client of the user's own that follows redirects (reqwest's
/// default), the API redirects to another origin, which answers `401
/// use_dpop_nonce` with a nonce of its choosing. That nonce is not the
/// API's: it must not be remembered for the API's origin and put into the
/// next proof to it.
#[tokio::test]
async fn a_nonce_from_a_redirect_target_is_not_remembered_for_the_origin() {
    let pki = TestPki::new().unwrap();
    let issuer = dpop_issuer(&pki).await;
    let elsewhere = tls_site(&pki, "127.0.0.1", |_| {
        unauthorized(
            "DPoP error=\"use_dpop_nonce\"",
            Some("planted-by-another-origin"),
        )
    })
    .await;
    let api = tls_site(
        &pki,
        "localhost",
        redirect_to(format!("{}/", elsewhere.base)),
    )
    .await;
    let middleware = dpop_client(&pki, &issuer)
        .build_reqwest_middleware()
        .unwrap();
    let client = reqwest_middleware::ClientBuilder::new(users_reqwest(&pki))
        .with(middleware)
        .build();

    client
        .get(format!("{}/orders", api.base))
        .send()
        .await
        .unwrap();
    client
        .get(format!("{}/orders", api.base))
        .send()
        .await
        .unwrap();

    let seen = api.seen.lock().unwrap();
    for request in seen.iter() {
        let claims = proof_claims(&request.headers).expect("a DPoP proof");
        assert_ne!(
            claims.get("nonce").and_then(Value::as_str),
            Some("planted-by-another-origin"),
            "another origin's nonce in a proof to the API"
        );
    }
    // One request per call: the other origin's 401 is the answer, not a
    // reason to send the API the request again.
    assert_eq!(seen.len(), 2);
}

/// With a client of the user's own that follows redirects, the API
/// redirects to another origin, which answers `401 invalid_token`. reqwest
/// did not send it the token (no `Authorization` across origins): its
/// answer says nothing of the token, which stays cached, and the request is
/// not sent again.
#[tokio::test]
async fn an_invalid_token_from_a_redirect_target_does_not_drop_the_token() {
    let pki = TestPki::new().unwrap();
    let elsewhere = tls_site(&pki, "127.0.0.1", |_| {
        unauthorized("Bearer error=\"invalid_token\"", None)
    })
    .await;
    let api = tls_site(
        &pki,
        "localhost",
        redirect_to(format!("{}/", elsewhere.base)),
    )
    .await;
    let fetches = Arc::new(AtomicUsize::new(0));
    let layer = TokenBindingLayer::bearer({
        let fetches = fetches.clone();
        move || {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            async move { Ok(Token::new(format!("token-{n}")).expires_in(Duration::from_secs(600))) }
        }
    });
    let client = reqwest_middleware::ClientBuilder::new(users_reqwest(&pki))
        .with(TokenBindingMiddleware::new(layer))
        .build();

    for _ in 0..3 {
        let response = client.get(&api.base).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    for seen in elsewhere.seen.lock().unwrap().iter() {
        assert!(!seen.headers.contains_key(header::AUTHORIZATION));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "the token was dropped");
    assert_eq!(api.requests(), 3);
}

/// A caller's own `Authorization` and `DPoP` headers do not survive next
/// to the middleware's, nor go out twice.
#[tokio::test]
async fn a_callers_authorization_and_dpop_headers_are_replaced() {
    let pki = TestPki::new().unwrap();
    let issuer = dpop_issuer(&pki).await;
    let api = tls_site(&pki, "localhost", |_| ok()).await;
    let client = dpop_client(&pki, &issuer).build_reqwest().unwrap();

    let response = client
        .get(&api.base)
        .header(header::AUTHORIZATION, "Bearer the-callers")
        .header(DPOP, "the-callers-proof")
        .header(DPOP, "another")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = api.seen.lock().unwrap();
    let headers = &seen[0].headers;
    let all = |name| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    let authorization = all(header::AUTHORIZATION.as_str());
    assert_eq!(authorization.len(), 1, "{authorization:?}");
    assert!(authorization[0].starts_with("DPoP "), "{authorization:?}");
    let proofs = all(DPOP.as_str());
    assert_eq!(proofs.len(), 1, "{proofs:?}");
    assert!(proof_claims(headers).is_some(), "{proofs:?}");
}

/// A server that answers every request `401`, alternating `use_dpop_nonce`
/// (a fresh nonce each time) and `invalid_token`: each kind of retry once,
/// then its `401` is the answer. Never a loop.
#[tokio::test]
async fn a_server_never_satisfied_sees_a_bounded_number_of_attempts() {
    let pki = TestPki::new().unwrap();
    let issuer = dpop_issuer(&pki).await;
    let api = tls_site(&pki, "localhost", |n| {
        let nonces = ["nonce-0", "nonce-1", "nonce-2", "nonce-3", "nonce-4"];
        if n % 2 == 0 {
            unauthorized(
                "DPoP error=\"use_dpop_nonce\"",
                Some(nonces[n % nonces.len()]),
            )
        } else {
            unauthorized(
                "DPoP error=\"invalid_token\"",
                Some(nonces[n % nonces.len()]),
            )
        }
    })
    .await;
    let client = dpop_client(&pki, &issuer).build_reqwest().unwrap();

    let response = client.get(&api.base).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The first try, one nonce retry, one invalid_token retry.
    assert_eq!(api.requests(), 3);
    assert_eq!(issuer.tokens_issued(), 2);
}

/// Neither the client's secret nor the access token shows in the `Debug`
/// of the middleware (after a call), of its pool, or of its errors.
#[tokio::test]
async fn no_secret_in_debug_output() {
    let pki = TestPki::new().unwrap();
    let issuer = dpop_issuer(&pki).await;
    let api = tls_site(&pki, "localhost", |_| ok()).await;
    let middleware = dpop_client(&pki, &issuer)
        .build_reqwest_middleware()
        .unwrap();
    let cache = middleware.cache().unwrap().clone();
    let client = reqwest_middleware::ClientBuilder::new(users_reqwest(&pki))
        .with(middleware.clone())
        .build();
    client.get(&api.base).send().await.unwrap();
    let token = cache.get().await.unwrap();
    let access_token = token.token().access_token().secret().to_owned();

    let refused = client
        .get("http://api.example/orders?q=1")
        .send()
        .await
        .unwrap_err();
    for text in [
        format!("{middleware:?}"),
        format!("{client:?}"),
        format!("{refused:?}"),
        format!("{refused}"),
    ] {
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains(&access_token), "{text}");
    }
}
