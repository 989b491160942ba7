//! The whole path against no layers at all, over the same loopback mTLS.
//!
//! - A: client `TokenBindingLayer` (client credentials, token cache, retry
//!   policy) over `MtlsClientPool`; server `CnfValidationLayer` (JWT
//!   verification with the verified-token cache, binding check) in front of
//!   an axum `Router`.
//! - B: the same hyper-util client presenting the same certificate, and the
//!   same axum `Router` over the same mTLS server, no layers, no token.
//!
//! - H, for the diagnosis: B's client and server, with an `Authorization`
//!   header as long as A's token, marked sensitive as A's is. H against B
//!   is the cost of carrying a token at all (over HTTP/2 a sensitive header
//!   is never indexed by HPACK, so its bytes go out with every request); A
//!   against H is the cost of the layers themselves.
//!
//! Keep-alive, 32 requests in flight, 4,000 requests per round; A, B and H
//! in turns for 5 rounds; medians reported; first over HTTP/2, then the
//! same three over HTTP/1.1 (ALPN `http/1.1`). The last lines, in this
//! order: `token_header_ratio=`, `layers_ratio=`, `throughput_ratio=`,
//! `p99_ratio=` (HTTP/2), then `http1_token_header_ratio=`,
//! `http1_layers_ratio=`, `http1_throughput_ratio=`, `http1_p99_ratio=`.
//! Targets: throughput ratios 0.95 or better, HTTP/2 p99 ratio 1.10 or
//! less.
//!
//! ```text
//! cargo bench --bench end_to_end
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::retry::RetryLayer;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_token_binding::TokenBindingLayer;
use tower_token_binding::pool::MtlsClientPool;
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::source::ClientCredentials;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::BoxError;
use tower_token_binding::validation::{CnfValidationLayer, JwksSource, JwtValidator};

const REQUESTS: usize = 4000;
const IN_FLIGHT: usize = 32;
const ROUNDS: usize = 5;

struct Round {
    throughput: f64,
    p99: Duration,
}

