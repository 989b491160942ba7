use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

#[cfg(feature = "client")]
use super::{IntrospectionFuture, IntrospectionValidator};
use crate::validation::{JwtFuture, JwtValidator, TokenError, ValidateToken, VerifiedToken};

/// JWT access tokens to a [`JwtValidator`], opaque ones to an
/// [`IntrospectionValidator`], chosen by the token's shape: three
/// dot-separated segments make a JWT, anything else is opaque.
///
/// Either half may be alone ([`jwt_only`](Self::jwt_only),
/// [`introspection_only`](Self::introspection_only)); then it gets every
/// token. This is the validator of
/// [`ResourceServer`](crate::server::ResourceServer); to choose per route
/// instead, put a [`CnfValidationLayer`](crate::CnfValidationLayer) with the
/// validator each route wants on it.
///
#[cfg_attr(feature = "client", doc = "```")]
#[cfg_attr(not(feature = "client"), doc = "```ignore")]
/// use tower_token_binding::CnfValidationLayer;
/// use tower_token_binding::validation::{
///     IntrospectionValidator, JwksSource, JwtOrIntrospection, JwtValidator,
/// };
///
/// let jwt = JwtValidator::builder()
///     .issuer("https://login.example.com")
///     .audience("https://api.example.com")
///     .jwks(JwksSource::discover("https://login.example.com").unwrap())
///     .build()
///     .unwrap();
/// let introspection = IntrospectionValidator::builder()
///     .discover("https://login.example.com")
///     .client_id("api")
///     .client_secret_basic("s3cret")
///     .issuer("https://login.example.com")
///     .audience("https://api.example.com")
///     .build()
///     .unwrap();
/// let layer = CnfValidationLayer::new(JwtOrIntrospection::new(jwt, introspection));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct JwtOrIntrospection {
    jwt: Option<JwtValidator>,
    #[cfg(feature = "client")]
    introspection: Option<IntrospectionValidator>,
}

impl JwtOrIntrospection {
    /// JWTs to `jwt`, every other token to `introspection`.
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn new(jwt: JwtValidator, introspection: IntrospectionValidator) -> Self {
        Self {
            jwt: Some(jwt),
            introspection: Some(introspection),
        }
    }

    /// Every token to `jwt`.
    pub fn jwt_only(jwt: JwtValidator) -> Self {
        Self {
            jwt: Some(jwt),
            #[cfg(feature = "client")]
            introspection: None,
        }
    }

    /// Every token, JWT-shaped or not, to `introspection`.
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn introspection_only(introspection: IntrospectionValidator) -> Self {
        Self {
            jwt: None,
            introspection: Some(introspection),
        }
    }

    /// The JWT half, if any.
    pub fn jwt(&self) -> Option<&JwtValidator> {
        self.jwt.as_ref()
    }

    /// The introspection half, if any.
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn introspection(&self) -> Option<&IntrospectionValidator> {
        self.introspection.as_ref()
    }
}

impl From<JwtValidator> for JwtOrIntrospection {
    fn from(jwt: JwtValidator) -> Self {
        Self::jwt_only(jwt)
    }
}

#[cfg(feature = "client")]
impl From<IntrospectionValidator> for JwtOrIntrospection {
    fn from(introspection: IntrospectionValidator) -> Self {
        Self::introspection_only(introspection)
    }
}

/// Whether `token` has the shape of a JWS compact serialization: three
/// dot-separated segments.
fn is_jwt_shaped(token: &str) -> bool {
    token.split('.').count() == 3
}

impl ValidateToken for JwtOrIntrospection {
    type Future = JwtOrIntrospectionFuture;

    fn validate(&self, token: &str) -> JwtOrIntrospectionFuture {
        #[cfg(feature = "client")]
        if let Some(introspection) = &self.introspection {
            if self.jwt.is_none() || !is_jwt_shaped(token) {
                return JwtOrIntrospectionFuture {
                    state: State::Introspection(introspection.validate(token)),
                };
            }
        }
        match &self.jwt {
            Some(jwt) => JwtOrIntrospectionFuture {
                state: State::Jwt(jwt.validate(token)),
            },
            // Every constructor sets at least one half.
            None => JwtOrIntrospectionFuture {
                state: State::Done(Some(Err(TokenError::with_detail(
                    crate::validation::TokenErrorKind::Other,
                    format!(
                        "no validator for the token (JWT-shaped: {})",
                        is_jwt_shaped(token)
                    ),
                )))),
            },
        }
    }
}

/// The future of [`JwtOrIntrospection`].
pub struct JwtOrIntrospectionFuture {
    state: State,
}

enum State {
    Jwt(JwtFuture),
    #[cfg(feature = "client")]
    Introspection(IntrospectionFuture),
    Done(Option<Result<VerifiedToken, TokenError>>),
}

impl fmt::Debug for JwtOrIntrospectionFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtOrIntrospectionFuture")
            .finish_non_exhaustive()
    }
}

impl Future for JwtOrIntrospectionFuture {
    type Output = Result<VerifiedToken, TokenError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both futures are `Unpin`.
        match &mut self.state {
            State::Jwt(future) => Pin::new(future).poll(cx),
            #[cfg(feature = "client")]
            State::Introspection(future) => Pin::new(future).poll(cx),
            State::Done(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(TokenError::with_detail(
                    crate::validation::TokenErrorKind::Other,
                    "polled after completion",
                ))
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(is_jwt_shaped("a.b.c"));
        assert!(is_jwt_shaped(".."));
        assert!(!is_jwt_shaped("opaque-token"));
        assert!(!is_jwt_shaped("a.b"));
        assert!(!is_jwt_shaped("a.b.c.d.e"));
    }
}
