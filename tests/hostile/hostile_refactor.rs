//! A hostile review of the refactor that gave the DPoP and SHR verifiers
//! one core (`proof::verify`), the forwarded-certificate errors one
//! `Detail`, the crate one clock and `JwtValidatorBuilder::algorithms` the
//! crate's own `Algorithm`. Each test tries one attack against what moved
//! and shows it refused: caps and strict checks still before any signature
//! work, claim types still strict, the time windows' edges where they
//! were, no secret in `Debug` or `Display`, forwarded headers parsed as
//! before.
#![cfg(feature = "test-util")]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, Uri};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tower_token_binding::Thumbprint;
use tower_token_binding::proof::dpop::{DpopErrorKind, DpopVerifier, access_token_hash};
use tower_token_binding::proof::pop::{PopErrorKind, PopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey, jws};
use tower_token_binding::server::forwarded::{
    EscapedPemErrorKind, X_FORWARDED_CLIENT_CERT, XfccElement, XfccErrorKind, parse_escaped_pem,
    parse_xfcc_header, xfcc_from_headers,
};
use tower_token_binding::validation::{JwksSource, JwtValidator};

const CERT: &str = include_str!("../data/client.pem");
const CERT_X5T: &str = include_str!("../data/client.x5t-s256");

/// The access token the proofs carry or hash: it must never be shown.
const TOKEN: &str = "SECRET-ACCESS-TOKEN-e30.eyJzdWIiOiJ4In0.c2ln";

/// When every proof here is made and checked: a fixed time.
const MADE: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(MADE)
}

fn key() -> ProofKey {
    ProofKey::generate(Algorithm::Es256).unwrap()
}

fn jwk_of(key: &ProofKey) -> Value {
    serde_json::from_str(key.public_jwk().as_json()).unwrap()
}

/// A JWS with the header and claims given as JSON text, exactly as
/// written (so that duplicate members survive), signed by `key`.
fn sign_raw(key: &ProofKey, header: &str, claims: &str) -> String {
    jws::sign(
        key,
        &jws::encode_segment(header.as_bytes()),
        claims.as_bytes(),
    )
    .unwrap()
}

fn sign(key: &ProofKey, header: &Value, claims: &Value) -> String {
    sign_raw(key, &header.to_string(), &claims.to_string())
}

/// `compact` with its signature replaced by zeros of the same length: any
/// check that reports something else than a bad signature ran before the
/// signature was checked.
fn unsigned(compact: &str) -> String {
    let (signed, signature) = compact.rsplit_once('.').unwrap();
    let len = signature.len();
    format!("{signed}.{}", "A".repeat(len))
}

fn resource() -> Uri {
    "https://api.example/r".parse().unwrap()
}

// --- DPoP -----------------------------------------------------------------

fn dpop_header(key: &ProofKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk_of(key)})
}

fn dpop_claims(iat: Value) -> Value {
    json!({
        "jti": "jti-1",
        "htm": "GET",
        "htu": "https://api.example/r",
        "iat": iat,
        "ath": access_token_hash(TOKEN),
    })
}

fn dpop_verify(verifier: &DpopVerifier, proof: &str) -> Result<(), DpopErrorKind> {
    verifier
        .verify(proof, &Method::GET, &resource(), Some(TOKEN), now())
        .map(drop)
        .map_err(|e| e.kind())
}

fn dpop_with(key: &ProofKey, header: &Value, claims: &Value) -> Result<(), DpopErrorKind> {
    dpop_verify(&DpopVerifier::new(), &sign(key, header, claims))
}

#[test]
fn a_good_dpop_proof_passes_and_a_bad_signature_is_refused() {
    let key = key();
    let proof = sign(&key, &dpop_header(&key), &dpop_claims(json!(MADE)));
    assert_eq!(dpop_verify(&DpopVerifier::new(), &proof), Ok(()));
    assert_eq!(
        dpop_verify(&DpopVerifier::new(), &unsigned(&proof)),
        Err(DpopErrorKind::BadSignature)
    );
}

/// Each check the shared core makes before the signature still comes
/// first for DPoP: a proof failing it with a forged signature is refused
/// for it, not for the signature.
#[test]
fn dpop_checks_before_the_signature_still_come_first() {
    let key = key();
    let jwk = jwk_of(&key);
    let claims = dpop_claims(json!(MADE)).to_string();
    let cases: Vec<(String, String, DpopErrorKind)> = vec![
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}).to_string(),
            format!(r#"{{"jti":"a","jti":"b","htm":"GET","htu":"https://api.example/r","iat":{MADE}}}"#),
            DpopErrorKind::DuplicateMember,
        ),
        (
            format!(r#"{{"typ":"dpop+jwt","typ":"dpop+jwt","alg":"ES256","jwk":{jwk}}}"#),
            claims.clone(),
            DpopErrorKind::DuplicateMember,
        ),
        (
            json!({"typ": "DPoP+JWT", "alg": "ES256", "jwk": jwk}).to_string(),
            claims.clone(),
            DpopErrorKind::WrongType,
        ),
        (
            json!({"typ": "dpop+jwt ", "alg": "ES256", "jwk": jwk}).to_string(),
            claims.clone(),
            DpopErrorKind::WrongType,
        ),
        (
            json!({"alg": "ES256", "jwk": jwk}).to_string(),
            claims.clone(),
            DpopErrorKind::WrongType,
        ),
        (
            json!({"typ": ["dpop+jwt"], "alg": "ES256", "jwk": jwk}).to_string(),
            claims.clone(),
            DpopErrorKind::WrongType,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk}).to_string(),
            claims.clone(),
            DpopErrorKind::DisallowedAlgorithm,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}).to_string(),
            claims.clone(),
            DpopErrorKind::DisallowedAlgorithm,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES512", "jwk": jwk}).to_string(),
            claims.clone(),
            DpopErrorKind::DisallowedAlgorithm,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"d": "AAAA", "kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"]}}).to_string(),
            claims.clone(),
            DpopErrorKind::InvalidKey,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}).to_string(),
            claims.clone(),
            DpopErrorKind::InvalidKey,
        ),
        (
            json!({"typ": "dpop+jwt", "alg": "ES256"}).to_string(),
            claims.clone(),
            DpopErrorKind::InvalidKey,
        ),
        (
            format!(
                r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{{"kty":"EC","crv":"P-256","x":{x},"x":{x},"y":{y}}}}}"#,
                x = jwk["x"],
                y = jwk["y"]
            ),
            claims.clone(),
            DpopErrorKind::DuplicateMember,
        ),
    ];
    let verifier = DpopVerifier::new();
    for (header, claims, expected) in cases {
        let proof = unsigned(&sign_raw(&key, &header, &claims));
        assert_eq!(
            dpop_verify(&verifier, &proof),
            Err(expected),
            "{header} {claims}"
        );
    }
}

