//! What `TokenBindingLayer` adds to a request when the token is cached.
//!
//! - `bare`: a `service_fn` that answers at once.
//! - `bound_layer`: the same behind `TokenBindingLayer::bound` with a cached
//!   token bound to a client identity (header set, identity in the
//!   extensions).
//! - `bearer_layer`: the same with a plain bearer token.
//!
//! Target: under 150 ns added per request.

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http::{Request, Response};
use tower::{Layer, Service};
use tower_token_binding::TokenBindingLayer;
use tower_token_binding::test_util::TestPki;
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
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
