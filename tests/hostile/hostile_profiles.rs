//! A hostile review of token profiles and several trusted issuers: tokens
//! signed with the test issuer's real keys (or an attacker's), shaped to
//! slip through the issuer choice, the multi-tenant template, the `typ`
//! rule, the claim checks, the scope reading and the verified-token cache.
//!
//! Tests named `finding_*` show a weakness: they pass once it is fixed.
//! The others check that a defence holds.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::Logs;
use tower_token_binding::ConfigErrorKind;
use tower_token_binding::server::ResourceServer;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::validation::{
    DEFAULT_MAX_JWT_LENGTH, JwksSource, JwtValidator, TokenErrorKind, TokenProfile, TrustedIssuer,
    ValidateToken, VerifiedToken,
};

const AUD: &str = "api://orders";
const WARNING: &str = "refused for its shape alone";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn static_keys(issuer: &TestIssuer) -> JwksSource {
    JwksSource::from_json(&issuer.jwks().to_string()).unwrap()
}

fn validator(profile: TokenProfile, trusted: Vec<TrustedIssuer>) -> JwtValidator {
    let mut builder = JwtValidator::builder().token_profile(profile).audience(AUD);
    for issuer in trusted {
        builder = builder.trust(issuer);
    }
    builder.build().unwrap()
}

/// Claims that fit every preset (each one's client and unique id), so that
/// only the `typ`, `iss` or the one change under test decides.
fn union_claims(iss: &str) -> Value {
    let now = now();
    json!({
        "iss": iss, "aud": AUD, "sub": "svc", "iat": now, "nbf": now, "exp": now + 300,
        "client_id": "svc", "azp": "svc", "cid": "svc", "jti": "j-1", "uti": "u-1",
        "scope": "Orders.Read", "tid": "tenant-one",
    })
}

/// An Entra v2 app-only token's claims.
fn entra_claims(iss: &str, tid: Value) -> Value {
    let now = now();
    json!({
        "aud": AUD, "iss": iss, "iat": now, "nbf": now, "exp": now + 300,
        "azp": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "azpacr": "2", "sub": "b6",
        "oid": "b6", "tid": tid, "uti": "u-1", "ver": "2.0", "roles": ["Orders.Read"],
    })
}

fn sign(issuer: &TestIssuer, typ: Option<&str>, claims: &Value) -> String {
    issuer.sign_with_typ(typ, claims).unwrap()
}

/// Signs `payload` exactly as written, under an ES256 header with `typ`.
fn sign_raw(issuer: &TestIssuer, typ: &str, payload: &str) -> String {
    let header = format!(
        r#"{{"alg":"ES256","typ":"{typ}","kid":"{}"}}"#,
        issuer.current_kid()
    );
    issuer.sign_raw(&header, payload).unwrap()
}

async fn refused(v: &JwtValidator, token: &str) -> TokenErrorKind {
    match v.validate(token).await {
        Ok(t) => panic!("accepted: {:?}", t.claims()),
        Err(e) => e.kind(),
    }
}

// ---------------------------------------------------------------------
// The profile advice and the builder's errors.
// ---------------------------------------------------------------------

/// A token refused for its `typ` tells the operator to switch profiles only
/// once its signature is checked: otherwise anyone who knows the issuer's
/// URL could make the logs recommend a laxer profile (`okta`: no `typ` at
/// all).
#[tokio::test]
async fn forged_tokens_never_drive_the_profile_advice() {
    let (logs, _guard) = Logs::capture(tracing::Level::WARN);
    let pki = TestPki::new().unwrap();
    let trusted = TestIssuer::start(&pki).await.unwrap();
    let attacker = TestIssuer::start(&pki).await.unwrap();
    let v = validator(
        TokenProfile::rfc9068(),
        vec![TrustedIssuer::new(trusted.issuer(), static_keys(&trusted))],
    );

    // Entra-shaped, naming the trusted issuer, signed by the attacker.
    let claims = entra_claims(trusted.issuer(), json!("t"));
    let forged = sign(&attacker, Some("JWT"), &claims);
    assert_eq!(refused(&v, &forged).await, TokenErrorKind::WrongType);
    // With no signature at all.
    let (head, rest) = forged.split_once('.').unwrap();
    let payload = rest.split_once('.').unwrap().0;
    let unsigned = format!("{head}.{payload}.AAAA");
    assert_eq!(refused(&v, &unsigned).await, TokenErrorKind::WrongType);

    let text = logs.text();
    assert!(
        !text.contains(WARNING),
        "a token whose signature was never checked named a profile to switch to: {text}"
    );
}

