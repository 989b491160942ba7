//! Requests through `MtlsClientPool` against the same requests through one
//! plain hyper-util client with the same client certificate: keep-alive,
//! loopback, a server that answers at once.
//!
//! - `plain_client`: hyper-util `Client` + hyper-rustls, presenting the
//!   certificate;
//! - `mtls_client_pool`: the pool, the identity in the request's extensions.
//!
//! Each iteration is a batch of 32 concurrent requests. Target: the pool's
//! throughput at least 0.97× the plain client's (time per batch at most
//! 1/0.97 of it).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceExt};
use tower_token_binding::pool::MtlsClientPool;
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::test_util::TestPki;

const BATCH: usize = 32;

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pki = TestPki::new().unwrap();
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let url = runtime.block_on(async {
        let tls = pki
            .server_config(Arc::new(AnyClientCertVerifier::optional()))
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}/",
            listener.local_addr().unwrap().port()
        );
        let service = tower::service_fn(|_: Request<Incoming>| async {
            Ok::<_, std::convert::Infallible>(Response::new(String::from("ok")))
        });
        tokio::spawn(server::serve(listener, tls, service).into_future());
        url
    });

    let plain = {
        let _guard = runtime.enter();
        // Configured as the pool configures its clients: TCP_NODELAY.
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(pki.client_config(Some(&identity)).unwrap())
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector)
    };
    let pool: MtlsClientPool<Empty<Bytes>> = {
        let _guard = runtime.enter();
        MtlsClientPool::builder()
            .root_store(pki.root_store())
            .build()
            .unwrap()
    };

    let mut group = c.benchmark_group("pool_throughput");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("plain_client", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..BATCH {
                    let (client, url) = (plain.clone(), url.clone());
                    tasks.spawn(async move {
                        let request = Request::get(url).body(Empty::new()).unwrap();
                        let response = client.request(request).await.unwrap();
                        response.into_body().collect().await.unwrap();
                    });
                }
                while tasks.join_next().await.is_some() {}
            })
        })
    });
    group.bench_function("mtls_client_pool", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..BATCH {
                    let (mut pool, url, identity) = (pool.clone(), url.clone(), identity.clone());
                    tasks.spawn(async move {
                        let mut request = Request::get(url).body(Empty::new()).unwrap();
                        request.extensions_mut().insert(identity);
                        let response = pool.ready().await.unwrap().call(request).await.unwrap();
                        response.into_body().collect().await.unwrap();
                    });
                }
                while tasks.join_next().await.is_some() {}
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
