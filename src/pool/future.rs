use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use super::error::{Kind, PoolError};

pin_project! {
    /// Response future for [`MtlsClientPool`](super::MtlsClientPool).
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Sending {
            #[pin]
            future: hyper_util::client::legacy::ResponseFuture,
        },
        Timed {
            #[pin]
            future: tokio::time::Timeout<hyper_util::client::legacy::ResponseFuture>,
        },
        Failed {
            error: Option<PoolError>,
        },
    }
}

impl ResponseFuture {
    pub(crate) fn sending(
        future: hyper_util::client::legacy::ResponseFuture,
        timeout: Option<std::time::Duration>,
    ) -> Self {
        let state = match timeout {
            Some(timeout) => State::Timed {
                future: tokio::time::timeout(timeout, future),
            },
            None => State::Sending { future },
        };
        Self { state }
    }

    pub(crate) fn error(error: PoolError) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Incoming>, PoolError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sending { future } => future
                .poll(cx)
                .map_err(|e| PoolError::new(Kind::Request, Some(e.into()))),
            StateProj::Timed { future } => match future.poll(cx) {
                Poll::Ready(Ok(result)) => {
                    Poll::Ready(result.map_err(|e| PoolError::new(Kind::Request, Some(e.into()))))
                }
                Poll::Ready(Err(_)) => Poll::Ready(Err(PoolError::new(Kind::Timeout, None))),
                Poll::Pending => Poll::Pending,
            },
            StateProj::Failed { error } => Poll::Ready(Err(error.take().unwrap_or_else(|| {
                PoolError::new(Kind::Request, Some("polled after completion".into()))
            }))),
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
