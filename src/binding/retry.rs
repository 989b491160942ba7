use std::future::{Ready, ready};

use http::{HeaderMap, Request, Response, StatusCode, header};
use tower::retry::Policy;

use super::service::UsedToken;
use crate::proof::dpop::DPOP_NONCE;
use crate::token::TokenCache;

/// A `tower::retry` policy for bound tokens: on `401` with
/// `error="invalid_token"` (in a `Bearer`, `mtls_pop` or `DPoP` challenge),
/// it drops the token that was sent from the cache and retries once (RFC
/// 8705 section 6.3: a new certificate means new tokens).
///
/// DPoP (RFC 9449 section 9): on `401` with a `DPoP` challenge saying
/// `error="use_dpop_nonce"` and a `DPoP-Nonce` header, it retries once with
/// the same token; the binding layer has remembered the nonce, and makes a
/// new proof carrying it for the retried request. Each kind of retry
/// happens at most its number of times per request: never a loop.
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
}

impl InvalidTokenRetry {
    /// Retries once with a fresh token from `cache`, and once with a new
    /// DPoP nonce.
    pub fn new(cache: Option<TokenCache>) -> Self {
        Self {
            cache,
            attempts: 1,
            nonce_attempts: 1,
        }
    }

    /// How many times to retry one request after `invalid_token` (default
    /// 1). With 0, no retry of any kind.
    pub fn attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts;
        if attempts == 0 {
            self.nonce_attempts = 0;
        }
        self
    }

    /// How many times to retry one request after `use_dpop_nonce` (default
    /// 1: a server asks for a nonce once, and then has one).
    pub fn nonce_attempts(mut self, attempts: usize) -> Self {
        self.nonce_attempts = attempts;
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
        let response = result.as_ref().ok()?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return None;
        }
        let used = response.extensions().get::<UsedToken>()?;
        if self.nonce_attempts > 0
            && used.0.token().dpop_proofs().is_some()
            && response.headers().contains_key(DPOP_NONCE)
            && says_use_dpop_nonce(response.headers())
        {
            self.nonce_attempts -= 1;
            tracing::debug!("the server asked for a DPoP nonce; retrying with it");
            return Some(ready(()));
        }
        if self.attempts == 0 || !says_invalid_token(response.headers()) {
            return None;
        }
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
        if self.attempts == 0 && self.nonce_attempts == 0 {
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
    says(
        headers,
        &["bearer", "mtls_pop", "dpop", "pop"],
        "invalid_token",
    )
}

/// Whether a `DPoP` challenge says `error="use_dpop_nonce"`.
pub(crate) fn says_use_dpop_nonce(headers: &HeaderMap) -> bool {
    says(headers, &["dpop"], "use_dpop_nonce")
}

/// Whether a `WWW-Authenticate` value has a challenge of one of `schemes`
/// (lower case) whose `error` is `code`. A value may hold several
/// challenges (`Bearer realm="a", DPoP error="use_dpop_nonce"`): the error
/// must follow the scheme's word, before the next challenge's.
fn says(headers: &HeaderMap, schemes: &[&str], code: &str) -> bool {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| {
            let lower = value.to_ascii_lowercase();
            let quoted = format!("error=\"{code}\"");
            let bare = format!("error={code}");
            challenges(&lower).any(|(scheme, params)| {
                schemes.contains(&scheme)
                    && split_outside_quotes(params).into_iter().any(|(_, param)| {
                        let param = param.trim();
                        param == quoted || param == bare
                    })
            })
        })
}

/// The challenges of a lower-cased `WWW-Authenticate` value, as (scheme,
/// parameters) pairs. The value is split at commas outside quoted strings;
/// a piece that starts with a token followed by a space or nothing (not by
/// `=`) starts a new challenge.
fn challenges(value: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut starts: Vec<(usize, usize)> = Vec::new();
    for (at, piece) in split_outside_quotes(value) {
        let trimmed = piece.trim_start();
        let offset = at + (piece.len() - trimmed.len());
        let word_end = trimmed.find([' ', '=']).unwrap_or(trimmed.len());
        let is_scheme = word_end > 0
            && trimmed.as_bytes().get(word_end) != Some(&b'=')
            && trimmed[..word_end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if is_scheme {
            starts.push((offset, word_end));
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|(start, _)| *start)
        .chain([value.len()])
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |((start, word_end), end)| {
            let scheme = value.get(start..start + word_end).unwrap_or_default();
            let params = value.get(start + word_end..end).unwrap_or_default();
            (scheme, params)
        })
}

/// The pieces of `value` between commas that are not inside a quoted
/// string, with their offsets.
fn split_outside_quotes(value: &str) -> Vec<(usize, &str)> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in value.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                pieces.push((start, &value[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push((start, &value[start..]));
    pieces
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
        assert!(says_invalid_token(&headers(&[
            "DPoP error=\"invalid_token\", algs=\"ES256\""
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
