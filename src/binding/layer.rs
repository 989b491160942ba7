use std::sync::Arc;

use http::HeaderName;
use tower::Layer;

use super::{HeaderWord, InvalidTokenRetry, Scheme, TokenBinding};
use crate::identity::{IdentitySource, SharedIdentity};
use crate::token::{TokenCache, TokenSource};

/// Authorizes every request with a token from a [`TokenCache`] and hands the
/// inner service the identity the token is bound to.
///
/// See the [module docs](super) for the schemes, the order of layers and an
/// example.
#[derive(Clone, Debug)]
pub struct TokenBindingLayer {
    pub(crate) cache: Option<TokenCache>,
    pub(crate) identity: Option<SharedIdentity>,
    pub(crate) settings: Settings,
}

#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) scheme: Scheme,
    pub(crate) word: HeaderWord,
    pub(crate) allow_unbound_fallback: bool,
    /// With [`Scheme::Pop`]: `q` in every SHR.
    pub(crate) pop_query: bool,
    /// With [`Scheme::Pop`]: `h` over these headers in every SHR.
    pub(crate) pop_headers: Option<Arc<[HeaderName]>>,
    /// Tokens may go over plain `http` to loopback addresses.
    pub(crate) http_to_loopback: bool,
}

impl Settings {
    fn new(scheme: Scheme) -> Self {
        Self {
            scheme,
            word: HeaderWord::Bearer,
            allow_unbound_fallback: false,
            pop_query: false,
            pop_headers: None,
            http_to_loopback: false,
        }
    }
}

impl TokenBindingLayer {
    /// Certificate-bound tokens from `source` (RFC 8705): each request gets
    /// `Authorization: Bearer <token>` and, in its extensions, the
    /// [`ClientIdentity`](crate::ClientIdentity) the token is bound to. A token that comes back
    /// unbound is an error unless [unbound fallback](Self::allow_unbound_fallback)
    /// is allowed.
    pub fn bound(source: impl TokenSource) -> Self {
        Self::with_cache(TokenCache::new(source), Scheme::MtlsPop)
    }

    /// Plain bearer tokens from `source`: `Authorization: Bearer <token>`, no
    /// identity.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response, header};
    /// use tower::{ServiceBuilder, ServiceExt};
    /// use tower_token_binding::{ClientIdentity, TokenBindingLayer};
    /// use tower_token_binding::token::Token;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let service = ServiceBuilder::new()
    ///     .layer(TokenBindingLayer::bearer(|| async { Ok(Token::new("plain")) }))
    ///     .service_fn(|request: Request<()>| async move {
    ///         assert!(request.extensions().get::<ClientIdentity>().is_none());
    ///         Ok::<_, Infallible>(Response::new(request.headers()[header::AUTHORIZATION].clone()))
    ///     });
    /// let response = service.oneshot(Request::new(())).await.unwrap();
    /// assert_eq!(response.body(), "Bearer plain");
    /// # }
    /// ```
    pub fn bearer(source: impl TokenSource) -> Self {
        Self::with_cache(TokenCache::new(source), Scheme::Bearer)
    }

    /// DPoP-bound tokens from `source` (RFC 9449): each request gets
    /// `Authorization: DPoP <token>` and a `DPoP` header with a proof made
    /// for it (its method, its URI without query and fragment, the time, a
    /// new `jti`, the token's hash in `ath`, and the origin's nonce when it
    /// sent one), both marked sensitive. The proofs are signed by the key
    /// the token is [bound to](crate::token::Token::dpop_bound); a token
    /// bound to no key is an error unless [unbound
    /// fallback](Self::allow_unbound_fallback) is allowed. The `DPoP-Nonce`
    /// of every response is remembered for its origin, and the [retry
    /// policy](Self::retry_policy) answers `use_dpop_nonce` once.
    ///
    /// No client certificate is needed: the inner service can be any HTTP
    /// client. A token that came with an identity (the certificate that
    /// authenticated at the token endpoint) puts it in the extensions, for
    /// an mTLS transport. Request URIs must be absolute.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response, header};
    /// use tower::{ServiceBuilder, ServiceExt};
    /// use tower_token_binding::TokenBindingLayer;
    /// use tower_token_binding::proof::dpop::{DPOP, DpopProofs, DpopVerifier};
    /// use tower_token_binding::proof::{Algorithm, ProofKey};
    /// use tower_token_binding::token::Token;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// // A source of tokens bound to `proofs`' key (normally: OAuth client
    /// // credentials with `.dpop(key)`).
    /// let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256)?);
    /// let source = {
    ///     let proofs = proofs.clone();
    ///     move || {
    ///         let token = Token::new("a-dpop-token").with_token_type("DPoP").dpop_bound(proofs.clone());
    ///         async move { Ok(token) }
    ///     }
    /// };
    /// let service = ServiceBuilder::new()
    ///     .layer(TokenBindingLayer::dpop(source))
    ///     .service_fn(|request: Request<()>| async move {
    ///         let proof = request.headers()[DPOP].to_str().unwrap();
    ///         // What a resource server checks.
    ///         let verified = DpopVerifier::new()
    ///             .verify(proof, request.method(), request.uri(), Some("a-dpop-token"), tower_token_binding::clock::wall())
    ///             .unwrap();
    ///         assert!(request.headers()[DPOP].is_sensitive());
    ///         let auth = request.headers()[header::AUTHORIZATION].clone();
    ///         Ok::<_, Infallible>(Response::new((auth, verified.jkt())))
    ///     });
    /// let request = Request::get("https://api.example/orders?page=2").body(())?;
    /// let response = service.oneshot(request).await?;
    /// assert_eq!(response.body().0, "DPoP a-dpop-token");
    /// assert_eq!(response.body().1, proofs.thumbprint());
    /// # Ok(())
    /// # }
    /// ```
    pub fn dpop(source: impl TokenSource) -> Self {
        Self::with_cache(TokenCache::new(source), Scheme::Dpop)
    }

