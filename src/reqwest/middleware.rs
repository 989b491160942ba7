use std::fmt;
use std::sync::Arc;

use ::reqwest::{Request, Response};
use http::{Extensions, Uri};
use reqwest_middleware::{Middleware, Next};

use super::MtlsReqwestPool;
use super::error::middleware_error;
use crate::binding::{
    InvalidTokenRetry, NonceOrigin, Settings, TokenBindingLayer, authorize, check_transport, settle,
};
use crate::cnf::Binding;
use crate::proof::default_port;
use crate::token::{CachedToken, TokenCache};
use crate::{BoxError, ClientIdentity};

/// [`TokenBindingLayer`] for reqwest: a `reqwest-middleware` middleware
/// that authorizes every request with a (bound) token from the crate's
/// [`TokenCache`], with the same schemes, settings, retries and errors.
///
/// Per request, as the tower layer does:
///
/// - a request carrying a token must go over `https` (to loopback, `http`
///   too when the layer [allows it](TokenBindingLayer::allow_http_to_loopback));
///   an [`InsecureTransport`](crate::binding::InsecureTransport) otherwise,
///   before any token is fetched;
/// - the token comes from the cache (one fetch for all callers, refreshed
///   ahead of expiry), and the request gets `Authorization` (marked
///   sensitive) and, for DPoP, a fresh `DPoP` proof, for PoP a fresh signed
///   request;
/// - `401 invalid_token` drops the token and sends the request once more
///   with a new one; `401 use_dpop_nonce`, or a `PoP` challenge with a
///   nonce, sends it once more with the nonce. A request whose body cannot
///   be cloned (a stream) is not sent again: its `401` is the answer.
///
/// DPoP, PoP and `Bearer` requests go on down the middleware chain, to
/// the `reqwest::Client` under it. A certificate-bound token (RFC 8705,
/// [`Scheme::MtlsPop`](crate::binding::Scheme::MtlsPop), and
/// [`Scheme::MtlsOnly`](crate::binding::Scheme::MtlsOnly)) is useless
/// unless the connection presents its certificate, which a middleware cannot
/// change: this one sends such a request itself, through the client its
/// [`MtlsReqwestPool`] keeps for the token's certificate, and the
/// middlewares after it in the chain do not see it. Put it last.
///
/// Redirects: the clients this crate builds follow none (a `3xx` is the
/// answer). A client of your own that follows them sends the `DPoP` proof
/// on to wherever a redirect points, another host or plain `http` (reqwest
/// drops only `Authorization` there): build it with
/// `redirect(reqwest::redirect::Policy::none())`. A response that comes
/// from another origin than the request's, after redirects, is not taken
/// for the origin's: its nonce is not remembered, its `401` neither drops
/// the token nor sends the request again.
///
/// Errors are `reqwest_middleware::Error::Middleware` holding the crate's
/// own, which downcast from the `anyhow::Error`:
/// [`TokenUnavailable`](crate::token::TokenUnavailable) when no token could
/// be had (a token endpoint down or refusing: the cause, a network failure
/// included, is in its `source()` chain),
/// [`InsecureTransport`](crate::binding::InsecureTransport) for a token that
/// would have gone over plain `http`, [`PoolError`](crate::pool::PoolError)
/// when the client for a certificate cannot be built; any other error of
/// the crate is in the chain. A request to the API that failed on the wire
/// is reqwest's `Error::Reqwest`, whichever client sent it.
///
/// [`BoundClientBuilder::build_reqwest`](crate::client::BoundClientBuilder::build_reqwest)
/// builds one from the settings of a [`BoundClient`](crate::BoundClient),
/// on a `reqwest_middleware::ClientWithMiddleware`;
/// [`build_reqwest_middleware`](crate::client::BoundClientBuilder::build_reqwest_middleware)
/// builds the middleware alone, for a chain of your own. From a
/// [`TokenBindingLayer`] of your own:
///
/// ```
/// use tower_token_binding::TokenBindingLayer;
/// use tower_token_binding::reqwest::TokenBindingMiddleware;
/// use tower_token_binding::token::Token;
///
/// let middleware = TokenBindingMiddleware::new(TokenBindingLayer::bearer(|| async {
///     Ok(Token::new("an-access-token"))
/// }));
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(middleware)
///     .build();
/// # let _ = client;
/// ```
#[derive(Clone)]
pub struct TokenBindingMiddleware {
    layer: TokenBindingLayer,
    retry: InvalidTokenRetry,
    pool: Option<MtlsReqwestPool>,
}

impl TokenBindingMiddleware {
    /// The middleware of `layer`'s tokens and settings, retrying as
    /// [`layer.retry_policy()`](TokenBindingLayer::retry_policy) does. For
    /// certificate-bound tokens, give it a pool with
    /// [`mtls_pool`](Self::mtls_pool).
    pub fn new(layer: TokenBindingLayer) -> Self {
        Self {
            retry: layer.retry_policy(),
            layer,
            pool: None,
        }
    }

    /// Retries as `retry` says (its counts): [`InvalidTokenRetry::attempts`]
    /// `(0)` for none.
    pub fn retry_policy(mut self, retry: InvalidTokenRetry) -> Self {
        self.retry = retry;
        self
    }

