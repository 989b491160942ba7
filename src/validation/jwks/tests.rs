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
    assert!(set.find(Some("sig"), Algorithm::Es256).is_some());
    assert!(set.find(None, Algorithm::Es256).is_some());
    assert!(set.find(Some("sig"), Algorithm::Rs256).is_none());
    // Another curve's algorithm: not this key.
    assert!(set.find(Some("sig"), Algorithm::Es384).is_none());
    assert!(set.find(Some("hmac"), Algorithm::Es256).is_none());
    assert!(set.find(Some("enc"), Algorithm::Es256).is_none());
}

/// The RSA key of RFC 7638 section 3.1.
const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

#[test]
fn published_keys_read_as_issuers_write_them() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let n = URL_SAFE_NO_PAD.decode(RFC7638_N).unwrap();
    // A modulus written as a signed integer, with a leading zero byte.
    let signed_n = URL_SAFE_NO_PAD.encode([&[0u8][..], &n].concat());
    let jwks = json!({ "keys": [
        { "kty": "RSA", "kid": "signed", "n": signed_n, "e": "AQAB" },
        { "kty": "RSA", "kid": "hs", "alg": "HS256", "n": RFC7638_N, "e": "AQAB" },
        { "kty": "RSA", "kid": "ps", "alg": "PS256", "n": RFC7638_N, "e": "AQAB" },
        { "kty": "RSA", "kid": "es", "alg": "ES256", "n": RFC7638_N, "e": "AQAB" },
        { "kty": "RSA", "kid": 7, "n": RFC7638_N, "e": "AQAB" },
        { "kty": "RSA", "kid": "use", "use": 1, "n": RFC7638_N, "e": "AQAB" },
        { "kty": "RSA", "kid": "private", "n": RFC7638_N, "e": "AQAB", "d": "AQAB" },
    ]});
    let set = KeySet::parse(jwks.to_string().as_bytes(), 0).unwrap();
    let kids: Vec<_> = set.keys.iter().map(|k| k.kid.as_deref()).collect();
    assert_eq!(kids, [Some("signed"), Some("ps")]);
    let signed = set.find(Some("signed"), Algorithm::Rs256).unwrap();
    assert_eq!(
        signed.thumbprint().to_string(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
    // A key that names its algorithm verifies that one only.
    assert!(set.find(Some("ps"), Algorithm::Ps256).is_some());
    assert!(set.find(Some("ps"), Algorithm::Rs256).is_none());
    // Without a kid: refused when two keys fit.
    assert!(set.find(None, Algorithm::Rs256).is_some());
    assert!(set.find(None, Algorithm::Ps256).is_none());
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