/// The control for the test above: a token that does verify gets the
/// advice.
#[tokio::test]
async fn genuine_tokens_still_get_the_profile_advice() {
    let (logs, _guard) = Logs::capture(tracing::Level::WARN);
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let v = validator(
        TokenProfile::rfc9068(),
        vec![TrustedIssuer::new(issuer.issuer(), static_keys(&issuer))],
    );
    let token = sign(
        &issuer,
        Some("JWT"),
        &entra_claims(issuer.issuer(), json!("t")),
    );
    assert_eq!(refused(&v, &token).await, TokenErrorKind::WrongType);
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains(WARNING))
        .unwrap_or_else(|| panic!("no advice: {text}"));
    assert!(line.contains("entra"), "{line}");
    assert!(!line.contains(&token), "the token is not logged");
    assert!(
        !line.contains(token.split('.').nth(1).unwrap()),
        "nor its payload"
    );
}

/// A malformed tenant allow-list (or `/organizations` and `/common` both
/// given, which make the same template) is an issuer error from
/// `ResourceServerBuilder::build`, not one about TLS.
#[tokio::test]
async fn tenant_settings_errors_name_the_issuer() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let build = |issuers: &[String], tenants: &[&str]| {
        let (chain, key) = pki.server_identity().unwrap();
        let mut builder = ResourceServer::builder()
            .token_profile(TokenProfile::entra())
            .audience(AUD)
            .tls_identity(chain, key)
            .root_store(pki.root_store())
            .allowed_tenants(tenants.iter().copied());
        for i in issuers {
            builder = builder.issuer(i.clone());
        }
        let e = builder.build().map(|_| ()).unwrap_err();
        (e.kind(), e.setting())
    };
    let bad_tenant = build(&[issuer.multi_tenant_endpoint()], &["tenant/one"]);
    let both = build(
        &[
            issuer.multi_tenant_endpoint(),
            format!("{}/common/v2.0", issuer.issuer()),
        ],
        &["tenant-one"],
    );
    assert_eq!(
        bad_tenant,
        (ConfigErrorKind::Invalid, Some("allowed_tenants")),
        "bad tenant"
    );
    assert_eq!(
        both,
        (ConfigErrorKind::Invalid, Some("issuer")),
        "the same template twice"
    );
}

// ---------------------------------------------------------------------
// Defences that hold.
// ---------------------------------------------------------------------

