//! What validating a bound access token costs on the server.
//!
//! - `full_verification`: `JwtValidator` with its cache off: header, `typ`,
//!   key lookup, ES256 signature, claims, `cnf`.
//! - `cache_hit`: the same token again through the verified-token cache.
//! - `jsonwebtoken_decode`: the jsonwebtoken crate's `decode` of the same
//!   token with the same key and checks: an independent yardstick for
//!   `full_verification` (the crate itself does not use jsonwebtoken).
//! - `own_jws_verify`: the same token and checks through `proof::jws`
//!   alone, the JWS step `full_verification` is built on.
//! - `request_mtls`: one request through `CnfValidationLayer` with a
//!   certificate-bound token (from the cache) and its client certificate.
//! - `request_dpop`: one request through the layer with DPoP accepted, a
//!   DPoP-bound token (from the cache) and a fresh proof (made outside the
//!   timing): the proof's ES256 signature, its claims, the `jkt` binding,
//!   and the in-memory replay store.
//!
//! Targets: a cache hit under 2 µs; full verification within 1.2× of
//! jsonwebtoken's `decode`. The DPoP row is what a request pays for DPoP
//! over mTLS: mostly one ES256 verification, as the proof is never cached.

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http::{Method, Request, Response, StatusCode, Uri, header};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tower::{Layer as _, Service as _};
use tower_token_binding::Thumbprint;
use tower_token_binding::proof::PublicJwk;
use tower_token_binding::proof::dpop::{DPOP, DpopProofs, DpopVerifier};
use tower_token_binding::proof::jws::CompactJws;
use tower_token_binding::proof::{Algorithm as ProofAlgorithm, ProofKey};
use tower_token_binding::replay::MemoryReplayStore;
use tower_token_binding::server::PeerCertificate;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{
    CnfValidationLayer, JwksSource, JwtValidator, TokenProfile, ValidateToken,
};

const CERTIFICATE: &[u8] = b"client certificate";

struct Fixture {
    token: String,
    jwks: String,
    issuer: String,
    audience: String,
    proofs: DpopProofs,
    /// A token bound to `proofs`' key.
    dpop_token: String,
    /// The same binding, shaped as Microsoft Entra issues it (`typ` `JWT`,
    /// `azp`, `uti`, `roles`).
    entra_token: String,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        let claims = issuer.claims("svc", Some(Thumbprint::from_der(CERTIFICATE)));
        let proofs = DpopProofs::new(ProofKey::generate(ProofAlgorithm::Es256).unwrap());
        let mut dpop_claims = issuer.claims("svc", None);
        dpop_claims["cnf"] = serde_json::json!({ "jkt": proofs.thumbprint().to_string() });
        let mut entra = claims.clone();
        let entra_claims = entra.as_object_mut().unwrap();
        entra_claims.remove("client_id");
        let uti = entra_claims.remove("jti").unwrap();
        entra_claims.insert("azp".into(), "svc".into());
        entra_claims.insert("uti".into(), uti);
        entra_claims.insert("tid".into(), "72f988bf-86f1-41af-91ab-2d7cd011db47".into());
        entra_claims.insert("ver".into(), "2.0".into());
        entra_claims.insert("roles".into(), serde_json::json!(["Orders.Read"]));
        Fixture {
            entra_token: issuer.sign_with_typ(Some("JWT"), &entra).unwrap(),
            token: issuer.sign(&claims).unwrap(),
            jwks: issuer.jwks().to_string(),
            issuer: issuer.issuer().to_owned(),
            audience: issuer.audience().to_owned(),
            dpop_token: issuer.sign(&dpop_claims).unwrap(),
            proofs,
        }
    })
}

fn validator(f: &Fixture, cache: usize) -> JwtValidator {
    validator_with(f, cache, TokenProfile::rfc9068())
}

fn validator_with(f: &Fixture, cache: usize, profile: TokenProfile) -> JwtValidator {
    JwtValidator::builder()
        .issuer(&f.issuer)
        .audience(&f.audience)
        .jwks(JwksSource::from_json(&f.jwks).unwrap())
        .token_profile(profile)
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

    // The same work under a preset profile: an Entra-shaped token.
    let entra = validator_with(&f, 0, TokenProfile::entra());
    assert!(
        entra
            .validate(&f.entra_token)
            .now_or_never()
            .unwrap()
            .is_ok()
    );
    group.bench_function("full_verification_entra", |b| {
        b.iter(|| {
            entra
                .validate(black_box(&f.entra_token))
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

    let set: Value = serde_json::from_str(&f.jwks).unwrap();
    let own_key = PublicJwk::from_value(&set["keys"][0]).unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    group.bench_function("own_jws_verify", |b| {
        b.iter(|| {
            let jws = CompactJws::parse(black_box(&f.token)).unwrap();
            jws.verify(&own_key, &[ProofAlgorithm::Es256]).unwrap();
            let claims = jws.claims();
            let exp = claims["exp"].as_u64().unwrap();
            assert!(exp + 30 > now());
            assert!(claims["iss"] == f.issuer.as_str() && claims["aud"] == f.audience.as_str());
            assert!(claims.contains_key("sub"));
            black_box(jws.into_claims())
        })
    });

    // Whole requests through the layer, tokens from the validator's cache.
    let ok = tower::service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let url: Uri = "https://api.example/orders".parse().unwrap();
    let peer = PeerCertificate::new(CERTIFICATE.to_vec().into());
    let mut mtls = CnfValidationLayer::new(validator(&f, 10_000)).layer(ok);
    let mtls_request = || {
        let mut request = Request::get(url.clone())
            .header(header::AUTHORIZATION, format!("Bearer {}", f.token))
            .body(())
            .unwrap();
        request.extensions_mut().insert(peer.clone());
        request
    };
    let status = |response: Response<()>| response.status();
    assert_eq!(
        mtls.call(mtls_request())
            .now_or_never()
            .unwrap()
            .map(status),
        Ok(StatusCode::OK)
    );
    group.bench_function("request_mtls", |b| {
        b.iter_batched(
            mtls_request,
            |request| mtls.call(request).now_or_never().unwrap().unwrap(),
            BatchSize::SmallInput,
        )
    });

    // Room for every proof of the run: a full store would answer 503.
    let mut dpop = CnfValidationLayer::new(validator(&f, 10_000))
        .accept_dpop(DpopVerifier::new())
        .replay_store(MemoryReplayStore::with_capacity(4_000_000))
        .layer(ok);
    let dpop_request = || {
        let proof = f
            .proofs
            .proof(&Method::GET, &url, Some(&f.dpop_token))
            .unwrap();
        Request::get(url.clone())
            .header(header::AUTHORIZATION, format!("DPoP {}", f.dpop_token))
            .header(DPOP, proof)
            .body(())
            .unwrap()
    };
    assert_eq!(
        dpop.call(dpop_request())
            .now_or_never()
            .unwrap()
            .map(status),
        Ok(StatusCode::OK)
    );
    group.bench_function("request_dpop", |b| {
        b.iter_batched(
            dpop_request,
            |request| {
                let response = dpop.call(request).now_or_never().unwrap().unwrap();
                debug_assert_eq!(response.status(), StatusCode::OK);
                response
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
