use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::Service;

use super::authorize::{NonceOrigin, authorize};
use super::layer::Settings;
use super::retry::says_invalid_token;
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
                    let mut nonce_taken = false;
                    let mut sent_server_nonce = false;
                    if let Some(origin) = origin.take() {
                        // A response may carry the origin's next nonce.
                        sent_server_nonce = origin.server_nonce;
                        if origin.remember(&response) {
                            nonce_taken = true;
                            response.extensions_mut().insert(NonceRemembered);
                        }
                    }
                    if let Some(token) = token.take() {
                        if response.status() == StatusCode::UNAUTHORIZED {
                            // Rejected: dropped here, once per token, so
                            // that any retry layer outside gets a new one.
                            // A PoP challenge that gives a nonce to a
                            // request that had none of the server's is
                            // about the nonce, whatever its error says;
                            // one to a request that carried the server's
                            // nonce is about the token.
                            let headers = response.headers();
                            let about_nonce = token.token().pop_proofs().is_some()
                                && nonce_taken
                                && !sent_server_nonce;
                            if says_invalid_token(headers) && !about_nonce {
                                token.rejected();
                            }
                            response.extensions_mut().insert(UsedToken(token));
                        } else if !response.status().is_server_error() {
                            token.accepted();
                        }
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
