use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, header};
use tower::Service;

use super::future::ResponseFuture;
use super::layer::Settings;
use super::{HeaderWord, Scheme, TokenBindingLayer};
use crate::token::{BoxError, CachedToken, TokenCache, TokenUnavailable, TokenUnavailableKind};

/// Middleware that authorizes requests with (bound) access tokens.
///
/// Built by [`TokenBindingLayer`]; see the [module docs](super).
#[derive(Clone, Debug)]
pub struct TokenBinding<S> {
    pub(crate) inner: S,
    pub(crate) layer: TokenBindingLayer,
}

impl<S> TokenBinding<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: TokenBindingLayer) -> Self {
        Self { inner, layer }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TokenBinding<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let settings = self.layer.settings;
        let Some(cache) = &self.layer.cache else {
            // mTLS only, with a fixed identity.
            if let Some(identity) = &self.layer.identity {
                request.extensions_mut().insert(identity.current());
            }
            return ResponseFuture::calling(self.inner.call(request), None);
        };
        match cache.try_get() {
            Some(token) => match authorize(&mut request, &token, settings, cache) {
                Ok(()) => ResponseFuture::calling(self.inner.call(request), Some(token)),
                Err(e) => ResponseFuture::failed(e),
            },
            None => {
                // The ready service goes into the future; a clone stays.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::acquiring(cache.get(), request, inner, settings, cache.clone())
            }
        }
    }
}

/// Puts the token's header and identity on the request, as `settings` say.
pub(crate) fn authorize<B>(
    request: &mut Request<B>,
    token: &CachedToken,
    settings: Settings,
    cache: &TokenCache,
) -> Result<(), BoxError> {
    let identity = token.token().identity();
    let word = match (settings.scheme, identity) {
        (Scheme::Bearer, _) => Some(HeaderWord::Bearer),
        (Scheme::MtlsPop, Some(_)) => Some(settings.word),
        (Scheme::MtlsPop, None) if settings.allow_unbound_fallback => {
            cache.count_fallback();
            tracing::warn!(
                "the token source returned an unbound token; sending it as a bearer token, as allowed"
            );
            Some(HeaderWord::Bearer)
        }
        (Scheme::MtlsOnly, Some(_)) => None,
        (Scheme::MtlsPop | Scheme::MtlsOnly, None) => {
            return Err(TokenUnavailable::new(TokenUnavailableKind::Unbound, None).into());
        }
    };
    if settings.scheme != Scheme::Bearer {
        if let Some(identity) = identity {
            request.extensions_mut().insert(identity.clone());
        }
    }
    if let Some(word) = word {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, header_value(token, word)?);
    }
    Ok(())
}

/// `<word> <token>`, marked sensitive, built once per token and word.
fn header_value(token: &CachedToken, word: HeaderWord) -> Result<HeaderValue, BoxError> {
    token.headers[word.index()]
        .get_or_init(|| {
            let secret = token.token().access_token().secret();
            let mut value = HeaderValue::try_from(format!("{} {secret}", word.as_str())).ok()?;
            value.set_sensitive(true);
            Some(value)
        })
        .clone()
        .ok_or_else(|| "the access token has characters not allowed in an HTTP header".into())
}

/// Marks a response to a request that carried `token`, so that a retry
/// policy can drop exactly that token.
#[derive(Clone)]
pub(crate) struct UsedToken(pub(crate) Arc<CachedToken>);
