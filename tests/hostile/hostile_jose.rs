//! Hostile access tokens and key sets against `JwtValidator` on the crate's
//! own JOSE stack (`proof::jws`, `PublicJwk`, the JWKS `KeySet`): what a
//! caller with a network path to the resource server can send, and what a
//! malicious or sloppy issuer can publish. Every token here is signed with
//! a real key, so that a refusal is about the one fault it carries.
//!
//! Time claims are NumericDates (RFC 7519 section 2): numbers from 0 to
//! 2^64; anything else is refused as a claim of the wrong type.
#![cfg(feature = "server")]

use serde_json::{Value, json};
use tower_token_binding::proof::{Algorithm, ProofKey, jws};
use tower_token_binding::validation::{
    JwksSource, JwtValidator, TokenErrorKind as K, TrustedIssuer, ValidateToken as _, VerifiedToken,
};

const ISS: &str = "https://issuer.example";
const AUD: &str = "https://api.example";
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The order of P-256, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

fn now() -> u64 {
    tower_token_binding::clock::wall()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    jws::encode_segment(bytes.as_ref())
}

fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// Good RFC 9068 claims for `ISS` and `AUD`.
fn claims() -> Value {
    let now = now();
    json!({
        "iss": ISS,
        "aud": AUD,
        "sub": "svc",
        "client_id": "svc",
        "jti": "t-1",
        "iat": now,
        "exp": now + 300,
    })
}

fn header(alg: &str, kid: &str) -> Value {
    json!({ "alg": alg, "typ": "at+jwt", "kid": kid })
}

/// The key's public JWK with `kid` (and nothing else).
fn published(key: &ProofKey, kid: &str) -> Value {
    let mut jwk: Value = serde_json::from_str(key.public_jwk().as_json()).unwrap();
    jwk["kid"] = kid.into();
    jwk
}

fn jwks(keys: impl IntoIterator<Item = Value>) -> String {
    json!({ "keys": keys.into_iter().collect::<Vec<_>>() }).to_string()
}

fn builder(jwks: &str) -> tower_token_binding::validation::JwtValidatorBuilder {
    JwtValidator::builder()
        .issuer(ISS)
        .audience(AUD)
        .jwks(JwksSource::from_json(jwks).unwrap())
        .cache_capacity(0)
}

fn validator(jwks: &str) -> JwtValidator {
    builder(jwks).build().unwrap()
}

/// A compact JWS over the header and payload given as JSON text, exactly
/// as written.
fn raw(key: &ProofKey, header: &str, payload: &str) -> String {
    jws::sign(key, &b64(header), payload.as_bytes()).unwrap()
}

fn token(key: &ProofKey, header: &Value, claims: &Value) -> String {
    raw(key, &header.to_string(), &claims.to_string())
}

/// The signing input and the raw signature, to be re-encoded by hand.
fn parts(key: &ProofKey, header: &Value, claims: &Value) -> (String, Vec<u8>) {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature = key.sign(input.as_bytes()).unwrap().as_ref().to_vec();
    (input, signature)
}

fn with_signature(input: &str, signature: &[u8]) -> String {
    format!("{input}.{}", b64(signature))
}

async fn check(validator: &JwtValidator, token: &str) -> Result<VerifiedToken, K> {
    validator.validate(token).await.map_err(|e| e.kind())
}

/// One ES256 issuer key (`k1`) and one RS256 key (`r1`) in one set.
struct Setup {
    es: ProofKey,
    rsa: ProofKey,
    jwks: String,
    validator: JwtValidator,
}

fn setup() -> Setup {
    let es = ProofKey::generate(Algorithm::Es256).unwrap();
    let rsa = ProofKey::generate(Algorithm::Rs256).unwrap();
    let jwks = jwks([published(&es, "k1"), published(&rsa, "r1")]);
    let validator = validator(&jwks);
    Setup {
        es,
        rsa,
        jwks,
        validator,
    }
}

impl Setup {
    fn good(&self) -> String {
        token(&self.es, &header("ES256", "k1"), &claims())
    }
}

#[tokio::test]
async fn the_good_token_verifies() {
    let s = setup();
    let verified = check(&s.validator, &s.good()).await.unwrap();
    assert_eq!(verified.subject(), Some("svc"));
}

#[tokio::test]
async fn none_and_hmac_are_refused_in_every_spelling() {
    let s = setup();
    let payload = b64(claims().to_string());
    for alg in [
        "none", "None", "NONE", "nOnE", "", "HS256", "HS384", "HS512", "hs256",
    ] {
        let head = b64(json!({ "alg": alg, "typ": "at+jwt", "kid": "k1" }).to_string());
        for signature in ["", "AA"] {
            let forged = format!("{head}.{payload}.{signature}");
            assert_eq!(
                check(&s.validator, &forged).await.unwrap_err(),
                K::DisallowedAlgorithm,
                "{alg:?} {signature:?}"
            );
        }
    }
    // HMAC keyed with the published public key, in each form an attacker
    // could guess: the JWKS text, the key's JSON, the raw modulus.
    let n = serde_json::from_str::<Value>(s.rsa.public_jwk().as_json()).unwrap()["n"]
        .as_str()
        .unwrap()
        .to_owned();
    for secret in [
        s.jwks.clone(),
        s.rsa.public_jwk().as_json().to_owned(),
        s.es.public_jwk().as_json().to_owned(),
        n,
    ] {
        for kid in ["r1", "k1"] {
            let input = format!("{}.{payload}", b64(header("HS256", kid).to_string()));
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
            let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
            let forged = with_signature(&input, tag.as_ref());
            assert_eq!(
                check(&s.validator, &forged).await.unwrap_err(),
                K::DisallowedAlgorithm
            );
        }
    }
}

