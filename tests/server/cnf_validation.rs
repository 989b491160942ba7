//! `CnfValidationLayer` over real TLS on loopback, against tokens from the
//! test authorization server and hand-made ones: the RFC 8705 / RFC 6750 /
//! RFC 9068 checklist of `shared/design.md`, cases 1 to 10. The hand-made
//! hostile tokens of cases 4, 5 and 8 (and duplicate members, missing
//! claims) are listed together in `tests/hostile/hostile_tokens.rs`.
#![cfg(feature = "test-util")]

use crate::support;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};
use support::{HttpsClient, https_client, post_form};
use tower_token_binding::test_util::{TestCert, TestIssuer, TestPki};
use tower_token_binding::validation::{CnfValidationLayer, JwtValidator};
use tower_token_binding::{ClientIdentity, Thumbprint};

struct Setup {
    pki: TestPki,
    issuer: TestIssuer,
    api: String,
}

async fn setup() -> Setup {
    setup_with(|layer| layer, Duration::from_secs(3600)).await
}

async fn setup_with(
    configure: impl FnOnce(CnfValidationLayer<JwtValidator>) -> CnfValidationLayer<JwtValidator>,
    cooldown: Duration,
) -> Setup {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .default_scope("read")
        .start(&pki)
        .await
        .unwrap();
    let layer = configure(CnfValidationLayer::new(support::jwt_validator(
        &pki, &issuer, cooldown,
    )));
    let api = support::start_api(&pki, layer).await;
    Setup { pki, issuer, api }
}

