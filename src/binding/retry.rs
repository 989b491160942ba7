use std::future::{Ready, ready};

use http::{HeaderMap, Request, Response, StatusCode, header};
use tower::retry::Policy;

use super::service::UsedToken;
use crate::token::TokenCache;

/// A `tower::retry` policy for certificate-bound tokens: on `401` with
/// `error="invalid_token"` (in a `Bearer` or `mtls_pop` challenge), it drops
/// the token that was sent from the cache and retries once (RFC 8705 section
/// 6.3: a new certificate means new tokens).
///
/// The retry layer must be *outside* [`TokenBindingLayer`](super::TokenBindingLayer),
/// so that the retried request passes through the binding layer again and
/// gets the fresh token and the identity it is bound to:
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::ServiceBuilder;
/// use tower::retry::RetryLayer;
/// use tower_token_binding::TokenBindingLayer;
/// use tower_token_binding::token::Token;
///
/// let binding = TokenBindingLayer::bearer(|| async { Ok(Token::new("t")) });
/// let service = ServiceBuilder::new()
///     .layer(RetryLayer::new(binding.retry_policy()))
///     .layer(binding)
///     .service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) });
/// # let _ = service;
/// ```
///
/// Requests are cloned for the retry, so their body must be `Clone`
/// (`String`, `Full<Bytes>`, `Empty<Bytes>`...).
#[derive(Clone, Debug)]
pub struct InvalidTokenRetry {
    cache: Option<TokenCache>,
    attempts: usize,
}

impl InvalidTokenRetry {
    /// Retries once with a fresh token from `cache`.
    pub fn new(cache: Option<TokenCache>) -> Self {
        Self { cache, attempts: 1 }
    }

    /// How many times to retry one request (default 1).
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts;
        self
    }
}

impl<B: Clone, ResBody, E> Policy<Request<B>, Response<ResBody>, E> for InvalidTokenRetry {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _request: &mut Request<B>,
        result: &mut Result<Response<ResBody>, E>,
    ) -> Option<Self::Future> {
        if self.attempts == 0 {
            return None;
        }
        let response = result.as_ref().ok()?;
        if response.status() != StatusCode::UNAUTHORIZED || !says_invalid_token(response.headers())
        {
            return None;
        }
        let used = response.extensions().get::<UsedToken>()?;
        self.cache
            .as_ref()?
            .invalidate(used.0.token().access_token());
        self.attempts -= 1;
        tracing::debug!(
            "the server rejected the access token as invalid_token; retrying with a new one"
        );
        Some(ready(()))
    }

    fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
        if self.attempts == 0 {
            return None;
        }
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.version_mut() = request.version();
        *clone.headers_mut() = request.headers().clone();
        *clone.extensions_mut() = request.extensions().clone();
        Some(clone)
    }
}

/// Whether a challenge says `error="invalid_token"`.
pub(crate) fn says_invalid_token(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|challenge| {
            let lower = challenge.to_ascii_lowercase();
            let scheme_ok = lower.starts_with("bearer") || lower.starts_with("mtls_pop");
            scheme_ok
                && (lower.contains("error=\"invalid_token\"")
                    || lower.contains("error=invalid_token"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(header::WWW_AUTHENTICATE, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn recognises_invalid_token_challenges() {
        assert!(says_invalid_token(&headers(&[
            "Bearer error=\"invalid_token\""
        ])));
        assert!(says_invalid_token(&headers(&[
            "Bearer error=\"invalid_token\", error_description=\"expired\""
        ])));
        assert!(says_invalid_token(&headers(&[
            "mtls_pop error=\"invalid_token\""
        ])));
        assert!(says_invalid_token(&headers(&[
            "Basic realm=x",
            "Bearer error=invalid_token"
        ])));
        assert!(!says_invalid_token(&headers(&["Bearer"])));
        assert!(!says_invalid_token(&headers(&[
            "Bearer error=\"insufficient_scope\""
        ])));
        assert!(!says_invalid_token(&headers(&[
            "Basic error=\"invalid_token\""
        ])));
        assert!(!says_invalid_token(&headers(&[])));
    }
}