#[tokio::test]
async fn alg_names_are_exact() {
    let s = setup();
    for alg in [
        "es256",
        "ES256 ",
        " ES256",
        "ES256\u{0}",
        "ES-256",
        "ES256K",
    ] {
        let forged = token(&s.es, &header(alg, "k1"), &claims());
        assert_eq!(
            check(&s.validator, &forged).await.unwrap_err(),
            K::DisallowedAlgorithm,
            "{alg:?}"
        );
    }
    for alg in [
        json!(null),
        json!(1),
        json!(["ES256"]),
        json!({"alg":"ES256"}),
    ] {
        let head = json!({ "alg": alg, "typ": "at+jwt", "kid": "k1" });
        let forged = token(&s.es, &head, &claims());
        assert_eq!(
            check(&s.validator, &forged).await.unwrap_err(),
            K::Malformed,
            "{alg}"
        );
    }
    let head = json!({ "typ": "at+jwt", "kid": "k1" });
    assert_eq!(
        check(&s.validator, &token(&s.es, &head, &claims()))
            .await
            .unwrap_err(),
        K::Malformed
    );
}

#[tokio::test]
async fn an_alg_of_another_key_family_finds_no_key() {
    let s = setup();
    // ES256 header naming the RSA key, signed by the RSA key (an RSA
    // signature) and by the EC key.
    let (input, rsa_sig) = parts(&s.rsa, &header("ES256", "r1"), &claims());
    assert_eq!(
        check(&s.validator, &with_signature(&input, &rsa_sig))
            .await
            .unwrap_err(),
        K::UnknownKey
    );
    let forged = token(&s.es, &header("ES256", "r1"), &claims());
    assert_eq!(
        check(&s.validator, &forged).await.unwrap_err(),
        K::UnknownKey
    );
    // RS256 and PS256 headers naming the EC key.
    for alg in ["RS256", "PS256", "EdDSA", "Ed25519", "ES384", "ES512"] {
        let forged = token(&s.es, &header(alg, "k1"), &claims());
        assert_eq!(
            check(&s.validator, &forged).await.unwrap_err(),
            K::UnknownKey,
            "{alg}"
        );
    }
}

#[tokio::test]
async fn the_ed25519_alias_stays_inside_the_allow_list() {
    let ed = ProofKey::generate(Algorithm::EdDsa).unwrap();
    let mut jwk = published(&ed, "e1");
    jwk["alg"] = "EdDSA".into();
    let set = jwks([jwk]);
    // The fully-specified name is EdDSA: it verifies where EdDSA does.
    let alias = token(&ed, &header("Ed25519", "e1"), &claims());
    assert!(check(&validator(&set), &alias).await.is_ok());
    // And is refused where EdDSA is not allowed.
    let es_only = builder(&set)
        .algorithms([Algorithm::Es256])
        .build()
        .unwrap();
    for alg in ["Ed25519", "EdDSA"] {
        let token = token(&ed, &header(alg, "e1"), &claims());
        assert_eq!(
            check(&es_only, &token).await.unwrap_err(),
            K::DisallowedAlgorithm,
            "{alg}"
        );
    }
}

#[tokio::test]
async fn kid_of_an_odd_type_or_value() {
    let s = setup();
    for kid in [json!(1), json!(["k1"]), json!({"kid":"k1"}), json!(true)] {
        let head = json!({ "alg": "ES256", "typ": "at+jwt", "kid": kid });
        assert_eq!(
            check(&s.validator, &token(&s.es, &head, &claims()))
                .await
                .unwrap_err(),
            K::Malformed,
            "{kid}"
        );
    }
    let long = "k".repeat(10_000);
    for kid in [
        "K1",
        "k1 ",
        " k1",
        "k1\u{0}",
        "k\u{0131}",
        "",
        long.as_str(),
    ] {
        let forged = token(&s.es, &header("ES256", kid), &claims());
        assert_eq!(
            check(&s.validator, &forged).await.unwrap_err(),
            K::UnknownKey,
            "{kid:?}"
        );
    }
    // An escaped member name is the same name: this is the kid `k1`.
    let escaped = raw(
        &s.es,
        r#"{"alg":"ES256","typ":"at+jwt","k\u0069d":"k\u0031"}"#,
        &claims().to_string(),
    );
    assert!(check(&s.validator, &escaped).await.is_ok());
    // A null kid is no kid: the one P-256 key is used, and only that one.
    let head = json!({ "alg": "ES256", "typ": "at+jwt", "kid": null });
    assert!(
        check(&s.validator, &token(&s.es, &head, &claims()))
            .await
            .is_ok()
    );
    let other = ProofKey::generate(Algorithm::Es256).unwrap();
    assert_eq!(
        check(&s.validator, &token(&other, &head, &claims()))
            .await
            .unwrap_err(),
        K::BadSignature
    );
}

