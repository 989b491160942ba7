//! What `TokenBindingLayer` adds to a request when the token is cached.
//!
//! - `bare`: a `service_fn` that answers at once.
//! - `bound_layer`: the same behind `TokenBindingLayer::bound` with a cached
//!   token bound to a client identity (header set, identity in the
//!   extensions).
//! - `bearer_layer`: the same with a plain bearer token.
//! - `bound_client_credentials` and `bound_reloading_identity`: the bound
//!   layer in front of a real `ClientCredentials` source (its token fetched
//!   once from the test authorization server), with a fixed identity and
//!   with a `ReloadingIdentity` read from files: what asking the source for
//!   its cache key (the current identity's thumbprint) adds per request.
//!
//! - `header_floor` and `header_and_extension_floor`: what `http` itself
//!   costs to put a prepared `Authorization` value on the request (and the
//!   identity in its extensions) with no layer at all: the floor under
//!   `bearer_layer` and `bound_layer`.
//!
//! - `clock_now` and `clock_wall`: one reading of the crate's clock
//!   (`tower_token_binding::clock`), beside `std_instant_now` and
//!   `system_time_now`. Benches are built with the dev-dependencies, where
//!   tokio has `test-util`, so that tests can pause its clock; with it,
//!   each reading of tokio's clock looks up the runtime's clock, where a
//!   build without it reads `Instant::now()` directly. These rows say what
//!   that costs in the rows above.
//!
//! - `reqwest_bare` and `reqwest_bearer_middleware`: the same for reqwest
//!   users, a `reqwest_middleware` client whose last middleware answers at
//!   once (no network), without and with `TokenBindingMiddleware` and a
//!   cached bearer token: what the middleware adds to a reqwest call (the
//!   URL read as a URI, the head the binding layer's `authorize` works on).
//!   Certificate-bound requests also take the pool's client for the
//!   certificate, a lookup `pool_throughput` measures.
//!
//! Target: under 150 ns added per request.

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http::{Request, Response};
use tower::{Layer, Service};
use tower_token_binding::TokenBindingLayer;
use tower_token_binding::identity::ReloadingIdentity;
use tower_token_binding::reqwest::TokenBindingMiddleware;
use tower_token_binding::source::ClientCredentials;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::{StaticToken, Token};

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let identity = TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let pki = TestPki::new().unwrap();
    let issuer = runtime.block_on(TestIssuer::start(&pki)).unwrap();
    let client = pki.client_cert("svc.example").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = client.write_pem_files(dir.path(), "client").unwrap();
    let credentials = || {
        ClientCredentials::builder()
            .token_endpoint(issuer.mtls_token_endpoint())
            .client_id("svc")
            .root_store(pki.root_store())
    };
    let fixed = credentials()
        .tls_client_auth(client.identity().unwrap())
        .build()
        .unwrap();
    let reloading = credentials()
        .tls_client_auth(ReloadingIdentity::from_pem_files(&cert_path, &key_path).unwrap())
        .build()
        .unwrap();
    let token = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.".repeat(12);
    let inner =
        tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });

    let mut group = c.benchmark_group("client_overhead");
    let mut bare = inner;
    group.bench_function("bare", |b| {
        b.iter(|| {
            bare.call(black_box(Request::new(())))
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });

    // What `http` itself costs to do what the bound layer does on a hit:
    // one `Authorization` value (a clone of a value built once) into the
    // headers, one identity into the extensions. The floor under
    // `bound_layer` that no layer can go below; `header_floor` is the
    // same without the extension, under `bearer_layer`.
    let mut value = http::HeaderValue::try_from(format!("Bearer {token}")).unwrap();
    value.set_sensitive(true);
    for (name, with_identity) in [
        ("header_floor", false),
        ("header_and_extension_floor", true),
    ] {
        let mut floor = inner;
        let identity = identity.clone();
        let value = value.clone();
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut request = black_box(Request::new(()));
                request
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, value.clone());
                if with_identity {
                    request.extensions_mut().insert(identity.clone());
                }
                floor.call(request).now_or_never().unwrap().unwrap()
            })
        });
    }

    for (name, layer) in [
        (
            "bound_layer",
            TokenBindingLayer::bound(StaticToken::new(
                Token::new(token.clone()).bound_to(identity),
            )),
        ),
        (
            "bearer_layer",
            TokenBindingLayer::bearer(StaticToken::new(Token::new(token.clone()))),
        ),
        ("bound_client_credentials", TokenBindingLayer::bound(fixed)),
        (
            "bound_reloading_identity",
            TokenBindingLayer::bound(reloading),
        ),
    ] {
        let mut service = layer.layer(inner);
        // Warm the cache.
        runtime.block_on(layer.cache().unwrap().get()).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                service
                    .call(black_box(Request::new(())))
                    .now_or_never()
                    .unwrap()
                    .unwrap()
            })
        });
    }

    // reqwest: the chain ends in a middleware that answers at once.
    struct Answer;
    #[async_trait::async_trait]
    impl reqwest_middleware::Middleware for Answer {
        async fn handle(
            &self,
            _: reqwest::Request,
            _: &mut http::Extensions,
            _: reqwest_middleware::Next<'_>,
        ) -> reqwest_middleware::Result<reqwest::Response> {
            Ok(reqwest::Response::from(Response::new(String::new())))
        }
    }
    let bearer = TokenBindingMiddleware::new(TokenBindingLayer::bearer(StaticToken::new(
        Token::new(token.clone()),
    )));
    runtime.block_on(bearer.cache().unwrap().get()).unwrap();
    for (name, middleware) in [
        ("reqwest_bare", None),
        ("reqwest_bearer_middleware", Some(bearer)),
    ] {
        let mut client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new());
        if let Some(middleware) = middleware {
            client = client.with(middleware);
        }
        let client = client.with(Answer).build();
        group.bench_function(name, |b| {
            b.iter(|| {
                client
                    .get(black_box("https://api.example/orders"))
                    .send()
                    .now_or_never()
                    .unwrap()
                    .unwrap()
            })
        });
    }

    group.bench_function("std_instant_now", |b| b.iter(std::time::Instant::now));
    group.bench_function("clock_now", |b| b.iter(tower_token_binding::clock::now));
    group.bench_function("system_time_now", |b| b.iter(std::time::SystemTime::now));
    group.bench_function("clock_wall", |b| b.iter(tower_token_binding::clock::wall));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
