use std::fmt;
use std::future::{Future, Ready, ready};
use std::sync::Arc;

use super::{CacheKey, Token};

/// A boxed error, as token sources return them.
pub type BoxError = crate::BoxError;

/// Where access tokens come from.
///
/// The [`TokenCache`](super::TokenCache) asks a source for a new token when it
/// has none, when the one it has is about to expire, or after a server
/// rejected it. Implementations: the OAuth client-credentials source, a
/// [`StaticToken`], and any closure `Fn() -> impl Future<Output =
/// Result<Token, BoxError>>`.
///
/// ```
/// use std::time::Duration;
/// use tower_token_binding::token::{Token, TokenSource};
///
/// fn takes(_: impl TokenSource) {}
///
/// takes(|| async {
///     // Ask an authorization server here.
///     Ok(Token::new("a token").expires_in(Duration::from_secs(600)))
/// });
/// ```
pub trait TokenSource: Send + Sync + 'static {
    /// The future returned by [`fetch`](Self::fetch).
    type Future: Future<Output = Result<Token, BoxError>> + Send + 'static;

    /// Fetches a new token.
    fn fetch(&self) -> Self::Future;

    /// Everything that changes the token this source yields: token endpoint,
    /// client id, scope or resource, binding mode, and the thumbprint of the
    /// identity it binds to. When it changes (say the client certificate was
    /// renewed), the cache stops serving the token it holds.
    ///
    /// The default is a constant: right for a source whose tokens never
    /// change in kind.
    fn cache_key(&self) -> CacheKey {
        CacheKey::constant()
    }

    /// `token`, read from a [shared cache](super::SharedTokenCache) under
    /// `key` (this source's current [`cache_key`](Self::cache_key)), bound as
    /// a token of [`fetch`](Self::fetch) would be: to this source's
    /// certificate, DPoP key or PoP key. The shared cache holds no key
    /// material; each process binds tokens to its own.
    ///
    /// `None` when the source cannot (its key changed meanwhile, or it does
    /// not know how): the shared token is not used. The default is `None`,
    /// so a shared cache is used only with sources that bind here (such as
    /// [`ClientCredentials`](crate::source::ClientCredentials)).
    fn bind_shared(&self, key: &CacheKey, token: Token) -> Option<Token> {
        let _ = (key, token);
        None
    }
}

impl<F, Fut> TokenSource for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, BoxError>> + Send + 'static,
{
    type Future = Fut;

    fn fetch(&self) -> Fut {
        self()
    }
}

/// A source that always yields the same token: for tests, for tokens handed
/// over by something else, and for mTLS-bound tokens obtained out of band.
#[derive(Clone)]
pub struct StaticToken {
    token: Arc<Token>,
    key: CacheKey,
}

impl StaticToken {
    /// Yields `token`, forever.
    pub fn new(token: Token) -> Self {
        let mut key = CacheKey::builder().part("source", "static");
        if let Some(identity) = token.identity() {
            key = key.thumbprint(identity.thumbprint());
        }
        Self {
            token: Arc::new(token),
            key: key.build(),
        }
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken")
            .field("token", &self.token)
            .finish()
    }
}

impl TokenSource for StaticToken {
    type Future = Ready<Result<Token, BoxError>>;

    fn fetch(&self) -> Self::Future {
        ready(Ok(Token::clone(&self.token)))
    }

    fn cache_key(&self) -> CacheKey {
        self.key.clone()
    }
}
