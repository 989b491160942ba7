use std::future::{Ready, ready};

use http::{HeaderMap, Request, Response, StatusCode, header};
use tower::retry::Policy;

use super::service::{NonceRemembered, UsedToken};
use crate::token::TokenCache;

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
        // A nonce retry only when the layer took the nonce: one the nonce
        // memory refused (too long, malformed) would be asked for again.
        let remembered = response.extensions().get::<NonceRemembered>().is_some();
        if self.nonce_attempts > 0
            && used.0.token().dpop_proofs().is_some()
            && remembered
            && says_use_dpop_nonce(response.headers())
        {
            self.nonce_attempts -= 1;
            crate::metrics::client_retry(crate::metrics::Retry::DpopNonce);
            tracing::debug!("the server asked for a DPoP nonce; retrying with it");
            return Some(ready(()));
        }
        if used.0.token().pop_requests().is_some()
            && pop_challenge_nonce(response.headers()).is_some()
        {
            if !remembered {
                tracing::debug!("the server's PoP nonce was not taken; not retrying");
                return None;
            }
            if self.pop_nonce_attempts == 0 {
                tracing::debug!("the server asked for a PoP nonce again; not retrying");
                return None;
            }
            self.pop_nonce_attempts -= 1;
            crate::metrics::client_retry(crate::metrics::Retry::PopNonce);
            tracing::debug!("the server asked for a PoP nonce; retrying with it");
            return Some(ready(()));
        }
        if self.attempts == 0 || !says_invalid_token(response.headers()) {
            return None;
        }
        self.cache.as_ref()?.reject(used.0.token().access_token());
        self.attempts -= 1;
        crate::metrics::client_retry(crate::metrics::Retry::InvalidToken);
        tracing::debug!(
            "the server rejected the access token as invalid_token; retrying with a new one"
        );
        Some(ready(()))
    }

    fn clone_request(&mut self, request: &Request<B>) -> Option<Request<B>> {
        if self.attempts == 0 && self.nonce_attempts == 0 && self.pop_nonce_attempts == 0 {
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

/// The `nonce` of a `PoP` challenge (Microsoft's signed HTTP requests, as
/// MSAL reads it: `WWW-Authenticate: PoP nonce="..."`), unescaped, if the
/// headers have exactly one such challenge value. The scheme and the
/// parameter's name are case-insensitive, the value a token or a quoted
/// string (with `\` escapes), among any other parameters.
pub(crate) fn pop_challenge_nonce(headers: &HeaderMap) -> Option<String> {
    let mut found = None;
    for value in headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for (scheme, params) in challenges(value) {
            if !scheme.eq_ignore_ascii_case("pop") {
                continue;
            }
            for (_, param) in split_outside_quotes(params) {
                let Some((name, value)) = param.split_once('=') else {
                    continue;
                };
                if !name.trim().eq_ignore_ascii_case("nonce") {
                    continue;
                }
                let nonce = param_value(value.trim())?;
                if found.replace(nonce).is_some() {
                    // Two nonces: which one would the server check?
                    return None;
                }
            }
        }
    }
    found
}

/// An auth-param's value: a token, or a quoted string with its escapes
/// undone. `None` when it is neither.
fn param_value(value: &str) -> Option<String> {
    let Some(quoted) = value.strip_prefix('"') else {
        let is_token = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        return is_token.then(|| value.to_owned());
    };
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    // No closing quote.
    None
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
            challenges(&lower).any(|(scheme, params)| {
                schemes.contains(&scheme)
                    && split_outside_quotes(params).into_iter().any(|(_, param)| {
                        // `error = "code"`: spaces around `=` are allowed
                        // (RFC 9110's BWS).
                        param.split_once('=').is_some_and(|(name, value)| {
                            name.trim() == "error"
                                && param_value(value.trim()).is_some_and(|v| v == code)
                        })
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
        let word_end = trimmed.find([' ', '\t', '=']).unwrap_or(trimmed.len());
        // `name = value` (with spaces around `=`) is a parameter too.
        let is_scheme = word_end > 0
            && !trimmed[word_end..].trim_start().starts_with('=')
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
