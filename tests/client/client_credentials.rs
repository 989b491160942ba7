//! `ClientCredentials` against the crate's test authorization server: what
//! a certified provider cannot show (aliases, Entra's flavour, a lying or
//! slow endpoint), plus the whole client stack against a resource server.
#![cfg(feature = "test-util")]

use crate::support;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};
use tower_token_binding::pool::MtlsClientPool;
use tower_token_binding::source::{
    ClientCredentials, TokenEndpointError, TokenEndpointErrorKind as Kind,
};
use tower_token_binding::test_util::{Fault, TestIssuer, TestPki};
use tower_token_binding::token::{TokenSource, TokenUnavailable};
use tower_token_binding::validation::CnfValidationLayer;
use tower_token_binding::{ClientIdentity, Thumbprint, TokenBindingLayer};

async fn fetch(
    source: &ClientCredentials,
) -> Result<tower_token_binding::token::Token, TokenEndpointError> {
    source
        .fetch()
        .await
        .map_err(|e| match e.downcast::<TokenEndpointError>() {
            Ok(e) => *e,
            Err(other) => panic!("not a TokenEndpointError: {other}"),
        })
}

fn claims(token: &str) -> Value {
    crate::support::unverified_claims(token)
}

struct Setup {
    pki: TestPki,
    issuer: TestIssuer,
    identity: ClientIdentity,
}

async fn setup() -> Setup {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::builder()
        .client_secret("confidential", "s3cret")
        .start(&pki)
        .await
        .unwrap();
    let identity = pki.client_cert("svc.example").unwrap().identity().unwrap();
    Setup {
        pki,
        issuer,
        identity,
    }
}

impl Setup {
    fn builder(&self) -> tower_token_binding::source::ClientCredentialsBuilder {
        ClientCredentials::builder()
            .client_id("svc")
            .root_store(self.pki.root_store())
            .token_timeout(Duration::from_secs(5))
    }
}

#[tokio::test]
async fn tls_client_auth_gets_a_token_bound_to_our_certificate() {
    let s = setup().await;
    let source = s
        .builder()
        .token_endpoint(s.issuer.token_endpoint())
        .tls_client_auth(s.identity.clone())
        .scope("read write")
        .resource("https://api.other")
        .build()
        .unwrap();
    let token = fetch(&source).await.unwrap();
    assert_eq!(
        token.identity().unwrap().thumbprint(),
        s.identity.thumbprint()
    );
    assert_eq!(token.token_type(), "Bearer");
    let claims = claims(token.access_token().secret());
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        s.identity.thumbprint().to_string()
    );
    assert_eq!(claims["scope"], "read write");
    assert_eq!(claims["aud"], "https://api.other");
    assert_eq!(
        source.cache_key().thumbprint(),
        Some(s.identity.thumbprint())
    );
}

#[tokio::test]
async fn scopes_given_twice_go_out_as_one_scope() {
    // The test issuer refuses a repeated parameter (RFC 6749 §3.2).
    let s = setup().await;
    let source = s
        .builder()
        .token_endpoint(s.issuer.token_endpoint())
        .tls_client_auth(s.identity.clone())
        .scope("read write")
        .param("scope", "write admin")
        .scope("audit")
        .build()
        .unwrap();
    let token = fetch(&source).await.unwrap();
    let claims = claims(token.access_token().secret());
    assert_eq!(claims["scope"], "read write admin audit");
    // The same scopes in one go: the same cached token.
    let once = s
        .builder()
        .token_endpoint(s.issuer.token_endpoint())
        .tls_client_auth(s.identity.clone())
        .scope("read write admin audit")
        .build()
        .unwrap();
    assert_eq!(source.cache_key(), once.cache_key());
}