/// A token from the issuer's token endpoint over mTLS with `identity`.
async fn fetch_token(setup: &Setup, identity: Option<&ClientIdentity>) -> String {
    let client = https_client(&setup.pki, identity);
    let (status, body) = post_form(
        &client,
        &setup.issuer.token_endpoint(),
        &[("grant_type", "client_credentials"), ("client_id", "svc")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

/// Calls the API with `authorization` on a connection presenting `identity`.
async fn call(
    client: &HttpsClient,
    api: &str,
    authorization: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::get(api.to_owned());
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    call_request(client, request.body(Full::default()).unwrap()).await
}

async fn call_request(
    client: &HttpsClient,
    request: Request<Full<Bytes>>,
) -> (StatusCode, Option<String>, Value) {
    let response = client.request(request).await.expect("request");
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, challenge, json)
}

/// The `error` code in a challenge.
fn error_code(challenge: &Option<String>) -> Option<String> {
    let c = challenge.as_deref()?;
    let start = c.find("error=\"")? + 7;
    Some(c[start..][..c[start..].find('"')?].to_owned())
}

fn assert_refused(outcome: &(StatusCode, Option<String>, Value), status: StatusCode, code: &str) {
    assert_eq!(outcome.0, status, "{outcome:?}");
    assert_eq!(error_code(&outcome.1).as_deref(), Some(code), "{outcome:?}");
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn identity(cert: &TestCert) -> ClientIdentity {
    cert.identity().unwrap()
}

#[tokio::test]
async fn bound_tokens_work_with_their_own_certificate_over_http1_and_http2() {
    let setup = setup().await;
    for cert in [
        setup.pki.client_cert("ca-issued.example").unwrap(),
        TestPki::self_signed_client("self-signed.example").unwrap(),
    ] {
        let identity = identity(&cert);
        let token = fetch_token(&setup, Some(&identity)).await;
        for client in [
            support::https_client_http1(&setup.pki, Some(&identity)),
            support::https_client_http2(&setup.pki, Some(&identity)),
        ] {
            let (status, _, body) = call(&client, &setup.api, Some(&bearer(&token))).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body["x5t#S256"], identity.thumbprint().to_string());
            assert_eq!(body["sub"], "svc");
            assert_eq!(body["client_id"], "svc");
        }
    }
}

/// Checklist 1, 2, 3: no certificate, another certificate, the same key
/// re-issued.
#[tokio::test]
async fn a_bound_token_with_no_other_or_reissued_certificate_is_invalid_token() {
    let setup = setup().await;
    let cert = setup.pki.client_cert("a.example").unwrap();
    let token = fetch_token(&setup, Some(&identity(&cert))).await;
    let auth = bearer(&token);

    let none = https_client(&setup.pki, None);
    assert_refused(
        &call(&none, &setup.api, Some(&auth)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );

    let other = identity(&setup.pki.client_cert("b.example").unwrap());
    let other = https_client(&setup.pki, Some(&other));
    assert_refused(
        &call(&other, &setup.api, Some(&auth)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );

    let reissued = setup.pki.reissue(&cert).unwrap();
    assert_ne!(reissued.thumbprint(), cert.thumbprint());
    assert_eq!(reissued.key_pem(), cert.key_pem());
    let reissued = https_client(&setup.pki, Some(&identity(&reissued)));
    assert_refused(
        &call(&reissued, &setup.api, Some(&auth)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );

    // And the owner still gets in, on every try (the cache changes nothing).
    let own = https_client(&setup.pki, Some(&identity(&cert)));
    for _ in 0..3 {
        assert_eq!(call(&own, &setup.api, Some(&auth)).await.0, StatusCode::OK);
        assert_refused(
            &call(&other, &setup.api, Some(&auth)).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        );
    }
}

/// Checklist 6: a token without `cnf` is refused by default, accepted only
/// where the user allows unbound tokens (and then only as `Bearer`).
#[tokio::test]
async fn unbound_tokens_only_where_allowed() {
    let strict = setup().await;
    let token = fetch_token(&strict, None).await;
    let client = https_client(&strict.pki, None);
    let outcome = call(&client, &strict.api, Some(&bearer(&token))).await;
    assert_refused(&outcome, StatusCode::UNAUTHORIZED, "invalid_token");
    assert!(outcome.1.unwrap().contains("the access token is not bound"));

    let lenient = setup_with(|l| l.allow_unbound(), Duration::from_secs(3600)).await;
    let token = fetch_token(&lenient, None).await;
    let client = https_client(&lenient.pki, None);
    let (status, _, body) = call(&client, &lenient.api, Some(&bearer(&token))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["x5t#S256"], Value::Null);
    // mtls_pop says "bound": an unbound token under it is refused anyway.
    let outcome = call(&client, &lenient.api, Some(&format!("mtls_pop {token}"))).await;
    assert_refused(&outcome, StatusCode::UNAUTHORIZED, "invalid_token");
    // A bound token is still checked where unbound ones are allowed.
    let cert = lenient.pki.client_cert("a.example").unwrap();
    let bound = fetch_token(&lenient, Some(&identity(&cert))).await;
    assert_refused(
        &call(&client, &lenient.api, Some(&bearer(&bound))).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
}

/// Checklist 7: a `Client-Cert` header (RFC 9440) sent by a client straight
/// to a server not told to trust a proxy is ignored.
#[tokio::test]
async fn an_untrusted_client_cert_header_is_never_believed() {
    let setup = setup().await;
    let victim = setup.pki.client_cert("victim.example").unwrap();
    let token = fetch_token(&setup, Some(&identity(&victim))).await;
    let forged = format!(":{}:", STANDARD.encode(victim.cert()));

    let thief = identity(&setup.pki.client_cert("thief.example").unwrap());
    for client in [
        https_client(&setup.pki, None),
        https_client(&setup.pki, Some(&thief)),
    ] {
        let request = Request::get(setup.api.clone())
            .header(header::AUTHORIZATION, bearer(&token))
            .header("client-cert", &forged)
            .body(Full::default())
            .unwrap();
        assert_refused(
            &call_request(&client, request).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        );
    }
}

/// Checklist 9: RFC 6750 answers.
#[tokio::test]
async fn rfc_6750_answers() {
    let setup = setup_with(|l| l.required_scope("read"), Duration::from_secs(3600)).await;
    let cert = setup.pki.client_cert("a.example").unwrap();
    let client = https_client(&setup.pki, Some(&identity(&cert)));
    let token = fetch_token(&setup, Some(&identity(&cert))).await;

    // No credentials: 401, a bare challenge.
    let (status, challenge, _) = call(&client, &setup.api, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer"));
    // Another scheme: the same.
    let (status, challenge, _) = call(&client, &setup.api, Some("Basic dXNlcjpwYXNz")).await;
    assert_eq!(
        (status, challenge.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("Bearer"))
    );

    // Malformed: 400 invalid_request.
    for bad in [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "Bearer a,b",
        "Bearer {token}",
    ] {
        let outcome = call(&client, &setup.api, Some(bad)).await;
        assert_refused(&outcome, StatusCode::BAD_REQUEST, "invalid_request");
    }
    // Sent twice: two headers, or a header and the query.
    let request = Request::get(setup.api.clone())
        .header(header::AUTHORIZATION, bearer(&token))
        .header(header::AUTHORIZATION, bearer(&token))
        .body(Full::default())
        .unwrap();
    assert_refused(
        &call_request(&client, request).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let request = Request::get(format!("{}?access_token={token}", setup.api.clone()))
        .header(header::AUTHORIZATION, bearer(&token))
        .body(Full::default())
        .unwrap();
    assert_refused(
        &call_request(&client, request).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    // The scheme word in any case, and mtls_pop.
    for word in [
        "Bearer", "bearer", "BEARER", "bEaReR", "mtls_pop", "MTLS_POP",
    ] {
        let (status, _, _) = call(&client, &setup.api, Some(&format!("{word} {token}"))).await;
        assert_eq!(status, StatusCode::OK, "{word}");
    }

    // Missing scope: 403 insufficient_scope, naming the scope.
    let mut claims = setup.issuer.claims("svc", Some(cert.thumbprint()));
    claims["scope"] = json!("write");
    let token = setup.issuer.sign(&claims).unwrap();
    let outcome = call(&client, &setup.api, Some(&bearer(&token))).await;
    assert_refused(&outcome, StatusCode::FORBIDDEN, "insufficient_scope");
    assert!(outcome.1.unwrap().contains("scope=\"read\""));

    // mtls_pop requests are answered in kind.
    let outcome = call(
        &https_client(&setup.pki, None),
        &setup.api,
        Some(&format!("mtls_pop {token}")),
    )
    .await;
    assert!(
        outcome
            .1
            .unwrap()
            .starts_with("mtls_pop error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn terse_challenges_leave_out_the_description() {
    let setup = setup_with(|l| l.terse(), Duration::from_secs(3600)).await;
    let token = fetch_token(&setup, None).await;
    let client = https_client(&setup.pki, None);
    let (status, challenge, _) = call(&client, &setup.api, Some(&bearer(&token))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer error=\"invalid_token\""));
}

/// Checklist 10: a rotated key is picked up without restart; random `kid`s
/// fetch the JWKS at most once per cooldown; a JWKS endpoint that is down
/// keeps the last good keys.
#[tokio::test]
async fn jwks_rotation_without_restart() {
    let setup = setup_with(|l| l, Duration::ZERO).await;
    let cert = setup.pki.client_cert("a.example").unwrap();
    let client = https_client(&setup.pki, Some(&identity(&cert)));
    let claims = || setup.issuer.claims("svc", Some(cert.thumbprint()));

    let old = setup.issuer.sign(&claims()).unwrap();
    assert_eq!(
        call(&client, &setup.api, Some(&bearer(&old))).await.0,
        StatusCode::OK
    );
    assert_eq!(setup.issuer.jwks_fetches(), 1);

    setup.issuer.rotate_signing_key().unwrap();
    setup.issuer.retire_old_keys();
    let new = setup.issuer.sign(&claims()).unwrap();
    assert_eq!(
        call(&client, &setup.api, Some(&bearer(&new))).await.0,
        StatusCode::OK
    );
    assert_eq!(setup.issuer.jwks_fetches(), 2);

    // The old key is gone from the new key set: the token verified (and
    // cached) under it before no longer passes.
    assert_refused(
        &call(&client, &setup.api, Some(&bearer(&old))).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
}

/// A request waiting for a JWKS fetch holds none of the handler's capacity:
/// behind a concurrency limit of one, another request (its token already
/// verified) is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_jwks_fetch_does_not_block_the_handler_for_others() {
    use std::sync::Arc;
    use tower_token_binding::server::{self, AnyClientCertVerifier};

    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    // No JWKS timeout to end the wait: only the hold's release does.
    let validator = JwtValidator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .jwks(
            tower_token_binding::validation::JwksSource::remote(&issuer.jwks_uri())
                .unwrap()
                .root_store(pki.root_store())
                .unknown_kid_cooldown(Duration::ZERO)
                .issuer_timeout(Duration::from_secs(3600)),
        )
        .build()
        .unwrap();
    let layer = CnfValidationLayer::new(validator);
    let service = tower::ServiceBuilder::new()
        .layer(layer)
        .concurrency_limit(1)
        .service_fn(support::whoami);
    let tls = pki
        .server_config(Arc::new(AnyClientCertVerifier::optional()))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!(
        "https://localhost:{}/whoami",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(server::serve(listener, tls, service).into_future());

    let cert = pki.client_cert("a.example").unwrap();
    let client = https_client(&pki, Some(&identity(&cert)));
    let claims = || issuer.claims("svc", Some(cert.thumbprint()));
    let known = issuer.sign(&claims()).unwrap();
    assert_eq!(
        call(&client, &api, Some(&bearer(&known))).await.0,
        StatusCode::OK
    );

    // A token under a new key: its request waits for a JWKS fetch, held.
    issuer.rotate_signing_key().unwrap();
    let fresh = issuer.sign(&claims()).unwrap();
    let hold = issuer.hold_jwks();
    let waiting = tokio::spawn({
        let (client, api) = (client.clone(), api.clone());
        async move { call(&client, &api, Some(&bearer(&fresh))).await.0 }
    });
    hold.until_waiting(1).await;

    // Before, the waiting request held the only permit until its fetch
    // ended, which it does not while held: the bound is for a hang, not a
    // timing.
    let other = tokio::time::timeout(
        Duration::from_secs(60),
        call(&client, &api, Some(&bearer(&known))),
    )
    .await
    .expect("the handler was blocked by a request waiting for the JWKS");
    assert_eq!(other.0, StatusCode::OK);
    assert_eq!(hold.waiting(), 1, "the first request still waits");

    hold.release();
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn random_kids_fetch_the_jwks_at_most_once_per_cooldown() {
    let setup = setup().await; // cooldown: one hour
    let cert = setup.pki.client_cert("a.example").unwrap();
    let client = https_client(&setup.pki, Some(&identity(&cert)));
    let good = setup
        .issuer
        .sign(&setup.issuer.claims("svc", Some(cert.thumbprint())))
        .unwrap();
    assert_eq!(
        call(&client, &setup.api, Some(&bearer(&good))).await.0,
        StatusCode::OK
    );
    let before = setup.issuer.jwks_fetches();

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let token = setup
            .issuer
            .sign_with_typ_and_kid(
                Some("at+jwt"),
                Some(&format!("random-{i}")),
                &setup.issuer.claims("svc", Some(cert.thumbprint())),
            )
            .unwrap();
        let client = client.clone();
        let url = setup.api.clone();
        tasks.spawn(async move {
            let request = Request::get(url)
                .header(header::AUTHORIZATION, bearer(&token))
                .body(Full::default())
                .unwrap();
            call_request(&client, request).await
        });
        if tasks.len() >= 50 {
            let outcome = tasks.join_next().await.unwrap().unwrap();
            assert_refused(&outcome, StatusCode::UNAUTHORIZED, "invalid_token");
        }
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_refused(&outcome.unwrap(), StatusCode::UNAUTHORIZED, "invalid_token");
    }
    assert!(
        setup.issuer.jwks_fetches() - before <= 1,
        "{} JWKS fetches for 1000 unknown kids",
        setup.issuer.jwks_fetches() - before
    );
}

#[tokio::test]
async fn a_jwks_endpoint_that_is_down_keeps_the_last_good_keys() {
    let setup = setup_with(|l| l, Duration::ZERO).await;
    let cert = setup.pki.client_cert("a.example").unwrap();
    let client = https_client(&setup.pki, Some(&identity(&cert)));
    let sign = || {
        setup
            .issuer
            .sign(&setup.issuer.claims("svc", Some(cert.thumbprint())))
            .unwrap()
    };
    assert_eq!(
        call(&client, &setup.api, Some(&bearer(&sign()))).await.0,
        StatusCode::OK
    );

    setup.issuer.set_down(true);
    // A new token with the known key: verified with the keys already held.
    assert_eq!(
        call(&client, &setup.api, Some(&bearer(&sign()))).await.0,
        StatusCode::OK
    );
    // A new key while the endpoint is down: refused, and the old keys stay.
    setup.issuer.rotate_signing_key().unwrap();
    assert_refused(
        &call(&client, &setup.api, Some(&bearer(&sign()))).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    setup.issuer.set_down(false);
    assert_eq!(
        call(&client, &setup.api, Some(&bearer(&sign()))).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn no_keys_at_all_is_a_503_not_a_401() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    issuer.set_down(true);
    let api = support::start_api(
        &pki,
        CnfValidationLayer::new(support::jwt_validator(&pki, &issuer, Duration::ZERO)),
    )
    .await;
    let cert = pki.client_cert("a.example").unwrap();
    let token = issuer
        .sign(&issuer.claims("svc", Some(cert.thumbprint())))
        .unwrap();
    let client = https_client(&pki, Some(&identity(&cert)));
    let (status, challenge, _) = call(&client, &api, Some(&bearer(&token))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(challenge, None);
    // The token may be fine: the client is told to come back, not to drop it.
    let request = Request::get(api.clone())
        .header(header::AUTHORIZATION, bearer(&token))
        .body(Full::default())
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
}

#[tokio::test]
async fn two_clients_on_concurrent_connections_each_only_with_its_own_token() {
    let setup = setup().await;
    let a = identity(&setup.pki.client_cert("a.example").unwrap());
    let b = identity(&TestPki::self_signed_client("b.example").unwrap());
    let token_a = fetch_token(&setup, Some(&a)).await;
    let token_b = fetch_token(&setup, Some(&b)).await;
    let client_a = https_client(&setup.pki, Some(&a));
    let client_b = https_client(&setup.pki, Some(&b));

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (client, own, theirs, me) = if i % 2 == 0 {
            (
                client_a.clone(),
                token_a.clone(),
                token_b.clone(),
                a.thumbprint(),
            )
        } else {
            (
                client_b.clone(),
                token_b.clone(),
                token_a.clone(),
                b.thumbprint(),
            )
        };
        let url = setup.api.clone();
        tasks.spawn(async move {
            let get = |token: &str| {
                Request::get(url.clone())
                    .header(header::AUTHORIZATION, bearer(token))
                    .body(Full::default())
                    .unwrap()
            };
            let mine = call_request(&client, get(&own)).await;
            let stolen = call_request(&client, get(&theirs)).await;
            (me, mine, stolen)
        });
    }
    while let Some(result) = tasks.join_next().await {
        let (me, mine, stolen): (Thumbprint, _, _) = result.unwrap();
        assert_eq!(mine.0, StatusCode::OK);
        assert_eq!(mine.2["x5t#S256"], me.to_string());
        assert_refused(&stolen, StatusCode::UNAUTHORIZED, "invalid_token");
    }
}