    /// PoP-bound tokens from `source` (Microsoft's signed HTTP requests):
    /// each request gets `Authorization: PoP <SHR>`, marked sensitive, with
    /// a signed HTTP request made for it by the key the token is [bound
    /// to](crate::token::Token::pop_bound): the token (`at`), the method
    /// (`m`), host (`u`) and path (`p`), the time (`ts`), 128 random bits
    /// (`nonce`) and the public key (`cnf.jwk`). A token bound to no key
    /// is an error unless [unbound fallback](Self::allow_unbound_fallback)
    /// is allowed.
    ///
    /// The query, header and body hashes (`q`, `h`, `b`) are not sent: a
    /// body hash needs the body's bytes before the request goes out, and
    /// bodies may stream. Make such SHRs yourself with
    /// [`PopProofs::signer`](crate::proof::pop::PopProofs::signer)
    /// when a resource requires them.
    ///
    /// A `401` with `WWW-Authenticate: PoP nonce="..."` gives the nonce
    /// the resource wants: it is remembered for the origin, the [retry
    /// policy](Self::retry_policy) sends the request again once, and that
    /// SHR carries it. A server nonce is used once; later SHRs have random
    /// nonces (see [server nonces](crate::proof::pop::PopProofs#server-nonces)).
    ///
    /// No client certificate is needed: the inner service can be any HTTP
    /// client. A token that came with an identity puts it in the
    /// extensions, for an mTLS transport. Request URIs must be absolute.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{HeaderMap, Request, Response, header};
    /// use tower::{ServiceBuilder, ServiceExt};
    /// use tower_token_binding::TokenBindingLayer;
    /// use tower_token_binding::proof::pop::{PopVerifier, PopProofs};
    /// use tower_token_binding::proof::{Algorithm, ProofKey};
    /// use tower_token_binding::token::Token;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// // A source of tokens bound to `shrs`' key (normally: OAuth client
    /// // credentials with `.pop(key)`).
    /// let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256)?);
    /// let source = {
    ///     let shrs = shrs.clone();
    ///     move || {
    ///         let token = Token::new("a-pop-token").with_token_type("pop").pop_bound(shrs.clone());
    ///         async move { Ok(token) }
    ///     }
    /// };
    /// let service = ServiceBuilder::new()
    ///     .layer(TokenBindingLayer::pop(source))
    ///     .service_fn(|request: Request<()>| async move {
    ///         let authorization = &request.headers()[header::AUTHORIZATION];
    ///         assert!(authorization.is_sensitive());
    ///         let shr = authorization.to_str().unwrap().strip_prefix("PoP ").unwrap();
    ///         // What a resource server checks.
    ///         let verified = PopVerifier::new()
    ///             .verify(shr, request.method(), request.uri(), &HeaderMap::new(), None, tower_token_binding::clock::wall())
    ///             .unwrap();
    ///         Ok::<_, Infallible>(Response::new((verified.at().to_owned(), verified.kid())))
    ///     });
    /// let request = Request::get("https://api.example/orders?page=2").body(())?;
    /// let response = service.oneshot(request).await?;
    /// assert_eq!(response.body().0, "a-pop-token");
    /// assert_eq!(response.body().1, shrs.kid());
    /// # Ok(())
    /// # }
    /// ```
    pub fn pop(source: impl TokenSource) -> Self {
        Self::with_cache(TokenCache::new(source), Scheme::Pop)
    }