#[test]
fn the_cache_key_follows_the_current_identity() {
    let pki = TestPki::new().unwrap();
    let first = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let second = pki.client_cert("svc.example").unwrap().identity().unwrap();
    let slot = Arc::new(RwLock::new(first.clone()));
    let current = {
        let slot = slot.clone();
        move || slot.read().unwrap().clone()
    };
    let source = ClientCredentials::builder()
        .client_id("svc")
        .token_endpoint("https://as.example/token")
        .root_store(pki.root_store())
        .tls_client_auth(current)
        .build()
        .unwrap();

    let key = source.cache_key();
    assert_eq!(key.thumbprint(), Some(first.thumbprint()));
    assert_eq!(
        source.cache_key(),
        key,
        "the same key while nothing changes"
    );

    *slot.write().unwrap() = second.clone();
    let renewed = source.cache_key();
    assert_eq!(renewed.thumbprint(), Some(second.thumbprint()));
    assert_ne!(renewed, key);
    assert_eq!(source.cache_key(), renewed);

    // Back to the first identity: its key again.
    *slot.write().unwrap() = first;
    assert_eq!(source.cache_key(), key);
}

#[tokio::test]
async fn discovery_prefers_the_mtls_alias() {
    let s = setup().await;
    let source = s
        .builder()
        .issuer(s.issuer.issuer())
        .self_signed_tls_client_auth(s.identity.clone())
        .build()
        .unwrap();
    fetch(&source).await.unwrap();
    fetch(&source).await.unwrap();
    assert_eq!(s.issuer.mtls_token_requests(), 2, "both went to the alias");
    assert_eq!(s.issuer.token_requests(), 2);
}

#[tokio::test]
async fn concurrent_first_fetches_share_one_discovery() {
    let s = setup().await;
    let source = s
        .builder()
        .issuer(s.issuer.issuer())
        .self_signed_tls_client_auth(s.identity.clone())
        .build()
        .unwrap();
    // Both find the endpoint unresolved before either lookup answers.
    let (first, second) = tokio::join!(fetch(&source), fetch(&source));
    first.unwrap();
    second.unwrap();
    assert_eq!(s.issuer.metadata_requests(), 1, "one metadata lookup");
    assert_eq!(s.issuer.token_requests(), 2);
}

#[tokio::test]
async fn client_secrets_with_a_bound_certificate() {
    let s = setup().await;
    for basic in [true, false] {
        let builder = s
            .builder()
            .client_id("confidential")
            .token_endpoint(s.issuer.token_endpoint())
            .identity(s.identity.clone());
        let builder = if basic {
            builder.client_secret_basic("s3cret")
        } else {
            builder.client_secret_post("s3cret")
        };
        let source = builder.build().unwrap();
        let token = fetch(&source).await.unwrap();
        assert_eq!(
            claims(token.access_token().secret())["cnf"]["x5t#S256"],
            s.identity.thumbprint().to_string()
        );
        // The secret never shows.
        assert!(!format!("{source:?}").contains("s3cret"));
    }
    let wrong = s
        .builder()
        .client_id("confidential")
        .token_endpoint(s.issuer.token_endpoint())
        .identity(s.identity.clone())
        .client_secret_basic("wrong")
        .build()
        .unwrap();
    let e = fetch(&wrong).await.unwrap_err();
    assert_eq!(e.kind(), Kind::OAuth);
    assert_eq!(e.oauth_error(), Some("invalid_client"));
    assert_eq!(e.http_status(), Some(StatusCode::UNAUTHORIZED));
    assert!(!format!("{e} {e:?}").contains("wrong"));
}

