use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use hyper::body::Incoming;
use pin_project_lite::pin_project;

use crate::BoxError;
use crate::binding::{InvalidTokenRetry, TokenBinding};
use crate::pool::MtlsClientPool;

type Inner<B> = tower::retry::future::ResponseFuture<
    InvalidTokenRetry,
    TokenBinding<MtlsClientPool<B>>,
    Request<B>,
>;

pin_project! {
    /// Response future for [`BoundClient`](super::BoundClient).
    pub struct ResponseFuture<B>
    where
        B: http_body::Body,
        B: Clone,
        B: Send,
        B: Unpin,
        B: 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        #[pin]
        pub(crate) inner: tokio::time::Timeout<Inner<B>>,
    }
}

impl<B> Future for ResponseFuture<B>
where
    B: http_body::Body + Clone + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            Poll::Ready(Err(_)) => Poll::Ready(Err(tower::timeout::error::Elapsed::new().into())),
            Poll::Pending => Poll::Pending,
        }
    }
}