    /// Sends certificate-bound requests through `pool`, over the client of
    /// the token's certificate. Without a pool, such a request fails.
    pub fn mtls_pool(mut self, pool: MtlsReqwestPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The token cache: its stats, or to drop a token by hand.
    pub fn cache(&self) -> Option<&TokenCache> {
        self.layer.cache()
    }

    /// The pool of certificate clients, if given.
    pub fn pool(&self) -> Option<&MtlsReqwestPool> {
        self.pool.as_ref()
    }

    /// Sends `request` once, authorized: the response, and what it told the
    /// cache and the nonce memory.
    async fn send(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Sent> {
        let settings = &self.layer.settings;
        let Some(cache) = &self.layer.cache else {
            // No token: the identity alone.
            let identity = self.layer.identity.as_ref().map(|i| i.current());
            let response = self.through(identity, request, extensions, next).await?;
            return Ok(Sent::untouched(response));
        };
        let uri: Uri =
            request.url().as_str().parse().map_err(|e| {
                middleware_error(format!("the request URL is not a URI: {e}").into())
            })?;
        check_transport(&uri, settings.scheme, settings.http_to_loopback)
            .map_err(|e| middleware_error(e.into()))?;
        let token = match cache.try_get() {
            Some(token) => token,
            None => cache.get().await.map_err(|e| middleware_error(e.into()))?,
        };
        let (identity, origin) = authorize_reqwest(&mut request, &uri, &token, settings, cache)
            .map_err(middleware_error)?;
        let identity = identity.filter(|_| settings.scheme.binding() == Binding::Certificate);
        let response = self.through(identity, request, extensions, next).await?;
        if !same_origin(response.url(), &uri) {
            // A redirect the client followed: the answer is another
            // origin's, which never saw the token (reqwest drops
            // `Authorization` across origins), and its nonce is not the
            // origin's to remember.
            return Ok(Sent::untouched(response));
        }
        let settled = settle(response.status(), response.headers(), Some(token), origin);
        Ok(Sent {
            response,
            rejected: settled.rejected,
            nonce_remembered: settled.nonce_remembered,
        })
    }

    /// Sends `request` over the client of `identity`, or down the chain
    /// when there is none.
    async fn through(
        &self,
        identity: Option<ClientIdentity>,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let Some(identity) = identity else {
            return next.run(request, extensions).await;
        };
        let Some(pool) = &self.pool else {
            return Err(middleware_error(
                "a certificate-bound token needs its certificate on the connection, and this \
                 middleware has no MtlsReqwestPool to send it through: give one with mtls_pool(..)"
                    .into(),
            ));
        };
        let client = pool
            .client(&identity)
            .map_err(|e| middleware_error(e.into()))?;
        // Boxed: reqwest's future stays out of the middleware's, which every
        // request moves, most of them never sending through the pool.
        Ok(Box::pin(client.execute(request)).await?)
    }
}

/// Puts the token's headers on a reqwest request, through the tower layer's
/// own [`authorize`] (a head of the same method and URI, with the request's
/// headers lent to it); returns the identity the token is bound to, and
/// where the request went, for its nonce.
fn authorize_reqwest(
    request: &mut Request,
    uri: &Uri,
    token: &CachedToken,
    settings: &Settings,
    cache: &TokenCache,
) -> Result<(Option<ClientIdentity>, Option<Box<NonceOrigin>>), BoxError> {
    let mut head = http::Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = uri.clone(); // shares its bytes
    std::mem::swap(head.headers_mut(), request.headers_mut());
    let origin = authorize(&mut head, token, settings, cache);
    std::mem::swap(head.headers_mut(), request.headers_mut());
    let identity = head.extensions_mut().remove::<ClientIdentity>();
    Ok((identity, origin?))
}

/// Whether `url` (where a response came from) has the origin of `uri`
/// (the request's, read from its URL): scheme, host and port, the rule by
/// which reqwest keeps `Authorization` on a redirect.
fn same_origin(url: &::reqwest::Url, uri: &Uri) -> bool {
    let port = uri
        .port_u16()
        .or_else(|| uri.scheme_str().and_then(default_port));
    uri.scheme_str() == Some(url.scheme())
        && uri.host() == url.host_str()
        && port == url.port_or_known_default()
}

/// A response to one attempt.
struct Sent {
    response: Response,
    /// The token, when the response is a `401`.
    rejected: Option<Arc<CachedToken>>,
    nonce_remembered: bool,
}

impl Sent {
    fn untouched(response: Response) -> Self {
        Self {
            response,
            rejected: None,
            nonce_remembered: false,
        }
    }
}

#[async_trait::async_trait]
impl Middleware for TokenBindingMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let mut retry = self.retry.clone();
        loop {
            // A copy for a retry, while one is left and the body allows.
            let again = if retry.may_retry() {
                request.try_clone()
            } else {
                None
            };
            let sent = self.send(request, extensions, next.clone()).await?;
            let (Some(copy), Some(token)) = (again, &sent.rejected) else {
                return Ok(sent.response);
            };
            let response = &sent.response;
            if !retry.decide(
                response.status(),
                response.headers(),
                token,
                sent.nonce_remembered,
            ) {
                return Ok(sent.response);
            }
            request = copy;
        }
    }
}

impl fmt::Debug for TokenBindingMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBindingMiddleware")
            .field("layer", &self.layer)
            .field("retry", &self.retry)
            .field("pool", &self.pool)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port_with_defaults() {
        let same = |url: &str, uri: &str| {
            let url = ::reqwest::Url::parse(url).unwrap();
            let uri: Uri = uri.parse().unwrap();
            same_origin(&url, &uri)
        };
        assert!(same("https://api.example/a?b", "https://api.example/c"));
        assert!(same("https://api.example:443/a", "https://api.example/a"));
        assert!(same("http://api.example/a", "http://api.example:80/a"));
        assert!(same("https://[::1]:8443/a", "https://[::1]:8443/b"));
        assert!(!same("http://api.example/a", "https://api.example/a"));
        assert!(!same("https://api.example:8443/a", "https://api.example/a"));
        assert!(!same("https://other.example/a", "https://api.example/a"));
        assert!(!same("https://[::2]/a", "https://[::1]/a"));
    }
}
