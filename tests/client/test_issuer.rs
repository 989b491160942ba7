//! The embedded authorization server, driven over real mTLS on loopback.
#![cfg(feature = "test-util")]

use crate::support;
use http::StatusCode;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::Value;
use support::{get_json, https_client, post_form};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::{Confirmation, Thumbprint};

const GRANT: (&str, &str) = ("grant_type", "client_credentials");

/// Verifies `token` with the issuer's published JWKS (fetched over HTTPS) and
/// returns its claims.
async fn verify(pki: &TestPki, issuer: &TestIssuer, token: &str, audience: &str) -> Value {
    let header = decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let (status, jwks) = get_json(&https_client(pki, None), &issuer.jwks_uri()).await;
    assert_eq!(status, StatusCode::OK);
    let jwks: JwkSet = serde_json::from_value(jwks).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in the JWKS");
    let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[issuer.issuer()]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

#[tokio::test]
async fn a_client_certificate_binds_the_token() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    for cert in [
        pki.client_cert("ca-issued.example").unwrap(),
        TestPki::self_signed_client("self-signed.example").unwrap(),
    ] {
        let identity = cert.identity().unwrap();
        let client = https_client(&pki, Some(&identity));
        let (status, body) = post_form(
            &client,
            &issuer.token_endpoint(),
            &[GRANT, ("client_id", "client-1"), ("scope", "read write")],
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "read write");

        let token = body["access_token"].as_str().unwrap();
        let claims = verify(&pki, &issuer, token, issuer.audience()).await;
        let cnf = Confirmation::from_claims(&claims).unwrap().expect("cnf");
        assert_eq!(cnf.thumbprint(), Some(&identity.thumbprint()));
        assert_eq!(
            claims["cnf"]["x5t#S256"].as_str().unwrap(),
            identity.thumbprint().to_string()
        );
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["client_id"], "client-1");
        assert_eq!(claims["scope"], "read write");
        assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 3600);
    }
    assert_eq!(issuer.tokens_issued(), 2);
}

#[tokio::test]
async fn without_a_client_certificate_the_token_is_unbound() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let client = https_client(&pki, None);
    let (status, body) = post_form(
        &client,
        &issuer.token_endpoint(),
        &[GRANT, ("client_id", "public")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = verify(
        &pki,
        &issuer,
        body["access_token"].as_str().unwrap(),
        issuer.audience(),
    )
    .await;
    assert!(claims.get("cnf").is_none(), "{claims}");
    assert_eq!(Confirmation::from_claims(&claims).unwrap(), None);
}

#[tokio::test]
async fn the_mtls_alias_binds_and_metadata_advertises_it() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let identity = pki.client_cert("c.example").unwrap().identity().unwrap();
    let client = https_client(&pki, Some(&identity));

    for url in [
        issuer.metadata_url(),
        format!("{}/.well-known/openid-configuration", issuer.issuer()),
    ] {
        let (status, metadata) = get_json(&client, &url).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(metadata["issuer"], issuer.issuer());
        assert_eq!(metadata["token_endpoint"], issuer.token_endpoint());
        assert_eq!(metadata["jwks_uri"], issuer.jwks_uri());
        assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
        assert_eq!(
            metadata["mtls_endpoint_aliases"]["token_endpoint"],
            issuer.mtls_token_endpoint()
        );
    }

    let (status, body) = post_form(
        &client,
        &issuer.mtls_token_endpoint(),
        &[GRANT, ("client_id", "c"), ("resource", "https://other.api")],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = verify(
        &pki,
        &issuer,
        body["access_token"].as_str().unwrap(),
        "https://other.api",
    )
    .await;
    assert_eq!(
        claims["cnf"]["x5t#S256"].as_str().unwrap(),
        identity.thumbprint().to_string()
    );
}

#[tokio::test]
async fn entra_flavour_mtls_pop() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let form = [GRANT, ("client_id", "c"), ("token_type", "mtls_pop")];

    let identity = pki.client_cert("c.example").unwrap().identity().unwrap();
    let (status, body) = post_form(
        &https_client(&pki, Some(&identity)),
        &issuer.token_endpoint(),
        &form,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "mtls_pop");

    // mtls_pop without a certificate cannot be honoured.
    let (status, body) = post_form(
        &https_client(&pki, None),
        &issuer.token_endpoint(),
        &form,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
}

#[tokio::test]
async fn client_secrets_and_protocol_errors() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("confidential", "s3cret: with spaces&symbols")
        .start(&pki)
        .await
        .unwrap();
    let client = https_client(&pki, None);
    let url = issuer.token_endpoint();

    // client_secret_basic, with the RFC 6749 form-encoding of the credentials.
    let (status, body) = post_form(
        &client,
        &url,
        &[GRANT],
        Some(("confidential", "s3cret: with spaces&symbols")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // client_secret_post.
    let (status, body) = post_form(
        &client,
        &url,
        &[
            GRANT,
            ("client_id", "confidential"),
            ("client_secret", "s3cret: with spaces&symbols"),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Wrong or missing secret.
    let (status, body) = post_form(&client, &url, &[GRANT], Some(("confidential", "wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
    let (status, body) =
        post_form(&client, &url, &[GRANT, ("client_id", "confidential")], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");

    // No client at all, a wrong grant, a repeated parameter.
    let (status, body) = post_form(&client, &url, &[GRANT], None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (status, body) = post_form(
        &client,
        &url,
        &[("grant_type", "password"), ("client_id", "x")],
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (status, body) = post_form(
        &client,
        &url,
        &[GRANT, ("client_id", "x"), ("client_id", "y")],
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    // Wrong method and unknown path.
    let (status, _) = get_json(&client, &url).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = get_json(&client, &format!("{}/nope", issuer.issuer())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(issuer.tokens_issued(), 2);
    assert_eq!(issuer.token_requests(), 7);
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_verifiable() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let thumbprint = Thumbprint::from_der(b"a certificate");
    let old = issuer.sign(&issuer.claims("c", Some(thumbprint))).unwrap();
    let old_kid = issuer.current_kid();
    let new_kid = issuer.rotate_signing_key().unwrap();
    assert_ne!(old_kid, new_kid);
    let new = issuer.sign(&issuer.claims("c", Some(thumbprint))).unwrap();
    assert_eq!(
        decode_header(&new).unwrap().kid.as_deref(),
        Some(new_kid.as_str())
    );
    assert_eq!(issuer.jwks()["keys"].as_array().unwrap().len(), 2);

    for token in [old, new] {
        let claims = verify(&pki, &issuer, &token, issuer.audience()).await;
        assert!(
            Confirmation::from_claims(&claims)
                .unwrap()
                .unwrap()
                .is_bound_to(&thumbprint)
        );
    }
    assert_eq!(issuer.jwks_fetches(), 2);
}
