//! Opaque tokens (RFC 7662) in deployment: how the resource server
//! authenticates to the introspection endpoint (certificate at the mTLS
//! alias, client secret in the form), `ResourceServerBuilder::introspection`
//! with tokens from the test issuer's token endpoint, the example resource
//! server's flags, and what reaches the logs (never a token or a secret).
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::introspection;
use http::StatusCode;
use introspection::{
    RS_ID, RS_SECRET, assert_invalid_token, assert_unavailable, bearer, setup, start,
};
use support::https_client;
use tower_token_binding::test_util::{IntrospectionFault, TestIssuer, TestPki};
use tower_token_binding::validation::{
    CnfValidationLayer, IntrospectionValidator, ValidateToken, VerifiedToken,
};

#[tokio::test]
async fn the_resource_server_authenticates_with_its_certificate_or_a_post_secret() {
    let s = setup().await;
    let rs = s
        .pki
        .client_cert("orders-api.example")
        .unwrap()
        .identity()
        .unwrap();
    let issuer = TestIssuer::builder()
        .introspection_certificate(RS_ID, rs.thumbprint())
        .client_secret("posting-api", "p0st")
        .start(&s.pki)
        .await
        .unwrap();
    let claims = issuer.claims("svc", Some(s.client.thumbprint()));
    let token = issuer.issue_opaque(&claims).unwrap();
    let client = https_client(&s.pki, Some(&s.client));
    let builder = || {
        IntrospectionValidator::builder()
            .discover(issuer.issuer())
            .issuer(issuer.issuer())
            .audience(issuer.audience())
            .root_store(s.pki.root_store())
    };

    // tls_client_auth, to the mTLS alias found in the metadata.
    let validator = builder()
        .client_id(RS_ID)
        .tls_client_auth(rs.clone())
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);

    // Another certificate is not the resource server.
    let stranger = s
        .pki
        .client_cert("orders-api.example")
        .unwrap()
        .identity()
        .unwrap();
    let validator = builder()
        .client_id(RS_ID)
        .tls_client_auth(stranger)
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    assert_unavailable(&bearer(&client, &api, &token).await);

    // client_secret_post.
    let validator = builder()
        .client_id("posting-api")
        .client_secret_post("p0st")
        .build()
        .unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator)).await;
    assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);
    assert_eq!(issuer.introspection_calls(), 3);
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn resource_server_with_opaque_tokens_from_the_token_endpoint() {
    use axum::{Router, routing::get};
    use tower_token_binding::BoundClient;
    use tower_token_binding::server::ResourceServer;

    async fn hello(token: VerifiedToken) -> String {
        format!("hello {}", token.subject().unwrap_or("?"))
    }

    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .opaque_tokens()
        .client_secret(RS_ID, RS_SECRET)
        .start(&pki)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "server")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/hello",
        listener.local_addr().unwrap().port()
    );
    let server = ResourceServer::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .tls_pem_files(&cert, &key)
        .root_store(pki.root_store())
        .introspection(
            IntrospectionValidator::builder()
                .client_id(RS_ID)
                .client_secret_post(RS_SECRET)
                .issuer(issuer.issuer())
                .audience(issuer.audience()),
        )
        .build()
        .unwrap();
    assert!(!format!("{server:?}").contains(RS_SECRET));
    tokio::spawn(
        server
            .serve(listener, Router::new().route("/hello", get(hello)))
            .into_future(),
    );

    let identity = TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let client = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("svc")
        .self_signed_tls_client_auth()
        .identity(identity)
        .root_store(pki.root_store())
        .build()
        .unwrap();
    for _ in 0..3 {
        let response = client.get(&url).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "hello svc");
    }
    assert_eq!(issuer.tokens_issued(), 1);
    assert_eq!(issuer.introspection_calls(), 1);
    assert_eq!(issuer.jwks_fetches(), 0, "no JWT, no JWKS");
}