/// An algorithm left out of the allow-list is refused before the key or
/// the signature is looked at, and so is a proof over `max_size`.
#[test]
fn dpop_allow_list_and_size_cap_come_before_the_signature() {
    let key = key();
    let proof = unsigned(&sign(&key, &dpop_header(&key), &dpop_claims(json!(MADE))));
    let eddsa_only = DpopVerifier::builder()
        .algorithms([Algorithm::EdDsa])
        .build();
    assert_eq!(
        dpop_verify(&eddsa_only, &proof),
        Err(DpopErrorKind::DisallowedAlgorithm)
    );
    let none = DpopVerifier::builder().algorithms([]).build();
    assert_eq!(
        dpop_verify(&none, &proof),
        Err(DpopErrorKind::DisallowedAlgorithm)
    );
    let small = DpopVerifier::builder().max_size(proof.len() - 1).build();
    assert_eq!(dpop_verify(&small, &proof), Err(DpopErrorKind::TooLarge));
    let exact = DpopVerifier::builder().max_size(proof.len()).build();
    assert_eq!(
        dpop_verify(&exact, &proof),
        Err(DpopErrorKind::BadSignature)
    );
    // A megabyte of anything is refused by its length (what that costs at
    // worst is a row of the hostile_input bench, not a test).
    let huge = format!("{}.{}.{}", "e".repeat(1 << 20), "e", "e");
    assert_eq!(
        dpop_verify(&DpopVerifier::new(), &huge),
        Err(DpopErrorKind::TooLarge)
    );
}

/// `iat` as a string, a boolean, negative, null, or an object is not a
/// NumericDate; a float is (whole seconds or not); a huge one is in the
/// future, without a panic in the window or the replay expiry.
#[test]
fn dpop_iat_types_stay_strict() {
    let key = key();
    let header = dpop_header(&key);
    for iat in [
        json!(MADE.to_string()),
        json!(true),
        json!(null),
        json!(-1),
        json!(-0.5),
        json!(i64::MIN),
        json!({"t": MADE}),
        json!([MADE]),
    ] {
        let verdict = dpop_with(&key, &header, &dpop_claims(iat.clone()));
        assert_eq!(verdict, Err(DpopErrorKind::MissingClaim), "iat {iat}");
    }
    // Raw JSON numbers serde_json keeps as floats.
    for iat in ["1e400", "1.8e9", "1800000000.9", "-0.0", "18e8"] {
        let claims = format!(
            r#"{{"jti":"j","htm":"GET","htu":"https://api.example/r","iat":{iat},"ath":"{}"}}"#,
            access_token_hash(TOKEN)
        );
        let proof = sign_raw(&key, &header.to_string(), &claims);
        let verdict = dpop_verify(&DpopVerifier::new(), &proof);
        match iat {
            // 1e400 does not parse as JSON: malformed.
            "1e400" => assert_eq!(verdict, Err(DpopErrorKind::Malformed), "iat {iat}"),
            "-0.0" => assert_eq!(verdict, Err(DpopErrorKind::IatTooOld), "iat {iat}"),
            _ => assert_eq!(verdict, Ok(()), "iat {iat}"),
        }
    }
    for iat in [json!(u64::MAX), json!(1e300), json!(f64::MAX)] {
        let verdict = dpop_with(&key, &header, &dpop_claims(iat.clone()));
        assert_eq!(verdict, Err(DpopErrorKind::IatInFuture), "iat {iat}");
    }
    // With the widest window, the largest `iat` passes: its expiry must
    // not overflow.
    let wide = DpopVerifier::builder()
        .max_age(Duration::MAX)
        .leeway(Duration::MAX)
        .build();
    let proof = sign(&key, &header, &dpop_claims(json!(u64::MAX)));
    let verified = wide
        .verify(&proof, &Method::GET, &resource(), Some(TOKEN), now())
        .unwrap();
    let _ = verified.replay_expires_at();
    let _ = verified.iat();
    assert!(verified.is_acceptable_at(now()));
    let proof = sign(&key, &header, &dpop_claims(json!(0)));
    let verified = wide
        .verify(&proof, &Method::GET, &resource(), Some(TOKEN), now())
        .unwrap();
    assert!(verified.is_acceptable_at(now()));
}

