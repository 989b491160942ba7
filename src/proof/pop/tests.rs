use std::time::{Duration, SystemTime};

use http::header::{CONTENT_TYPE, ETAG, HOST};
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::{Value, json};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::proof::Algorithm;
use crate::proof::jws;

fn uri(s: &str) -> Uri {
    s.parse().unwrap()
}

#[test]
fn vectors() {
    assert_eq!(
        query_claim("b=bar&a=foo&c=duck"),
        json!([
            ["b", "a", "c"],
            "u4LgkGUWhP9MsKrEjA4dizIllDXluDku6ZqCeyuR-JY"
        ])
    );
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ETAG, HeaderValue::from_static("742-3u8f34-3r2nvv3"));
    assert_eq!(
        header_claim(&headers, &[CONTENT_TYPE, ETAG]).unwrap(),
        json!([
            ["content-type", "etag"],
            "P6z5XN4tTzHkfwe3XO1YvVUIurSuhvh_UG10N_j-aGs"
        ])
    );
    assert_eq!(
        body_hash(b"abcd"),
        "iNQmb9TmM40TuEX88olXnSCciXgjuSF9o-Fhk28DFYk"
    );
    assert_eq!(
        host_claim(&uri("https://www.contoso.com:443/")).unwrap(),
        "www.contoso.com"
    );
    assert_eq!(
        host_claim(&uri("https://www.contoso.com:81/")).unwrap(),
        "www.contoso.com:81"
    );
    assert_eq!(host_claim(&uri("/relative")), None);
    assert_eq!(path_claim("/pa th1"), "/pa%20th1");
    assert_eq!(path_claim(""), "/");
    assert_eq!(path_claim(uri("https://www.contoso.com").path()), "/");
}

#[test]
fn req_cnf_names_the_kid() {
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let json = URL_SAFE_NO_PAD.decode(req_cnf(&key)).unwrap();
    let json: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json, json!({"kid": key.thumbprint().to_string()}));
}

fn request_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ETAG, HeaderValue::from_static("742-3u8f34-3r2nvv3"));
    headers
}

#[test]
fn round_trips() {
    for alg in [Algorithm::Ps256, Algorithm::Es256, Algorithm::Rs256] {
        let shrs = PopProofs::new(ProofKey::generate(alg).unwrap());
        let target = uri("https://api.example:8443/a%20b/c?b=bar&a=foo&c=duck");
        let headers = request_headers();
        let names = [CONTENT_TYPE, ETAG];
        let now = SystemTime::now();
        let shr = shrs
            .signer(&Method::POST, &target, "secret-access-token")
            .query()
            .headers(&headers, &names)
            .body(b"abcd")
            .at_time(now)
            .sign()
            .unwrap();
        let jws = jws::CompactJws::parse(&shr).unwrap();
        assert_eq!(jws.typ(), Some("pop"));
        assert_eq!(jws.header()["kid"], shrs.kid().to_string());
        assert_eq!(jws.claims()["u"], "api.example:8443");
        assert_eq!(jws.claims()["p"], "/a%20b/c");
        assert_eq!(jws.claims()["m"], "POST");
        assert_eq!(jws.claims()["nonce"].as_str().unwrap().len(), 22);
        assert_eq!(
            jws.claims()["cnf"]["jwk"],
            serde_json::from_str::<Value>(shrs.key().public_jwk().as_json()).unwrap()
        );

        let verifier = PopVerifier::builder()
            .require_query(true)
            .require_headers([ETAG])
            .require_body(true)
            .build();
        let verified = verifier
            .verify(&shr, &Method::POST, &target, &headers, Some(b"abcd"), now)
            .unwrap();
        assert_eq!(verified.at(), "secret-access-token");
        let debug = format!("{verified:?}");
        assert!(!debug.contains("secret-access-token"), "{debug}");
        assert!(debug.contains(&shrs.kid().to_string()), "{debug}");
        assert_eq!(verified.kid(), shrs.kid());
        assert!(verified.is_bound_to(&shrs.kid().to_string()));
        assert!(!verified.is_bound_to("other"));
        assert_eq!(verified.algorithm(), alg);
        assert!(verified.replay_expires_at() > now + Duration::from_secs(299));
        // Origin-form URI with a Host header, lower-case method.
        let mut with_host = headers.clone();
        with_host.insert(HOST, HeaderValue::from_static("API.example:8443"));
        let again = verifier
            .verify(
                &shr,
                &Method::from_bytes(b"post").unwrap(),
                &uri("/a%20b/c?b=bar&a=foo&c=duck"),
                &with_host,
                Some(b"abcd"),
                now,
            )
            .unwrap();
        assert_eq!(again.replay_key(), verified.replay_key());
        // Another SHR of the same request: another nonce, another replay key.
        let other = shrs.sign(&Method::POST, &target, "token").unwrap();
        let other = PopVerifier::new()
            .verify(&other, &Method::POST, &target, &headers, None, now)
            .unwrap();
        assert_ne!(other.replay_key(), verified.replay_key());
    }
}

