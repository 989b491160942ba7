//! Unit tests of key sets: which JWKs are usable, and how keys are picked.

use super::*;
use serde_json::json;

#[test]
fn unusable_keys_are_skipped() {
    let jwks = json!({ "keys": [
        { "kty": "oct", "k": "c2VjcmV0", "kid": "hmac" },
        { "kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
          "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
          "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" },
        { "kty": "EC", "crv": "P-256", "kid": "sig",
          "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
          "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" },
        { "kty": "weird" },
        "not an object"
    ]});
    let set = KeySet::parse(jwks.to_string().as_bytes(), 0).unwrap();
    assert_eq!(set.keys.len(), 1);
    assert!(set.find(Some("sig"), Algorithm::ES256).is_some());
    assert!(set.find(None, Algorithm::ES256).is_some());
    assert!(set.find(Some("sig"), Algorithm::RS256).is_none());
    assert!(set.find(Some("hmac"), Algorithm::HS256).is_none());
    assert!(set.find(Some("enc"), Algorithm::ES256).is_none());
}

#[test]
fn bad_jwks_documents() {
    assert!(JwksSource::from_json("nope").is_err());
    assert!(JwksSource::from_json("{}").is_err());
    assert!(JwksSource::from_json(r#"{"keys": {}}"#).is_err());
    assert!(JwksSource::from_json(r#"{"keys": []}"#).is_ok());
}

#[test]
fn only_https_urls() {
    assert!(JwksSource::remote("http://issuer.example/jwks").is_err());
    assert!(JwksSource::remote("not a url").is_err());
    assert!(JwksSource::remote("https://issuer.example/jwks").is_ok());
}

#[test]
fn only_https_issuers_without_extras() {
    for bad in [
        "http://issuer.example",
        "issuer.example",
        "not a url",
        "",
        "https://",
        "https://user:pw@issuer.example",
        "https://issuer.example/?tenant=1",
        "https://issuer.example/#frag",
    ] {
        assert!(JwksSource::discover(bad).is_err(), "{bad:?}");
    }
    let remote = JwksSource::discover("https://issuer.example/tenant/").unwrap();
    assert_eq!(
        format!("{remote:?}"),
        "RemoteJwks { issuer: \"https://issuer.example/tenant/\", refresh_interval: 300s, \
         unknown_kid_cooldown: 10s, timeout: 10s, .. }"
    );
}

#[test]
fn debug_hides_userinfo_and_query() {
    let remote = JwksSource::remote("https://u:pw@issuer.example/jwks?sig=s3cret").unwrap();
    let debug = format!("{remote:?}");
    assert!(debug.contains("https://issuer.example/jwks"), "{debug}");
    assert!(
        !debug.contains("pw") && !debug.contains("s3cret"),
        "{debug}"
    );
}