/// The window's edges have not moved: exactly `max_age` old passes, a
/// second (or a nanosecond) more does not; exactly `leeway` ahead passes, a
/// second more does not. The defaults are 60 s and 5 s.
#[test]
fn dpop_window_edges_are_where_they_were() {
    let key = key();
    let header = dpop_header(&key);
    let verifier = DpopVerifier::new();
    let at = |iat: u64, now: SystemTime| {
        let proof = sign(&key, &header, &dpop_claims(json!(iat)));
        verifier
            .verify(&proof, &Method::GET, &resource(), Some(TOKEN), now)
            .map(drop)
            .map_err(|e| e.kind())
    };
    assert_eq!(at(MADE - 60, now()), Ok(()));
    assert_eq!(at(MADE - 61, now()), Err(DpopErrorKind::IatTooOld));
    assert_eq!(
        at(MADE - 60, now() + Duration::from_nanos(1)),
        Err(DpopErrorKind::IatTooOld)
    );
    assert_eq!(at(MADE + 5, now()), Ok(()));
    assert_eq!(at(MADE + 6, now()), Err(DpopErrorKind::IatInFuture));
    assert_eq!(at(0, now()), Err(DpopErrorKind::IatTooOld));
    // A clock before 1970 makes no panic.
    let _ = at(MADE, UNIX_EPOCH - Duration::from_secs(86_400));
    // The verified proof ages out where the window ends.
    let proof = sign(&key, &header, &dpop_claims(json!(MADE)));
    let verified = verifier
        .verify(&proof, &Method::GET, &resource(), Some(TOKEN), now())
        .unwrap();
    assert!(verified.is_acceptable_at(now() + Duration::from_secs(60)));
    assert!(!verified.is_acceptable_at(now() + Duration::from_secs(60) + Duration::from_nanos(1)));
    assert!(verified.replay_expires_at() > now() + Duration::from_secs(60));
}

/// `htm` is the method, case-sensitively; `htu` names this resource; the
/// string claims must be strings; `jti` is capped; `ath` hashes the token.
#[test]
fn dpop_string_claims_htm_htu_and_ath_stay_strict() {
    let key = key();
    let header = dpop_header(&key);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = dpop_claims(json!(MADE));
        change(&mut claims);
        dpop_with(&key, &header, &claims)
    };
    assert_eq!(
        with(&|c| c["htm"] = json!("get")),
        Err(DpopErrorKind::MethodMismatch)
    );
    assert_eq!(
        with(&|c| c["htm"] = json!(["GET"])),
        Err(DpopErrorKind::MissingClaim)
    );
    assert_eq!(
        with(&|c| c["htu"] = json!("https://api.example/r/../admin")),
        Err(DpopErrorKind::UriMismatch)
    );
    assert_eq!(
        with(&|c| c["htu"] = json!("https://api.example.evil/r")),
        Err(DpopErrorKind::UriMismatch)
    );
    assert_eq!(
        with(&|c| c["htu"] = json!("http://api.example/r")),
        Err(DpopErrorKind::UriMismatch)
    );
    assert_eq!(
        with(&|c| c["htu"] = json!({"u": "https://api.example/r"})),
        Err(DpopErrorKind::MissingClaim)
    );
    assert_eq!(
        with(&|c| c["jti"] = json!("")),
        Err(DpopErrorKind::MissingClaim)
    );
    assert_eq!(
        with(&|c| c["jti"] = json!("j".repeat(257))),
        Err(DpopErrorKind::MissingClaim)
    );
    assert_eq!(with(&|c| c["jti"] = json!("j".repeat(256))), Ok(()));
    assert_eq!(
        with(&|c| c["jti"] = json!(7)),
        Err(DpopErrorKind::MissingClaim)
    );
    assert_eq!(
        with(&|c| c["ath"] = json!(access_token_hash("another token"))),
        Err(DpopErrorKind::AthMismatch)
    );
    assert_eq!(
        with(&|c| c.as_object_mut().unwrap().remove("ath").map(drop).unwrap()),
        Err(DpopErrorKind::MissingClaim)
    );
    // The request's own path must be in normal form.
    let proof = sign(&key, &header, &dpop_claims(json!(MADE)));
    let odd: Uri = "https://api.example/x/../r".parse().unwrap();
    let verdict = DpopVerifier::new().verify(&proof, &Method::GET, &odd, Some(TOKEN), now());
    assert_eq!(verdict.unwrap_err().kind(), DpopErrorKind::UriMismatch);
}

/// Neither a refusal nor a verified proof shows the access token; a
/// refused key's private member is not shown either.
#[test]
fn dpop_errors_and_proofs_show_no_token_or_key() {
    let key = key();
    let jwk = jwk_of(&key);
    let private = "PRIVATE-MEMBER-VALUE-abcdefghijklmnop";
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"], "d": private}});
    let proof = sign(&key, &header, &dpop_claims(json!(MADE)));
    let error = DpopVerifier::new()
        .verify(&proof, &Method::GET, &resource(), Some(TOKEN), now())
        .unwrap_err();
    assert_eq!(error.kind(), DpopErrorKind::InvalidKey);
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(private), "{shown}");
    let mut claims = dpop_claims(json!(MADE));
    claims["ath"] = json!(access_token_hash("other"));
    let proof = sign(&key, &dpop_header(&key), &claims);
    let error = DpopVerifier::new()
        .verify(&proof, &Method::GET, &resource(), Some(TOKEN), now())
        .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    let proof = sign(&key, &dpop_header(&key), &dpop_claims(json!(MADE)));
    let verified = DpopVerifier::new()
        .verify(&proof, &Method::GET, &resource(), Some(TOKEN), now())
        .unwrap();
    let shown = format!("{verified:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
}

