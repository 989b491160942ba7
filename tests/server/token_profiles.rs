//! Tokens shaped as real issuers send them (Microsoft Entra v1 and v2,
//! Keycloak, Auth0, Okta, and RFC 9068), certificate-bound and signed by the
//! test issuer, against a `ResourceServer` over real TLS on loopback: each
//! preset profile accepts its issuer's tokens with their certificate and
//! nothing else, the strict default refuses them all and says which profile
//! would not, and several trusted issuers (a multi-tenant Entra one among
//! them) each answer for their own tokens only.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use std::future::IntoFuture as _;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{StatusCode, header};
use serde_json::{Value, json};
use support::Logs;
use tower_token_binding::ConfigErrorKind;
use tower_token_binding::server::ResourceServer;
use tower_token_binding::test_util::{TestIssuer, TestPki, get_with_token};
use tower_token_binding::validation::{TokenProfile, VerifiedToken};
use tower_token_binding::{ClientIdentity, Thumbprint};

const AUDIENCE: &str = "api://orders";
const SCOPE: &str = "Orders.Read";

/// What the handler saw: the same answers under every profile.
async fn whoami(token: VerifiedToken) -> Json<Value> {
    Json(json!({
        "client_id": token.client_id(),
        "scopes": token.scopes().collect::<Vec<_>>(),
        "profile": token.profile().name(),
    }))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A `ResourceServer` trusting `issuers` under `profile`, requiring
/// [`SCOPE`]; its URL.
async fn serve(
    pki: &TestPki,
    issuers: &[String],
    profile: Option<TokenProfile>,
    tenants: &[&str],
) -> String {
    let (chain, key) = pki.server_identity().unwrap();
    let mut builder = ResourceServer::builder()
        .audience(AUDIENCE)
        .tls_identity(chain, key)
        .root_store(pki.root_store())
        .required_scope(SCOPE);
    for issuer in issuers {
        builder = builder.issuer(issuer.clone());
    }
    if let Some(profile) = profile {
        builder = builder.token_profile(profile);
    }
    if !tenants.is_empty() {
        builder = builder.allowed_tenants(tenants.iter().copied());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/whoami",
        listener.local_addr().unwrap().port()
    );
    let server = builder
        .build()
        .unwrap()
        .serve(listener, Router::new().route("/whoami", get(whoami)));
    tokio::spawn(server.into_future());
    url
}

/// The header and claims of a token of `preset`'s shape from `iss`, bound to
/// `bound_to`, granting `permission`.
fn shaped(
    preset: &str,
    iss: &str,
    bound_to: Thumbprint,
    permission: &str,
) -> (Option<&'static str>, Value) {
    let now = now();
    let cnf = json!({ "x5t#S256": bound_to.to_string() });
    let jti = format!("id-{}", rand_id());
    let claims = match preset {
        "rfc9068" => json!({
            "iss": iss, "aud": AUDIENCE, "sub": "svc", "client_id": "svc",
            "iat": now, "exp": now + 300, "jti": jti, "scope": format!("profile {permission}"),
            "cnf": cnf,
        }),
        // Entra v2, app-only: `roles`.
        "entra" => json!({
            "aud": AUDIENCE, "iss": iss, "iat": now, "nbf": now, "exp": now + 300,
            "aio": "E2RgYJg", "azp": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "azpacr": "2",
            "idp": iss, "oid": "b6a6ab0b-0f9c-4b5b-a0fb-9b2e4b8ff0aa", "rh": "0.AX",
            "roles": [permission], "sub": "b6a6ab0b-0f9c-4b5b-a0fb-9b2e4b8ff0aa",
            "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "uti": jti, "ver": "2.0",
            "cnf": cnf,
        }),
        // Entra v2, delegated: `scp`.
        "entra-delegated" => json!({
            "aud": AUDIENCE, "iss": iss, "iat": now, "nbf": now, "exp": now + 300,
            "azp": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "azpacr": "1", "name": "Ada",
            "oid": "c1", "preferred_username": "ada@contoso.example", "scp": format!("User.Read {permission}"),
            "sub": "s1", "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "uti": jti, "ver": "2.0",
            "cnf": cnf,
        }),
        // Entra v1: `appid`.
        "entra-v1" => json!({
            "aud": AUDIENCE, "iss": iss, "iat": now, "nbf": now, "exp": now + 300,
            "appid": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "appidacr": "2",
            "oid": "b6", "roles": [permission], "sub": "b6",
            "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "uti": jti, "ver": "1.0",
            "cnf": cnf,
        }),
        "keycloak" => json!({
            "exp": now + 300, "iat": now, "jti": jti, "iss": iss, "aud": AUDIENCE,
            "sub": "9b0c2a1e", "typ": "Bearer", "azp": "orders-client", "acr": "1",
            "scope": format!("profile email {permission}"), "clientHost": "10.0.0.7",
            "client_id": "orders-client", "cnf": cnf,
        }),
        "auth0" => json!({
            "iss": iss, "sub": "app@clients", "aud": AUDIENCE, "iat": now, "exp": now + 300,
            "azp": "app", "gty": "client-credentials", "scope": permission,
            "permissions": [permission], "cnf": cnf,
        }),
        "okta" => json!({
            "ver": 1, "jti": format!("AT.{jti}"), "iss": iss, "aud": AUDIENCE, "iat": now,
            "exp": now + 300, "cid": "0oa1b2c3", "scp": [permission], "sub": "0oa1b2c3",
            "cnf": cnf,
        }),
        other => panic!("no shape for {other}"),
    };
    let typ = match preset {
        "rfc9068" => Some("at+jwt"),
        "okta" => None,
        _ => Some("JWT"),
    };
    (typ, claims)
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", now(), N.fetch_add(1, Ordering::Relaxed))
}

fn sign(issuer: &TestIssuer, typ: Option<&str>, claims: &Value) -> String {
    issuer.sign_with_typ(typ, claims).unwrap()
}

/// The profile that preset shape is read with.
fn profile_of(shape: &str) -> TokenProfile {
    let name = shape.split('-').next().unwrap();
    TokenProfile::named(name).unwrap()
}

async fn status(
    pki: &TestPki,
    url: &str,
    token: &str,
    identity: Option<&ClientIdentity>,
) -> (StatusCode, String, Value) {
    let response = get_with_token(pki, url, token, identity).await.unwrap();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    (response.status(), challenge, body)
}

const SHAPES: &[&str] = &[
    "rfc9068",
    "entra",
    "entra-delegated",
    "entra-v1",
    "keycloak",
    "auth0",
    "okta",
];

#[tokio::test]
async fn each_preset_accepts_its_issuers_tokens_with_their_certificate_only() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let other = TestIssuer::start(&pki).await.unwrap();
    let holder = pki
        .client_cert("holder.example")
        .unwrap()
        .identity()
        .unwrap();
    let thief = pki
        .client_cert("thief.example")
        .unwrap()
        .identity()
        .unwrap();
    let iss = issuer.issuer().to_owned();

    for &shape in SHAPES {
        let profile = profile_of(shape);
        let url = serve(&pki, std::slice::from_ref(&iss), Some(profile.clone()), &[]).await;
        let (typ, claims) = shaped(shape, &iss, holder.thumbprint(), SCOPE);
        let good = sign(&issuer, typ, &claims);

        let (code, challenge, body) = status(&pki, &url, &good, Some(&holder)).await;
        assert_eq!(code, StatusCode::OK, "{shape}: {challenge}");
        assert_eq!(body["profile"], profile.name(), "{shape}");
        assert!(body["client_id"].is_string(), "{shape}: {body}");
        assert!(
            body["scopes"].as_array().unwrap().contains(&json!(SCOPE)),
            "{shape}: {body}"
        );

        let refused = |what: &str, (code, challenge, _): (StatusCode, String, Value)| {
            assert_eq!(
                code,
                StatusCode::UNAUTHORIZED,
                "{shape}, {what}: {challenge}"
            );
            assert!(
                challenge.contains("invalid_token"),
                "{shape}, {what}: {challenge}"
            );
        };
        refused(
            "another certificate",
            status(&pki, &url, &good, Some(&thief)).await,
        );
        refused("no certificate", status(&pki, &url, &good, None).await);

        let with = |change: &dyn Fn(&mut Value)| {
            let mut claims = claims.clone();
            change(&mut claims);
            sign(&issuer, typ, &claims)
        };
        let expired = with(&|c| {
            c["iat"] = json!(now() - 900);
            c["nbf"] = json!(now() - 900);
            c["exp"] = json!(now() - 300);
        });
        refused("expired", status(&pki, &url, &expired, Some(&holder)).await);
        let elsewhere = with(&|c| c["aud"] = json!("api://payments"));
        refused(
            "another audience",
            status(&pki, &url, &elsewhere, Some(&holder)).await,
        );
        let foreign = with(&|c| c["iss"] = json!(other.issuer()));
        refused(
            "another issuer",
            status(&pki, &url, &foreign, Some(&holder)).await,
        );
        let by_other_key = {
            other
                .sign_with_typ_and_kid(typ, Some(&issuer.current_kid()), &claims)
                .unwrap()
        };
        refused(
            "another key",
            status(&pki, &url, &by_other_key, Some(&holder)).await,
        );
        let mut bad_signature = good.clone();
        let last = bad_signature.pop().unwrap();
        bad_signature.push(if last == 'A' { 'B' } else { 'A' });
        refused(
            "a bad signature",
            status(&pki, &url, &bad_signature, Some(&holder)).await,
        );
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": typ }).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        refused("alg none", status(&pki, &url, &none, Some(&holder)).await);
        for typ in ["dpop+jwt", "pop", "id_token+jwt"] {
            let token = sign(&issuer, Some(typ), &claims);
            refused(typ, status(&pki, &url, &token, Some(&holder)).await);
        }

        // The scope, both ways: granted above, refused here with 403.
        let (typ, claims) = shaped(shape, &iss, holder.thumbprint(), "Orders.Write");
        let narrow = sign(&issuer, typ, &claims);
        let (code, challenge, _) = status(&pki, &url, &narrow, Some(&holder)).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{shape}: {challenge}");
        assert!(
            challenge.contains("insufficient_scope"),
            "{shape}: {challenge}"
        );
        assert!(challenge.contains(SCOPE), "{shape}: {challenge}");
    }
}

