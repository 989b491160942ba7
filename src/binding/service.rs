use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::Service;

use super::authorize::authorize;
use super::future::ResponseFuture;
use super::{TokenBindingLayer, transport};
use crate::token::{BoxError, CachedToken};

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
        let settings = &self.layer.settings;
        let Some(cache) = &self.layer.cache else {
            // mTLS only, with a fixed identity.
            if let Some(identity) = &self.layer.identity {
                request.extensions_mut().insert(identity.current());
            }
            return ResponseFuture::calling(self.inner.call(request), None, None);
        };
        // A token travels over TLS: refused before it is fetched.
        if let Err(e) = transport::check(request.uri(), settings.scheme, settings.http_to_loopback)
        {
            return ResponseFuture::failed(e.into());
        }
        match cache.try_get() {
            Some(token) => match authorize(&mut request, &token, settings, cache) {
                Ok(origin) => {
                    ResponseFuture::calling(self.inner.call(request), Some(token), origin)
                }
                Err(e) => ResponseFuture::failed(e),
            },
            None => {
                // The ready service goes into the future; a clone stays.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::acquiring(
                    cache.get(),
                    request,
                    inner,
                    settings.clone(),
                    cache.clone(),
                )
            }
        }
    }
}

/// Marks a response whose nonce (`DPoP-Nonce`, or a `PoP` challenge's)
/// was remembered for the next request: only then is a nonce retry of use.
#[derive(Clone, Copy)]
pub(crate) struct NonceRemembered;

/// Marks a response to a request that carried `token`, so that a retry
/// policy can drop exactly that token.
#[derive(Clone)]
pub(crate) struct UsedToken(pub(crate) Arc<CachedToken>);