/// Sends `REQUESTS` requests through `client`, `IN_FLIGHT` at a time.
async fn round<S>(client: S, url: &str) -> Round
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<hyper::body::Incoming>>
        + Clone
        + Send
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (client, url, next) = (client.clone(), url.to_owned(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < REQUESTS {
                let sent = Instant::now();
                let request = Request::get(&url).body(Full::default()).unwrap();
                let response = client
                    .clone()
                    .oneshot(request)
                    .await
                    .map_err(Into::into)
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response.into_body().collect().await.unwrap();
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::with_capacity(REQUESTS);
    while let Some(done) = workers.join_next().await {
        latencies.extend(done.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Round {
        throughput: REQUESTS as f64 / elapsed.as_secs_f64(),
        p99: latencies[latencies.len() * 99 / 100],
    }
}

/// The length of a real token from the issuer.
async fn binding_token_len(
    issuer: &TestIssuer,
    pki: &TestPki,
    identity: &tower_token_binding::ClientIdentity,
) -> usize {
    use tower_token_binding::token::TokenSource;
    let source = ClientCredentials::builder()
        .token_endpoint(issuer.token_endpoint())
        .client_id("bench")
        .tls_client_auth(identity.clone())
        .root_store(pki.root_store())
        .build()
        .unwrap();
    source.fetch().await.unwrap().access_token().secret().len()
}

fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn main() {
    // `cargo test --benches` runs benches with --test: a quick smoke only.
    let quick = std::env::args().any(|a| a == "--test");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
        let app = Router::new().route("/data", get(|| async { "ok" }));
        let tls = Arc::new(
            pki.server_config(Arc::new(AnyClientCertVerifier::optional()))
                .unwrap(),
        );

        // Server A: CnfValidationLayer in front of the router.
        let validator = JwtValidator::builder()
            .issuer(issuer.issuer())
            .audience(issuer.audience())
            .jwks(
                JwksSource::remote(&issuer.jwks_uri())
                    .unwrap()
                    .root_store(pki.root_store()),
            )
            .build()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url_a = format!(
            "https://localhost:{}/data",
            listener.local_addr().unwrap().port()
        );
        let app_a = app.clone().layer(CnfValidationLayer::new(validator));
        tokio::spawn(server::serve(listener, tls.clone(), app_a).into_future());

        // Server B: the router alone.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url_b = format!(
            "https://localhost:{}/data",
            listener.local_addr().unwrap().port()
        );
        tokio::spawn(server::serve(listener, tls, app).into_future());

        let token_len = binding_token_len(&issuer, &pki, &identity).await;
        println!("token: {token_len} bytes; {REQUESTS} requests per round, {IN_FLIGHT} in flight");
        let mut lines = Vec::new();
        for (protocol, http2) in [("HTTP/2", true), ("HTTP/1.1", false)] {
            // Client A: the crate's stack.
            let pool: MtlsClientPool<Full<Bytes>> = {
                let builder = MtlsClientPool::builder().root_store(pki.root_store());
                if http2 { builder.http2_only() } else { builder.http1_only() }
            }
            .build()
            .unwrap();
            let source = ClientCredentials::builder()
                .token_endpoint(issuer.token_endpoint())
                .client_id("bench")
                .tls_client_auth(identity.clone())
                .pool(pool.clone())
                .build()
                .unwrap();
            let binding = TokenBindingLayer::bound(source);
            let client_a = ServiceBuilder::new()
                .layer(RetryLayer::new(binding.retry_policy()))
                .layer(binding)
                .service(pool)
                .map_err(BoxError::from);

            // Client B: hyper-util + hyper-rustls with the same certificate,
            // the same protocol by ALPN.
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_nodelay(true);
            let builder = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(pki.client_config(Some(&identity)).unwrap())
                .https_only();
            let connector = if http2 {
                builder.enable_http2().wrap_connector(http)
            } else {
                builder.enable_http1().wrap_connector(http)
            };
            let client_b = tower::service_fn({
                let client: Client<_, Full<Bytes>> = {
                    let mut builder = Client::builder(TokioExecutor::new());
                    builder.http2_only(http2);
                    builder.build(connector)
                };
                move |request| {
                    let client = client.clone();
                    async move { client.request(request).await.map_err(BoxError::from) }
                }
            });

            // Client H: client B plus a token-sized sensitive Authorization header.
            let mut header =
                http::HeaderValue::try_from(format!("Bearer {}", "x".repeat(token_len))).unwrap();
            header.set_sensitive(true);
            let client_h = {
                let client_b = client_b.clone();
                tower::service_fn(move |mut request: Request<Full<Bytes>>| {
                    request.headers_mut().insert(http::header::AUTHORIZATION, header.clone());
                    client_b.clone().oneshot(request)
                })
            };

            // Warm all (token, JWKS, connections).
            round(client_a.clone(), &url_a).await;
            round(client_b.clone(), &url_b).await;
            round(client_h.clone(), &url_b).await;
            if quick {
                continue;
            }

            let (mut a, mut b, mut h) = (Vec::new(), Vec::new(), Vec::new());
            for i in 1..=ROUNDS {
                let ra = round(client_a.clone(), &url_a).await;
                let rb = round(client_b.clone(), &url_b).await;
                let rh = round(client_h.clone(), &url_b).await;
                println!(
                    "{protocol} round {i}: A {:>6.0} req/s p99 {:>5.0} µs | B {:>6.0} req/s p99 {:>5.0} µs | H {:>6.0} req/s p99 {:>5.0} µs",
                    ra.throughput,
                    ra.p99.as_secs_f64() * 1e6,
                    rb.throughput,
                    rb.p99.as_secs_f64() * 1e6,
                    rh.throughput,
                    rh.p99.as_secs_f64() * 1e6
                );
                a.push(ra);
                b.push(rb);
                h.push(rh);
            }
            let th = median(h.iter().map(|r| r.throughput).collect());
            let (ta, tb) = (
                median(a.iter().map(|r| r.throughput).collect()),
                median(b.iter().map(|r| r.throughput).collect()),
            );
            let (pa, pb, ph) = (
                median(a.iter().map(|r| r.p99).collect()),
                median(b.iter().map(|r| r.p99).collect()),
                median(h.iter().map(|r| r.p99).collect()),
            );
            println!(
                "{protocol} median: A {ta:.0} req/s p99 {:.0} µs | B {tb:.0} req/s p99 {:.0} µs | H {th:.0} req/s p99 {:.0} µs",
                pa.as_secs_f64() * 1e6,
                pb.as_secs_f64() * 1e6,
                ph.as_secs_f64() * 1e6
            );
            lines.push((http2, th / tb, ta / th, ta / tb, pa.as_secs_f64() / pb.as_secs_f64()));
        }
        if quick {
            println!("end_to_end: smoke run done");
            return;
        }
        for (http2, token_header, layers, throughput, p99) in lines {
            if http2 {
                println!("token_header_ratio={token_header:.3} (H/B: carrying a token at all)");
                println!("layers_ratio={layers:.3} (A/H: the layers themselves)");
                println!("throughput_ratio={throughput:.3}");
                println!("p99_ratio={p99:.3}");
            } else {
                println!("http1_token_header_ratio={token_header:.3}");
                println!("http1_layers_ratio={layers:.3}");
                println!("http1_throughput_ratio={throughput:.3}");
                println!("http1_p99_ratio={p99:.3}");
            }
        }
    });
}