#[tokio::test]
async fn tokens_and_secrets_stay_out_of_logs_and_debug() {
    // Everything this test logs, at every level.
    let (logs, _capturing) = support::Logs::capture(tracing::Level::TRACE);

    let s = setup().await;
    let validator = s.validator().build().unwrap();
    let api = start(&s.pki, CnfValidationLayer::new(validator.clone())).await;
    let client = https_client(&s.pki, Some(&s.client));
    let token = s.bound_to_client();
    let inactive = "an-inactive-token-value";

    assert_eq!(bearer(&client, &api, &token).await.status, StatusCode::OK);
    assert_invalid_token(&bearer(&client, &api, inactive).await, "not active");
    let fresh = s.bound_to_client();
    s.issuer
        .set_introspection_fault(Some(IntrospectionFault::Garbage));
    assert_unavailable(&bearer(&client, &api, &fresh).await);
    let failed = validator.validate(&fresh).await.unwrap_err();
    assert_eq!(
        failed.kind(),
        tower_token_binding::validation::TokenErrorKind::IntrospectionUnavailable
    );

    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("WARN") && l.contains("token introspection failed")),
        "{text}"
    );
    let debug = format!(
        "{validator:?} {failed:?} {failed} {:?} {:?}",
        validator.validate(&token).await,
        validator.validate(inactive).await
    );
    for secret in [token.as_str(), fresh.as_str(), inactive, RS_SECRET] {
        assert!(!text.contains(secret), "{secret} in the logs:\n{text}");
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[tokio::test]
async fn the_example_resource_server_with_introspection_flags() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret(RS_ID, RS_SECRET)
        .start(&pki)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "server")
        .unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let args = [
        "--listen".to_owned(),
        "127.0.0.1:0".into(),
        "--tls-cert".into(),
        path(&cert),
        "--tls-key".into(),
        path(&key),
        "--issuer".into(),
        issuer.issuer().into(),
        "--audience".into(),
        issuer.audience().into(),
        "--issuer-ca".into(),
        path(&ca),
        "--introspection-client-id".into(),
        RS_ID.into(),
        "--introspection-secret".into(),
        RS_SECRET.into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_child, url) = support::spawn_announcing("resource_server", &args).await;
    let whoami = format!("{url}/whoami");

    let client = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let token = issuer
        .issue_opaque(&issuer.claims("svc", Some(client.thumbprint())))
        .unwrap();
    let answer = bearer(&https_client(&pki, Some(&client)), &whoami, &token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.challenge);
    assert_eq!(answer.body["binding"], "certificate");
    let other = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let answer = bearer(&https_client(&pki, Some(&other)), &whoami, &token).await;
    assert_invalid_token(&answer, "bound to a different client certificate");
    assert!(issuer.revoke(&token));
    let fresh = issuer
        .issue_opaque(&issuer.claims("svc", Some(client.thumbprint())))
        .unwrap();
    issuer.revoke(&fresh);
    let answer = bearer(&https_client(&pki, Some(&client)), &whoami, &fresh).await;
    assert_invalid_token(&answer, "not active");
    assert_eq!(issuer.introspection_calls(), 2);
    // The example passes --issuer and --audience on: an opaque token for
    // another resource, or from another issuer, is refused.
    let mut claims = issuer.claims("svc", Some(client.thumbprint()));
    claims["aud"] = serde_json::json!("https://elsewhere.example");
    let foreign = issuer.issue_opaque(&claims).unwrap();
    let answer = bearer(&https_client(&pki, Some(&client)), &whoami, &foreign).await;
    assert_invalid_token(&answer, "not meant for this resource");
    let mut claims = issuer.claims("svc", Some(client.thumbprint()));
    claims["iss"] = serde_json::json!("https://evil.example");
    let foreign = issuer.issue_opaque(&claims).unwrap();
    let answer = bearer(&https_client(&pki, Some(&client)), &whoami, &foreign).await;
    assert_invalid_token(&answer, "wrong issuer");
    assert_eq!(issuer.introspection_calls(), 4);
}
