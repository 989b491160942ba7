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

//! - C, to split that cost: A's client (every client layer, the pool)
//!   against B's server, which takes the token and ignores it. C against
//!   H is what the client layers cost, A against C what the server layer
//!   costs.
//!
//! The servers run on a runtime of their own (one worker thread), the
//! clients on another (one worker thread), as a client and a server on two
//! machines would not share a scheduler. Keep-alive, 32 requests in flight,
//! 10,000 requests per round; 15 rounds, each running A, B, H and C in an
//! order that rotates (ABHC, BHCA, HCAB, CABH), so that none of them always
//! runs first;
//! first over HTTP/2, then the same three over HTTP/1.1 (ALPN `http/1.1`).
//! Where the platform tells (Linux), each configuration's median CPU time
//! per request on the server's and the client's threads is printed too:
//! what a ratio does not say, when one side waits on the other.
//! Each ratio is taken within a round, and the median of the rounds is
//! reported with its spread (min and max). Then `client_layers_ratio=`
//! (C/H) and `server_layers_ratio=` (A/C) and their `http1_` twins; the
//! last lines, in this order:
//! `token_header_ratio=`, `layers_ratio=`, `throughput_ratio=`,
//! `p99_ratio=` (HTTP/2), then `http1_token_header_ratio=`,
//! `http1_layers_ratio=`, `http1_throughput_ratio=`, `http1_p99_ratio=`;
//! each is `name=median (min .. max)`.
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

const REQUESTS: usize = 10_000;
const IN_FLIGHT: usize = 32;
const ROUNDS: usize = 15;

struct Round {
    throughput: f64,
    p99: Duration,
    /// CPU time per request of the server's and the client's threads, where
    /// the platform tells (Linux).
    server_cpu: Option<Duration>,
    client_cpu: Option<Duration>,
}

/// CPU time used so far by this process's threads named `name` (Linux:
/// `/proc/self/task/*/schedstat`), or `None` where that cannot be read.
fn cpu_of_threads(name: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut found = false;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).ok()?;
        if comm.trim_end() != name {
            continue;
        }
        let schedstat = std::fs::read_to_string(path.join("schedstat")).ok()?;
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
        found = true;
    }
    found.then(|| Duration::from_nanos(total))
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
    let cpu_before = (cpu_of_threads("server"), cpu_of_threads("client"));
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
    let per_request = |before: Option<Duration>, name| {
        Some(cpu_of_threads(name)?.saturating_sub(before?) / REQUESTS as u32)
    };
    latencies.sort();
    Round {
        throughput: REQUESTS as f64 / elapsed.as_secs_f64(),
        p99: latencies[latencies.len() * 99 / 100],
        server_cpu: per_request(cpu_before.0, "server"),
        client_cpu: per_request(cpu_before.1, "client"),
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

/// `median (min .. max)` of per-round ratios.
fn spread(values: Vec<f64>) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.3} ({min:.3} .. {max:.3})", median(values))
}

