use std::future::Future;

use super::{TokenError, VerifiedToken};

/// Checks an access token and returns its verified claims.
///
/// This is the extension point of [`CnfValidationLayer`](super::CnfValidationLayer):
/// [`JwtValidator`](super::JwtValidator) is the default (RFC 9068 JWTs with
/// keys from a JWKS), [`IntrospectionValidator`](super::IntrospectionValidator)
/// asks the authorization server about opaque tokens (RFC 7662),
/// [`JwtOrIntrospection`](super::JwtOrIntrospection) picks one of the two by
/// the token's shape, and any closure `Fn(&str) -> impl Future<Output =
/// Result<VerifiedToken, TokenError>>` is one too, for other token formats. The certificate binding is checked by the layer afterwards,
/// for every request, whatever the validator.
///
/// ```
/// use tower_token_binding::validation::{TokenError, TokenErrorKind, ValidateToken, VerifiedToken};
///
/// fn takes(_: impl ValidateToken) {}
///
/// takes(|token: &str| {
///     let known = token == "let-me-in";
///     async move {
///         if known {
///             let claims = serde_json::json!({ "sub": "tester" });
///             Ok(VerifiedToken::from_claims(claims.as_object().unwrap().clone()).unwrap())
///         } else {
///             Err(TokenError::new(TokenErrorKind::Other))
///         }
///     }
/// });
/// ```
pub trait ValidateToken: Clone + Send + Sync + 'static {
    /// The future returned by [`validate`](Self::validate).
    type Future: Future<Output = Result<VerifiedToken, TokenError>> + Send + 'static;

    /// Validates `token` (the credentials after the scheme word). The future
    /// must not borrow `token`: copy what it needs.
    fn validate(&self, token: &str) -> Self::Future;
}

impl<F, Fut> ValidateToken for F
where
    F: Fn(&str) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<VerifiedToken, TokenError>> + Send + 'static,
{
    type Future = Fut;

    fn validate(&self, token: &str) -> Fut {
        self(token)
    }
}
