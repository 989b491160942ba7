//! The pool's connector: hyper-rustls' connector, counting the TLS
//! connections it opens (see [`crate::metrics`]; a pass-through without the
//! `metrics` feature).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Uri;
use hyper_rustls::MaybeHttpsStream;
use tower::Service;

/// A connector that counts each TLS connection `inner` opens, as presenting
/// a client certificate or not.
#[derive(Clone, Debug)]
pub(crate) struct CountingConnector<C> {
    inner: C,
    client_cert: bool,
}

impl<C> CountingConnector<C> {
    pub(crate) fn new(inner: C, client_cert: bool) -> Self {
        Self { inner, client_cert }
    }
}

impl<C, T> Service<Uri> for CountingConnector<C>
where
    C: Service<Uri, Response = MaybeHttpsStream<T>>,
    C::Future: Unpin,
{
    type Response = MaybeHttpsStream<T>;
    type Error = C::Error;
    type Future = Connecting<C::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Connecting {
            inner: self.inner.call(uri),
            client_cert: self.client_cert,
        }
    }
}

/// The future of [`CountingConnector`]: the inner connect, counted when a
/// TLS connection comes out of it.
#[derive(Debug)]
pub(crate) struct Connecting<F> {
    inner: F,
    client_cert: bool,
}

impl<F, T, E> Future for Connecting<F>
where
    F: Future<Output = Result<MaybeHttpsStream<T>, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(Pin::new(&mut self.inner).poll(cx));
        if let Ok(MaybeHttpsStream::Https(_)) = &result {
            crate::metrics::tls_connection(self.client_cert);
        }
        Poll::Ready(result)
    }
}
