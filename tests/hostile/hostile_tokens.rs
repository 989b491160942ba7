//! Every hand-made hostile token in one table: what `CnfValidationLayer`
//! with the default `JwtValidator` must refuse, served over real TLS and
//! signed by the test issuer's real key, so that a refusal is about the one
//! fault each token carries (checklist 4, 5, 6 and 8 of `shared/design.md`,
//! RFC 9068 sections 2.2 and 4, and duplicate JSON members).
//!
//! Each row names the case, the token, and a phrase the `error_description`
//! must contain. Most duplicate-member tokens carry the *good* value last:
//! a parser that keeps the last member (as serde_json does) would accept
//! them, so only the duplicate check refuses them.
#![cfg(feature = "test-util")]

use crate::support;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use support::{HttpsClient, https_client};
use tower_token_binding::test_util::{TestCert, TestIssuer, TestPki};
use tower_token_binding::validation::{CnfValidationLayer, JwksSource, JwtValidator};

struct Setup {
    pki: TestPki,
    issuer: TestIssuer,
    cert: TestCert,
    client: HttpsClient,
}

async fn setup() -> Setup {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .default_scope("read")
        .start(&pki)
        .await
        .unwrap();
    let cert = pki.client_cert("a.example").unwrap();
    let client = https_client(&pki, Some(&cert.identity().unwrap()));
    Setup {
        pki,
        issuer,
        cert,
        client,
    }
}

impl Setup {
    /// An API with the default (strict) validator.
    async fn strict_api(&self) -> String {
        let validator = support::jwt_validator(&self.pki, &self.issuer, Duration::from_secs(3600));
        support::start_api(&self.pki, CnfValidationLayer::new(validator)).await
    }

    /// The issuer's claims for this certificate: a good token's.
    fn good(&self) -> Value {
        self.issuer.claims("svc", Some(self.cert.thumbprint()))
    }

    fn sign(&self, claims: &Value) -> String {
        self.issuer.sign(claims).unwrap()
    }

    fn header(&self, alg: jsonwebtoken::Algorithm, typ: Option<&str>) -> jsonwebtoken::Header {
        let mut h = jsonwebtoken::Header::new(alg);
        h.typ = typ.map(str::to_owned);
        h.kid = Some(self.issuer.current_kid());
        h
    }

    /// A header as JSON text, with `extra` members spliced in before the
    /// good ones (so the good ones come last).
    fn raw_header(&self, extra: &str) -> String {
        format!(
            r#"{{{extra}"alg":"ES256","typ":"at+jwt","kid":"{}"}}"#,
            self.issuer.current_kid()
        )
    }