#[tokio::test]
async fn the_strict_default_refuses_them_and_names_the_profile_that_fits() {
    let (logs, _capturing) = Logs::capture(tracing::Level::WARN);
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let holder = pki
        .client_cert("holder.example")
        .unwrap()
        .identity()
        .unwrap();
    let iss = issuer.issuer().to_owned();
    for &shape in SHAPES.iter().filter(|&&s| s != "rfc9068") {
        // A server of its own each time: the warning goes out once a second
        // per validator.
        let url = serve(&pki, std::slice::from_ref(&iss), None, &[]).await;
        let (typ, claims) = shaped(shape, &iss, holder.thumbprint(), SCOPE);
        let token = sign(&issuer, typ, &claims);
        logs.clear();
        let (code, challenge, _) = status(&pki, &url, &token, Some(&holder)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{shape}: {challenge}");
        let expected = profile_of(shape);
        let text = logs.text();
        let line = text
            .lines()
            .find(|line| line.contains("refused for its shape alone"))
            .unwrap_or_else(|| panic!("{shape}: no warning in {text:?}"));
        let fits = line
            .split("would_accept=")
            .nth(1)
            .unwrap_or_else(|| panic!("{shape}: {line}"));
        assert!(fits.contains(expected.name()), "{shape}: {line}");
        assert!(!line.contains(&token), "the warning holds no token");
    }
}

#[tokio::test]
async fn several_issuers_each_answer_for_their_own_tokens() {
    let pki = TestPki::new().unwrap();
    let a = TestIssuer::start(&pki).await.unwrap();
    let b = TestIssuer::start(&pki).await.unwrap();
    let unknown = TestIssuer::start(&pki).await.unwrap();
    let holder = pki
        .client_cert("holder.example")
        .unwrap()
        .identity()
        .unwrap();
    let url = serve(
        &pki,
        &[a.issuer().to_owned(), b.issuer().to_owned()],
        None,
        &[],
    )
    .await;

    // An iss that is not trusted: refused before any metadata or key fetch.
    let (typ, claims) = shaped("rfc9068", unknown.issuer(), holder.thumbprint(), SCOPE);
    let token = sign(&unknown, typ, &claims);
    let (code, _, _) = status(&pki, &url, &token, Some(&holder)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let fetches = |i: &TestIssuer| i.metadata_requests() + i.jwks_fetches();
    assert_eq!((fetches(&a), fetches(&b), fetches(&unknown)), (0, 0, 0));

    for issuer in [&a, &b] {
        let (typ, claims) = shaped("rfc9068", issuer.issuer(), holder.thumbprint(), SCOPE);
        let token = sign(issuer, typ, &claims);
        let (code, challenge, _) = status(&pki, &url, &token, Some(&holder)).await;
        assert_eq!(code, StatusCode::OK, "{challenge}");
    }
    assert_eq!((a.jwks_fetches(), b.jwks_fetches()), (1, 1));

    // Names A, signed by B's key (with A's kid, or B's): refused.
    let (typ, claims) = shaped("rfc9068", a.issuer(), holder.thumbprint(), SCOPE);
    for kid in [a.current_kid(), b.current_kid()] {
        let forged = b.sign_with_typ_and_kid(typ, Some(&kid), &claims).unwrap();
        let (code, challenge, _) = status(&pki, &url, &forged, Some(&holder)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{challenge}");
    }
}

#[tokio::test]
async fn a_multi_tenant_entra_issuer_takes_allowed_tenants_only() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let holder = pki
        .client_cert("holder.example")
        .unwrap()
        .identity()
        .unwrap();

    // Without an allow-list: an error, not every tenant.
    let (chain, key) = pki.server_identity().unwrap();
    let refused = ResourceServer::builder()
        .token_profile(TokenProfile::entra())
        .issuer(issuer.multi_tenant_endpoint())
        .audience(AUDIENCE)
        .tls_identity(chain, key)
        .build()
        .unwrap_err();
    assert_eq!(refused.kind(), ConfigErrorKind::Missing);
    assert_eq!(refused.setting(), Some("allowed_tenants"));

    let url = serve(
        &pki,
        &[issuer.multi_tenant_endpoint()],
        Some(TokenProfile::entra()),
        &["tenant-one"],
    )
    .await;
    let token_for = |iss: &str, tid: &str| {
        let (typ, mut claims) = shaped("entra", iss, holder.thumbprint(), SCOPE);
        claims["tid"] = json!(tid);
        sign(&issuer, typ, &claims)
    };

    // A tenant that is not allowed: refused with no fetch at all.
    let other = token_for(&issuer.tenant_issuer("tenant-two"), "tenant-two");
    let (code, _, _) = status(&pki, &url, &other, Some(&holder)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!((issuer.metadata_requests(), issuer.jwks_fetches()), (0, 0));

    let good = token_for(&issuer.tenant_issuer("tenant-one"), "tenant-one");
    let (code, challenge, _) = status(&pki, &url, &good, Some(&holder)).await;
    assert_eq!(code, StatusCode::OK, "{challenge}");
    assert_eq!((issuer.metadata_requests(), issuer.jwks_fetches()), (1, 1));

    // The template filled from tid must be the iss: neither may be swapped.
    for (iss, tid) in [
        (issuer.tenant_issuer("tenant-one"), "tenant-two"),
        (issuer.tenant_issuer("tenant-two"), "tenant-one"),
        (issuer.tenant_issuer("tenant-one"), ""),
        (format!("{}/tenant-one/v1.0", issuer.issuer()), "tenant-one"),
    ] {
        let token = token_for(&iss, tid);
        let (code, challenge, _) = status(&pki, &url, &token, Some(&holder)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{iss} {tid}: {challenge}");
    }
    let (typ, mut claims) = shaped(
        "entra",
        &issuer.tenant_issuer("tenant-one"),
        holder.thumbprint(),
        SCOPE,
    );
    claims.as_object_mut().unwrap().remove("tid");
    let no_tid = sign(&issuer, typ, &claims);
    let (code, _, _) = status(&pki, &url, &no_tid, Some(&holder)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

/// One Entra tenant, as most APIs trust it: the tenant's own v2 issuer,
/// whose metadata names it exactly.
#[tokio::test]
async fn a_single_tenant_entra_issuer() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let holder = pki
        .client_cert("holder.example")
        .unwrap()
        .identity()
        .unwrap();
    let tenant_issuer = issuer.tenant_issuer("tenant-one");
    let url = serve(
        &pki,
        std::slice::from_ref(&tenant_issuer),
        Some(TokenProfile::entra()),
        &[],
    )
    .await;
    let (typ, claims) = shaped("entra", &tenant_issuer, holder.thumbprint(), SCOPE);
    let token = issuer.sign_with_typ(typ, &claims).unwrap();
    let (code, challenge, body) = status(&pki, &url, &token, Some(&holder)).await;
    assert_eq!(code, StatusCode::OK, "{challenge}");
    assert_eq!(body["scopes"], json!([SCOPE]));
    // The issuer's root is another issuer: its tokens are refused.
    let (typ, claims) = shaped("entra", issuer.issuer(), holder.thumbprint(), SCOPE);
    let other = issuer.sign_with_typ(typ, &claims).unwrap();
    let (code, _, _) = status(&pki, &url, &other, Some(&holder)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}
