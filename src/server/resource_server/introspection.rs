//! [`ResourceServerBuilder::introspection`]: opaque tokens (RFC 7662) next
//! to JWTs, or instead of them.

use std::sync::Arc;

use rustls::RootCertStore;

use super::{ResourceServerBuilder, ResourceServerError, ResourceServerErrorKind};
use crate::validation::{IntrospectionValidatorBuilder, JwtOrIntrospection, JwtValidator};

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
    /// [roots](Self::issuer_root_store) are trusted. `iss`, `aud` and `exp`
    /// are checked as `builder` says (opaque tokens often carry no `aud`).
    /// Replaces an earlier [`introspection_only`](Self::introspection_only).
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
    ///             .client_secret_basic("s3cret")
    ///             .issuer("https://login.example.com"),
    ///     );
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

/// The server's validator: the JWT one alone, or with introspection.
pub(super) fn validator(
    introspection: Option<Introspection>,
    jwt: JwtValidator,
    issuer: &str,
    roots: &Arc<RootCertStore>,
) -> Result<JwtOrIntrospection, ResourceServerError> {
    let Some(Introspection { mut builder, only }) = introspection else {
        return Ok(JwtOrIntrospection::jwt_only(jwt));
    };
    if !builder.has_endpoint() {
        builder = builder.discover(issuer);
    }
    if !builder.has_roots() {
        builder = builder.root_store(roots.clone());
    }
    let introspection = builder.build().map_err(|e| {
        ResourceServerError::new(ResourceServerErrorKind::Introspection).with_source(e)
    })?;
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
    use crate::test_util::TestPki;
    use crate::validation::IntrospectionValidator;

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
                .issuer_root_store(pki.root_store())
        };
        // No credentials for the introspection endpoint.
        let err = base()
            .introspection(IntrospectionValidator::builder().client_id("api"))
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ResourceServerErrorKind::Introspection);
        assert!(err.to_string().contains("authenticate"), "{err}");
        // The endpoint given, not https.
        let err = base()
            .introspection_only(
                IntrospectionValidator::builder()
                    .endpoint("http://login.example/introspect")
                    .client_id("api")
                    .client_secret_basic("s3cret"),
            )
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ResourceServerErrorKind::Introspection);
        // Good settings: the endpoint is discovered from the issuer.
        let server = base()
            .introspection(
                IntrospectionValidator::builder()
                    .client_id("api")
                    .client_secret_basic("s3cret"),
            )
            .build()
            .unwrap();
        let validator = server.layer();
        let debug = format!("{validator:?}");
        assert!(
            debug.contains("discovered from https://login.example"),
            "{debug}"
        );
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
