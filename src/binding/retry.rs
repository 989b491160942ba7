use std::future::{Ready, ready};

use http::{HeaderMap, Request, Response, StatusCode};
use tower::retry::Policy;

use super::service::{NonceRemembered, UsedToken};
pub(crate) use crate::proof::challenge::{
    pop_challenge_nonce, says_invalid_token, says_use_dpop_nonce,
};
use crate::token::{CachedToken, TokenCache};

/// A `tower::retry` policy for bound tokens: on `401` with
/// `error="invalid_token"` (in a `Bearer`, `mtls_pop` or `DPoP` challenge),
/// it drops the token that was sent from the cache and retries once (RFC
/// 8705 section 6.3: a new certificate means new tokens).
///
/// DPoP (RFC 9449 section 9): on `401` with a `DPoP` challenge saying
/// `error="use_dpop_nonce"` and a `DPoP-Nonce` header, it retries once with
/// the same token; the binding layer has remembered the nonce, and makes a
/// new proof carrying it for the retried request.
///
/// PoP (Microsoft's signed HTTP requests): on `401` with a `PoP` challenge
/// carrying a `nonce` (`WWW-Authenticate: PoP nonce="..."`, as MSAL reads
/// it), it retries once with the same token; the binding layer has
/// remembered the nonce, and the retried request's SHR carries it. A
/// challenge with a nonce is about the nonce: once that budget is spent it
/// gets no `invalid_token` retry either, so a server that is never
/// satisfied sees exactly two attempts.
///
/// Each kind of retry happens at most its number of times per request:
/// never a loop.
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
    nonce_attempts: usize,
    pop_nonce_attempts: usize,
}

impl InvalidTokenRetry {
    /// Retries once with a fresh token from `cache`, once with a new DPoP
    /// nonce and once with a PoP server nonce.
    pub fn new(cache: Option<TokenCache>) -> Self {
        Self {
            cache,
            attempts: 1,
            nonce_attempts: 1,
            pop_nonce_attempts: 1,
        }
    }

    /// How many times to retry one request after `invalid_token` (default
    /// 1). With 0, no retry of any kind.
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts;
        if attempts == 0 {
            self.nonce_attempts = 0;
            self.pop_nonce_attempts = 0;
        }
        self
    }

    /// How many times to retry one request after `use_dpop_nonce` (default
    /// 1: a server asks for a nonce once, and then has one).
    pub fn nonce_attempts(mut self, attempts: usize) -> Self {
        self.nonce_attempts = attempts;
        self
    }

    /// How many times to retry one request after a `PoP` challenge with a
    /// `nonce` (default 1: the retried SHR carries the server's nonce).
    pub fn pop_nonce_attempts(mut self, attempts: usize) -> Self {
        self.pop_nonce_attempts = attempts;
        self
    }
}

impl InvalidTokenRetry {
    /// Whether any retry is left.
    pub(crate) fn may_retry(&self) -> bool {
        self.attempts > 0 || self.nonce_attempts > 0 || self.pop_nonce_attempts > 0
    }

    /// Whether to send again a request that carried `used` and got a
    /// response with `status` and `headers` (whose nonce was `remembered`
    /// or not); spends the retry it takes, and drops `used` from the cache
    /// for an `invalid_token` retry.
    pub(crate) fn decide(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
        used: &CachedToken,
        remembered: bool,
    ) -> bool {
        if status != StatusCode::UNAUTHORIZED {
            return false;
        }
        if self.nonce_attempts > 0
            && used.token().dpop_proofs().is_some()
            && remembered
            && says_use_dpop_nonce(headers)
        {
            self.nonce_attempts -= 1;
            crate::metrics::client_retry(crate::metrics::Retry::DpopNonce);
            tracing::debug!("the server asked for a DPoP nonce; retrying with it");
            return true;
        }
        if used.token().pop_proofs().is_some() && pop_challenge_nonce(headers).is_some() {
            if !remembered {
                tracing::debug!("the server's PoP nonce was not taken; not retrying");
                return false;
            }
            if self.pop_nonce_attempts == 0 {
                tracing::debug!("the server asked for a PoP nonce again; not retrying");
                return false;
            }
            self.pop_nonce_attempts -= 1;
            crate::metrics::client_retry(crate::metrics::Retry::PopNonce);
            tracing::debug!("the server asked for a PoP nonce; retrying with it");
            return true;
        }
        if self.attempts == 0 || !says_invalid_token(headers) {
            return false;
        }
        let Some(cache) = &self.cache else {
            return false;
        };
        cache.reject(used.token().access_token());
        self.attempts -= 1;
        crate::metrics::client_retry(crate::metrics::Retry::InvalidToken);
        tracing::debug!(
            "the server rejected the access token as invalid_token; retrying with a new one"
        );
        true
    }
}

impl<B: Clone, ResBody, E> Policy<Request<B>, Response<ResBody>, E> for InvalidTokenRetry {
    type Future = Ready<()>;

    fn retry(
        &mut self,
        _request: &mut Request<B>,
        result: &mut Result<Response<ResBody>, E>,
    ) -> Option<Self::Future> {
        let response = result.as_ref().ok()?;
        let used = response.extensions().get::<UsedToken>()?;
        // A nonce retry only when the layer took the nonce: one the nonce
        // memory refused (too long, malformed) would be asked for again.
        let remembered = response.extensions().get::<NonceRemembered>().is_some();
        self.decide(response.status(), response.headers(), &used.0, remembered)
            .then(|| ready(()))
    }

    fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
        if !self.may_retry() {
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

#[cfg(test)]
mod tests {
    use http::{HeaderMap, header};

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
        assert!(says_invalid_token(&headers(&[
            "DPoP error=\"invalid_token\", algs=\"ES256\""
        ])));
    }

    #[test]
    fn reads_the_nonce_of_a_pop_challenge() {
        let nonce = |values: &[&str]| pop_challenge_nonce(&headers(values));
        assert_eq!(nonce(&["PoP nonce=\"abc\""]).as_deref(), Some("abc"));
        // Scheme and name in any case; a token value; spaces around `=`.
        assert_eq!(nonce(&["pop NONCE=abc-1.2"]).as_deref(), Some("abc-1.2"));
        assert_eq!(
            nonce(&["POP realm=\"x\", nonce = \"a b\""]).as_deref(),
            Some("a b")
        );
        // Escapes undone; commas and other schemes' words inside quotes.
        assert_eq!(
            nonce(&["PoP error=\"invalid_token\", nonce=\"a\\\"b\\\\c, d\", algs=\"ES256 PS256\""])
                .as_deref(),
            Some("a\"b\\c, d")
        );
        // Among other challenges, in one value or several.
        assert_eq!(
            nonce(&["Bearer realm=\"api\", PoP nonce=\"n1\", DPoP algs=\"ES256\""]).as_deref(),
            Some("n1")
        );
        assert_eq!(
            nonce(&["Basic realm=x", "PoP nonce=n2"]).as_deref(),
            Some("n2")
        );
        // Not a PoP challenge's nonce.
        assert_eq!(nonce(&["Bearer nonce=\"n\""]), None);
        assert_eq!(nonce(&["DPoP nonce=\"n\", PoP realm=\"x\""]), None);
        assert_eq!(nonce(&["PoP error_description=\"nonce=n\""]), None);
        assert_eq!(nonce(&["PoP realm=\"x, nonce=n\""]), None);
        assert_eq!(nonce(&["PoP xnonce=n, nonces=m"]), None);
        // Malformed, empty or ambiguous.
        assert_eq!(nonce(&["PoP nonce=\"unterminated"]), None);
        assert_eq!(nonce(&["PoP nonce=\"a\"b"]), None);
        assert_eq!(nonce(&["PoP nonce="]), None);
        assert_eq!(nonce(&["PoP nonce=a/b"]), None);
        assert_eq!(nonce(&["PoP nonce=n1", "PoP nonce=n2"]), None);
        assert_eq!(nonce(&["PoP"]), None);
        assert_eq!(nonce(&[]), None);
    }

    /// RFC 9110 section 11.2: `auth-param = token BWS "=" BWS ( token /
    /// quoted-string )`. A server that writes `error = "invalid_token"`
    /// (spaces around `=`, as `pop_challenge_nonce` already accepts for
    /// `nonce`) is not understood: the rejected token is neither dropped
    /// nor retried, and every request until it expires sends it again.
    #[test]
    fn invalid_token_with_spaces_around_the_equals_sign_is_recognised() {
        for value in [
            "Bearer error = \"invalid_token\"",
            "Bearer error= invalid_token",
            "DPoP algs=\"ES256\", error =\"invalid_token\"",
        ] {
            assert!(says_invalid_token(&headers(&[value])), "{value}");
        }
        assert!(says_use_dpop_nonce(&headers(&[
            "DPoP error = \"use_dpop_nonce\""
        ])));
    }

    #[test]
    fn recognises_use_dpop_nonce_challenges() {
        assert!(says_use_dpop_nonce(&headers(&[
            "DPoP error=\"use_dpop_nonce\", error_description=\"Resource server requires nonce in DPoP proof\""
        ])));
        assert!(says_use_dpop_nonce(&headers(&[
            "Bearer realm=\"api\", DPoP algs=\"ES256 PS256\", error=\"use_dpop_nonce\""
        ])));
        assert!(says_use_dpop_nonce(&headers(&[
            "dpop error=use_dpop_nonce"
        ])));
        // The error belongs to another scheme's challenge.
        assert!(!says_use_dpop_nonce(&headers(&[
            "Bearer error=\"use_dpop_nonce\", DPoP algs=\"ES256\""
        ])));
        assert!(!says_use_dpop_nonce(&headers(&[
            "DPoP error=\"invalid_dpop_proof\""
        ])));
        assert!(!says_use_dpop_nonce(&headers(&[
            "DPoP error_description=\"error=use_dpop_nonce\""
        ])));
        assert!(!says_use_dpop_nonce(&headers(&[
            "Bearer error_description=\"x, DPoP error=use_dpop_nonce, y\""
        ])));
        assert!(says_use_dpop_nonce(&headers(&[
            "Bearer error_description=\"a \\\" b, c\", DPoP error=\"use_dpop_nonce\""
        ])));
        assert!(!says_use_dpop_nonce(&headers(&["DPoP"])));
        assert!(!says_use_dpop_nonce(&headers(&[",,", "", " , DPoP"])));
    }
}
