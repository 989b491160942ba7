//! [`ResourceServerBuilder::introspection`]: opaque tokens (RFC 7662) next
//! to JWTs, or instead of them.

use std::sync::Arc;

use rustls::RootCertStore;

use super::ResourceServerBuilder;
use crate::ConfigError;
use crate::validation::{
    IntrospectionValidatorBuilder, JwtOrIntrospection, JwtValidator, TokenProfile,
};

/// How the server uses introspection.
#[derive(Clone, Debug)]
pub(super) struct Introspection {
    builder: IntrospectionValidatorBuilder,
    /// JWTs are not validated locally: every token is introspected.
    only: bool,
}

impl ResourceServerBuilder {
    /// Also accepts opaque access tokens, checked by token introspection
    /// (RFC 7662) with the validator `builder` describes: tokens that are
    /// not three dot-separated segments go to it, JWTs still to the JWT
    /// validator ([`JwtOrIntrospection`]). The binding the answer's `cnf`
    /// names (client certificate, or DPoP key with
    /// [`accept_dpop`](Self::accept_dpop)) is checked on every request, as
    /// for JWTs.
    ///
    /// `builder` needs the resource server's client ID and credentials. What
    /// it leaves unset comes from this builder: the endpoint is discovered
    /// from the [issuer](Self::issuer)'s metadata
    /// (`introspection_endpoint`, or its `mtls_endpoint_aliases` entry with
    /// `tls_client_auth`), and the issuer's
    /// [roots](Self::root_store) are trusted, and the answers must
    /// carry this builder's [issuer](Self::issuer) as `iss` and name one of
    /// its [audiences](Self::audience) in `aud`, as JWTs must. Set
    /// [`issuer`](IntrospectionValidatorBuilder::issuer) or
    /// [`audience`](IntrospectionValidatorBuilder::audience) on `builder`
    /// to expect other values, and
    /// [`allow_missing_audience`](IntrospectionValidatorBuilder::allow_missing_audience)
    /// for an authorization server that leaves `aud` out of its answers
    /// (a present `aud` is still checked). Replaces an earlier
    /// [`introspection_only`](Self::introspection_only).
    ///
    /// ```
    /// use tower_token_binding::server::ResourceServer;
    /// use tower_token_binding::validation::IntrospectionValidator;
    ///
    /// let builder = ResourceServer::builder()
    ///     .issuer("https://login.example.com")
    ///     .audience("https://api.example.com")
    ///     .introspection(
    ///         IntrospectionValidator::builder()
    ///             .client_id("orders-api")
    ///             .client_secret_basic("s3cret"),
    ///     ); // iss and aud: the server's
    /// assert!(!format!("{builder:?}").contains("s3cret"));
    /// ```
    pub fn introspection(mut self, builder: IntrospectionValidatorBuilder) -> Self {
        self.introspection = Some(Introspection {
            builder,
            only: false,
        });
        self
    }

    /// Checks every token by introspection, JWTs included (no JWKS is
    /// fetched); otherwise as [`introspection`](Self::introspection).
    pub fn introspection_only(mut self, builder: IntrospectionValidatorBuilder) -> Self {
        self.introspection = Some(Introspection {
            builder,
            only: true,
        });
        self
    }
}