#[tokio::test]
async fn entra_flavour() {
    let s = setup().await;
    let source = s
        .builder()
        .token_endpoint(s.issuer.token_endpoint())
        .tls_client_auth(s.identity.clone())
        .entra_mtls_pop()
        .build()
        .unwrap();
    let token = fetch(&source).await.unwrap();
    assert_eq!(token.token_type(), "mtls_pop");
    // A Bearer answer to an mtls_pop request is an error, as MSAL has it.
    s.issuer.set_fault(Some(Fault::TokenType("Bearer".into())));
    let e = fetch(&source).await.unwrap_err();
    assert_eq!(e.kind(), Kind::TokenType);
    // And the other way round for RFC 8705.
    let rfc = s
        .builder()
        .token_endpoint(s.issuer.token_endpoint())
        .tls_client_auth(s.identity.clone())
        .build()
        .unwrap();
    s.issuer.set_fault(Some(Fault::TokenType("DPoP".into())));
    assert_eq!(fetch(&rfc).await.unwrap_err().kind(), Kind::TokenType);
}

#[tokio::test]
async fn a_lying_slow_or_broken_endpoint_is_refused() {
    let s = setup().await;
    let source = s
        .builder()
        .token_endpoint(s.issuer.token_endpoint())
        .tls_client_auth(s.identity.clone())
        .build()
        .unwrap();
    // A short timeout only where it is meant to expire: a handshake on a
    // busy machine may take longer than 300 ms.
    let impatient = s
        .builder()
        .token_endpoint(s.issuer.token_endpoint())
        .tls_client_auth(s.identity.clone())
        .token_timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    s.issuer
        .set_fault(Some(Fault::BindTo(Thumbprint::from_der(b"someone else"))));
    let e = fetch(&source).await.unwrap_err();
    assert_eq!(e.kind(), Kind::CertificateMismatch, "{e}");

    s.issuer.set_fault(Some(Fault::Unbound));
    let token = fetch(&source).await.unwrap();
    assert!(
        token.identity().is_none(),
        "an unbound JWT comes back as unbound"
    );

    s.issuer
        .set_fault(Some(Fault::Delay(Duration::from_secs(60))));
    let e = fetch(&impatient).await.unwrap_err();
    assert!(e.is_timeout(), "{e}");

    // A lifetime no clock can hold, past the maximum (24 h by default), a
    // sign, or none at all: refused, never a panic nor a token that never
    // expires.
    for expires_in in [
        "1e20",
        "1e19",
        "1.8e308",
        "\"18446744073709551615\"",
        "\"99999999999999999999999\"",
        "86401",
        "\"86401\"",
        "-5",
        "\"+7\"",
        "\" 7\"",
        "\"7 \"",
        "\"\"",
        "\"soon\"",
        "true",
        "0",
        "\"0\"",
        "0.0",
    ] {
        s.issuer
            .set_fault(Some(Fault::ExpiresIn(expires_in.to_owned())));
        let e = fetch(&source).await.unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidResponse, "{expires_in}: {e}");
        assert!(e.to_string().contains("expires_in"), "{expires_in}: {e}");
    }
    for (expires_in, lifetime) in [("\"7\"", 7), ("86400", 86_400), ("600.0", 600)] {
        s.issuer
            .set_fault(Some(Fault::ExpiresIn(expires_in.to_owned())));
        let token = fetch(&source).await.unwrap();
        let left = token.expiry().unwrap() - std::time::Instant::now();
        assert!(
            left <= Duration::from_secs(lifetime)
                && left > Duration::from_secs(lifetime) - Duration::from_secs(5),
            "{expires_in}: {left:?}"
        );
    }
    // The maximum is a setting.
    let long_lived = s
        .builder()
        .token_endpoint(s.issuer.token_endpoint())
        .tls_client_auth(s.identity.clone())
        .max_expires_in(Duration::from_secs(7 * 24 * 3600))
        .build()
        .unwrap();
    s.issuer
        .set_fault(Some(Fault::ExpiresIn("172800".to_owned())));
    fetch(&long_lived).await.unwrap();

    // expires_in 0 is an error, so a cache backs off rather than fetching
    // for every request.
    s.issuer.set_fault(Some(Fault::ExpiresIn("0".to_owned())));
    let before = s.issuer.token_requests();
    let cache = tower_token_binding::token::TokenCache::new(source.clone());
    for _ in 0..5 {
        assert!(cache.get().await.is_err());
    }
    assert_eq!(s.issuer.token_requests() - before, 1);

    s.issuer.set_fault(Some(Fault::Garbage));
    assert_eq!(
        fetch(&source).await.unwrap_err().kind(),
        Kind::InvalidResponse
    );

    s.issuer.set_fault(Some(Fault::Oversized(200 * 1024)));
    let e = fetch(&source).await.unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidResponse);
    assert!(e.to_string().contains("limit"), "{e}");

    s.issuer.set_fault(None);
    s.issuer.set_down(true);
    let e = fetch(&source).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.http_status()),
        (Kind::OAuth, Some(StatusCode::SERVICE_UNAVAILABLE))
    );

    // An endpoint whose certificate we do not trust.
    s.issuer.set_down(false);
    let untrusting = ClientCredentials::builder()
        .client_id("svc")
        .root_store(TestPki::new().unwrap().root_store())
        .token_endpoint(s.issuer.token_endpoint())
        .tls_client_auth(s.identity.clone())
        .build()
        .unwrap();
    let e = fetch(&untrusting).await.unwrap_err();
    assert_eq!(e.kind(), Kind::Transport);
    assert!(e.is_tls(), "{e:?}");
}

