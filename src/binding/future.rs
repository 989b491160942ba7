use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

use super::authorize::{NonceOrigin, authorize, settle};
use super::layer::Settings;
use super::service::{NonceRemembered, UsedToken};
use crate::token::{Acquire, BoxError, CachedToken, TokenCache};

pin_project! {
    /// Response future for [`TokenBinding`](super::TokenBinding).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Acquiring {
            acquire: Acquire,
            // Boxed: the slow path's request stays out of the future that
            // every cache hit moves.
            waiting: Option<Box<Waiting<S, ReqBody>>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            token: Option<Arc<CachedToken>>,
            origin: Option<Box<NonceOrigin>>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

/// What a request waiting for its token holds.
struct Waiting<S, ReqBody> {
    request: Request<ReqBody>,
    inner: S,
    settings: Settings,
    cache: TokenCache,
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn acquiring(
        acquire: Acquire,
        request: Request<ReqBody>,
        inner: S,
        settings: Settings,
        cache: TokenCache,
    ) -> Self {
        Self {
            state: State::Acquiring {
                acquire,
                waiting: Some(Box::new(Waiting {
                    request,
                    inner,
                    settings,
                    cache,
                })),
            },
        }
    }

    pub(crate) fn calling(
        future: S::Future,
        token: Option<Arc<CachedToken>>,
        origin: Option<Box<NonceOrigin>>,
    ) -> Self {
        Self {
            state: State::Calling {
                future,
                token,
                origin,
            },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Acquiring { acquire, waiting } => {
                    let token = ready!(Pin::new(acquire).poll(cx))?;
                    let Some(waiting) = waiting.take() else {
                        return Poll::Ready(Err("ResponseFuture polled after completion".into()));
                    };
                    let Waiting {
                        mut request,
                        mut inner,
                        settings,
                        cache,
                    } = *waiting;
                    let origin = authorize(&mut request, &token, &settings, &cache)?;
                    let future = inner.call(request);
                    this.state.set(State::Calling {
                        future,
                        token: Some(token),
                        origin,
                    });
                }
                StateProj::Calling {
                    future,
                    token,
                    origin,
                } => {
                    let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let settled = settle(
                        response.status(),
                        response.headers(),
                        token.take(),
                        origin.take(),
                    );
                    if settled.nonce_remembered {
                        response.extensions_mut().insert(NonceRemembered);
                    }
                    if let Some(token) = settled.rejected {
                        response.extensions_mut().insert(UsedToken(token));
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error
                        .take()
                        .unwrap_or_else(|| "ResponseFuture polled after completion".into())));
                }
            }
        }
    }
}