/// A token naming A is checked with A's keys only, whatever its `kid`, and
/// `iss` read by the early peek and by serde_json agree.
#[tokio::test]
async fn a_token_naming_a_is_checked_with_a_keys_only() {
    let pki = TestPki::new().unwrap();
    let a = TestIssuer::start(&pki).await.unwrap();
    let b = TestIssuer::start(&pki).await.unwrap();
    let v = validator(
        TokenProfile::rfc9068(),
        vec![
            TrustedIssuer::new(a.issuer(), static_keys(&a)),
            TrustedIssuer::new(b.issuer(), static_keys(&b)),
        ],
    );
    let claims = union_claims(a.issuer());
    assert!(v.validate(&sign(&a, Some("at+jwt"), &claims)).await.is_ok());
    // Signed by B, with A's kid, B's kid, no kid.
    for kid in [Some(a.current_kid()), Some(b.current_kid()), None] {
        let forged = b
            .sign_with_typ_and_kid(Some("at+jwt"), kid.as_deref(), &claims)
            .unwrap();
        let kind = refused(&v, &forged).await;
        assert!(
            matches!(
                kind,
                TokenErrorKind::UnknownKey | TokenErrorKind::BadSignature
            ),
            "{kid:?}: {kind:?}"
        );
    }

    let body = |iss_part: &str| {
        let mut c = union_claims("x");
        c.as_object_mut().unwrap().remove("iss");
        let rest = c.to_string();
        format!("{{{iss_part},{}", &rest[1..])
    };
    let (ia, ib) = (a.issuer(), b.issuer());
    // An escaped `iss` is `iss` for every reader: B's token, B's key: fine.
    let escaped = sign_raw(&b, "at+jwt", &body(&format!(r#""\u0069ss":"{ib}""#)));
    assert!(v.validate(&escaped).await.is_ok());
    for (what, iss_part, expected) in [
        (
            "escaped duplicate",
            format!(r#""iss":"{ia}","\u0069ss":"{ib}""#),
            TokenErrorKind::DuplicateMember,
        ),
        (
            "plain duplicate",
            format!(r#""iss":"{ib}","iss":"{ia}""#),
            TokenErrorKind::DuplicateMember,
        ),
        (
            "array",
            format!(r#""iss":["{ia}","{ib}"]"#),
            TokenErrorKind::WrongIssuer,
        ),
        (
            "nested",
            format!(r#""iss":{{"iss":"{ib}"}}"#),
            TokenErrorKind::WrongIssuer,
        ),
        (
            "number",
            r#""iss":1"#.to_owned(),
            TokenErrorKind::WrongIssuer,
        ),
        (
            "null",
            r#""iss":null"#.to_owned(),
            TokenErrorKind::WrongIssuer,
        ),
        (
            // `\/` is `/`: still A, so B's key does not verify it.
            "escaped slashes",
            format!(r#""iss":"{}""#, ia.replace('/', "\\/")),
            TokenErrorKind::BadSignature,
        ),
    ] {
        let token = sign_raw(&b, "at+jwt", &body(&iss_part));
        let kind = refused(&v, &token).await;
        if expected == TokenErrorKind::BadSignature {
            assert!(
                matches!(
                    kind,
                    TokenErrorKind::UnknownKey | TokenErrorKind::BadSignature
                ),
                "{what}: {kind:?}"
            );
        } else {
            assert_eq!(kind, expected, "{what}");
        }
    }
    // An `iss` nested elsewhere is not read as the issuer.
    let token = sign_raw(
        &b,
        "at+jwt",
        &body(&format!(r#""cnf":{{"iss":"{ib}"}},"iss":"{ia}""#)),
    );
    let kind = refused(&v, &token).await;
    assert!(
        matches!(
            kind,
            TokenErrorKind::UnknownKey | TokenErrorKind::BadSignature
        ),
        "{kind:?}"
    );
}

/// Template tricks: the tenant in another place, other tenants, case,
/// percent-encoding, `/`, `.`, unicode (also across the slice boundaries of
/// `IssuerMatch::matches`), empty, very long, `{tenantid}` itself, a
/// non-string `tid`, a duplicate `tid`. None passes, none panics, and none
/// but the allowed tenant costs a key fetch.
#[tokio::test]
async fn multi_tenant_template_tricks_are_refused() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let base = issuer.issuer().to_owned();
    let template = format!("{base}/{{tenantid}}/v2.0");
    let remote = JwksSource::remote(&issuer.jwks_uri())
        .unwrap()
        .root_store(pki.root_store());
    let v = validator(
        TokenProfile::entra(),
        vec![TrustedIssuer::tenants(
            template,
            ["tenant-one", "a.b"],
            remote,
        )],
    );
    let t = |tenant: &str| format!("{base}/{tenant}/v2.0");
    let long = "a".repeat(10_000);
    let cases: Vec<(String, Value)> = vec![
        (t("tenant-two"), json!("tenant-two")),
        (t("tenant-one"), json!("tenant-two")),
        (t("tenant-two"), json!("tenant-one")),
        (t("TENANT-ONE"), json!("TENANT-ONE")),
        (t("tenant-one"), json!("Tenant-One")),
        (t("tenant%2Done"), json!("tenant-one")),
        (t("tenant%2Done"), json!("tenant%2Done")),
        (format!("{base}/v2.0/tenant-one"), json!("tenant-one")),
        (format!("{base}/tenant-one/v2.0/"), json!("tenant-one")),
        (format!("{base}//tenant-one/v2.0"), json!("tenant-one")),
        (format!("{base}/tenant-one/v2.0?x"), json!("tenant-one")),
        (
            format!("{base}/tenant-one/tenant-one/v2.0"),
            json!("tenant-one"),
        ),
        (t("tenant-one/x"), json!("tenant-one/x")),
        (t("a/b"), json!("a/b")),
        (t("a.c"), json!("a.c")),
        (t(".."), json!("..")),
        (t(""), json!("")),
        (t("{tenantid}"), json!("{tenantid}")),
        (t("ténant-one"), json!("ténant-one")),
        // Same byte length as "tenant-one", a two-byte char at its end,
        // then at its start, then straddling the tail.
        (t("tenant-o\u{e9}"), json!("tenant-one")),
        (t("\u{e9}nant-one"), json!("tenant-one")),
        (format!("{base}/tenant-on\u{e9}v2.0"), json!("tenant-one")),
        (format!("{base}\u{e9}enant-one/v2.0"), json!("tenant-one")),
        (t("tenant-one\u{0}"), json!("tenant-one")),
        (t(&long), json!(long.clone())),
        (t("tenant-one"), json!(["tenant-one"])),
        (t("tenant-one"), json!({ "tid": "tenant-one" })),
        (t("tenant-one"), json!(1)),
        (t("tenant-one"), Value::Null),
        (format!("{base}/organizations/v2.0"), json!("tenant-one")),
        (format!("{base}/{{tenantid}}/v2.0"), json!("tenant-one")),
    ];
    for (iss, tid) in &cases {
        let token = sign(&issuer, Some("JWT"), &entra_claims(iss, tid.clone()));
        let kind = refused(&v, &token).await;
        // The longest is refused sooner still, for its length.
        let expected = if token.len() > DEFAULT_MAX_JWT_LENGTH {
            TokenErrorKind::Malformed
        } else {
            TokenErrorKind::WrongIssuer
        };
        assert_eq!(kind, expected, "{iss} / {tid}");
    }
    // tid missing.
    let mut claims = entra_claims(&t("tenant-one"), json!("tenant-one"));
    claims.as_object_mut().unwrap().remove("tid");
    assert_eq!(
        refused(&v, &sign(&issuer, Some("JWT"), &claims)).await,
        TokenErrorKind::WrongIssuer
    );
    assert_eq!(
        issuer.jwks_fetches(),
        0,
        "no key fetch for a refused tenant"
    );

    // A duplicate tid, one of them escaped.
    let claims = entra_claims(&t("tenant-one"), json!("tenant-one"));
    let text = claims.to_string().replacen(
        r#""tid":"tenant-one""#,
        r#""tid":"tenant-two","t\u0069d":"tenant-one""#,
        1,
    );
    assert!(text.contains("t\\u0069d"));
    let token = sign_raw(&issuer, "JWT", &text);
    assert_eq!(refused(&v, &token).await, TokenErrorKind::DuplicateMember);

    // The allowed tenants pass (control), with an escaped tid too.
    let good = sign(
        &issuer,
        Some("JWT"),
        &entra_claims(&t("tenant-one"), json!("tenant-one")),
    );
    v.validate(&good).await.unwrap();
    let escaped = claims
        .to_string()
        .replacen(r#""tid":"#, r#""t\u0069d":"#, 1);
    v.validate(&sign_raw(&issuer, "JWT", &escaped))
        .await
        .unwrap();
    let dotted = sign(&issuer, Some("JWT"), &entra_claims(&t("a.b"), json!("a.b")));
    v.validate(&dotted).await.unwrap();
}

/// Payloads the parsers might disagree on, or choke on: each refused as
/// malformed before any key is fetched, with no stack overflow.
#[tokio::test]
async fn payload_parsing_edge_cases_are_refused() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let remote = JwksSource::remote(&issuer.jwks_uri())
        .unwrap()
        .root_store(pki.root_store());
    let v = validator(
        TokenProfile::rfc9068(),
        vec![TrustedIssuer::new(issuer.issuer(), remote)],
    );
    let good = union_claims(issuer.issuer()).to_string();
    let inner = &good[1..good.len() - 1];
    let deep = format!(
        "{{{inner},\"x\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let deep_objects = format!(
        "{{{inner},\"x\":{}1{}}}",
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    for (what, payload) in [
        ("deep arrays", deep),
        ("deep objects", deep_objects),
        ("huge number", format!("{{{inner},\"x\":1e400}}")),
        ("huge negative", format!("{{{inner},\"x\":-1e400}}")),
        ("lone surrogate", format!("{{{inner},\"x\":\"\\ud800\"}}")),
        ("trailing data", format!("{good} 1")),
        ("two objects", format!("{good}{{}}")),
        ("byte order mark", format!("\u{feff}{good}")),
        ("array", format!("[{good}]")),
        ("string", "\"x\"".to_owned()),
        ("control char", format!("{{{inner},\"x\":\"a\u{1}b\"}}")),
    ] {
        let token = sign_raw(&issuer, "at+jwt", &payload);
        let kind = refused(&v, &token).await;
        assert!(
            matches!(kind, TokenErrorKind::Malformed),
            "{what}: {kind:?}"
        );
    }
    // Invalid UTF-8 inside a string, and as a member name.
    for bytes in [
        [b"{\"iss\":\"".as_slice(), b"\xff\xfe", b"\"}"].concat(),
        [b"{\"".as_slice(), b"\xc3", b"\":1,\"iss\":\"x\"}"].concat(),
    ] {
        let token = format!(
            "{}.{}.AAAA",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"at+jwt"}"#),
            URL_SAFE_NO_PAD.encode(&bytes)
        );
        assert_eq!(refused(&v, &token).await, TokenErrorKind::Malformed);
    }
    assert_eq!(issuer.jwks_fetches(), 0, "refused before any key fetch");
    // A big number that does parse is just a claim (control).
    let token = sign_raw(&issuer, "at+jwt", &format!("{{{inner},\"x\":1e300}}"));
    v.validate(&token).await.unwrap();
}

/// The header `typ`: exactly `at+jwt`/`application/at+jwt` (any case), plus
/// `JWT` and/or none where the profile says; never anything near them.
#[tokio::test]
async fn typ_near_misses_are_refused_under_every_profile() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let claims = union_claims(issuer.issuer());
    let near = [
        "jwt ",
        " JWT",
        "JWT\t",
        "at+jwt ",
        " at+jwt",
        "at+jwt; charset=utf-8",
        "application/at+jwt; q=1",
        "application/jwt",
        "application/JWT",
        "application/at+jwt+x",
        "at-jwt",
        "at+jws",
        "JWS",
        "JOSE",
        "JOSE+JSON",
        "",
        "at%2Bjwt",
        "at+jwt\u{0}",
        "ＪＷＴ",
        "dpop+jwt",
        "id_token+jwt",
        "logout+jwt",
        "secevent+jwt",
        "token-introspection+jwt",
    ];
    for name in ["rfc9068", "entra", "keycloak", "auth0", "okta"] {
        let profile = TokenProfile::named(name).unwrap();
        let v = validator(
            profile.clone(),
            vec![TrustedIssuer::new(issuer.issuer(), static_keys(&issuer))],
        );
        for typ in near {
            let token = sign(&issuer, Some(typ), &claims);
            assert_eq!(
                refused(&v, &token).await,
                TokenErrorKind::WrongType,
                "{name}: {typ:?}"
            );
        }
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            let token = sign(&issuer, Some(typ), &claims);
            v.validate(&token).await.unwrap();
        }
        let jwt = sign(&issuer, Some("JWT"), &claims);
        let none = sign(&issuer, None, &claims);
        let takes_jwt = matches!(name, "entra" | "keycloak" | "auth0");
        let takes_none = name == "okta";
        assert_eq!(v.validate(&jwt).await.is_ok(), takes_jwt, "{name}: JWT");
        assert_eq!(
            v.validate(&none).await.is_ok(),
            takes_none,
            "{name}: no typ"
        );
        // typ null reads as no typ.
        let header = format!(
            r#"{{"alg":"ES256","typ":null,"kid":"{}"}}"#,
            issuer.current_kid()
        );
        let null = issuer.sign_raw(&header, &claims.to_string()).unwrap();
        assert_eq!(
            v.validate(&null).await.is_ok(),
            takes_none,
            "{name}: typ null"
        );
        // A second typ, escaped: refused whatever it says.
        let header = format!(
            r#"{{"alg":"ES256","typ":"JWT","t\u0079p":"at+jwt","kid":"{}"}}"#,
            issuer.current_kid()
        );
        let twice = issuer.sign_raw(&header, &claims.to_string()).unwrap();
        assert_eq!(
            refused(&v, &twice).await,
            TokenErrorKind::DuplicateMember,
            "{name}"
        );
        // A non-string typ.
        let header = format!(
            r#"{{"alg":"ES256","typ":["at+jwt"],"kid":"{}"}}"#,
            issuer.current_kid()
        );
        let array = issuer.sign_raw(&header, &claims.to_string()).unwrap();
        assert!(v.validate(&array).await.is_err(), "{name}: typ array");
    }
}

/// Where `typ` cannot tell (JWT or none), ID tokens are refused, and claims
/// present with the wrong type or empty are refused.
#[tokio::test]
async fn id_tokens_and_bad_claims_are_refused_under_relaxed_profiles() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let base = union_claims(issuer.issuer());
    for (name, typ) in [
        ("entra", Some("JWT")),
        ("keycloak", Some("jwt")),
        ("auth0", Some("JWT")),
        ("okta", None),
    ] {
        let v = validator(
            TokenProfile::named(name).unwrap(),
            vec![TrustedIssuer::new(issuer.issuer(), static_keys(&issuer))],
        );
        v.validate(&sign(&issuer, typ, &base)).await.unwrap();
        for (what, change) in [
            ("at_hash", json!({ "at_hash": "x" })),
            ("c_hash", json!({ "c_hash": "x" })),
            ("s_hash", json!({ "s_hash": "x" })),
            ("at_hash null", json!({ "at_hash": null })),
            ("typ ID", json!({ "typ": "ID" })),
            ("typ Refresh", json!({ "typ": "Refresh" })),
            ("typ Logout", json!({ "typ": "Logout" })),
            ("typ Bearer with space", json!({ "typ": "Bearer " })),
            ("typ null", json!({ "typ": null })),
            ("typ array", json!({ "typ": ["Bearer"] })),
        ] {
            let mut claims = base.clone();
            claims
                .as_object_mut()
                .unwrap()
                .extend(change.as_object().unwrap().clone());
            assert_eq!(
                refused(&v, &sign(&issuer, typ, &claims)).await,
                TokenErrorKind::WrongType,
                "{name}: {what}"
            );
        }
        for (what, change) in [
            ("empty sub", json!({ "sub": "" })),
            ("numeric sub", json!({ "sub": 1 })),
            ("string iat", json!({ "iat": "1" })),
            ("empty client_id", json!({ "client_id": "" })),
            ("numeric azp", json!({ "azp": 7 })),
            ("empty cid", json!({ "cid": "" })),
            ("numeric jti", json!({ "jti": 7 })),
            ("empty uti", json!({ "uti": "" })),
            ("array uti", json!({ "uti": ["u"] })),
            ("iat far ahead", json!({ "iat": now() + 3600 })),
        ] {
            let mut claims = base.clone();
            claims
                .as_object_mut()
                .unwrap()
                .extend(change.as_object().unwrap().clone());
            let result = v.validate(&sign(&issuer, typ, &claims)).await;
            // Each profile checks its own claims and every present RFC 9068
            // one; uti/cid/azp only where the profile reads them.
            let reads = match what {
                "empty uti" | "array uti" => name == "entra",
                "empty cid" => name == "okta",
                "numeric azp" => matches!(name, "entra" | "keycloak" | "auth0"),
                _ => true,
            };
            assert_eq!(result.is_err(), reads, "{name}: {what}: {result:?}");
        }
    }
}

/// A permission claim of another form than the profile names grants
/// nothing; a claim the profile does not name grants nothing.
#[test]
fn scopes_come_only_from_the_named_claims_in_the_named_form() {
    let read = |profile: TokenProfile, claims: Value| {
        VerifiedToken::from_claims_with_profile(claims.as_object().unwrap().clone(), profile)
            .unwrap()
    };
    let entra = read(
        TokenProfile::entra(),
        json!({ "roles": "Orders.Read Orders.Write", "scp": ["Orders.Admin"],
                "scope": "Orders.Delete", "permissions": ["Orders.Own"] }),
    );
    assert_eq!(
        entra.scopes().count(),
        0,
        "{:?}",
        entra.scopes().collect::<Vec<_>>()
    );
    let okta = read(
        TokenProfile::okta(),
        json!({ "scp": "Orders.Read Orders.Write", "scope": "Orders.Read" }),
    );
    assert_eq!(okta.scopes().count(), 0);
    let rfc = read(
        TokenProfile::rfc9068(),
        json!({ "scope": ["Orders.Read"], "scp": "Orders.Read", "roles": ["Orders.Read"] }),
    );
    assert_eq!(rfc.scopes().count(), 0);
    let auth0 = read(
        TokenProfile::auth0(),
        json!({ "permissions": "Orders.Read Orders.Write", "scope": "a\tOrders.Read" }),
    );
    assert!(!auth0.has_scope("Orders.Read"));
    let keycloak = read(
        TokenProfile::keycloak(),
        json!({ "scope": "Orders.Read", "realm_access": { "roles": ["Orders.Admin"] } }),
    );
    assert!(keycloak.scopes().eq(["Orders.Read"]));
    // An array entry holding a space is one permission, not two.
    let entra = read(
        TokenProfile::entra(),
        json!({ "roles": ["Orders.Read Orders.Admin"] }),
    );
    assert!(!entra.has_scope("Orders.Admin"));
}

/// A flood of shape-refused tokens yields one warning a second, without
/// the tokens, and costs no more than the tokens' size.
#[tokio::test]
async fn the_shape_warning_is_bounded() {
    let (logs, _guard) = Logs::capture(tracing::Level::WARN);
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let v = JwtValidator::builder()
        .token_profile(TokenProfile::rfc9068())
        .audience(AUD)
        .trust(TrustedIssuer::new(issuer.issuer(), static_keys(&issuer)))
        .max_token_length(1 << 20)
        .build()
        .unwrap();
    // Big payloads (300 KB of small members), typ JWT: refused on typ.
    let mut claims = entra_claims(issuer.issuer(), json!("t"));
    for i in 0..20_000 {
        claims[format!("k{i}")] = json!(i);
    }
    let token = sign(&issuer, Some("JWT"), &claims);
    assert!(token.len() > 300_000);
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(refused(&v, &token).await, TokenErrorKind::WrongType);
    }
    let spent = started.elapsed();
    let text = logs.text();
    let lines = text.lines().filter(|l| l.contains(WARNING)).count();
    assert!(
        lines <= 1 + spent.as_secs() as usize,
        "{lines} warnings in {spent:?}"
    );
    assert!(!text.contains(&token[..200]), "no token in the logs");
    eprintln!("50 refusals of a {} byte token: {spent:?}", token.len());
}

/// The verified-token cache: a token verified under A's keys is not served
/// once A's key set has changed (and lost its key), with B's generation in
/// the same sum.
#[tokio::test]
async fn a_cached_token_is_dropped_when_its_issuers_keys_change() {
    let pki = TestPki::new().unwrap();
    let a = TestIssuer::start(&pki).await.unwrap();
    let b = TestIssuer::start(&pki).await.unwrap();
    let remote = |i: &TestIssuer| {
        JwksSource::remote(&i.jwks_uri())
            .unwrap()
            .root_store(pki.root_store())
            .unknown_kid_cooldown(Duration::ZERO)
    };
    let v = validator(
        TokenProfile::rfc9068(),
        vec![
            TrustedIssuer::new(a.issuer(), remote(&a)),
            TrustedIssuer::new(b.issuer(), remote(&b)),
        ],
    );
    let old_a = sign(&a, Some("at+jwt"), &union_claims(a.issuer()));
    v.validate(&old_a).await.unwrap();
    v.validate(&old_a).await.unwrap(); // from the cache now
    let fetched = a.jwks_fetches();

    // B rotates: A's cached token is still A's to judge.
    b.rotate_signing_key().unwrap();
    b.retire_old_keys();
    v.validate(&sign(&b, Some("at+jwt"), &union_claims(b.issuer())))
        .await
        .unwrap();
    v.validate(&old_a).await.unwrap();

    // A rotates and drops the old key; a new token of A makes it refetch.
    a.rotate_signing_key().unwrap();
    a.retire_old_keys();
    v.validate(&sign(&a, Some("at+jwt"), &union_claims(a.issuer())))
        .await
        .unwrap();
    assert!(a.jwks_fetches() > fetched);
    let kind = refused(&v, &old_a).await;
    assert_eq!(kind, TokenErrorKind::UnknownKey);
}