    /// No token: every request gets the identity in its extensions, for a
    /// connection that presents it, and no `Authorization` header.
    ///
    /// `identity` is a [`ClientIdentity`](crate::ClientIdentity), or any
    /// [`IdentitySource`] (such as a [`ReloadingIdentity`](crate::identity::ReloadingIdentity)),
    /// asked for its current identity on every request.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Request, Response, header};
    /// use tower::{ServiceBuilder, ServiceExt};
    /// use tower_token_binding::{ClientIdentity, TokenBindingLayer};
    /// # use tower_token_binding::test_util::TestPki;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// # let identity = TestPki::self_signed_client("svc.example")?.identity()?;
    /// let expected = identity.thumbprint();
    /// let service = ServiceBuilder::new()
    ///     .layer(TokenBindingLayer::mtls_only(identity))
    ///     .service_fn(|request: Request<()>| async move {
    ///         assert!(request.headers().get(header::AUTHORIZATION).is_none());
    ///         let identity = request.extensions().get::<ClientIdentity>().unwrap();
    ///         Ok::<_, Infallible>(Response::new(identity.thumbprint()))
    ///     });
    /// let response = service.oneshot(Request::new(())).await?;
    /// assert_eq!(*response.body(), expected);
    /// # Ok(())
    /// # }
    /// ```
    pub fn mtls_only(identity: impl IdentitySource) -> Self {
        Self {
            cache: None,
            identity: Some(SharedIdentity::new(identity)),
            settings: Settings::new(Scheme::MtlsOnly),
        }
    }

    /// Tokens from an existing `cache` (to share it, or to set its timings),
    /// under `scheme`. With [`Scheme::MtlsOnly`] the token is not sent; its
    /// identity is.
    pub fn with_cache(cache: TokenCache, scheme: Scheme) -> Self {
        Self {
            cache: Some(cache),
            identity: None,
            settings: Settings::new(scheme),
        }
    }

    /// The word before a bound token in `Authorization`: `Bearer` (RFC 8705,
    /// the default) or `mtls_pop` (Microsoft Entra).
    pub fn header_word(mut self, word: HeaderWord) -> Self {
        self.settings.word = word;
        self
    }

    /// Lets a bound scheme send an unbound token when the source returns one,
    /// as `Authorization: Bearer` without an identity. Each time is logged at
    /// warn level and counted in [`CacheStats::unbound_fallbacks`](crate::token::CacheStats).
    /// Off by default: falling back is a choice, never silent.
    pub fn allow_unbound_fallback(mut self) -> Self {
        self.settings.allow_unbound_fallback = true;
        self
    }

    /// Lets tokens go over plain `http` to loopback addresses (`localhost`,
    /// 127.0.0.0/8, `::1`), for tests against a local server without TLS.
    /// Off by default: a request that carries a token to an absolute URI
    /// other than `https` fails with
    /// [`InsecureTransport`](super::InsecureTransport) before the token is
    /// fetched or attached, whatever the scheme. Never for production: the
    /// token, and a DPoP proof or signed request made for it, travel in
    /// clear text.
    ///
    /// A request that presents a client certificate (`mtls_pop`, or any
    /// token that came with an identity) still needs `https`: the
    /// certificate is presented in the TLS handshake, and
    /// [`MtlsClientPool`](crate::pool::MtlsClientPool) refuses it over
    /// plain HTTP. A resource server that checks DPoP or `PoP` over plain
    /// HTTP must say so with
    /// [`public_origin("http://127.0.0.1:PORT")`](crate::CnfValidationLayer::public_origin):
    /// without one, it takes the request to have come over `https`.
    pub fn allow_http_to_loopback(mut self) -> Self {
        self.settings.http_to_loopback = true;
        self
    }

    /// With [`Scheme::Pop`], puts `q` in every signed HTTP request: the
    /// names of the request's query parameters, in order, and the hash of
    /// the raw pairs. Off by default (as MSAL). Other schemes ignore it.
    pub fn pop_sign_query(mut self) -> Self {
        self.settings.pop_query = true;
        self
    }

    /// With [`Scheme::Pop`], puts `h` in every signed HTTP request: the
    /// lower-case `names` and the hash of their values (a header given
    /// several times is taken with its values joined by `", "`). Every
    /// request must carry each header named, with a visible ASCII value;
    /// one that does not fails before it is sent. None by default. Other
    /// schemes ignore it.
    ///
    /// There is no body hash (`b`): it needs the body's bytes before the
    /// request goes out, and bodies may stream. Make such SHRs with
    /// [`PopProofs::signer`](crate::proof::pop::PopProofs::signer)
    /// for bodies already in memory.
    pub fn pop_sign_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        let names: Arc<[HeaderName]> = names.into_iter().collect();
        self.settings.pop_headers = (!names.is_empty()).then_some(names);
        self
    }

    /// The token cache, for its counters or to invalidate a token.
    pub fn cache(&self) -> Option<&TokenCache> {
        self.cache.as_ref()
    }

    /// A `tower::retry` policy that, on `401` with `error="invalid_token"`,
    /// drops the token this layer sent and retries once, so that the retried
    /// request carries a fresh token; and on `401` with a `DPoP` challenge
    /// saying `use_dpop_nonce`, retries once with a new proof carrying the
    /// nonce. Put the retry layer *outside* this one.
    pub fn retry_policy(&self) -> InvalidTokenRetry {
        InvalidTokenRetry::new(self.cache.clone())
    }
}

impl<S> Layer<S> for TokenBindingLayer {
    type Service = TokenBinding<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenBinding {
            inner,
            layer: self.clone(),
        }
    }
}