    /// The good claims as JSON text, with `extra` members spliced in first.
    fn raw_payload(&self, extra: &str) -> String {
        let good = self.good().to_string();
        format!("{{{extra}{}", &good[1..])
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Calls `api` with `Authorization: Bearer <token>`; the status and the
/// challenge.
async fn call(client: &HttpsClient, api: &str, token: &str) -> (StatusCode, String) {
    let request = Request::get(api.to_owned())
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = client.request(request).await.expect("request");
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status(), challenge)
}

/// One hostile token: a name, the token, and what the `error_description`
/// must say.
struct Case {
    name: String,
    token: String,
    says: &'static str,
}

fn case(name: impl Into<String>, token: String, says: &'static str) -> Case {
    Case {
        name: name.into(),
        token,
        says,
    }
}

const DUPLICATE: &str = "names a JSON member twice";
const BAD_JWT: &str = "not a well-formed JWT";

fn hostile_tokens(s: &Setup) -> Vec<Case> {
    let issuer = &s.issuer;
    let raw = |header: String, payload: String| issuer.sign_raw(&header, &payload).unwrap();
    let other = Value::String(
        s.pki
            .client_cert("b.example")
            .unwrap()
            .thumbprint()
            .to_string(),
    );
    let own = Value::String(s.cert.thumbprint().to_string());
    let mut cases = Vec::new();

    // Duplicate members: refused before anything else.
    for extra in [
        r#""alg":"none","#,
        r#""alg":"HS256","#,
        r#""typ":"JWT","#,
        r#""kid":"another-key","#,
        r#""a\u006cg":"none","#,
    ] {
        cases.push(case(
            format!("header {extra}"),
            raw(s.raw_header(extra), s.raw_payload("")),
            DUPLICATE,
        ));
    }
    for extra in [
        format!(r#""cnf":{{"x5t#S256":{other}}},"#),
        r#""aud":"https://another.api","#.to_owned(),
        r#""sub":"admin","#.to_owned(),
        r#""iss":"https://evil.example","#.to_owned(),
        r#""exp":1,"#.to_owned(),
        r#""scope":"admin","#.to_owned(),
        format!(r#""c\u006ef":{{"x5t#S256":{other}}},"#),
    ] {
        cases.push(case(
            format!("payload {extra}"),
            raw(s.raw_header(""), s.raw_payload(&extra)),
            DUPLICATE,
        ));
    }
    let mut claims = s.good();
    claims.as_object_mut().unwrap().remove("cnf");
    let body = claims.to_string();
    for cnf in [
        format!(r#"{{"x5t#S256":{other},"x5t#S256":{own}}}"#),
        format!(r#"{{"x5t#S256":{own},"x5t#S256":{other}}}"#),
        format!(r#"{{"x5t#S256":{own},"jkt":"a","jkt":"b"}}"#),
    ] {
        cases.push(case(
            format!("cnf {cnf}"),
            raw(s.raw_header(""), format!(r#"{{"cnf":{cnf},{}"#, &body[1..])),
            DUPLICATE,
        ));
    }
    cases.push(case(
        "a duplicate deep in a custom claim",
        raw(
            s.raw_header(""),
            s.raw_payload(r#""ext":{"roles":[{"name":"a","name":"b"}]},"#),
        ),
        DUPLICATE,
    ));

    // RFC 9068 section 2.2: required claims, by name.
    for (claim, says) in [
        ("iss", "lacks a valid iss claim"),
        ("exp", "lacks a valid exp claim"),
        ("aud", "lacks a valid aud claim"),
        ("sub", "lacks a valid sub claim"),
        ("client_id", "lacks a valid client_id claim"),
        ("iat", "lacks a valid iat claim"),
        ("jti", "lacks a valid jti claim"),
    ] {
        let mut c = s.good();
        c.as_object_mut().unwrap().remove(claim);
        cases.push(case(format!("no {claim}"), s.sign(&c), says));
    }
    for (claim, value, says) in [
        ("sub", json!(42), "lacks a valid sub claim"),
        ("sub", json!(""), "lacks a valid sub claim"),
        ("client_id", json!(["svc"]), "lacks a valid client_id claim"),
        ("jti", json!(7), "lacks a valid jti claim"),
        ("jti", json!(""), "lacks a valid jti claim"),
        ("iat", json!("yesterday"), "lacks a valid iat claim"),
        ("iat", json!(now() + 3600), "not valid yet"),
        ("iss", json!(["x"]), "wrong issuer"),
    ] {
        let mut c = s.good();
        c[claim] = value.clone();
        cases.push(case(format!("{claim} = {value}"), s.sign(&c), says));
    }

    // RFC 9068 section 4: typ.
    for typ in [
        None,
        Some("JWT"),
        Some("at+JWT+x"),
        Some("jwt"),
        Some("dpop+jwt"),
    ] {
        cases.push(case(
            format!("typ {typ:?}"),
            issuer.sign_with_typ(typ, &s.good()).unwrap(),
            "typ is not one this server accepts",
        ));
    }

    // Algorithms and signatures.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(
            json!({ "alg": "none", "typ": "at+jwt", "kid": issuer.current_kid() }).to_string()
        ),
        URL_SAFE_NO_PAD.encode(s.good().to_string())
    );
    // `none` is no algorithm: refused before any key is looked up.
    cases.push(case("alg none", unsigned, "algorithm not allowed"));
    let jwk = issuer.jwks()["keys"][0].clone();
    for secret in [jwk.to_string(), jwk["x"].as_str().unwrap().to_owned()] {
        let forged = jsonwebtoken::encode(
            &s.header(jsonwebtoken::Algorithm::HS256, Some("at+jwt")),
            &s.good(),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        cases.push(case(
            "HS256 with the public key",
            forged,
            "algorithm not allowed",
        ));
    }
    let signed = s.sign(&s.good());
    // One character in the middle of the signature changed (the last one
    // carries padding bits, and changing it would make bad base64).
    let mut flipped = signed.clone().into_bytes();
    let at = flipped.len() - 10;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    cases.push(case("bad signature", flipped, "signature is invalid"));
    let (head, rest) = signed.split_once('.').unwrap();
    let sig = rest.split_once('.').unwrap().1;
    let mut swapped = s.good();
    swapped["sub"] = json!("admin");
    cases.push(case(
        "claims swapped under a valid signature",
        format!(
            "{head}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(swapped.to_string())
        ),
        "signature is invalid",
    ));

    // iss, aud, exp, nbf.
    for (claim, value, says) in [
        ("iss", json!("https://evil.example"), "wrong issuer"),
        (
            "aud",
            json!("https://another.api"),
            "not meant for this resource",
        ),
        (
            "aud",
            json!(["https://another.api", "https://third.api"]),
            "not meant for this resource",
        ),
        ("exp", json!(now() - 120), "has expired"),
        ("nbf", json!(now() + 120), "not valid yet"),
    ] {
        let mut c = s.good();
        c[claim] = value.clone();
        cases.push(case(format!("{claim} = {value}"), s.sign(&c), says));
    }

    // Not a JWT at all.
    cases.push(case("garbage", "abc.def.ghi".to_owned(), BAD_JWT));
    cases.push(case("two segments", "abc.def".to_owned(), BAD_JWT));
    cases.push(case("four segments", format!("{signed}.x"), BAD_JWT));

    // `cnf` (checklist 4, 5): wrong encodings and types of `x5t#S256`.
    let digest = *s.cert.thumbprint().as_bytes();
    let sha1_like = URL_SAFE_NO_PAD.encode(&digest[..20]);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let standard = STANDARD.encode(digest);
    let mut cnfs = vec![
        json!({ "x5t#S256": format!("{}=", s.cert.thumbprint()) }),
        json!({ "x5t#S256": hex }),
        json!({ "x5t#S256": standard }),
        json!({ "x5t#S256": sha1_like }),
        json!(s.cert.thumbprint().to_string()),
        json!([s.cert.thumbprint().to_string()]),
        json!({ "x5t#S256": 42 }),
        json!({ "x5t#S256": [s.cert.thumbprint().to_string()] }),
        Value::Null,
    ];
    // Unpadded standard base64 differs from base64url only where the digest
    // encodes to '+' or '/' (three times in four); otherwise it *is* the
    // thumbprint.
    let unpadded = standard.trim_end_matches('=');
    if unpadded != s.cert.thumbprint().to_string() {
        cnfs.push(json!({ "x5t#S256": unpadded }));
    }
    for cnf in cnfs {
        let mut c = s.good();
        c["cnf"] = cnf.clone();
        cases.push(case(
            format!("cnf {cnf}"),
            s.sign(&c),
            "cnf claim is malformed",
        ));
    }
    // A `jkt` that is not a JWK thumbprint is a malformed `cnf`.
    for jkt in [
        json!("abc"),
        json!(42),
        json!(format!("{}=", "A".repeat(43))),
    ] {
        let mut c = s.good();
        c["cnf"] = json!({ "jkt": jkt });
        cases.push(case(
            format!("cnf.jkt {jkt}"),
            s.sign(&c),
            "cnf claim is malformed",
        ));
    }
    // A `cnf` that names no certificate (a DPoP key, a SHA-1 `x5t`,
    // nothing), or a certificate and a DPoP key both, on a route that
    // requires a certificate binding.
    let jkt = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
    for cnf in [
        json!({ "x5t": sha1_like }),
        json!({ "jkt": jkt }),
        json!({ "x5t#S256": s.cert.thumbprint().to_string(), "jkt": jkt }),
        json!({}),
    ] {
        let mut c = s.good();
        c["cnf"] = cnf.clone();
        cases.push(case(
            format!("cnf {cnf}"),
            s.sign(&c),
            "names no binding this server accepts",
        ));
    }
    // Checklist 6: no `cnf` where binding is required (the default).
    let mut c = s.good();
    c.as_object_mut().unwrap().remove("cnf");
    cases.push(case("no cnf", s.sign(&c), "not bound"));

    cases
}

#[tokio::test]
async fn every_hostile_token_is_refused_with_invalid_token() {
    let s = setup().await;
    let api = s.strict_api().await;
    // The harness itself: a good token, signed both ways, gets through.
    let raw_good = s
        .issuer
        .sign_raw(&s.raw_header(""), &s.raw_payload(""))
        .unwrap();
    for token in [s.sign(&s.good()), raw_good] {
        assert_eq!(call(&s.client, &api, &token).await.0, StatusCode::OK);
    }

    let cases = hostile_tokens(&s);
    let mut failures = Vec::new();
    for Case { name, token, says } in &cases {
        let (status, challenge) = call(&s.client, &api, token).await;
        let ok = status == StatusCode::UNAUTHORIZED
            && challenge.starts_with("Bearer error=\"invalid_token\"")
            && challenge.contains(says);
        if !ok {
            failures.push(format!("{name}: {status} {challenge:?} (wanted {says:?})"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile tokens were not refused as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// What strictness must still let through.
#[tokio::test]
async fn what_is_accepted_next_to_the_refusals() {
    let s = setup().await;
    let api = s.strict_api().await;
    let mut accepted = Vec::new();
    // Within the leeway (30 s).
    let mut c = s.good();
    c["exp"] = json!(now() - 5);
    accepted.push(("exp 5 s ago", s.sign(&c)));
    let mut c = s.good();
    c["nbf"] = json!(now() + 5);
    accepted.push(("nbf in 5 s", s.sign(&c)));
    let mut c = s.good();
    c["iat"] = json!(now() + 5);
    accepted.push(("iat in 5 s", s.sign(&c)));
    let mut c = s.good();
    c["iat"] = json!(now() as f64 - 0.5);
    accepted.push(("iat with a fraction", s.sign(&c)));
    // `application/at+jwt`, and an audience list that includes us.
    let mut c = s.good();
    c["aud"] = json!(["https://another.api", s.issuer.audience()]);
    accepted.push((
        "application/at+jwt",
        s.issuer
            .sign_with_typ(Some("application/at+jwt"), &c)
            .unwrap(),
    ));
    // RFC 7800: members of `cnf` we do not understand, next to `x5t#S256`.
    let mut c = s.good();
    c["cnf"]["x5t"] = json!("c29tZXRoaW5nIGVsc2U");
    c["cnf"]["xms_ksl"] = json!("sw");
    accepted.push(("cnf with unknown members", s.sign(&c)));
    // The same name in different objects is not a duplicate.
    accepted.push((
        "one name in two objects",
        s.issuer
            .sign_raw(
                &s.raw_header(""),
                &s.raw_payload(r#""ext":{"sub":"x","aud":{"sub":"y"}},"#),
            )
            .unwrap(),
    ));
    for (name, token) in accepted {
        let (status, challenge) = call(&s.client, &api, &token).await;
        assert_eq!(status, StatusCode::OK, "{name}: {challenge}");
    }
}

/// `allow_missing_claims` relaxes exactly the claims it names, and a claim
/// allowed to be missing is still checked when present.
#[tokio::test]
async fn allow_missing_claims_relaxes_only_what_it_names() {
    let s = setup().await;
    let validator = JwtValidator::builder()
        .issuer(s.issuer.issuer())
        .audience(s.issuer.audience())
        .jwks(
            JwksSource::remote(&s.issuer.jwks_uri())
                .unwrap()
                .root_store(s.pki.root_store()),
        )
        .allow_missing_claims(["jti", "client_id"])
        .build()
        .unwrap();
    let api = support::start_api(&s.pki, CnfValidationLayer::new(validator)).await;

    let mut c = s.good();
    c.as_object_mut().unwrap().remove("jti");
    c.as_object_mut().unwrap().remove("client_id");
    assert_eq!(call(&s.client, &api, &s.sign(&c)).await.0, StatusCode::OK);

    for (change, says) in [
        (json!({ "jti": 7 }), "lacks a valid jti claim"),
        (json!({ "client_id": "" }), "lacks a valid client_id claim"),
        (json!({ "iat": null }), "lacks a valid iat claim"),
    ] {
        let mut c = s.good();
        for (name, value) in change.as_object().unwrap() {
            c[name] = value.clone();
        }
        let (status, challenge) = call(&s.client, &api, &s.sign(&c)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{change}");
        assert!(challenge.contains(says), "{change}: {challenge}");
    }
    let mut c = s.good();
    c.as_object_mut().unwrap().remove("sub");
    let (status, challenge) = call(&s.client, &api, &s.sign(&c)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("lacks a valid sub claim"), "{challenge}");

    // iss, aud and exp cannot be relaxed, nor can an unknown name.
    for claim in ["iss", "aud", "exp", "nbf", "scope"] {
        let built = JwtValidator::builder()
            .issuer(s.issuer.issuer())
            .audience(s.issuer.audience())
            .jwks(JwksSource::remote(&s.issuer.jwks_uri()).unwrap())
            .allow_missing_claims([claim])
            .build();
        let error = built.expect_err(claim).to_string();
        assert!(error.contains(claim), "{error}");
    }
}