#[tokio::test]
async fn discovery_failures_are_typed() {
    let s = setup().await;
    // An issuer whose metadata names another issuer.
    let source = s
        .builder()
        .issuer(format!("{}/tenant", s.issuer.issuer()))
        .tls_client_auth(s.identity.clone())
        .build()
        .unwrap();
    assert_eq!(fetch(&source).await.unwrap_err().kind(), Kind::Discovery);
}

#[tokio::test]
async fn the_metadata_must_name_the_issuer_exactly() {
    let s = setup().await;
    // The test issuer's metadata says `https://127.0.0.1:PORT`; configured
    // with a trailing slash, the two differ (RFC 8414 section 3.3), and the
    // error shows both so that the user sees why.
    let configured = format!("{}/", s.issuer.issuer());
    let source = s
        .builder()
        .issuer(&configured)
        .tls_client_auth(s.identity.clone())
        .build()
        .unwrap();
    let e = fetch(&source).await.unwrap_err();
    assert_eq!(e.kind(), Kind::Discovery, "{e}");
    let message = e.to_string();
    assert!(message.contains(&format!("{configured:?}")), "{message}");
    assert!(
        message.contains(&format!("{:?}", s.issuer.issuer())),
        "{message}"
    );
    assert!(message.contains("trailing slash"), "{message}");
    assert_eq!(s.issuer.token_requests(), 0);

    // Configured as the metadata writes it: found.
    let source = s
        .builder()
        .issuer(s.issuer.issuer())
        .tls_client_auth(s.identity.clone())
        .build()
        .unwrap();
    fetch(&source).await.unwrap();
}