/// The server's validator: the JWT one alone, or with introspection. What
/// the introspection builder leaves unset comes from the server: the
/// endpoint (discovered from the issuer), the roots, the issuer and the
/// audiences the answers must name.
pub(super) fn validator(
    introspection: Option<Introspection>,
    jwt: JwtValidator,
    issuer: &str,
    audiences: &[String],
    roots: &Arc<RootCertStore>,
    profile: &TokenProfile,
) -> Result<JwtOrIntrospection, ConfigError> {
    let Some(Introspection { mut builder, only }) = introspection else {
        return Ok(JwtOrIntrospection::jwt_only(jwt));
    };
    if !builder.has_endpoint() {
        builder = builder.discover(issuer);
    }
    if !builder.has_issuer() {
        builder = builder.issuer(issuer);
    }
    if !builder.has_audience() {
        for audience in audiences {
            builder = builder.audience(audience.clone());
        }
    }
    if !builder.has_roots() {
        builder = builder.root_store(roots.clone());
    }
    if !builder.has_profile() {
        builder = builder.token_profile(profile.clone());
    }
    let introspection = builder.build()?;
    Ok(if only {
        JwtOrIntrospection::introspection_only(introspection)
    } else {
        JwtOrIntrospection::new(jwt, introspection)
    })
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use super::*;
    use crate::server::{AnyClientCertVerifier, ResourceServer};
    use crate::test_util::{TestIssuer, TestPki};
    use crate::validation::{IntrospectionValidator, IntrospectionValidatorBuilder};
    use bytes::Bytes;
    use http::{Request, Response, StatusCode, header};
    use http_body_util::Full;
    use tower::{ServiceBuilder, ServiceExt as _};

    /// Introspection as the client `api`, with its secret.
    fn api_client() -> IntrospectionValidatorBuilder {
        IntrospectionValidator::builder()
            .client_id("api")
            .client_secret_basic("s3cret")
    }

    #[test]
    fn introspection_settings_are_checked_at_build() {
        let pki = TestPki::new().unwrap();
        let tls = pki
            .server_config(Arc::new(AnyClientCertVerifier::optional()))
            .unwrap();
        let base = || {
            ResourceServer::builder()
                .issuer("https://login.example")
                .audience("https://api.example")
                .tls_config(tls.clone())
                .root_store(pki.root_store())
        };
        // No credentials for the introspection endpoint.
        let err = base()
            .introspection(IntrospectionValidator::builder().client_id("api"))
            .build()
            .unwrap_err();
        assert_eq!(err.builder(), "IntrospectionValidatorBuilder");
        assert_eq!(err.setting(), Some("client_secret_basic"));
        assert!(err.to_string().contains("authenticate"), "{err}");
        // The endpoint given, not https.
        let err = base()
            .introspection_only(api_client().endpoint("http://login.example/introspect"))
            .build()
            .unwrap_err();
        assert_eq!(err.builder(), "IntrospectionValidatorBuilder");
        assert_eq!(err.setting(), Some("endpoint"));
        // Good settings: the endpoint is discovered from the issuer.
        let server = base().introspection(api_client()).build().unwrap();
        let validator = server.layer();
        let debug = format!("{validator:?}");
        assert!(
            debug.contains("discovered from https://login.example"),
            "{debug}"
        );
        assert!(!debug.contains("s3cret"), "{debug}");
    }

    /// The server's issuer and audience hold for opaque tokens too, when the
    /// introspection builder names neither.
    #[tokio::test]
    async fn opaque_tokens_for_another_audience_or_issuer_are_refused() {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::builder()
            .client_secret("api", "s3cret")
            .start(&pki)
            .await
            .unwrap();
        let tls = pki
            .server_config(Arc::new(AnyClientCertVerifier::optional()))
            .unwrap();
        let server = ResourceServer::builder()
            .issuer(issuer.issuer())
            .audience(issuer.audience())
            .tls_config(tls)
            .root_store(pki.root_store())
            .allow_unbound()
            .introspection(api_client())
            .build()
            .unwrap();
        let debug = format!("{:?}", server.layer());
        assert!(debug.contains(issuer.audience()), "{debug}");
        let call = |claims: serde_json::Value| {
            let token = issuer.issue_opaque(&claims).unwrap();
            let service = ServiceBuilder::new().layer(server.layer()).service_fn(
                |_: Request<Full<Bytes>>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::default()))
                },
            );
            let request = Request::get("https://api.example/")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Full::<Bytes>::default())
                .unwrap();
            async move {
                let response = service.oneshot(request).await.unwrap();
                let challenge = response
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                (response.status(), challenge)
            }
        };

        let ours = issuer.claims("svc", None);
        assert_eq!(call(ours.clone()).await.0, StatusCode::OK);

        let mut foreign_aud = ours.clone();
        foreign_aud["aud"] = serde_json::json!("https://elsewhere.example");
        let (status, challenge) = call(foreign_aud).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
        assert!(
            challenge.contains("not meant for this resource"),
            "{challenge}"
        );

        let mut foreign_iss = ours.clone();
        foreign_iss["iss"] = serde_json::json!("https://evil.example");
        let (status, challenge) = call(foreign_iss).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
        assert!(challenge.contains("wrong issuer"), "{challenge}");

        let mut no_aud = ours;
        no_aud.as_object_mut().unwrap().remove("aud");
        let (status, challenge) = call(no_aud).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
        assert!(challenge.contains("aud"), "{challenge}");
        assert_eq!(issuer.introspection_calls(), 4);
    }
}
