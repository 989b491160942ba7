//! What the parsers of attacker input cost at their worst within their
//! caps, each next to an ordinary input measured in the same run.
//!
//! - `pop_plain`: `PopVerifier::verify` of an ES256 SHR for a GET with no
//!   `q` or `h` (the yardstick of the PoP rows).
//! - `pop_q_at_cap`: `q` listing the most names allowed (64) over a query
//!   of about 60 KB (5,000 more pairs): the worst case of the `q` check,
//!   which once cost names × pairs.
//! - `pop_h_at_cap`: `h` listing 64 headers of a request that has them.
//! - `dpop_plain` / `dpop_at_cap`: `DpopVerifier::verify` of an ordinary
//!   proof and of one padded to the 4 KiB cap with a long `jti`-like
//!   claim.
//! - `client_cert_valid` / `client_cert_junk_64k`: `Client-Cert` (RFC 9440)
//!   with the test certificate, and a 64 KiB byte sequence of base64 that
//!   is not a certificate.
//! - `xfcc_valid` / `xfcc_64k`: Envoy's header with one element, and 64 KiB
//!   of `Hash=` elements (the last taken).
//! - `escaped_pem_valid` / `escaped_pem_64k`: a URL-escaped PEM (nginx's
//!   `$ssl_client_escaped_cert`) of the test certificate, and a chain of
//!   escaped copies up to the 64 KiB cap, every section decoded.
//! - `jwt_plain` / `jwt_at_cap`: `JwtValidator` (cache off) on an ordinary
//!   certificate-bound access token, and on one at the 16 KiB cap
//!   (`max_token_length`) whose payload is about 1,000 small members, the
//!   worst case of the duplicate-member pass and the issuer peek; both
//!   verify.
//! - `jwt_untrusted_iss_plain` / `jwt_untrusted_iss_at_cap`: the same
//!   shapes naming an issuer that is not trusted, refused before any key is
//!   looked at.
//! - `jwt_typ_at_cap`: the large token with header `typ` `JWT` under the
//!   default profile, refused before the signature (the signature is checked
//!   at most once a second, to name the profile that fits).
//!
//! Each prints as criterion does; BENCHMARKS.md has the ratios.

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use tower_token_binding::Thumbprint;
use tower_token_binding::proof::dpop::{DpopProofs, DpopVerifier};
use tower_token_binding::proof::pop::{PopProofs, PopVerifier, header_claim, query_claim};
use tower_token_binding::proof::{Algorithm, ProofKey, jws};
use tower_token_binding::server::forwarded::{
    MAX_ESCAPED_PEM_LENGTH, XfccElement, parse_client_cert_header, parse_escaped_pem,
    xfcc_from_headers,
};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{
    DEFAULT_MAX_JWT_LENGTH, JwksSource, JwtValidator, TokenErrorKind, ValidateToken,
};

const CERT_PEM: &[u8] = include_bytes!("../tests/data/client.pem");

fn access_token() -> String {
    "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.".to_owned() + &"a".repeat(430)
}

fn headers_of(host: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, HeaderValue::from_str(host).unwrap());
    headers
}

