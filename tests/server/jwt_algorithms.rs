//! Access tokens signed with each JOSE algorithm, verified by
//! `JwtValidator` against a key set that holds one key of each: the same
//! JOSE stack that checks DPoP proofs.

use serde_json::{Value, json};
use tower_token_binding::proof::jws;
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::validation::{
    JwksSource, JwtValidator, TokenErrorKind, ValidateToken as _,
};

const ALL: [Algorithm; 10] = [
    Algorithm::Es256,
    Algorithm::Es384,
    Algorithm::Es512,
    Algorithm::Ps256,
    Algorithm::Ps384,
    Algorithm::Ps512,
    Algorithm::Rs256,
    Algorithm::Rs384,
    Algorithm::Rs512,
    Algorithm::EdDsa,
];

struct Keys {
    keys: Vec<(Algorithm, ProofKey)>,
    jwks: String,
}

/// One key per algorithm, published with its `kid` (the algorithm's name)
/// and `alg`.
fn keys() -> Keys {
    let keys: Vec<(Algorithm, ProofKey)> = ALL
        .into_iter()
        .map(|alg| (alg, ProofKey::generate(alg).unwrap()))
        .collect();
    let published: Vec<Value> = keys
        .iter()
        .map(|(alg, key)| {
            let mut jwk: Value = serde_json::from_str(key.public_jwk().as_json()).unwrap();
            jwk["kid"] = alg.as_str().into();
            jwk["alg"] = alg.as_str().into();
            jwk["use"] = "sig".into();
            jwk
        })
        .collect();
    Keys {
        keys,
        jwks: json!({ "keys": published }).to_string(),
    }
}

fn claims() -> Value {
    let now = tower_token_binding::clock::wall()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "iss": "https://issuer.example",
        "aud": "https://api.example",
        "sub": "svc",
        "client_id": "svc",
        "jti": "t-1",
        "iat": now,
        "exp": now + 300,
    })
}

fn sign(key: &ProofKey, alg: Algorithm, kid: &str, claims: &Value) -> String {
    let header = json!({ "alg": alg.as_str(), "typ": "at+jwt", "kid": kid });
    jws::sign(
        key,
        &jws::encode_segment(header.to_string().as_bytes()),
        claims.to_string().as_bytes(),
    )
    .unwrap()
}

fn validator(keys: &Keys, algorithms: Option<&[Algorithm]>) -> JwtValidator {
    let builder = JwtValidator::builder()
        .issuer("https://issuer.example")
        .audience("https://api.example")
        .jwks(JwksSource::from_json(&keys.jwks).unwrap())
        .cache_capacity(0);
    match algorithms {
        Some(algorithms) => builder.algorithms(algorithms.iter().copied()),
        None => builder,
    }
    .build()
    .unwrap()
}

#[tokio::test]
async fn every_algorithm_verifies_by_default() {
    let keys = keys();
    let validator = validator(&keys, None);
    for (alg, key) in &keys.keys {
        let token = sign(key, *alg, alg.as_str(), &claims());
        let verified = validator.validate(&token).await;
        assert!(verified.is_ok(), "{alg:?}: {verified:?}");
        // The last signature byte flipped.
        let mut forged = token.into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let refused = validator.validate(&forged).await.unwrap_err();
        assert_eq!(refused.kind(), TokenErrorKind::BadSignature, "{alg:?}");
    }
}

#[tokio::test]
async fn a_key_verifies_only_its_own_algorithm() {
    let keys = keys();
    let validator = validator(&keys, None);
    let (_, ps256) = keys
        .keys
        .iter()
        .find(|(a, _)| *a == Algorithm::Ps256)
        .unwrap();
    // PS256's key, published for PS256, with a token that says RS256.
    let token = sign(ps256, Algorithm::Rs256, "PS256", &claims());
    let refused = validator.validate(&token).await.unwrap_err();
    assert_eq!(refused.kind(), TokenErrorKind::UnknownKey);
    // An ES256 token naming the ES384 key.
    let (_, es256) = keys
        .keys
        .iter()
        .find(|(a, _)| *a == Algorithm::Es256)
        .unwrap();
    let token = sign(es256, Algorithm::Es256, "ES384", &claims());
    let refused = validator.validate(&token).await.unwrap_err();
    assert_eq!(refused.kind(), TokenErrorKind::UnknownKey);
}

#[tokio::test]
async fn only_the_allowed_algorithms_verify() {
    let keys = keys();
    let validator = validator(&keys, Some(&[Algorithm::Es256, Algorithm::EdDsa]));
    for (alg, key) in &keys.keys {
        let token = sign(key, *alg, alg.as_str(), &claims());
        let result = validator.validate(&token).await;
        match alg {
            Algorithm::Es256 | Algorithm::EdDsa => assert!(result.is_ok(), "{alg:?}"),
            _ => assert_eq!(
                result.unwrap_err().kind(),
                TokenErrorKind::DisallowedAlgorithm,
                "{alg:?}"
            ),
        }
    }
}

#[tokio::test]
async fn registered_claims_are_checked_after_the_signature() {
    let keys = keys();
    let validator = validator(&keys, None);
    let (alg, key) = &keys.keys[0];
    let cases: [(&str, Value, TokenErrorKind); 8] = [
        ("exp", json!(null), TokenErrorKind::MissingClaim),
        ("exp", json!("soon"), TokenErrorKind::MissingClaim),
        ("exp", json!(1_000_000_000), TokenErrorKind::Expired),
        ("nbf", json!(4_000_000_000u64), TokenErrorKind::NotYetValid),
        ("nbf", json!("later"), TokenErrorKind::MissingClaim),
        (
            "aud",
            json!(["https://other.example"]),
            TokenErrorKind::WrongAudience,
        ),
        (
            "aud",
            json!(["https://api.example", 1]),
            TokenErrorKind::MissingClaim,
        ),
        ("aud", json!(null), TokenErrorKind::MissingClaim),
    ];
    for (claim, value, kind) in cases {
        let mut claims = claims();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(claim);
        } else {
            claims[claim] = value.clone();
        }
        let token = sign(key, *alg, alg.as_str(), &claims);
        let refused = validator.validate(&token).await.unwrap_err();
        assert_eq!(refused.kind(), kind, "{claim} = {value}");
    }
    // An audience among others, and a fractional exp, are fine.
    let mut claims = claims();
    claims["aud"] = json!(["https://other.example", "https://api.example"]);
    claims["exp"] = json!(claims["exp"].as_f64().unwrap() + 0.5);
    let token = sign(key, *alg, alg.as_str(), &claims);
    assert!(validator.validate(&token).await.is_ok());
}
