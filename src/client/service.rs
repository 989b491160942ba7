use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tower::Service;
use tower::retry::Retry;

use super::builder::BoundClientBuilder;
use super::future::ResponseFuture;
use super::request::RequestBuilder;
use crate::ClientIdentity;
use crate::binding::{InvalidTokenRetry, TokenBinding};
use crate::identity::SharedIdentity;
use crate::pool::MtlsClientPool;
use crate::proof::dpop::DpopProofs;
use crate::proof::pop::PopProofs;
use crate::token::{BoxError, Token, TokenCache};

/// The whole client stack for certificate-bound tokens, ready to call.
///
/// From the outside in: a `tower::retry` layer with [`InvalidTokenRetry`]
/// (a `401 invalid_token` drops the token and sends once more), the
/// [`TokenBindingLayer`](crate::TokenBindingLayer) with its
/// [`TokenCache`], and an [`MtlsClientPool`] that sends each request over a
/// connection presenting the certificate its token is bound to.
///
/// It is a `tower::Service<Request<B>>` (response `Response<Incoming>`, error
/// [`BoxError`]: a [`TokenUnavailable`](crate::token::TokenUnavailable), a
/// [`PoolError`](crate::pool::PoolError)... to downcast), and cheap to clone:
/// clones share the token cache and the connections. Request bodies must be
/// `Clone` for the retry (`Full<Bytes>`, the default, is).
///
/// See [`BoundClient::builder`] for the one expression that builds it.
pub struct BoundClient<B = Full<Bytes>> {
    pub(crate) service: Retry<InvalidTokenRetry, TokenBinding<MtlsClientPool<B>>>,
    pub(crate) cache: Option<TokenCache>,
    pub(crate) pool: MtlsClientPool<B>,
    pub(crate) identity: Option<SharedIdentity>,
    pub(crate) dpop: Option<DpopProofs>,
    pub(crate) pop: Option<PopProofs>,
    pub(crate) max_body: usize,
    pub(crate) timeout: Duration,
}

impl<B> Clone for BoundClient<B> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            cache: self.cache.clone(),
            pool: self.pool.clone(),
            identity: self.identity.clone(),
            dpop: self.dpop.clone(),
            pop: self.pop.clone(),
            max_body: self.max_body,
            timeout: self.timeout,
        }
    }
}

impl<B> fmt::Debug for BoundClient<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundClient")
            .field("identity", &self.identity)
            .field("dpop", &self.dpop)
            .field("pop", &self.pop)
            .field("cache", &self.cache)
            .field("pool", &self.pool.stats())
            .finish_non_exhaustive()
    }
}

impl BoundClient {
    /// A builder: where tokens come from, the identity, the scheme, and
    /// every default to override.
    pub fn builder() -> BoundClientBuilder {
        BoundClientBuilder::default()
    }

    /// Sends a `GET` to `url` and reads the response body (see
    /// [`send`](Self::send)).
    pub async fn get(&self, url: &str) -> Result<Response<Bytes>, BoxError> {
        let request = Request::get(url)
            .body(Full::default())
            .map_err(|e| format!("invalid request URL {url:?}: {e}"))?;
        self.send(request).await
    }

    /// Sends a `POST` of `body` to `url` and reads the response (see
    /// [`send`](Self::send)). For a content type or other headers, use
    /// [`request`](Self::request).
    pub async fn post(
        &self,
        url: &str,
        body: impl Into<Bytes>,
    ) -> Result<Response<Bytes>, BoxError> {
        self.request(Method::POST, url).body(body).send().await
    }

    /// A request with any `method` to `url`, to give headers and a body,
    /// then [`send`](RequestBuilder::send): the client adds the token and
    /// picks the connection. An invalid URL or header is the error `send`
    /// returns.
    ///
    #[cfg_attr(feature = "test-util", doc = "```")]
    #[cfg_attr(not(feature = "test-util"), doc = "```ignore")]
    /// use http::Method;
    /// use tower_token_binding::BoundClient;
    /// # use tower_token_binding::test_util::{TestIssuer, TestPki};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let pki = TestPki::new()?;
    /// # let issuer = TestIssuer::start(&pki).await?;
    /// let client = BoundClient::builder()
    ///     .issuer(issuer.issuer())
    ///     .client_id("svc")
    ///     .identity(pki.client_cert("svc.example")?.identity()?)
    ///     .root_store(pki.root_store())
    ///     .build()?;
    ///
    /// // Any status is a response: the test issuer's JWKS takes no PUT.
    /// let response = client
    ///     .request(Method::PUT, &issuer.jwks_uri())
    ///     .header("content-type", "application/json")
    ///     .body(r#"{"keys":[]}"#)
    ///     .send()
    ///     .await?;
    /// assert_eq!(response.status(), 405);
    ///
    /// // A bad URL is an error from send, not a panic.
    /// assert!(client.request(Method::GET, "not a url").send().await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, url)
    }
}