// --- SHR ------------------------------------------------------------------

fn shr_header() -> Value {
    json!({"typ": "pop", "alg": "ES256"})
}

fn shr_payload(key: &ProofKey, ts: Value) -> Value {
    json!({
        "at": TOKEN,
        "ts": ts,
        "m": "GET",
        "u": "api.example",
        "p": "/r",
        "nonce": "nonce-1",
        "cnf": {"jwk": jwk_of(key)},
    })
}

fn shr_verify_at(verifier: &PopVerifier, shr: &str, now: SystemTime) -> Result<(), PopErrorKind> {
    verifier
        .verify(shr, &Method::GET, &resource(), &HeaderMap::new(), None, now)
        .map(drop)
        .map_err(|e| e.kind())
}

fn shr_verify(verifier: &PopVerifier, shr: &str) -> Result<(), PopErrorKind> {
    shr_verify_at(verifier, shr, now())
}

#[test]
fn a_good_shr_passes_and_a_bad_signature_is_refused() {
    let key = key();
    let shr = sign(&key, &shr_header(), &shr_payload(&key, json!(MADE)));
    assert_eq!(shr_verify(&PopVerifier::new(), &shr), Ok(()));
    assert_eq!(
        shr_verify(&PopVerifier::new(), &unsigned(&shr)),
        Err(PopErrorKind::BadSignature)
    );
}

/// Each check before the signature still comes first for SHRs, the
/// `q`/`h` caps included.
#[test]
fn shr_checks_before_the_signature_still_come_first() {
    let key = key();
    let jwk = jwk_of(&key);
    let payload = shr_payload(&key, json!(MADE));
    let many: Vec<String> = (0..65).map(|i| format!("n{i}")).collect();
    let with = |name: &str, value: Value| {
        let mut p = payload.clone();
        p[name] = value;
        p.to_string()
    };
    let header = shr_header().to_string();
    let cases: Vec<(String, String, PopErrorKind)> = vec![
        (
            header.clone(),
            with("q", json!([many, "hash"])),
            PopErrorKind::TooManyNames,
        ),
        (
            header.clone(),
            with("h", json!([many, "hash"])),
            PopErrorKind::TooManyNames,
        ),
        (
            header.clone(),
            with("q", json!([many, 5])),
            PopErrorKind::TooManyNames,
        ),
        (
            header.clone(),
            format!(r#"{{"ts":{MADE},"ts":{MADE},"at":"x"}}"#),
            PopErrorKind::DuplicateMember,
        ),
        (
            r#"{"typ":"pop","alg":"ES256","alg":"ES256"}"#.to_owned(),
            payload.to_string(),
            PopErrorKind::DuplicateMember,
        ),
        (
            json!({"typ": "jwt", "alg": "ES256"}).to_string(),
            payload.to_string(),
            PopErrorKind::WrongType,
        ),
        (
            json!({"alg": "ES256"}).to_string(),
            payload.to_string(),
            PopErrorKind::WrongType,
        ),
        (
            json!({"typ": "pop", "alg": "none"}).to_string(),
            payload.to_string(),
            PopErrorKind::DisallowedAlgorithm,
        ),
        (
            json!({"typ": "pop", "alg": "HS256"}).to_string(),
            payload.to_string(),
            PopErrorKind::DisallowedAlgorithm,
        ),
        (
            json!({"typ": "pop", "alg": "EdDSA"}).to_string(),
            payload.to_string(),
            PopErrorKind::DisallowedAlgorithm,
        ),
        (
            header.clone(),
            with(
                "cnf",
                json!({"jwk": {"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"], "d": "AAAA"}}),
            ),
            PopErrorKind::InvalidKey,
        ),
        (
            header.clone(),
            with("cnf", json!({"jwk": {"kty": "oct", "k": "c2VjcmV0"}})),
            PopErrorKind::InvalidKey,
        ),
        (
            header.clone(),
            with("cnf", json!({"kid": "x"})),
            PopErrorKind::MissingClaim,
        ),
        (
            header.clone(),
            with("cnf", json!("x")),
            PopErrorKind::MissingClaim,
        ),
        (
            json!({"typ": "pop", "alg": "ES256", "kid": "not-the-thumbprint"}).to_string(),
            payload.to_string(),
            PopErrorKind::KidMismatch,
        ),
        (
            json!({"typ": "pop", "alg": "ES256", "kid": 1}).to_string(),
            payload.to_string(),
            PopErrorKind::KidMismatch,
        ),
    ];
    let verifier = PopVerifier::new();
    for (header, payload, expected) in cases {
        let shr = unsigned(&sign_raw(&key, &header, &payload));
        assert_eq!(
            shr_verify(&verifier, &shr),
            Err(expected),
            "{header} {payload}"
        );
    }
    // The size cap, exactly.
    let shr = unsigned(&sign(&key, &shr_header(), &payload));
    let small = PopVerifier::builder().max_size(shr.len() - 1).build();
    assert_eq!(shr_verify(&small, &shr), Err(PopErrorKind::TooLarge));
    let exact = PopVerifier::builder().max_size(shr.len()).build();
    assert_eq!(shr_verify(&exact, &shr), Err(PopErrorKind::BadSignature));
    let huge = format!("{}.e.e", "e".repeat(1 << 20));
    assert_eq!(
        shr_verify(&PopVerifier::new(), &huge),
        Err(PopErrorKind::TooLarge)
    );
    // `typ` is case-insensitive for SHRs (as Microsoft's libraries write
    // it), not for DPoP: the shared core kept each scheme's own rule.
    let shr = sign(
        &key,
        &json!({"typ": "POP", "alg": "ES256"}),
        &shr_payload(&key, json!(MADE)),
    );
    assert_eq!(shr_verify(&PopVerifier::new(), &shr), Ok(()));
}