#[test]
fn misconfigurations_are_refused_at_build() {
    let identity = TestPki::self_signed_client("svc.example")
        .unwrap()
        .identity()
        .unwrap();
    let roots = rustls::RootCertStore::empty();
    let base = || ClientCredentials::builder().root_store(roots.clone());
    let err = |b: tower_token_binding::source::ClientCredentialsBuilder| {
        b.build().unwrap_err().to_string()
    };

    assert!(
        err(base()
            .token_endpoint("https://as/token")
            .tls_client_auth(identity.clone()))
        .contains("client_id")
    );
    assert!(
        err(base().client_id("c").tls_client_auth(identity.clone()))
            .contains("token endpoint or an issuer")
    );
    assert!(
        err(base()
            .client_id("c")
            .token_endpoint("http://as/token")
            .tls_client_auth(identity.clone()))
        .contains("https")
    );
    // The error names the URL without its user info or query.
    let shown = err(base()
        .client_id("c")
        .token_endpoint("http://user:pa55word@as/token?key=s3cret")
        .tls_client_auth(identity.clone()));
    assert!(shown.contains("http://…@as/token?…"), "{shown}");
    assert!(
        !shown.contains("pa55word") && !shown.contains("s3cret"),
        "{shown}"
    );
    let shown = err(base()
        .client_id("c")
        .token_endpoint("not a url pa55word")
        .tls_client_auth(identity.clone()));
    assert!(!shown.contains("pa55word"), "{shown}");
    assert!(
        err(base()
            .client_id("c")
            .token_endpoint("https://as/token")
            .client_secret_basic("s"))
        .contains("identity")
    );
    assert!(
        err(base().client_id("c").token_endpoint("https://as/token"))
            .contains("client authentication")
    );
    assert!(
        err(base()
            .client_id("c")
            .token_endpoint("https://as/token")
            .issuer("https://as")
            .tls_client_auth(identity.clone()))
        .contains("not both")
    );
    // Issuers with user info, a query or a fragment (RFC 8414 section 2),
    // refused without repeating what may be a secret.
    for (issuer, hint) in [
        ("https://c:s3cret@as.example", "user info"),
        ("https://as.example?key=s3cret", "query"),
        ("https://as.example/#s3cret", "fragment"),
        ("http://as.example", "https://"),
    ] {
        let message = err(base()
            .client_id("c")
            .issuer(issuer)
            .tls_client_auth(identity.clone()));
        assert!(message.contains(hint), "{issuer}: {message}");
        assert!(!message.contains("s3cret"), "{issuer}: {message}");
    }
    assert!(
        base()
            .client_id("c")
            .token_endpoint("https://as/token")
            .tls_client_auth(identity)
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn the_whole_client_stack_over_one_pool() {
    let s = setup().await;
    let api = support::start_api(
        &s.pki,
        CnfValidationLayer::new(support::jwt_validator(
            &s.pki,
            &s.issuer,
            Duration::from_secs(10),
        )),
    )
    .await;

    let pool: MtlsClientPool<Full<Bytes>> = MtlsClientPool::builder()
        .root_store(s.pki.root_store())
        .build()
        .unwrap();
    let source = s
        .builder()
        .issuer(s.issuer.issuer())
        .tls_client_auth(s.identity.clone())
        .pool(pool.clone())
        .build()
        .unwrap();
    let binding = TokenBindingLayer::bound(source);
    let cache = binding.cache().unwrap().clone();
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(binding.retry_policy()))
        .layer(binding)
        .service(pool.clone());

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (client, api) = (client.clone(), api.clone());
        tasks.spawn(async move {
            let response = client
                .oneshot(Request::get(api).body(Full::default()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&body).unwrap()
        });
    }
    while let Some(body) = tasks.join_next().await {
        assert_eq!(
            body.unwrap()["x5t#S256"],
            s.identity.thumbprint().to_string()
        );
    }
    assert_eq!(cache.stats().fetches, 1);
    assert_eq!(s.issuer.tokens_issued(), 1);
    // The token call and the API calls presented the same identity, from one
    // client in one pool.
    assert_eq!(pool.stats().identities, 1);
    assert_eq!(pool.stats().clients_built, 1);

    // A source that fails gives the layer's typed error, with the cause.
    s.issuer.set_down(true);
    let failing = s
        .builder()
        .token_endpoint(s.issuer.token_endpoint())
        .tls_client_auth(s.identity.clone())
        .build()
        .unwrap();
    let client = ServiceBuilder::new()
        .layer(TokenBindingLayer::bound(failing))
        .service(pool);
    let e = client
        .oneshot(Request::get(&api).body(Full::default()).unwrap())
        .await
        .unwrap_err();
    let unavailable = e.downcast_ref::<TokenUnavailable>().unwrap();
    let cause = std::error::Error::source(unavailable).unwrap();
    assert!(
        cause.downcast_ref::<TokenEndpointError>().is_some(),
        "{cause}"
    );
}