fn main() {
    // `cargo test --benches` runs benches with --test: a quick smoke only.
    let quick = std::env::args().any(|a| a == "--test");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("client")
        .enable_all()
        .build()
        .unwrap();
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let pki = TestPki::new().unwrap();
    let issuer = runtime.block_on(TestIssuer::start(&pki)).unwrap();
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let (url_a, url_b) = server_runtime.block_on(async {
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
        (url_a, url_b)
    });

    runtime.block_on(async move {
        let token_len = binding_token_len(&issuer, &pki, &identity).await;
        println!("token: {token_len} bytes; {REQUESTS} requests per round, {IN_FLIGHT} in flight");
        let mut lines = Vec::new();
        let mut split = Vec::new();
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

            // Warm all (token, JWKS, connections); C is A's client on B's
            // server.
            round(client_a.clone(), &url_a).await;
            round(client_b.clone(), &url_b).await;
            round(client_h.clone(), &url_b).await;
            round(client_a.clone(), &url_b).await;
            if quick {
                continue;
            }

            let (mut a, mut b, mut h, mut c) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for i in 0..ROUNDS {
                let (mut ra, mut rb, mut rh, mut rc) = (None, None, None, None);
                for which in (0..4).map(|k| (k + i) % 4) {
                    match which {
                        0 => ra = Some(round(client_a.clone(), &url_a).await),
                        1 => rb = Some(round(client_b.clone(), &url_b).await),
                        2 => rh = Some(round(client_h.clone(), &url_b).await),
                        _ => rc = Some(round(client_a.clone(), &url_b).await),
                    }
                }
                let (ra, rb, rh, rc) = (ra.unwrap(), rb.unwrap(), rh.unwrap(), rc.unwrap());
                println!(
                    "{protocol} round {}: A {:>6.0} req/s p99 {:>5.0} µs | B {:>6.0} req/s p99 {:>5.0} µs | H {:>6.0} req/s p99 {:>5.0} µs | C {:>6.0} req/s p99 {:>5.0} µs",
                    i + 1,
                    ra.throughput,
                    ra.p99.as_secs_f64() * 1e6,
                    rb.throughput,
                    rb.p99.as_secs_f64() * 1e6,
                    rh.throughput,
                    rh.p99.as_secs_f64() * 1e6,
                    rc.throughput,
                    rc.p99.as_secs_f64() * 1e6
                );
                a.push(ra);
                b.push(rb);
                h.push(rh);
                c.push(rc);
            }
            let per_round = |f: &dyn Fn(usize) -> f64| spread((0..ROUNDS).map(f).collect());
            let token_header = per_round(&|i| h[i].throughput / b[i].throughput);
            let layers = per_round(&|i| a[i].throughput / h[i].throughput);
            let client_layers = per_round(&|i| c[i].throughput / h[i].throughput);
            let server_layers = per_round(&|i| a[i].throughput / c[i].throughput);
            let throughput = per_round(&|i| a[i].throughput / b[i].throughput);
            let p99 = per_round(&|i| a[i].p99.as_secs_f64() / b[i].p99.as_secs_f64());
            println!(
                "{protocol} median: A {:.0} req/s | B {:.0} req/s | H {:.0} req/s | C {:.0} req/s",
                median(a.iter().map(|r| r.throughput).collect()),
                median(b.iter().map(|r| r.throughput).collect()),
                median(h.iter().map(|r| r.throughput).collect()),
                median(c.iter().map(|r| r.throughput).collect()),
            );
            let cpu = |rounds: &[Round], f: fn(&Round) -> Option<Duration>| {
                let values: Option<Vec<f64>> = rounds
                    .iter()
                    .map(|r| f(r).map(|d| d.as_secs_f64() * 1e6))
                    .collect();
                values.map_or_else(|| "?".to_owned(), |v| format!("{:.2}", median(v)))
            };
            println!(
                "{protocol} CPU µs per request, server | client: A {} | {}, B {} | {}, H {} | {}, C {} | {}",
                cpu(&a, |r| r.server_cpu),
                cpu(&a, |r| r.client_cpu),
                cpu(&b, |r| r.server_cpu),
                cpu(&b, |r| r.client_cpu),
                cpu(&h, |r| r.server_cpu),
                cpu(&h, |r| r.client_cpu),
                cpu(&c, |r| r.server_cpu),
                cpu(&c, |r| r.client_cpu),
            );
            split.push((http2, client_layers, server_layers));
            lines.push((http2, token_header, layers, throughput, p99));
        }
        if quick {
            println!("end_to_end: smoke run done");
            return;
        }
        for (http2, client_layers, server_layers) in split {
            let prefix = if http2 { "" } else { "http1_" };
            println!("{prefix}client_layers_ratio={client_layers} (C/H: the client layers)");
            println!("{prefix}server_layers_ratio={server_layers} (A/C: the server layer)");
        }
        for (http2, token_header, layers, throughput, p99) in lines {
            if http2 {
                println!("token_header_ratio={token_header} (H/B: carrying a token at all)");
                println!("layers_ratio={layers} (A/H: the layers themselves)");
                println!("throughput_ratio={throughput}");
                println!("p99_ratio={p99}");
            } else {
                println!("http1_token_header_ratio={token_header}");
                println!("http1_layers_ratio={layers}");
                println!("http1_throughput_ratio={throughput}");
                println!("http1_p99_ratio={p99}");
            }
        }
    });
}