#[tokio::test]
async fn without_kid_several_keys_of_the_family_match_none() {
    let a = ProofKey::generate(Algorithm::Es256).unwrap();
    let b = ProofKey::generate(Algorithm::Es256).unwrap();
    let validator = validator(&jwks([published(&a, "a"), published(&b, "b")]));
    let head = json!({ "alg": "ES256", "typ": "at+jwt" });
    for key in [&a, &b] {
        assert_eq!(
            check(&validator, &token(key, &head, &claims()))
                .await
                .unwrap_err(),
            K::UnknownKey
        );
    }
    // Two keys under one kid: a token with that kid signed by neither is
    // still refused.
    let c = ProofKey::generate(Algorithm::Es256).unwrap();
    let dup = self::validator(&jwks([published(&a, "dup"), published(&b, "dup")]));
    assert!(
        check(&dup, &token(&c, &header("ES256", "dup"), &claims()))
            .await
            .is_err()
    );
    assert!(
        check(&dup, &token(&a, &header("ES256", "dup"), &claims()))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_kid_of_another_trusted_issuer_finds_no_key() {
    const OTHER: &str = "https://other-issuer.example";
    let a = ProofKey::generate(Algorithm::Es256).unwrap();
    let b = ProofKey::generate(Algorithm::Es256).unwrap();
    let validator = JwtValidator::builder()
        .trust(TrustedIssuer::new(
            ISS,
            JwksSource::from_json(&jwks([published(&a, "a")])).unwrap(),
        ))
        .trust(TrustedIssuer::new(
            OTHER,
            JwksSource::from_json(&jwks([published(&b, "b")])).unwrap(),
        ))
        .audience(AUD)
        .cache_capacity(0)
        .build()
        .unwrap();
    // Signed by the other issuer's key, naming it, but claiming ISS.
    let forged = token(&b, &header("ES256", "b"), &claims());
    assert_eq!(check(&validator, &forged).await.unwrap_err(), K::UnknownKey);
    // Without kid: checked with ISS's one key.
    let head = json!({ "alg": "ES256", "typ": "at+jwt" });
    assert_eq!(
        check(&validator, &token(&b, &head, &claims()))
            .await
            .unwrap_err(),
        K::BadSignature
    );
    // The other issuer's own token is fine.
    let mut theirs = claims();
    theirs["iss"] = OTHER.into();
    assert!(
        check(&validator, &token(&b, &header("ES256", "b"), &theirs))
            .await
            .is_ok()
    );
    // And `iss` naming both, or neither, names no issuer.
    for iss in [json!([ISS, OTHER]), json!([OTHER]), json!({ "iss": ISS })] {
        let mut forged = claims();
        forged["iss"] = iss.clone();
        assert_eq!(
            check(&validator, &token(&a, &header("ES256", "a"), &forged))
                .await
                .unwrap_err(),
            K::WrongIssuer,
            "{iss}"
        );
    }
}

#[tokio::test]
async fn keys_embedded_in_the_header_are_ignored() {
    let s = setup();
    let attacker = ProofKey::generate(Algorithm::Es256).unwrap();
    let jwk: Value = serde_json::from_str(attacker.public_jwk().as_json()).unwrap();
    let thumbprint = attacker.thumbprint().to_string();
    let x5c = b64(b"not a certificate, but base64");
    let extras = json!({
        "jwk": jwk,
        "jku": "https://attacker.example/jwks",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": [x5c],
        "x5t#S256": thumbprint,
    });
    for kid in [None, Some("k1"), Some(thumbprint.as_str())] {
        let mut head = extras.clone();
        head["alg"] = "ES256".into();
        head["typ"] = "at+jwt".into();
        if let Some(kid) = kid {
            head["kid"] = kid.into();
        }
        let refused = check(&s.validator, &token(&attacker, &head, &claims()))
            .await
            .unwrap_err();
        let want = if kid == Some(thumbprint.as_str()) {
            K::UnknownKey
        } else {
            K::BadSignature
        };
        assert_eq!(refused, want, "{kid:?}");
    }
    // The issuer's own token with the same extras is accepted: they are
    // not read at all.
    let mut head = extras;
    head["alg"] = "ES256".into();
    head["typ"] = "at+jwt".into();
    head["kid"] = "k1".into();
    assert!(
        check(&s.validator, &token(&s.es, &head, &claims()))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn crit_and_unencoded_payloads_are_refused() {
    let s = setup();
    for crit in [
        json!(["b64"]),
        json!([]),
        json!(["exp"]),
        json!("b64"),
        json!(null),
    ] {
        let head =
            json!({ "alg": "ES256", "typ": "at+jwt", "kid": "k1", "crit": crit, "b64": false });
        assert_eq!(
            check(&s.validator, &token(&s.es, &head, &claims()))
                .await
                .unwrap_err(),
            K::Malformed,
            "{crit}"
        );
    }
    // RFC 7797 signing input (the payload not encoded) without crit: the
    // payload is never read as unencoded.
    let head = json!({ "alg": "ES256", "typ": "at+jwt", "kid": "k1", "b64": false });
    let payload = claims().to_string();
    let input = format!("{}.{payload}", b64(head.to_string()));
    let signature = s.es.sign(input.as_bytes()).unwrap();
    let forged = with_signature(&input, signature.as_ref());
    assert!(check(&s.validator, &forged).await.is_err());
    let detached = format!("{}..{}", b64(head.to_string()), b64(signature.as_ref()));
    assert!(check(&s.validator, &detached).await.is_err());
}

#[tokio::test]
async fn duplicate_members_at_any_depth_even_escaped() {
    let s = setup();
    let good_claims = claims().to_string();
    let body = &good_claims[1..];
    let cases = [
        (
            r#"{"\u0061lg":"none","alg":"ES256","typ":"at+jwt","kid":"k1"}"#.to_owned(),
            good_claims.clone(),
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"other","\u006bid":"k1"}"#.to_owned(),
            good_claims.clone(),
        ),
        (
            r#"{"alg":"ES256","typ":"x","typ":"at+jwt","kid":"k1"}"#.to_owned(),
            good_claims.clone(),
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"k1","jwk":{"kty":"EC","kty":"RSA"}}"#
                .to_owned(),
            good_claims.clone(),
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#.to_owned(),
            format!(r#"{{"\u0061ud":"https://evil.example",{body}"#),
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#.to_owned(),
            format!(r#"{{"exp":1,{body}"#),
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#.to_owned(),
            format!(r#"{{"ext":[{{"a":1}},{{"b":[{{"c":1,"\u0063":2}}]}}],{body}"#),
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#.to_owned(),
            format!(r#"{{"cnf":{{"jkt":"a","jkt":"b"}},{body}"#),
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#.to_owned(),
            format!(r#"{{"\ud83d\ude00":1,"😀":2,{body}"#),
        ),
    ];
    for (head, payload) in cases {
        let forged = raw(&s.es, &head, &payload);
        assert_eq!(
            check(&s.validator, &forged).await.unwrap_err(),
            K::DuplicateMember,
            "{head} {payload}"
        );
    }
    // A lone surrogate in a member name is not JSON text for us.
    let forged = raw(
        &s.es,
        r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#,
        &format!(r#"{{"\ud800":1,{body}"#),
    );
    assert_eq!(
        check(&s.validator, &forged).await.unwrap_err(),
        K::Malformed
    );
}

#[tokio::test]
async fn registered_claims_of_odd_types_and_values() {
    let s = setup();
    let now = now() as f64;
    let cases: Vec<(&str, Value, K)> = vec![
        ("exp", json!(-1), K::MissingClaim),
        ("exp", json!(0), K::Expired),
        ("exp", json!(1.5), K::Expired),
        ("exp", json!(-1e308), K::MissingClaim),
        ("exp", json!(now - 30.5 - 5.0), K::Expired),
        ("exp", json!(true), K::MissingClaim),
        ("exp", json!(null), K::MissingClaim),
        ("exp", json!("4000000000"), K::MissingClaim),
        ("exp", json!([4_000_000_000u64]), K::MissingClaim),
        ("exp", json!({ "exp": 4_000_000_000u64 }), K::MissingClaim),
        ("nbf", json!(true), K::MissingClaim),
        ("nbf", json!(null), K::MissingClaim),
        ("nbf", json!("0"), K::MissingClaim),
        ("nbf", json!(now + 3600.5), K::NotYetValid),
        ("nbf", json!(1e308), K::MissingClaim),
        ("nbf", json!(u64::MAX), K::MissingClaim),
        ("nbf", json!(-1), K::MissingClaim),
        ("iat", json!("1"), K::MissingClaim),
        ("iat", json!(true), K::MissingClaim),
        ("iat", json!(null), K::MissingClaim),
        ("iat", json!([1]), K::MissingClaim),
        ("iat", json!(1e308), K::MissingClaim),
        ("iat", json!(-1), K::MissingClaim),
        ("iat", json!(now + 3600.0), K::NotYetValid),
    ];
    for (claim, value, want) in cases {
        let mut forged = claims();
        forged[claim] = value.clone();
        let refused = check(&s.validator, &token(&s.es, &header("ES256", "k1"), &forged))
            .await
            .unwrap_err();
        assert_eq!(refused, want, "{claim} = {value}");
    }
    // Fine: a fractional exp ahead, an nbf in the past, within the leeway.
    for (claim, value) in [
        ("exp", json!(now + 300.25)),
        ("exp", json!(now - 5.0)),
        ("nbf", json!(now - 1.5)),
        ("nbf", json!(now + 10.0)),
        ("iat", json!(now + 10.0)),
    ] {
        let mut fine = claims();
        fine[claim] = value.clone();
        assert!(
            check(&s.validator, &token(&s.es, &header("ES256", "k1"), &fine))
                .await
                .is_ok(),
            "{claim} = {value}"
        );
    }
    // Numbers beyond f64 are not JSON this parser accepts.
    let good = claims();
    let rest = good.to_string()[1..].replace(&format!(r#""exp":{},"#, good["exp"]), "");
    for text in ["1e400", "-1e400"] {
        let payload = format!(r#"{{"exp":{text},{rest}"#);
        let forged = raw(&s.es, &header("ES256", "k1").to_string(), &payload);
        assert_eq!(
            check(&s.validator, &forged).await.unwrap_err(),
            K::Malformed,
            "{text}"
        );
    }
}

/// An `exp` beyond 2^64 is not a token that never expires: it is no
/// NumericDate, and refused.
#[tokio::test]
async fn exp_beyond_the_numeric_date_range_is_refused() {
    let s = setup();
    for exp in [
        json!(1e308),
        json!(1e20),
        json!(18_446_744_073_709_551_616.0_f64),
        serde_json::from_str::<Value>("18446744073709551616").unwrap(),
        serde_json::from_str::<Value>("99999999999999999999999999999").unwrap(),
    ] {
        let mut forged = claims();
        forged["exp"] = exp.clone();
        assert!(
            check(&s.validator, &token(&s.es, &header("ES256", "k1"), &forged))
                .await
                .is_err(),
            "exp = {exp}"
        );
    }
}

#[tokio::test]
async fn audience_shapes() {
    let s = setup();
    let cases: Vec<(Value, K)> = vec![
        (json!([]), K::WrongAudience),
        (json!(""), K::WrongAudience),
        (json!([""]), K::WrongAudience),
        (json!(format!("{AUD}/")), K::WrongAudience),
        (json!(AUD.to_uppercase()), K::WrongAudience),
        (json!(format!(" {AUD}")), K::WrongAudience),
        (json!([[AUD]]), K::MissingClaim),
        (json!({ "aud": AUD }), K::MissingClaim),
        (json!([null, AUD]), K::MissingClaim),
        (json!([AUD, 1]), K::MissingClaim),
        (json!(1), K::MissingClaim),
        (json!(null), K::MissingClaim),
        (json!(true), K::MissingClaim),
    ];
    for (aud, want) in cases {
        let mut forged = claims();
        forged["aud"] = aud.clone();
        assert_eq!(
            check(&s.validator, &token(&s.es, &header("ES256", "k1"), &forged))
                .await
                .unwrap_err(),
            want,
            "aud = {aud}"
        );
    }
    for aud in [json!([AUD, AUD]), json!(["https://other.example", AUD])] {
        let mut fine = claims();
        fine["aud"] = aud.clone();
        assert!(
            check(&s.validator, &token(&s.es, &header("ES256", "k1"), &fine))
                .await
                .is_ok(),
            "aud = {aud}"
        );
    }
}

#[tokio::test]
async fn issuer_shapes() {
    let s = setup();
    for iss in [
        json!([ISS]),
        json!({ "iss": ISS }),
        json!(null),
        json!(""),
        json!(format!("{ISS}/")),
        json!(ISS.to_uppercase()),
        json!(1),
    ] {
        let mut forged = claims();
        forged["iss"] = iss.clone();
        assert_eq!(
            check(&s.validator, &token(&s.es, &header("ES256", "k1"), &forged))
                .await
                .unwrap_err(),
            K::WrongIssuer,
            "iss = {iss}"
        );
    }
    let mut forged = claims();
    forged.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        check(&s.validator, &token(&s.es, &header("ES256", "k1"), &forged))
            .await
            .unwrap_err(),
        K::MissingClaim
    );
}

#[tokio::test]
async fn header_typ_odd_values() {
    let s = setup();
    for (typ, want) in [
        (json!(1), Err(K::Malformed)),
        (json!(["at+jwt"]), Err(K::Malformed)),
        (json!(null), Err(K::WrongType)),
        (json!("JWT"), Err(K::WrongType)),
        (json!("at+jwt "), Err(K::WrongType)),
        (json!("application/at+jwt; x=y"), Err(K::WrongType)),
        (json!("dpop+jwt"), Err(K::WrongType)),
        (json!("AT+JWT"), Ok(())),
        (json!("Application/At+Jwt"), Ok(())),
    ] {
        let head = json!({ "alg": "ES256", "typ": typ, "kid": "k1" });
        let result = check(&s.validator, &token(&s.es, &head, &claims()))
            .await
            .map(|_| ());
        assert_eq!(result, want, "typ = {typ}");
    }
}

/// Makes a base64url segment non-canonical: sets an unused low bit of its
/// last character. The segment must have unused bits (length not a
/// multiple of 4).
fn noncanonical(segment: &str) -> String {
    assert_ne!(segment.len() % 4, 0);
    let last = segment.as_bytes()[segment.len() - 1];
    let value = ALPHABET.iter().position(|&c| c == last).unwrap();
    assert_eq!(value & 1, 0, "canonical input");
    let mut out = segment[..segment.len() - 1].to_owned();
    out.push(ALPHABET[value | 1] as char);
    out
}

#[tokio::test]
async fn segment_shapes() {
    let s = setup();
    let good = s.good();
    assert!(check(&s.validator, &good).await.is_ok());
    let segments: Vec<&str> = good.split('.').collect();
    let (h, p, sig) = (segments[0], segments[1], segments[2]);
    let standard = |seg: &str| seg.replace('-', "+").replace('_', "/");
    let mut cases: Vec<(String, &str)> = vec![
        (format!(" {good}"), "leading space"),
        (format!("{good} "), "trailing space"),
        (format!("{good}\n"), "trailing newline"),
        (format!("{h} .{p}.{sig}"), "space in a segment"),
        (format!("{h}.{p}\t.{sig}"), "tab in a segment"),
        (format!("{h}=.{p}.{sig}"), "padded header"),
        (format!("{h}.{p}=.{sig}"), "padded payload"),
        (format!("{h}.{p}.{sig}=="), "padded signature"),
        (format!("{h}.{p}"), "two segments"),
        (format!("{h}.{p}.{sig}."), "four segments"),
        (format!("{h}.{p}.{sig}.AA"), "four segments"),
        (format!("{h}.AA.{p}.AA.{sig}"), "five segments (JWE)"),
        (format!(".{p}.{sig}"), "empty header"),
        (format!("{h}..{sig}"), "empty payload"),
        (format!("..{sig}"), "empty header and payload"),
        (String::new(), "empty"),
        ("..".to_owned(), "dots only"),
        (format!("{h}.{p}.{sig}%3D"), "url-escaped padding"),
        (
            json!({
                "payload": p,
                "signatures": [{ "protected": h, "signature": sig }]
            })
            .to_string(),
            "JWS JSON serialization",
        ),
        (
            json!({ "payload": p, "protected": h, "signature": sig }).to_string(),
            "flattened JWS JSON serialization",
        ),
        (
            format!(
                "{}.{p}.{sig}",
                b64(format!("\u{feff}{}", header("ES256", "k1")))
            ),
            "BOM in the header",
        ),
        (
            format!("{h}.{}.{sig}", b64(b"\xff\xfe{}")),
            "payload not UTF-8",
        ),
        (format!("{h}.{}.{sig}", b64("[]")), "payload an array"),
        (format!("{h}.{}.{sig}", b64("null")), "payload null"),
        (
            format!("{h}.{}.{sig}", b64(format!("{} x", claims()))),
            "trailing garbage",
        ),
    ];
    // The standard alphabet, where the segments use one of its two
    // characters.
    for (i, seg) in [h, p, sig].iter().enumerate() {
        if seg.contains(['-', '_']) {
            let mut parts = [h.to_owned(), p.to_owned(), sig.to_owned()];
            parts[i] = standard(seg);
            cases.push((parts.join("."), "standard alphabet"));
        }
    }
    // The signature segment is not signed: a second encoding of the same
    // bytes would be a second token with the same signature.
    cases.push((
        format!("{h}.{p}.{}", noncanonical(sig)),
        "non-canonical signature",
    ));
    for (forged, what) in cases {
        assert!(
            matches!(
                check(&s.validator, &forged).await,
                Err(K::Malformed | K::BadSignature)
            ),
            "{what}: {forged}"
        );
    }
    // An empty signature is no signature.
    assert_eq!(
        check(&s.validator, &format!("{h}.{p}.")).await.unwrap_err(),
        K::BadSignature
    );
}

#[tokio::test]
async fn non_canonical_header_and_payload_segments_are_refused() {
    let s = setup();
    // Lengths chosen so that both segments have unused bits, and the
    // canonical encoding of the same bytes is what was signed.
    let mut fine = claims();
    let mut head = header("ES256", "k1");
    for pad in 0..3 {
        head["x"] = "a".repeat(pad).into();
        if b64(head.to_string()).len() % 4 != 0 {
            break;
        }
    }
    for pad in 0..3 {
        fine["x"] = "a".repeat(pad).into();
        if b64(fine.to_string()).len() % 4 != 0 {
            break;
        }
    }
    let (input, signature) = parts(&s.es, &head, &fine);
    assert!(
        check(&s.validator, &with_signature(&input, &signature))
            .await
            .is_ok()
    );
    let (h, p) = input.split_once('.').unwrap();
    for forged in [
        with_signature(&format!("{}.{p}", noncanonical(h)), &signature),
        with_signature(&format!("{h}.{}", noncanonical(p)), &signature),
    ] {
        assert_eq!(
            check(&s.validator, &forged).await.unwrap_err(),
            K::Malformed,
            "{forged}"
        );
    }
}

#[tokio::test]
async fn sizes_near_the_limit() {
    let s = setup();
    let sized = |n: usize| {
        let mut c = claims();
        c["x"] = "a".repeat(n).into();
        token(&s.es, &header("ES256", "k1"), &c)
    };
    let big = sized(11_900);
    let exact = builder(&s.jwks)
        .max_token_length(big.len())
        .build()
        .unwrap();
    assert!(check(&exact, &big).await.is_ok());
    let under = builder(&s.jwks)
        .max_token_length(big.len() - 1)
        .build()
        .unwrap();
    assert_eq!(check(&under, &big).await.unwrap_err(), K::Malformed);
    // The default, 16 KiB.
    assert!(big.len() < 16 * 1024);
    assert!(check(&s.validator, &big).await.is_ok());
    let over = sized(12_400);
    assert!(over.len() > 16 * 1024);
    assert_eq!(check(&s.validator, &over).await.unwrap_err(), K::Malformed);
    // A megabyte of dots and letters is refused as fast.
    let huge = format!("{}.{}.{}", "a".repeat(1 << 20), "b", "c");
    assert_eq!(check(&s.validator, &huge).await.unwrap_err(), K::Malformed);
}

#[tokio::test]
async fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let s = setup();
    let roomy = builder(&s.jwks).max_token_length(1 << 20).build().unwrap();
    let good = claims().to_string();
    for depth in [200, 10_000, 100_000] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            let payload = format!(r#"{{"x":{nested},{}"#, &good[1..]);
            let forged = raw(&s.es, &header("ES256", "k1").to_string(), &payload);
            assert_eq!(
                check(&roomy, &forged).await.unwrap_err(),
                K::Malformed,
                "{depth} {open}"
            );
            let head = format!(r#"{{"x":{nested},"alg":"ES256","typ":"at+jwt","kid":"k1"}}"#);
            let forged = raw(&s.es, &head, &good);
            assert_eq!(
                check(&roomy, &forged).await.unwrap_err(),
                K::Malformed,
                "header {depth} {open}"
            );
        }
    }
    // Moderate nesting in a claim nobody reads is fine.
    let nested = format!("{}1{}", "[".repeat(50), "]".repeat(50));
    let payload = format!(r#"{{"x":{nested},{}"#, &good[1..]);
    let fine = raw(&s.es, &header("ES256", "k1").to_string(), &payload);
    assert!(check(&roomy, &fine).await.is_ok());
}

/// A P-256 signature `r || s` as ASN.1 DER.
fn der(signature: &[u8]) -> Vec<u8> {
    let int = |bytes: &[u8]| {
        let start = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        let mut body = bytes[start..].to_vec();
        if body[0] & 0x80 != 0 {
            body.insert(0, 0);
        }
        let mut out = vec![0x02, body.len() as u8];
        out.extend(body);
        out
    };
    let (r, s) = signature.split_at(signature.len() / 2);
    let mut body = int(r);
    body.extend(int(s));
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// `a - b` for big-endian numbers of one length, `a >= b`.
fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    out
}

#[tokio::test]
async fn ecdsa_signature_encodings() {
    let s = setup();
    let signed = claims();
    let (input, signature) = parts(&s.es, &header("ES256", "k1"), &signed);
    assert_eq!(signature.len(), 64);
    assert!(
        check(&s.validator, &with_signature(&input, &signature))
            .await
            .is_ok()
    );
    let mut short = signature.clone();
    short.pop();
    let mut long = signature.clone();
    long.push(0);
    let mut padded = vec![0];
    padded.extend(&signature);
    let mut swapped = signature[32..].to_vec();
    swapped.extend(&signature[..32]);
    let mut n_n = P256_N.to_vec();
    n_n.extend(P256_N);
    let mut r_plus_n = signature.clone();
    r_plus_n[..32].copy_from_slice(&P256_N);
    for (bad, what) in [
        (der(&signature), "DER"),
        (short, "63 bytes"),
        (long, "65 bytes"),
        (padded, "a leading zero"),
        (swapped, "s || r"),
        (vec![0; 64], "zero r and s"),
        (n_n, "r = s = n"),
        (r_plus_n, "r = n"),
        (signature[..32].to_vec(), "r alone"),
    ] {
        assert_eq!(
            check(&s.validator, &with_signature(&input, &bad))
                .await
                .unwrap_err(),
            K::BadSignature,
            "{what}"
        );
    }
    // The high-S twin (r, n - s) is another string for the same signed
    // claims: whether it is accepted or not, it never says anything else.
    let mut twin = signature[..32].to_vec();
    twin.extend(sub(&P256_N, &signature[32..]));
    match check(&s.validator, &with_signature(&input, &twin)).await {
        Ok(verified) => assert_eq!(verified.claims(), signed.as_object().unwrap()),
        Err(kind) => assert_eq!(kind, K::BadSignature),
    }
}

#[tokio::test]
async fn es512_and_ed25519_signature_lengths() {
    let p521 = ProofKey::generate(Algorithm::Es512).unwrap();
    let ed = ProofKey::generate(Algorithm::EdDsa).unwrap();
    let validator = validator(&jwks([published(&p521, "p"), published(&ed, "e")]));
    for (key, alg, kid, len) in [(&p521, "ES512", "p", 132), (&ed, "EdDSA", "e", 64)] {
        let (input, signature) = parts(key, &header(alg, kid), &claims());
        assert_eq!(signature.len(), len);
        assert!(
            check(&validator, &with_signature(&input, &signature))
                .await
                .is_ok()
        );
        let mut short = signature.clone();
        short.pop();
        let mut long = signature.clone();
        long.push(0);
        for bad in [short, long, vec![0; len], Vec::new()] {
            assert_eq!(
                check(&validator, &with_signature(&input, &bad))
                    .await
                    .unwrap_err(),
                K::BadSignature,
                "{alg} {}",
                bad.len()
            );
        }
    }
}

#[tokio::test]
async fn rsa_signatures_are_exactly_the_modulus_length() {
    let s = setup();
    // A signature whose first byte is zero: its minimal encoding is one
    // byte shorter than the modulus (RFC 8017 I2OSP makes it k bytes).
    let mut found = None;
    for i in 0..20_000 {
        let mut c = claims();
        c["jti"] = format!("t-{i}").into();
        let (input, signature) = parts(&s.rsa, &header("RS256", "r1"), &c);
        if signature[0] == 0 {
            found = Some((input, signature));
            break;
        }
    }
    let (input, signature) = found.expect("a signature with a leading zero byte");
    assert_eq!(signature.len(), 256);
    assert!(
        check(&s.validator, &with_signature(&input, &signature))
            .await
            .is_ok()
    );
    let mut padded = vec![0];
    padded.extend(&signature);
    for (bad, what) in [
        (signature[1..].to_vec(), "leading zero stripped"),
        (padded, "an extra leading zero"),
        (Vec::new(), "empty"),
        (vec![0; 256], "zero"),
        (vec![0xff; 256], "above the modulus"),
    ] {
        assert_eq!(
            check(&s.validator, &with_signature(&input, &bad))
                .await
                .unwrap_err(),
            K::BadSignature,
            "{what}"
        );
    }
}

#[tokio::test]
async fn pss_and_pkcs1_are_not_interchangeable() {
    let s = setup();
    let (input, pkcs1) = parts(&s.rsa, &header("PS256", "r1"), &claims());
    // A PKCS #1 v1.5 signature presented as PSS.
    assert_eq!(
        check(&s.validator, &with_signature(&input, &pkcs1))
            .await
            .unwrap_err(),
        K::BadSignature
    );
    let pss = s.rsa.clone().with_algorithm(Algorithm::Ps256).unwrap();
    let (input, signature) = parts(&pss, &header("RS256", "r1"), &claims());
    assert_eq!(
        check(&s.validator, &with_signature(&input, &signature))
            .await
            .unwrap_err(),
        K::BadSignature
    );
    let (input, signature) = parts(&pss, &header("PS256", "r1"), &claims());
    assert!(
        check(&s.validator, &with_signature(&input, &signature))
            .await
            .is_ok()
    );
}

/// A token with kid `w`, signed by `key`, against a JWKS holding `jwk`.
async fn against(jwk: Value, key: &ProofKey, alg: &str) -> Result<VerifiedToken, K> {
    let set = jwks([jwk]);
    check(&validator(&set), &token(key, &header(alg, "w"), &claims())).await
}

#[tokio::test]
async fn keys_that_are_not_signing_keys_are_never_used() {
    let es = ProofKey::generate(Algorithm::Es256).unwrap();
    let base = published(&es, "w");
    // The key as published verifies.
    assert!(against(base.clone(), &es, "ES256").await.is_ok());
    let with = |name: &str, value: Value| {
        let mut jwk = base.clone();
        jwk[name] = value;
        jwk
    };
    let x = base["x"].as_str().unwrap().to_owned();
    let mut y = unb64(base["y"].as_str().unwrap());
    y[31] ^= 1;
    let cases = [
        (with("use", json!("enc")), "use enc"),
        (with("use", json!("SIG")), "use SIG"),
        (with("use", json!(1)), "use not a string"),
        (with("use", json!(["sig"])), "use an array"),
        (with("d", json!(b64([7u8; 32]))), "a private d"),
        (with("k", json!(b64([7u8; 32]))), "a symmetric k"),
        (with("alg", json!("RS256")), "alg of another family"),
        (with("alg", json!("ES384")), "alg of another curve"),
        (with("alg", json!("HS256")), "alg HS256"),
        (with("alg", json!("none")), "alg none"),
        (with("alg", json!("ECDH-ES")), "an encryption alg"),
        (with("alg", json!(1)), "alg not a string"),
        (with("kid", json!(["w"])), "kid an array"),
        (with("kty", json!("ec")), "kty lowercase"),
        (with("kty", json!("oct")), "kty oct"),
        (with("crv", json!("P-384")), "another curve"),
        (with("crv", json!("secp256k1")), "secp256k1"),
        (with("y", json!(b64(&y))), "a point not on the curve"),
        (with("x", json!(format!("{x}="))), "padded x"),
        (with("x", json!(format!("A{x}"))), "x too long"),
        (with("x", json!(b64([0u8; 32]))), "x zero"),
    ];
    for (jwk, what) in cases {
        assert_eq!(
            against(jwk.clone(), &es, "ES256").await.unwrap_err(),
            K::UnknownKey,
            "{what}: {jwk}"
        );
    }
    // A symmetric key, whatever the token's alg.
    let oct = json!({ "kty": "oct", "k": b64(b"secret"), "kid": "w", "alg": "HS256" });
    assert_eq!(
        against(oct.clone(), &es, "ES256").await.unwrap_err(),
        K::UnknownKey
    );
    assert_eq!(
        against(oct, &es, "HS256").await.unwrap_err(),
        K::DisallowedAlgorithm
    );
}

#[tokio::test]
async fn rsa_keys_published_oddly() {
    let rsa = ProofKey::generate(Algorithm::Rs256).unwrap();
    let base = published(&rsa, "w");
    let n = unb64(base["n"].as_str().unwrap());
    let with = |name: &str, value: Value| {
        let mut jwk = base.clone();
        jwk[name] = value;
        jwk
    };
    // Leading zero bytes (a modulus written as a signed integer) are read
    // as the same key.
    let mut signed_n = vec![0];
    signed_n.extend(&n);
    let mut two_zeros = vec![0, 0];
    two_zeros.extend(&n);
    for jwk in [
        base.clone(),
        with("n", json!(b64(&signed_n))),
        with("n", json!(b64(&two_zeros))),
        with("e", json!(b64([0, 1, 0, 1]))),
    ] {
        assert!(against(jwk.clone(), &rsa, "RS256").await.is_ok(), "{jwk}");
    }
    // A 1024-bit modulus (the top half of the real one), an 8200-bit one,
    // degenerate exponents, private members.
    let mut big = vec![0xc5; 1025];
    big[1024] |= 1;
    let cases = [
        (with("n", json!(b64(&n[..128]))), "1024-bit modulus"),
        (with("n", json!(b64(&big))), "8200-bit modulus"),
        (with("n", json!(b64([0u8; 256]))), "zero modulus"),
        (with("n", json!(b64([0u8; 0]))), "empty modulus"),
        (with("e", json!(b64([1]))), "e = 1"),
        (with("e", json!(b64([0, 0, 1]))), "e = 1 with zeros"),
        (with("e", json!(b64([1, 0, 0]))), "even e"),
        (with("e", json!(b64([1, 0, 0, 0, 1]))), "e above 2^32"),
        (with("e", json!(b64([0u8; 0]))), "empty e"),
        (with("e", json!(65537)), "e a number"),
        (with("d", json!(b64([7u8; 256]))), "a private d"),
        (with("p", json!(b64([7u8; 128]))), "a private p"),
        (with("alg", json!("RSA-OAEP-256")), "an encryption alg"),
        (with("use", json!("enc")), "use enc"),
        (with("alg", json!("PS256")), "alg PS256 for an RS256 token"),
    ];
    for (jwk, what) in cases {
        assert_eq!(
            against(jwk, &rsa, "RS256").await.unwrap_err(),
            K::UnknownKey,
            "{what}"
        );
    }
}

#[tokio::test]
async fn p521_keys_verify_es512_only() {
    let key = ProofKey::generate(Algorithm::Es512).unwrap();
    let jwk = published(&key, "w");
    assert!(against(jwk.clone(), &key, "ES512").await.is_ok());
    for alg in ["ES256", "ES384", "RS512", "PS512"] {
        assert_eq!(
            against(jwk.clone(), &key, alg).await.unwrap_err(),
            K::UnknownKey,
            "{alg}"
        );
    }
    // Coordinates of 65 bytes (a leading zero dropped), 64 or 67: no key.
    let x = unb64(jwk["x"].as_str().unwrap());
    assert_eq!(x.len(), 66);
    for len in [64usize, 65, 67] {
        let mut odd = jwk.clone();
        let mut coordinate = vec![0; len.saturating_sub(66)];
        coordinate.extend(&x[66usize.saturating_sub(len)..]);
        odd["x"] = b64(&coordinate).into();
        assert_eq!(
            against(odd, &key, "ES512").await.unwrap_err(),
            K::UnknownKey,
            "{len}"
        );
    }
}

#[tokio::test]
async fn odd_entries_in_the_key_set_are_skipped() {
    let es = ProofKey::generate(Algorithm::Es256).unwrap();
    let set = json!({
        "keys": [1, "x", null, [], {}, { "kty": 1 }, { "kty": "EC" }, published(&es, "w")],
        "extra": { "keys": [] },
    })
    .to_string();
    let validator = validator(&set);
    assert!(
        check(&validator, &token(&es, &header("ES256", "w"), &claims()))
            .await
            .is_ok()
    );
    for bad in [
        r#"{"keys":{}}"#,
        r#"{"keys":null}"#,
        r#"{"key":[]}"#,
        r#"[]"#,
        r#"{"keys":[]"#,
        "",
    ] {
        assert!(JwksSource::from_json(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn thousands_of_keys() {
    let keys: Vec<ProofKey> = (0..2_000)
        .map(|_| ProofKey::generate(Algorithm::Es256).unwrap())
        .collect();
    let set = jwks(
        keys.iter()
            .enumerate()
            .map(|(i, key)| published(key, &format!("k{i}"))),
    );
    let validator = validator(&set);
    for i in [0, 999, 1_999] {
        let token = token(&keys[i], &header("ES256", &format!("k{i}")), &claims());
        assert!(check(&validator, &token).await.is_ok(), "k{i}");
    }
    // The wrong key's kid, and no kid: nothing is tried in turn.
    let token_1 = token(&keys[1], &header("ES256", "k0"), &claims());
    assert_eq!(
        check(&validator, &token_1).await.unwrap_err(),
        K::BadSignature
    );
    let head = json!({ "alg": "ES256", "typ": "at+jwt" });
    assert_eq!(
        check(&validator, &token(&keys[5], &head, &claims()))
            .await
            .unwrap_err(),
        K::UnknownKey
    );
}

/// RFC 7517 section 4.3: `key_ops` names what a key is for; a key that
/// says it is for encryption only (`["encrypt", "wrapKey"]`) is no more a
/// signing key than one with `use: enc`, which is skipped.
#[tokio::test]
async fn key_ops_without_verify_is_not_a_signing_key() {
    let es = ProofKey::generate(Algorithm::Es256).unwrap();
    for ops in [json!(["encrypt", "wrapKey"]), json!(["sign"]), json!([])] {
        let mut jwk = published(&es, "w");
        jwk["key_ops"] = ops.clone();
        assert_eq!(
            against(jwk, &es, "ES256").await.unwrap_err(),
            K::UnknownKey,
            "key_ops {ops}"
        );
    }
}

/// An Ed25519 public key of small order (here the identity point) makes
/// every message verify with R = identity, S = 0: a JWKS that publishes one
/// (a bug in an issuer's key handling) would let anyone mint tokens.
#[tokio::test]
async fn small_order_ed25519_keys_verify_nothing() {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let jwk = json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(identity), "kid": "w" });
    let set = jwks([jwk]);
    let validator = validator(&set);
    let input = format!(
        "{}.{}",
        b64(header("EdDSA", "w").to_string()),
        b64(claims().to_string())
    );
    let mut signature = identity.to_vec();
    signature.extend([0u8; 32]);
    // The same key in a DPoP header or a `cnf` is read by the same code.
    let text = json!({ "kty": "OKP", "crv": "Ed25519", "x": b64(identity) }).to_string();
    assert!(tower_token_binding::proof::PublicJwk::parse(&text).is_err());
    assert!(
        check(&validator, &with_signature(&input, &signature))
            .await
            .is_err()
    );
}

/// The order of the Ed25519 group, little-endian.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// RFC 8032 section 5.1.7: S must be below L, so (R, S + L) is no second
/// signature of the same token.
#[tokio::test]
async fn ed25519_s_beyond_the_group_order_is_refused() {
    let ed = ProofKey::generate(Algorithm::EdDsa).unwrap();
    let validator = validator(&jwks([published(&ed, "e")]));
    let (input, signature) = parts(&ed, &header("EdDSA", "e"), &claims());
    assert!(
        check(&validator, &with_signature(&input, &signature))
            .await
            .is_ok()
    );
    let mut twin = signature[..32].to_vec();
    let mut carry = 0u16;
    for (s, l) in signature[32..].iter().zip(ED25519_L) {
        let sum = u16::from(*s) + u16::from(l) + carry;
        twin.push(sum as u8);
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    assert_eq!(
        check(&validator, &with_signature(&input, &twin))
            .await
            .unwrap_err(),
        K::BadSignature
    );
}
