//! What validating a bound access token costs on the server.
//!
//! - `full_verification`: `JwtValidator` with its cache off: header, `typ`,
//!   key lookup, ES256 signature, claims, `cnf`.
//! - `cache_hit`: the same token again through the verified-token cache.
//! - `jsonwebtoken_decode`: jsonwebtoken's own `decode` of the same token with
//!   the same key and checks: the yardstick for `full_verification`.
//!
//! Targets: a cache hit under 2 µs; full verification within 1.2× of
//! jsonwebtoken's `decode`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tower_token_binding::Thumbprint;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{JwksSource, JwtValidator, ValidateToken};

struct Fixture {
    token: String,
    jwks: String,
    issuer: String,
    audience: String,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        let claims = issuer.claims("svc", Some(Thumbprint::from_der(b"client certificate")));
        Fixture {
            token: issuer.sign(&claims).unwrap(),
            jwks: issuer.jwks().to_string(),
            issuer: issuer.issuer().to_owned(),
            audience: issuer.audience().to_owned(),
        }
    })
}

fn validator(f: &Fixture, cache: usize) -> JwtValidator {
    JwtValidator::builder()
        .issuer(&f.issuer)
        .audience(&f.audience)
        .jwks(JwksSource::from_json(&f.jwks).unwrap())
        .cache_capacity(cache)
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("server_validation");

    let uncached = validator(&f, 0);
    assert!(uncached.validate(&f.token).now_or_never().unwrap().is_ok());
    group.bench_function("full_verification", |b| {
        b.iter(|| {
            uncached
                .validate(black_box(&f.token))
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });

    let cached = validator(&f, 10_000);
    assert!(cached.validate(&f.token).now_or_never().unwrap().is_ok());
    group.bench_function("cache_hit", |b| {
        b.iter(|| {
            cached
                .validate(black_box(&f.token))
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });

    let jwks: JwkSet = serde_json::from_str(&f.jwks).unwrap();
    let key = DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[&f.issuer]);
    validation.set_audience(&[&f.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 30;
    group.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<Map<String, Value>>(black_box(&f.token), &key, &validation)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