/// `ts` is whole seconds: a string, float, negative or huge one does not
/// pass, nor panic.
#[test]
fn shr_ts_types_stay_strict() {
    let key = key();
    for ts in [
        json!(MADE.to_string()),
        json!(MADE as f64 + 0.5),
        json!(-1),
        json!(null),
        json!(true),
        json!([MADE]),
    ] {
        let shr = sign(&key, &shr_header(), &shr_payload(&key, ts.clone()));
        assert_eq!(
            shr_verify(&PopVerifier::new(), &shr),
            Err(PopErrorKind::MissingClaim),
            "ts {ts}"
        );
    }
    // `1.8e9` is a float in JSON, though a whole number: refused too.
    let payload = shr_payload(&key, json!(0))
        .to_string()
        .replace(r#""ts":0"#, r#""ts":1.8e9"#);
    let shr = sign_raw(&key, &shr_header().to_string(), &payload);
    assert_eq!(
        shr_verify(&PopVerifier::new(), &shr),
        Err(PopErrorKind::MissingClaim)
    );
    let shr = sign(&key, &shr_header(), &shr_payload(&key, json!(u64::MAX)));
    assert_eq!(
        shr_verify(&PopVerifier::new(), &shr),
        Err(PopErrorKind::InFuture)
    );
    let wide = PopVerifier::builder()
        .max_age(Duration::MAX)
        .leeway(Duration::MAX)
        .build();
    let verified = wide
        .verify(
            &shr,
            &Method::GET,
            &resource(),
            &HeaderMap::new(),
            None,
            now(),
        )
        .unwrap();
    let _ = verified.replay_expires_at();
    let _ = verified.ts();
    let _ = verified.replay_key();
}

/// The SHR window: 5 minutes back, 5 s ahead by default, edges included.
#[test]
fn shr_window_edges_are_where_they_were() {
    let key = key();
    let at = |ts: u64, now: SystemTime| {
        let shr = sign(&key, &shr_header(), &shr_payload(&key, json!(ts)));
        shr_verify_at(&PopVerifier::new(), &shr, now)
    };
    assert_eq!(at(MADE - 300, now()), Ok(()));
    assert_eq!(at(MADE - 301, now()), Err(PopErrorKind::TooOld));
    assert_eq!(
        at(MADE - 300, now() + Duration::from_nanos(1)),
        Err(PopErrorKind::TooOld)
    );
    assert_eq!(at(MADE + 5, now()), Ok(()));
    assert_eq!(at(MADE + 6, now()), Err(PopErrorKind::InFuture));
    let _ = at(MADE, UNIX_EPOCH - Duration::from_secs(86_400));
    // `max_age` and the deprecated `lifetime` are one setting.
    let verifier = PopVerifier::builder()
        .max_age(Duration::from_secs(10))
        .build();
    assert_eq!(verifier.max_age(), Duration::from_secs(10));
    let shr = sign(&key, &shr_header(), &shr_payload(&key, json!(MADE - 11)));
    assert_eq!(shr_verify(&verifier, &shr), Err(PopErrorKind::TooOld));
}

/// The string claims and the `q`/`h` lists after the signature.
#[test]
fn shr_string_claims_and_covered_lists_stay_strict() {
    let key = key();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut payload = shr_payload(&key, json!(MADE));
        change(&mut payload);
        let shr = sign(&key, &shr_header(), &payload);
        shr_verify(&PopVerifier::new(), &shr)
    };
    assert_eq!(
        with(&|p| p["at"] = json!("")),
        Err(PopErrorKind::MissingClaim)
    );
    assert_eq!(
        with(&|p| p["at"] = json!({"token": TOKEN})),
        Err(PopErrorKind::MissingClaim)
    );
    assert_eq!(
        with(&|p| p["nonce"] = json!("")),
        Err(PopErrorKind::MissingClaim)
    );
    assert_eq!(
        with(&|p| p["nonce"] = json!("n".repeat(257))),
        Err(PopErrorKind::MissingClaim)
    );
    assert_eq!(
        with(&|p| p["m"] = json!(1)),
        Err(PopErrorKind::MissingClaim)
    );
    assert_eq!(with(&|p| p["m"] = json!("get")), Ok(()));
    assert_eq!(
        with(&|p| p["m"] = json!("POST")),
        Err(PopErrorKind::MethodMismatch)
    );
    assert_eq!(
        with(&|p| p["u"] = json!("user@api.example")),
        Err(PopErrorKind::HostMismatch)
    );
    assert_eq!(
        with(&|p| p["u"] = json!("api.example:8443")),
        Err(PopErrorKind::HostMismatch)
    );
    assert_eq!(
        with(&|p| p["p"] = json!("/r/../admin")),
        Err(PopErrorKind::PathMismatch)
    );
    // `q` naming a parameter twice (once escaped), or not a list.
    assert_eq!(
        with(&|p| p["q"] = json!([["a", "%61"], "hash"])),
        Err(PopErrorKind::QueryMismatch)
    );
    assert_eq!(
        with(&|p| p["q"] = json!({"0": ["a"], "1": "hash"})),
        Err(PopErrorKind::MissingClaim)
    );
    assert_eq!(
        with(&|p| p["h"] = json!([["X-A", "x-a"], "hash"])),
        Err(PopErrorKind::HeaderMismatch)
    );
    assert_eq!(
        with(&|p| p["h"] = json!([["x-a"], "hash", "extra"])),
        Err(PopErrorKind::MissingClaim)
    );
    assert_eq!(
        with(&|p| p["b"] = json!("hash")),
        Err(PopErrorKind::BodyMismatch)
    );
    // Exactly the cap of names is not refused for its count.
    let names: Vec<String> = (0..64).map(|i| format!("n{i}")).collect();
    let verdict = with(&|p| p["q"] = json!([names, "hash"]));
    assert_eq!(verdict, Err(PopErrorKind::QueryMismatch));
}