#[test]
fn default_ports_either_way() {
    let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let now = SystemTime::now();
    let shr = shrs
        .signer(&Method::GET, &uri("https://h.example:443/"), "t")
        .at_time(now)
        .sign()
        .unwrap();
    for target in [
        "https://h.example/",
        "https://H.EXAMPLE:443",
        "https://h.example:443/",
    ] {
        PopVerifier::new()
            .verify(
                &shr,
                &Method::GET,
                &uri(target),
                &HeaderMap::new(),
                None,
                now,
            )
            .unwrap();
    }
}

/// An SHR with the payload given, signed by `key` under `header`.
fn forge(key: &ProofKey, header: &Value, payload: &Value) -> String {
    let header = jws::encode_segment(header.to_string().as_bytes());
    jws::sign(key, &header, payload.to_string().as_bytes()).unwrap()
}

#[test]
fn refusals() {
    use PopErrorKind as K;
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let other = ProofKey::generate(Algorithm::Es256).unwrap();
    let now = SystemTime::now();
    let ts = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let jwk: Value = serde_json::from_str(key.public_jwk().as_json()).unwrap();
    let kid = key.thumbprint().to_string();
    let header = json!({"alg": "ES256", "typ": "pop", "kid": kid});
    let target = uri("https://api.example/items?x=1&y=2");
    let base = json!({
        "at": "token", "ts": ts, "m": "GET", "u": "api.example", "p": "/items",
        "nonce": "n-1", "cnf": {"jwk": jwk},
    });
    let with = |changes: Value| {
        let mut payload = base.clone();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                payload.as_object_mut().unwrap().remove(name);
            } else {
                payload[name] = value.clone();
            }
        }
        payload
    };
    let get = |verifier: &PopVerifier, shr: &str, body: Option<&[u8]>| {
        verifier.verify(shr, &Method::GET, &target, &request_headers(), body, now)
    };
    // The base is accepted.
    get(&PopVerifier::new(), &forge(&key, &header, &base), None).unwrap();

    let mut private_jwk = jwk.clone();
    private_jwk["d"] = json!("AAAA");
    let q_ok = query_claim("x=1&y=2");
    let cases: Vec<(&str, String, K)> = vec![
        (
            "other typ",
            forge(&key, &json!({"alg": "ES256", "typ": "JWT"}), &base),
            K::WrongType,
        ),
        (
            "no typ",
            forge(&key, &json!({"alg": "ES256"}), &base),
            K::WrongType,
        ),
        (
            "wrong kid",
            forge(
                &key,
                &json!({"alg": "ES256", "typ": "pop", "kid": other.thumbprint().to_string()}),
                &base,
            ),
            K::KidMismatch,
        ),
        (
            "private jwk",
            forge(&key, &header, &with(json!({"cnf": {"jwk": private_jwk}}))),
            K::InvalidKey,
        ),
        (
            "symmetric jwk",
            forge(
                &key,
                &header,
                &with(json!({"cnf": {"jwk": {"kty": "oct", "k": "AAAA"}}})),
            ),
            K::InvalidKey,
        ),
        (
            "no cnf",
            forge(&key, &header, &with(json!({"cnf": null}))),
            K::MissingClaim,
        ),
        (
            "signed by another key",
            forge(&other, &json!({"alg": "ES256", "typ": "pop"}), &base),
            K::BadSignature,
        ),
        (
            "RS256 not ES256",
            forge(&key, &json!({"alg": "PS256", "typ": "pop"}), &base),
            K::InvalidKey,
        ),
        (
            "10 minutes old",
            forge(&key, &header, &with(json!({"ts": ts - 600}))),
            K::TooOld,
        ),
        (
            "10 minutes ahead",
            forge(&key, &header, &with(json!({"ts": ts + 600}))),
            K::InFuture,
        ),
        (
            "fractional ts",
            forge(&key, &header, &with(json!({"ts": 1.5}))),
            K::MissingClaim,
        ),
        (
            "empty at",
            forge(&key, &header, &with(json!({"at": ""}))),
            K::MissingClaim,
        ),
        (
            "no at",
            forge(&key, &header, &with(json!({"at": null}))),
            K::MissingClaim,
        ),
        (
            "no nonce",
            forge(&key, &header, &with(json!({"nonce": null}))),
            K::MissingClaim,
        ),
        (
            "empty nonce",
            forge(&key, &header, &with(json!({"nonce": ""}))),
            K::MissingClaim,
        ),
        (
            "other method",
            forge(&key, &header, &with(json!({"m": "POST"}))),
            K::MethodMismatch,
        ),
        (
            "other host",
            forge(&key, &header, &with(json!({"u": "evil.example"}))),
            K::HostMismatch,
        ),
        (
            "other port",
            forge(&key, &header, &with(json!({"u": "api.example:8443"}))),
            K::HostMismatch,
        ),
        (
            "userinfo",
            forge(&key, &header, &with(json!({"u": "me@api.example"}))),
            K::HostMismatch,
        ),
        (
            "other path",
            forge(&key, &header, &with(json!({"p": "/other"}))),
            K::PathMismatch,
        ),
        (
            "q mismatch",
            forge(&key, &header, &with(json!({"q": query_claim("x=1&y=3")}))),
            K::QueryMismatch,
        ),
        (
            "q names absent",
            forge(&key, &header, &with(json!({"q": query_claim("z=1")}))),
            K::QueryMismatch,
        ),
        (
            "q malformed",
            forge(&key, &header, &with(json!({"q": "x"}))),
            K::MissingClaim,
        ),
        (
            "h mismatch",
            forge(&key, &header, &with(json!({"h": [["etag"], "AAAA"]}))),
            K::HeaderMismatch,
        ),
        (
            "h names absent",
            forge(&key, &header, &with(json!({"h": [["x-absent"], "AAAA"]}))),
            K::HeaderMismatch,
        ),
        (
            "b without body",
            forge(&key, &header, &with(json!({"b": body_hash(b"abcd")}))),
            K::BodyMismatch,
        ),
        (
            "duplicate member",
            {
                let h = jws::encode_segment(header.to_string().as_bytes());
                jws::sign(&key, &h, br#"{"at":"a","at":"b"}"#).unwrap()
            },
            K::DuplicateMember,
        ),
        ("not a JWS", "a.b".to_owned(), K::Malformed),
        (
            "alg none",
            format!(
                "{}.{}.",
                jws::encode_segment(br#"{"alg":"none","typ":"pop"}"#),
                jws::encode_segment(base.to_string().as_bytes())
            ),
            K::DisallowedAlgorithm,
        ),
    ];
    let verifier = PopVerifier::new();
    for (name, shr, want) in &cases {
        let err = get(&verifier, shr, None).unwrap_err();
        assert_eq!(err.kind(), *want, "{name}: {err}");
        assert!(err.description().starts_with("the PoP SHR"), "{name}");
        assert_eq!(err.error_code(), "invalid_token");
    }
    // A present q that matches is accepted; so is a present b that matches.
    let good_q = forge(
        &key,
        &header,
        &with(json!({"q": q_ok, "b": body_hash(b"x")})),
    );
    get(&verifier, &good_q, Some(b"x")).unwrap();
    let err = get(&verifier, &good_q, Some(b"y")).unwrap_err();
    assert_eq!(err.kind(), K::BodyMismatch);

    // Required but absent.
    let plain = forge(&key, &header, &base);
    for (verifier, claim) in [
        (PopVerifier::builder().require_query(true).build(), "q"),
        (PopVerifier::builder().require_headers([ETAG]).build(), "h"),
        (PopVerifier::builder().require_body(true).build(), "b"),
    ] {
        let err = get(&verifier, &plain, Some(b"x")).unwrap_err();
        assert_eq!(err.claim(), Some(claim));
        assert_eq!(
            err.description(),
            format!("the PoP SHR lacks a valid {claim} claim")
        );
    }
    // q required to cover every parameter.
    let partial = forge(&key, &header, &with(json!({"q": query_claim("x=1")})));
    get(&verifier, &partial, None).unwrap();
    let err = get(
        &PopVerifier::builder().require_query(true).build(),
        &partial,
        None,
    )
    .unwrap_err();
    assert_eq!(err.kind(), K::QueryMismatch);
    // An algorithm outside the allow-list.
    let err = get(
        &PopVerifier::builder()
            .algorithms([Algorithm::Ps256])
            .build(),
        &plain,
        None,
    )
    .unwrap_err();
    assert_eq!(err.kind(), K::DisallowedAlgorithm);
    // Too large.
    let err = get(&PopVerifier::builder().max_size(10).build(), &plain, None).unwrap_err();
    assert_eq!(err.kind(), K::TooLarge);
}

/// A good SHR for `GET target` with the extra claims given.
fn signed_with(key: &ProofKey, target: &Uri, extra: Value) -> String {
    let ts = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let jwk: Value = serde_json::from_str(key.public_jwk().as_json()).unwrap();
    let mut payload = json!({
        "at": "token", "ts": ts, "m": "GET", "u": target.authority().unwrap().as_str(),
        "p": target.path(), "nonce": "n-1", "cnf": {"jwk": jwk},
    });
    for (name, value) in extra.as_object().unwrap() {
        payload[name] = value.clone();
    }
    forge(key, &json!({"alg": "ES256", "typ": "pop"}), &payload)
}

fn verify_get(
    verifier: &PopVerifier,
    shr: &str,
    target: &Uri,
) -> Result<VerifiedPopProof, PopError> {
    verifier.verify(
        shr,
        &Method::GET,
        target,
        &request_headers(),
        None,
        SystemTime::now(),
    )
}

#[test]
fn q_and_h_list_at_most_the_cap_of_names() {
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let cap = PopVerifier::DEFAULT_MAX_COVERED_NAMES;
    let query = |n: usize| {
        (0..n)
            .map(|i| format!("p{i}={i}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    // At the cap: accepted.
    let at_cap = uri(&format!("https://api.example/items?{}", query(cap)));
    let shr = signed_with(&key, &at_cap, json!({"q": query_claim(&query(cap))}));
    verify_get(&PopVerifier::new(), &shr, &at_cap).unwrap();

    // One past it: refused, before the signature is looked at (a forged
    // signature gives the same answer).
    let past = uri(&format!("https://api.example/items?{}", query(cap + 1)));
    let shr = signed_with(&key, &past, json!({"q": query_claim(&query(cap + 1))}));
    let err = verify_get(&PopVerifier::new(), &shr, &past).unwrap_err();
    assert_eq!(err.kind(), PopErrorKind::TooManyNames, "{err}");
    assert_eq!(err.error_code(), "invalid_token");
    let (signed, _) = shr.rsplit_once('.').unwrap();
    let err = verify_get(&PopVerifier::new(), &format!("{signed}.AAAA"), &past).unwrap_err();
    assert_eq!(err.kind(), PopErrorKind::TooManyNames, "{err}");

    // h likewise.
    let names: Vec<String> = (0..=cap).map(|i| format!("x-h{i}")).collect();
    let target = uri("https://api.example/items");
    let shr = signed_with(&key, &target, json!({"h": [names, "AAAA"]}));
    let err = verify_get(&PopVerifier::new(), &shr, &target).unwrap_err();
    assert_eq!(err.kind(), PopErrorKind::TooManyNames, "{err}");

    // The cap is a setting.
    let shr = signed_with(&key, &at_cap, json!({"q": query_claim(&query(cap))}));
    let err = verify_get(
        &PopVerifier::builder().max_covered_names(cap - 1).build(),
        &shr,
        &at_cap,
    )
    .unwrap_err();
    assert_eq!(err.kind(), PopErrorKind::TooManyNames);
}

#[test]
fn q_does_not_cover_a_repeated_parameter() {
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let target = uri("https://api.example/whoami?a=1&a=2");
    let shr = signed_with(&key, &target, json!({"q": query_claim("a=1")}));
    for verifier in [
        PopVerifier::new(),
        PopVerifier::builder().require_query(true).build(),
    ] {
        let err = verify_get(&verifier, &shr, &target).unwrap_err();
        assert_eq!(err.kind(), PopErrorKind::QueryMismatch, "{err}");
    }
    // Nor when q lists the name once for each value.
    let err = verify_get(
        &PopVerifier::new(),
        &signed_with(&key, &target, json!({"q": query_claim("a=1&a=2")})),
        &target,
    )
    .unwrap_err();
    assert_eq!(err.kind(), PopErrorKind::QueryMismatch, "{err}");

    // A repeated parameter that q does not list is left to the
    // application, unless q must cover every parameter.
    let target = uri("https://api.example/whoami?a=1&b=1&b=2");
    let shr = signed_with(&key, &target, json!({"q": query_claim("a=1")}));
    verify_get(&PopVerifier::new(), &shr, &target).unwrap();
    let err = verify_get(
        &PopVerifier::builder().require_query(true).build(),
        &shr,
        &target,
    )
    .unwrap_err();
    assert_eq!(err.kind(), PopErrorKind::QueryMismatch, "{err}");

    // Names that differ only in case are two parameters, as our signer
    // and every query parser take them.
    let target = uri("https://api.example/whoami?a=1&A=2");
    let shr = signed_with(&key, &target, json!({"q": query_claim("a=1&A=2")}));
    verify_get(&PopVerifier::new(), &shr, &target).unwrap();

    // A covered name repeated in another spelling is still repeated: an
    // application decodes `%61mount` and `amoun%74` to `amount`.
    for query in [
        "amount=1&%61mount=1000000",
        "amount=1&amoun%74=1000000",
        "%61%6d%6f%75%6e%74=1000000&amount=1",
    ] {
        let target = uri(&format!("https://api.example/pay?{query}"));
        let shr = signed_with(&key, &target, json!({"q": query_claim("amount=1")}));
        let err = verify_get(&PopVerifier::new(), &shr, &target).unwrap_err();
        assert_eq!(err.kind(), PopErrorKind::QueryMismatch, "{query}: {err}");
    }
    // And q listing one name in two spellings names it twice.
    let target = uri("https://api.example/pay?amount=1&%61mount=2");
    let shr = signed_with(
        &key,
        &target,
        json!({"q": query_claim("amount=1&%61mount=2")}),
    );
    let err = verify_get(&PopVerifier::new(), &shr, &target).unwrap_err();
    assert_eq!(err.kind(), PopErrorKind::QueryMismatch, "{err}");
    // An escaped name covered as the request spells it is fine.
    let target = uri("https://api.example/pay?a%20b=1");
    let shr = signed_with(&key, &target, json!({"q": query_claim("a%20b=1")}));
    verify_get(&PopVerifier::new(), &shr, &target).unwrap();
}

#[test]
fn q_at_the_cap_against_a_query_of_thousands_of_pairs() {
    // The names q may list against about the longest query a URI holds
    // (64 KiB): the worst case within the caps, which the `pop_query`
    // bench measures.
    let key = ProofKey::generate(Algorithm::Es256).unwrap();
    let cap = PopVerifier::DEFAULT_MAX_COVERED_NAMES;
    let covered: Vec<String> = (0..cap).map(|i| format!("n{i}=v")).collect();
    let query = covered
        .iter()
        .cloned()
        .chain((0..5_000).map(|i| format!("junk{i}=x")))
        .collect::<Vec<_>>()
        .join("&");
    let target = uri(&format!("https://api.example/items?{query}"));
    let shr = signed_with(&key, &target, json!({"q": query_claim(&covered.join("&"))}));
    verify_get(&PopVerifier::new(), &shr, &target).unwrap();
}

/// Cases for the property tests: `PROPTEST_CASES`, or `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(cases(256)))]

    /// Our signer's `q` over any query verifies with `q` required, unless
    /// the query names a parameter twice (in any spelling), which is
    /// refused; no query makes the verifier panic.
    #[test]
    fn a_signed_query_verifies_unless_a_name_repeats(
        query in "[a-cA%0-9=&+.~_-]{0,80}",
    ) {
        static SHRS: std::sync::OnceLock<crate::proof::pop::PopProofs> =
            std::sync::OnceLock::new();
        let shrs = SHRS.get_or_init(|| {
            crate::proof::pop::PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap())
        });
        let Ok(target) = format!("https://api.example/items?{query}").parse::<Uri>() else {
            return Ok(());
        };
        let shr = shrs.signer(&Method::GET, &target, "token").query().sign().unwrap();
        let verified = PopVerifier::builder()
            .require_query(true)
            .build()
            .verify(&shr, &Method::GET, &target, &request_headers(), None, SystemTime::now());
        let mut names: Vec<String> = super::query_pairs(target.query().unwrap_or_default())
            .map(|(name, _)| super::verifier::form_decoded(name).into_owned())
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        if count > PopVerifier::DEFAULT_MAX_COVERED_NAMES {
            proptest::prop_assert!(verified.is_err());
        } else if names.len() == count {
            proptest::prop_assert!(verified.is_ok(), "{query}: {:?}", verified.err());
        } else {
            proptest::prop_assert!(verified.is_err(), "{query}: a repeated name passed");
        }
    }

    /// Any `q` claim and query: an answer, never a panic.
    #[test]
    fn arbitrary_q_claims_never_panic(
        query in "[ -~]{0,80}",
        names in proptest::collection::vec("[ -~]{0,6}", 0..8),
        hash in "[A-Za-z0-9_-]{0,43}",
    ) {
        static KEY: std::sync::OnceLock<ProofKey> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(|| ProofKey::generate(Algorithm::Es256).unwrap());
        let Ok(target) = format!("https://api.example/items?{query}").parse::<Uri>() else {
            return Ok(());
        };
        let shr = signed_with(key, &target, json!({"q": [names, hash]}));
        let _ = verify_get(&PopVerifier::builder().require_query(true).build(), &shr, &target);
        let _ = verify_get(&PopVerifier::new(), &shr, &target);
    }
}