fn pop(c: &mut Criterion) {
    let mut group = c.benchmark_group("hostile_input");
    let token = access_token();
    let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let verifier = PopVerifier::new();
    let now = SystemTime::now();
    let cap = PopVerifier::DEFAULT_MAX_COVERED_NAMES;

    let plain: Uri = "https://api.example/items".parse().unwrap();
    let headers = headers_of("api.example");
    let shr = shrs.sign(&Method::GET, &plain, &token).unwrap();
    verifier
        .verify(&shr, &Method::GET, &plain, &headers, None, now)
        .unwrap();
    group.bench_function("pop_plain", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&shr), &Method::GET, &plain, &headers, None, now)
                .unwrap()
        })
    });

    let covered: Vec<String> = (0..cap).map(|i| format!("n{i}=v")).collect();
    let query = covered
        .iter()
        .cloned()
        .chain((0..5_000).map(|i| format!("junk{i}=x")))
        .collect::<Vec<_>>()
        .join("&");
    let long: Uri = format!("https://api.example/items?{query}")
        .parse()
        .unwrap();
    // q over the 64 names only (the signer would cover every pair).
    let shr = {
        let key = shrs.key();
        let jwk: serde_json::Value = serde_json::from_str(key.public_jwk().as_json()).unwrap();
        let ts = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let payload = serde_json::json!({
            "at": token, "ts": ts, "m": "GET", "u": "api.example", "p": "/items",
            "nonce": "bench", "cnf": {"jwk": jwk},
            "q": query_claim(&covered.join("&")),
        });
        let header = jws::encode_segment(br#"{"alg":"ES256","typ":"pop"}"#);
        jws::sign(key, &header, payload.to_string().as_bytes()).unwrap()
    };
    verifier
        .verify(&shr, &Method::GET, &long, &headers, None, now)
        .unwrap();
    group.bench_function("pop_q_at_cap", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&shr), &Method::GET, &long, &headers, None, now)
                .unwrap()
        })
    });

    let mut many = headers_of("api.example");
    let names: Vec<HeaderName> = (0..cap)
        .map(|i| HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap())
        .collect();
    for name in &names {
        many.insert(
            name.clone(),
            HeaderValue::from_static("a value of some length"),
        );
    }
    assert!(header_claim(&many, &names).is_some());
    let shr = shrs
        .signer(&Method::GET, &plain, &token)
        .headers(&many, &names)
        .at_time(now)
        .sign()
        .unwrap();
    verifier
        .verify(&shr, &Method::GET, &plain, &many, None, now)
        .unwrap();
    group.bench_function("pop_h_at_cap", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&shr), &Method::GET, &plain, &many, None, now)
                .unwrap()
        })
    });

    // DPoP: an ordinary proof, and one at the 4 KiB cap.
    let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let dpop = DpopVerifier::new();
    // Made by hand with `iat` at `now`, the time every check here uses.
    let key = proofs.key();
    let jwk: serde_json::Value = serde_json::from_str(key.public_jwk().as_json()).unwrap();
    let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let header = jws::encode_segment(header.to_string().as_bytes());
    let with_pad = |pad: usize| {
        let mut claims = serde_json::json!({
            "jti": "bench", "htm": "GET", "htu": "https://api.example/items",
            "iat": now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            "ath": tower_token_binding::proof::dpop::access_token_hash(&token),
        });
        if pad > 0 {
            claims["pad"] = serde_json::json!("p".repeat(pad));
        }
        jws::sign(key, &header, claims.to_string().as_bytes()).unwrap()
    };
    let proof = with_pad(0);
    group.bench_function("dpop_plain", |b| {
        b.iter(|| {
            dpop.verify(black_box(&proof), &Method::GET, &plain, Some(&token), now)
                .unwrap()
        })
    });
    // The longest proof within the cap.
    let padded = {
        let mut pad = 1;
        while with_pad(pad + 1).len() <= 4096 {
            pad += 1;
        }
        with_pad(pad)
    };
    assert!(padded.len() <= 4096, "{}", padded.len());
    dpop.verify(&padded, &Method::GET, &plain, Some(&token), now)
        .unwrap();
    group.bench_function("dpop_at_cap", |b| {
        b.iter(|| {
            dpop.verify(black_box(&padded), &Method::GET, &plain, Some(&token), now)
                .unwrap()
        })
    });

    // Client-Cert: the test certificate, and 64 KiB that is not one.
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(CERT_PEM)
        .map(|cert: rustls_pki_types::CertificateDer<'static>| cert.to_vec())
        .unwrap();
    use base64::Engine as _;
    let valid = format!(
        ":{}:",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    parse_client_cert_header(&valid).unwrap();
    group.bench_function("client_cert_valid", |b| {
        b.iter(|| parse_client_cert_header(black_box(&valid)).unwrap())
    });
    let junk = format!(":{}:", "A".repeat(64 * 1024));
    assert!(parse_client_cert_header(&junk).is_err());
    group.bench_function("client_cert_junk_64k", |b| {
        b.iter(|| parse_client_cert_header(black_box(&junk)).unwrap_err())
    });

    // XFCC: one element, and 64 KiB of elements.
    let hash: String = {
        use sha2::Digest as _;
        sha2::Sha256::digest(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let mut one = HeaderMap::new();
    let pem_escaped: String = percent_encode(CERT_PEM);
    one.insert(
        "x-forwarded-client-cert",
        HeaderValue::from_str(&format!("Hash={hash};Cert=\"{pem_escaped}\"")).unwrap(),
    );
    xfcc_from_headers(&one, XfccElement::Only).unwrap().unwrap();
    group.bench_function("xfcc_valid", |b| {
        b.iter(|| xfcc_from_headers(black_box(&one), XfccElement::Only).unwrap())
    });
    let element = format!("Hash={hash}");
    let count = 64 * 1024 / (element.len() + 1);
    let long = vec![element; count].join(",");
    let mut many = HeaderMap::new();
    many.insert(
        "x-forwarded-client-cert",
        HeaderValue::from_str(&long).unwrap(),
    );
    let _ = xfcc_from_headers(&many, XfccElement::Last);
    group.bench_function("xfcc_64k", |b| {
        b.iter(|| xfcc_from_headers(black_box(&many), XfccElement::Last))
    });

    let escaped = percent_encode(CERT_PEM);
    parse_escaped_pem(&escaped).unwrap().unwrap();
    group.bench_function("escaped_pem_valid", |b| {
        b.iter(|| parse_escaped_pem(black_box(&escaped)).unwrap())
    });
    let copies = MAX_ESCAPED_PEM_LENGTH / escaped.len();
    let chain = escaped.repeat(copies);
    assert!(chain.len() <= MAX_ESCAPED_PEM_LENGTH);
    parse_escaped_pem(&chain).unwrap().unwrap();
    group.bench_function("escaped_pem_64k", |b| {
        b.iter(|| parse_escaped_pem(black_box(&chain)).unwrap())
    });
    group.finish();
}

/// Percent-encodes every byte outside the unreserved set, as Envoy does.
fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(b) {
                char::from(*b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The JWT validator's early passes at the token length cap.
fn jwt(c: &mut Criterion) {
    let mut group = c.benchmark_group("hostile_input");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (validator, tokens) = runtime.block_on(async {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        let validator = JwtValidator::builder()
            .issuer(issuer.issuer())
            .audience(issuer.audience())
            .jwks(JwksSource::from_json(&issuer.jwks().to_string()).unwrap())
            .cache_capacity(0)
            .build()
            .unwrap();
        let plain = issuer.claims("svc", Some(Thumbprint::from_der(b"certificate")));
        // Small members until the token is just under the cap.
        let mut large = plain.clone();
        let mut i = 0;
        while issuer.sign(&large).unwrap().len() < DEFAULT_MAX_JWT_LENGTH - 16 {
            large[format!("m{i}")] = serde_json::json!(i);
            i += 1;
        }
        large
            .as_object_mut()
            .unwrap()
            .remove(&format!("m{}", i - 1));
        let untrusted = |claims: &serde_json::Value| {
            let mut claims = claims.clone();
            claims["iss"] = serde_json::json!("https://untrusted.example");
            issuer.sign(&claims).unwrap()
        };
        let tokens = [
            ("jwt_plain", issuer.sign(&plain).unwrap(), None),
            ("jwt_at_cap", issuer.sign(&large).unwrap(), None),
            (
                "jwt_untrusted_iss_plain",
                untrusted(&plain),
                Some(TokenErrorKind::WrongIssuer),
            ),
            (
                "jwt_untrusted_iss_at_cap",
                untrusted(&large),
                Some(TokenErrorKind::WrongIssuer),
            ),
            (
                "jwt_typ_at_cap",
                issuer.sign_with_typ(Some("JWT"), &large).unwrap(),
                Some(TokenErrorKind::WrongType),
            ),
        ];
        (validator, tokens)
    });
    for (name, token, refusal) in &tokens {
        assert!(token.len() <= DEFAULT_MAX_JWT_LENGTH, "{name}");
        let outcome = validator.validate(token).now_or_never().unwrap();
        assert_eq!(outcome.err().map(|e| e.kind()), *refusal, "{name}");
        group.bench_function(*name, |b| {
            b.iter(|| validator.validate(black_box(token)).now_or_never().unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, pop, jwt);
criterion_main!(benches);