/// A refused SHR's error and a verified one's `Debug` never show the
/// access token it carries.
#[test]
fn shr_errors_and_verified_requests_show_no_token() {
    let key = key();
    for ts in [MADE - 1000, MADE + 1000] {
        let shr = sign(&key, &shr_header(), &shr_payload(&key, json!(ts)));
        let error = PopVerifier::new()
            .verify(
                &shr,
                &Method::GET,
                &resource(),
                &HeaderMap::new(),
                None,
                now(),
            )
            .unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
    }
    let shr = sign(&key, &shr_header(), &shr_payload(&key, json!(MADE)));
    let error = PopVerifier::new()
        .verify(
            &unsigned(&shr),
            &Method::GET,
            &resource(),
            &HeaderMap::new(),
            None,
            now(),
        )
        .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    let verified = PopVerifier::new()
        .verify(
            &shr,
            &Method::GET,
            &resource(),
            &HeaderMap::new(),
            None,
            now(),
        )
        .unwrap();
    let shown = format!("{verified:?}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert_eq!(verified.at(), TOKEN);
}

// --- JwtValidatorBuilder::algorithms ----------------------------------------

fn jwt_builder() -> tower_token_binding::validation::JwtValidatorBuilder {
    JwtValidator::builder()
        .issuer("https://issuer.example")
        .audience("api")
        .jwks(JwksSource::from_json(r#"{"keys":[]}"#).unwrap())
}

/// Every algorithm verifies access tokens (ES512 too); an empty list is a
/// configuration error, not "allow everything".
#[test]
fn jwt_algorithms_must_name_at_least_one() {
    assert!(jwt_builder().build().is_ok());
    assert!(jwt_builder().algorithms([Algorithm::Es256]).build().is_ok());
    assert!(
        jwt_builder()
            .algorithms([Algorithm::Es256, Algorithm::Es512])
            .build()
            .is_ok()
    );
    assert!(jwt_builder().algorithms([]).build().is_err());
}

// --- Forwarded certificates -------------------------------------------------

fn cert_der() -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap()
}

fn cert_hash() -> String {
    Thumbprint::from_certificate(&cert_der())
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn xfcc_kind(value: &str) -> Result<usize, XfccErrorKind> {
    parse_xfcc_header(value)
        .map(|entries| entries.len())
        .map_err(|e| e.kind())
}

/// Quotes, escapes and duplicate keys read as before the `Keys` change.
#[test]
fn xfcc_quoting_and_duplicates_read_as_before() {
    let hash = cert_hash();
    let x5t: Thumbprint = CERT_X5T.trim().parse().unwrap();
    // A quoted comma or semicolon does not split the element.
    let entries = parse_xfcc_header(format!(
        r#"Hash={hash};Subject="CN=a,O=b;c \"q\" \\";URI=spiffe://x"#
    ))
    .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].subject(), Some(r#"CN=a,O=b;c "q" \"#));
    assert_eq!(entries[0].uris(), ["spiffe://x"]);
    assert_eq!(entries[0].thumbprint(), x5t);
    // `By`, `URI` and `DNS` repeat; `Hash`, `Cert`, `Chain`, `Subject` do not.
    let entries =
        parse_xfcc_header(format!("By=a;By=b;Hash={hash};URI=u1;URI=u2;DNS=d1;DNS=d2")).unwrap();
    assert_eq!(entries[0].by(), ["a", "b"]);
    assert_eq!(entries[0].uris(), ["u1", "u2"]);
    assert_eq!(entries[0].dns_names(), ["d1", "d2"]);
    for duplicate in [
        format!("Hash={hash};hash={hash}"),
        format!(r#"Hash={hash};Subject="a";SUBJECT="b""#),
        format!("Hash={hash};Chain=x;Chain=y"),
    ] {
        assert_eq!(
            xfcc_kind(&duplicate),
            Err(XfccErrorKind::DuplicateKey),
            "{duplicate}"
        );
    }
    // A second element's key is its own, not carried from the first.
    assert_eq!(xfcc_kind(&format!("Hash={hash},Hash={hash}")), Ok(2));
    assert_eq!(
        xfcc_kind(&format!("Hash={hash},Subject=\"x\"")),
        Err(XfccErrorKind::NoCertificate)
    );
    // Escapes outside quotes, a quote left open, an escaped end quote.
    assert_eq!(
        xfcc_kind(&format!(r#"Hash={hash};Subject=a\"b"#)),
        Err(XfccErrorKind::InvalidCharacter)
    );
    assert_eq!(
        xfcc_kind(&format!(r#"Hash={hash};Subject="a\""#)),
        Err(XfccErrorKind::UnterminatedQuote)
    );
    assert_eq!(
        xfcc_kind(&format!("Hash={hash};Subject=\"a\u{1}\"")),
        Err(XfccErrorKind::InvalidCharacter)
    );
    // `Hash` and `Cert` must agree.
    let cert = tower_token_binding_escape(CERT);
    assert_eq!(xfcc_kind(&format!("Cert=\"{cert}\";Hash={hash}")), Ok(1));
    let other = "0".repeat(64);
    assert_eq!(
        xfcc_kind(&format!("Cert=\"{cert}\";Hash={other}")),
        Err(XfccErrorKind::HashMismatch)
    );
    assert_eq!(
        xfcc_kind(&format!("Cert=\"{cert}\";Cert=\"{cert}\"")),
        Err(XfccErrorKind::DuplicateKey)
    );
}

/// The element taken is the one asked for, the certificate its own, and
/// the parse stays linear in a huge value.
#[test]
fn xfcc_elements_and_huge_values() {
    let hash = cert_hash();
    let other = "ab".repeat(32);
    let mut headers = HeaderMap::new();
    headers.insert(
        X_FORWARDED_CLIENT_CERT,
        HeaderValue::from_str(&format!("Hash={hash},Hash={other}")).unwrap(),
    );
    assert_eq!(
        xfcc_from_headers(&headers, XfccElement::Only)
            .unwrap_err()
            .kind(),
        XfccErrorKind::MultipleElements
    );
    let first = xfcc_from_headers(&headers, XfccElement::First)
        .unwrap()
        .unwrap();
    let last = xfcc_from_headers(&headers, XfccElement::Last)
        .unwrap()
        .unwrap();
    assert_eq!(
        first.thumbprint(),
        CERT_X5T.trim().parse::<Thumbprint>().unwrap()
    );
    assert_eq!(last.thumbprint().as_bytes(), &[0xab; 32]);
    // A megabyte in a quoted subject, a hundred thousand `By`s, twenty
    // thousand elements: each read whole (their cost is measured in the
    // hostile_input bench, not here).
    let big = format!("Hash={hash};Subject=\"{}\"", "\\a".repeat(1 << 19));
    assert_eq!(xfcc_kind(&big), Ok(1));
    let many = format!("{}Hash={hash}", "By=x;".repeat(100_000));
    assert_eq!(xfcc_kind(&many), Ok(1));
    let elements = vec![format!("Hash={hash}"); 20_000].join(",");
    assert_eq!(xfcc_kind(&elements), Ok(20_000));
    let unterminated = format!("Hash={hash};Subject=\"{}", "a".repeat(1 << 20));
    assert_eq!(
        xfcc_kind(&unterminated),
        Err(XfccErrorKind::UnterminatedQuote)
    );
    // The entry's Debug shows whether there is a certificate, not the
    // certificate.
    let cert = tower_token_binding_escape(CERT);
    let entries = parse_xfcc_header(format!("Cert=\"{cert}\"")).unwrap();
    let shown = format!("{:?}", entries[0]);
    assert!(!shown.contains("MII"), "{shown}");
}

/// The errors share one `Detail`: each still says what was wrong, with
/// its source, and never the value.
#[test]
fn forwarded_errors_show_no_value() {
    let marker = "ZZZZSECRETMARKERZZZZ";
    let error = parse_xfcc_header(format!("Cert=\"{marker}\"")).unwrap_err();
    assert_eq!(error.kind(), XfccErrorKind::InvalidCert);
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(marker), "{shown}");
    let error = parse_xfcc_header(format!("Unknown={marker}")).unwrap_err();
    assert_eq!(error.kind(), XfccErrorKind::UnknownKey);
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(marker), "{shown}");
    let error = parse_escaped_pem(format!(
        "-----BEGIN%20CERTIFICATE-----%0A{marker}%0A-----END%20CERTIFICATE-----"
    ))
    .unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(marker), "{shown}");
    assert!(std::error::Error::source(&error).is_some() || !shown.is_empty());
    let error = parse_escaped_pem(format!("{marker}%")).unwrap_err();
    assert_eq!(error.kind(), EscapedPemErrorKind::InvalidEscape);
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(marker), "{shown}");
    // An escaped PEM still parses to the certificate it holds.
    let escaped = tower_token_binding_escape(CERT);
    let peer = parse_escaped_pem(&escaped).unwrap().unwrap();
    assert_eq!(
        peer.thumbprint(),
        CERT_X5T.trim().parse::<Thumbprint>().unwrap()
    );
}

/// nginx's escaping (`$ssl_client_escaped_cert`).
fn tower_token_binding_escape(text: &str) -> String {
    crate::support::nginx_escape(text)
}

// --- Refusals' answers --------------------------------------------------------

/// `error_code` now derives most codes from the status: every refusal of a
/// proof, a token or its binding is still a 401 with the right code, and
/// no DPoP proof failure but a nonce one asks for a nonce.
#[test]
fn refusals_keep_their_status_and_code() {
    use http::StatusCode;
    use tower_token_binding::validation::{RejectionKind as R, TokenErrorKind};
    let dpop_kinds = [
        DpopErrorKind::TooLarge,
        DpopErrorKind::Malformed,
        DpopErrorKind::DuplicateMember,
        DpopErrorKind::WrongType,
        DpopErrorKind::DisallowedAlgorithm,
        DpopErrorKind::InvalidKey,
        DpopErrorKind::BadSignature,
        DpopErrorKind::MissingClaim,
        DpopErrorKind::MethodMismatch,
        DpopErrorKind::UriMismatch,
        DpopErrorKind::IatTooOld,
        DpopErrorKind::IatInFuture,
        DpopErrorKind::AthMismatch,
        DpopErrorKind::Replayed,
    ];
    for kind in dpop_kinds {
        let rejection = R::InvalidDpopProof(kind);
        assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED, "{kind:?}");
        assert_eq!(
            rejection.error_code(),
            Some("invalid_dpop_proof"),
            "{kind:?}"
        );
    }
    for kind in [DpopErrorKind::MissingNonce, DpopErrorKind::InvalidNonce] {
        assert_eq!(
            R::InvalidDpopProof(kind).error_code(),
            Some("use_dpop_nonce")
        );
    }
    for kind in [
        PopErrorKind::TooLarge,
        PopErrorKind::TooManyNames,
        PopErrorKind::BadSignature,
        PopErrorKind::TooOld,
        PopErrorKind::InFuture,
        PopErrorKind::Replayed,
    ] {
        let rejection = R::InvalidSignedRequest(kind);
        assert_eq!(rejection.status(), StatusCode::UNAUTHORIZED, "{kind:?}");
        assert_eq!(rejection.error_code(), Some("invalid_token"), "{kind:?}");
    }
    for rejection in [
        R::InvalidToken(TokenErrorKind::Malformed),
        R::InvalidToken(TokenErrorKind::DisallowedAlgorithm),
        R::CertificateMismatch,
        R::NoClientCertificate,
        R::DpopBoundAsBearer,
        R::DpopKeyMismatch,
        R::PopKeyMismatch,
        R::SignedRequestAsToken,
    ] {
        assert_eq!(
            rejection.status(),
            StatusCode::UNAUTHORIZED,
            "{rejection:?}"
        );
        assert_eq!(
            rejection.error_code(),
            Some("invalid_token"),
            "{rejection:?}"
        );
    }
    assert_eq!(R::MissingCredentials.error_code(), None);
    assert_eq!(R::MissingDpopProof.error_code(), Some("invalid_dpop_proof"));
    assert_eq!(R::MultipleDpopProofs.status(), StatusCode::BAD_REQUEST);
    assert_eq!(R::MultipleDpopProofs.error_code(), Some("invalid_request"));
    assert_eq!(
        R::InsufficientScope.error_code(),
        Some("insufficient_scope")
    );
    assert_eq!(R::ReplayStoreUnavailable.error_code(), None);
    assert_eq!(R::ReplayShareExceeded.error_code(), None);
}

// --- The forwarded-certificate layer's answers --------------------------------

async fn seen(
    request: http::Request<String>,
) -> Result<http::Response<String>, std::convert::Infallible> {
    let peer = request
        .extensions()
        .get::<tower_token_binding::server::PeerCertificate>();
    Ok(http::Response::new(
        peer.map_or("none".to_owned(), |p| p.thumbprint().to_string()),
    ))
}

/// A malformed XFCC or escaped-PEM value from a trusted proxy is a 400 that
/// does not echo it; a well-formed one names the client's certificate.
#[tokio::test]
async fn malformed_forwarded_values_from_a_trusted_proxy_are_a_400() {
    use tower::{ServiceBuilder, ServiceExt as _};
    use tower_token_binding::server::ConnectionInfo;
    use tower_token_binding::server::forwarded::{ForwardedClientCertLayer, NGINX};
    let hash = cert_hash();
    let marker = "ZZZZMARKERZZZZ";
    let request = |name: &http::HeaderName, value: &str| {
        let mut request = http::Request::new(String::new());
        request.extensions_mut().insert(ConnectionInfo::new(
            "10.9.9.9:1".parse().unwrap(),
            "10.0.0.1:443".parse().unwrap(),
        ));
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(value).unwrap());
        request
    };
    let xfcc = || {
        let layer = ForwardedClientCertLayer::xfcc()
            .trusted_proxy("10.0.0.0/8".parse().unwrap())
            .build()
            .unwrap();
        ServiceBuilder::new().layer(layer).service_fn(seen)
    };
    for value in [
        format!("Hash={hash};Hash={hash};Subject=\"{marker}\""),
        format!("Hash={hash};Subject=\"{marker}"),
        format!("Hash={hash};{marker}=x"),
        format!("Hash={hash},"),
        format!("Cert=\"{marker}\""),
    ] {
        let response = xfcc()
            .oneshot(request(&X_FORWARDED_CLIENT_CERT, &value))
            .await
            .unwrap();
        assert_eq!(response.status(), http::StatusCode::BAD_REQUEST, "{value}");
        assert!(!response.body().contains(marker), "{value}");
    }
    let response = xfcc()
        .oneshot(request(
            &X_FORWARDED_CLIENT_CERT,
            &format!(r#"Hash={hash};Subject="CN=a,O=b""#),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(
        response.body(),
        &CERT_X5T.trim().parse::<Thumbprint>().unwrap().to_string()
    );
    let layer = ForwardedClientCertLayer::escaped_pem(NGINX)
        .trusted_proxy("10.0.0.0/8".parse().unwrap())
        .build()
        .unwrap();
    let service = ServiceBuilder::new().layer(layer).service_fn(seen);
    let response = service
        .oneshot(request(
            &NGINX,
            &format!("-----BEGIN%20CERTIFICATE-----%0A{marker}"),
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::BAD_REQUEST);
    assert!(!response.body().contains(marker));
}