impl<B> BoundClient<B> {
    /// The token cache, for its counters; `None` with
    /// [`Scheme::MtlsOnly`](crate::binding::Scheme::MtlsOnly).
    pub fn cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
    }

    /// The connection pool, for its counters.
    pub fn pool(&self) -> &MtlsClientPool<B> {
        &self.pool
    }

    /// The proofs of the DPoP key tokens are bound to, with
    /// [`Scheme::Dpop`](crate::binding::Scheme::Dpop) and client
    /// credentials: the key's thumbprint, and the nonces remembered per
    /// origin.
    pub fn dpop_proofs(&self) -> Option<&DpopProofs> {
        self.dpop.as_ref()
    }

    /// The signed HTTP requests of the PoP key tokens are bound to, with
    /// [`Scheme::Pop`](crate::binding::Scheme::Pop) and client
    /// credentials: the key and its KID.
    pub fn pop_proofs(&self) -> Option<&PopProofs> {
        self.pop.as_ref()
    }

    /// The identity presented now, when the client was given one.
    pub fn identity(&self) -> Option<ClientIdentity> {
        self.identity.as_ref().map(SharedIdentity::current)
    }

    /// The token requests are sent with now, fetched first if there is none
    /// (no request is sent): for tests (the token a thief would steal) and
    /// diagnostics. Its [`access_token`](Token::access_token) is a secret:
    /// its `Debug`, and so the token's, never shows it.
    ///
    /// An error when the token cannot be had (see
    /// [`TokenUnavailable`](crate::token::TokenUnavailable)), or with
    /// [`Scheme::MtlsOnly`](crate::binding::Scheme::MtlsOnly), which sends
    /// no token.
    ///
    #[cfg_attr(feature = "test-util", doc = "```")]
    #[cfg_attr(not(feature = "test-util"), doc = "```ignore")]
    /// use tower_token_binding::BoundClient;
    /// use tower_token_binding::test_util::{TestIssuer, TestPki};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let pki = TestPki::new()?;
    /// let issuer = TestIssuer::start(&pki).await?;
    /// let identity = pki.client_cert("svc.example")?.identity()?;
    /// let client = BoundClient::builder()
    ///     .issuer(issuer.issuer())
    ///     .client_id("svc")
    ///     .identity(identity.clone())
    ///     .root_store(pki.root_store())
    ///     .build()?;
    ///
    /// let token = client.current_token().await?;
    /// assert_eq!(token.identity().map(|i| i.thumbprint()), Some(identity.thumbprint()));
    /// assert!(!format!("{token:?}").contains(token.access_token().secret()));
    /// assert_eq!(issuer.tokens_issued(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn current_token(&self) -> Result<Token, BoxError> {
        let cache = self
            .cache
            .as_ref()
            .ok_or("Scheme::MtlsOnly sends no token: this client has none")?;
        Ok(cache.get().await?.token().clone())
    }

    /// The client's own retry policy, for a `tower::retry` layer of your
    /// own (around a [`TokenBindingLayer`](crate::TokenBindingLayer) over
    /// another transport, say): `401 invalid_token` once with a new token,
    /// a DPoP or PoP nonce challenge once. Any other retry policy composes
    /// too: the binding layer drops a rejected token itself, so the next
    /// attempt gets a new one.
    pub fn retry_policy(&self) -> InvalidTokenRetry {
        InvalidTokenRetry::new(self.cache.clone())
    }
}

impl<B> BoundClient<B>
where
    B: http_body::Body + Clone + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Sends `request` through the whole stack and reads the response body,
    /// up to [`max_response_body`](BoundClientBuilder::max_response_body)
    /// bytes. Any status is a response; errors are failures to get a token,
    /// to connect, or to read.
    ///
    /// The whole call, body included, takes at most the
    /// [`request_timeout`](BoundClientBuilder::request_timeout) (30 s by
    /// default); past it, the error is [`tower::timeout::error::Elapsed`].
    pub async fn send(&self, request: Request<B>) -> Result<Response<Bytes>, BoxError> {
        let deadline = tokio::time::Instant::now().checked_add(self.timeout);
        let response = tower::ServiceExt::oneshot(self.clone(), request).await?;
        let (parts, body) = response.into_parts();
        let read = Limited::new(body, self.max_body).collect();
        let collected = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, read)
                .await
                .map_err(|_| tower::timeout::error::Elapsed::new())?,
            None => read.await,
        };
        let body = collected
            .map_err(|e| {
                format!(
                    "cannot read the response body (limit {} bytes): {e}",
                    self.max_body
                )
            })?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

impl<B> Service<Request<B>> for BoundClient<B>
where
    B: http_body::Body + Clone + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = ResponseFuture<B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ResponseFuture {
            inner: tokio::time::timeout(self.timeout, self.service.call(request)),
        }
    }
}
