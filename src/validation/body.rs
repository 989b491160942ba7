//! Request bodies as bytes, so that the body hash `b` of a signed HTTP
//! request can be checked.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use tower::{Layer, Service, ServiceExt as _};

use crate::BoxError;

/// The whole body of a request, put into its extensions by
/// [`BufferBodyLayer`]. Where a request carries one,
/// [`CnfValidationLayer`](super::CnfValidationLayer) checks the body hash
/// `b` of a signed HTTP request against it; without one, an SHR with `b`
/// is refused.
#[derive(Clone, Debug)]
pub struct BufferedBody(Bytes);

impl BufferedBody {
    /// The body.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

/// Reads every request body into memory (at most `limit` bytes, `413`
/// otherwise), puts a [`BufferedBody`] into the request's extensions and
/// passes the request on with the same bytes as a [`Full`] body.
///
/// Put it outside [`CnfValidationLayer`](super::CnfValidationLayer) on
/// routes that check the body hash `b` of signed HTTP requests (`PoP`):
/// that layer streams bodies and never reads them itself. Every request
/// through it is buffered before its token is looked at, so keep `limit`
/// to what the route needs.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_token_binding::proof::pop::PopVerifier;
/// use tower_token_binding::validation::{BufferBodyLayer, CnfValidationLayer};
///
/// # fn validator() -> impl tower_token_binding::validation::ValidateToken {
/// #     |_: &str| async { Err(tower_token_binding::validation::TokenError::new(
/// #         tower_token_binding::validation::TokenErrorKind::Other)) }
/// # }
/// let layers = ServiceBuilder::new()
///     .layer(BufferBodyLayer::new(64 * 1024))
///     .layer(CnfValidationLayer::new(validator()).accept_pop(
///         PopVerifier::builder().require_body(true).build(),
///     ));
/// # let _ = layers;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct BufferBodyLayer {
    limit: usize,
}

impl BufferBodyLayer {
    /// Buffers bodies of at most `limit` bytes; a longer one is answered
    /// `413 Payload Too Large`.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BufferBodyLayer {
    type Service = BufferBody<S>;

    fn layer(&self, inner: S) -> BufferBody<S> {
        BufferBody {
            inner,
            limit: self.limit,
        }
    }
}

/// The middleware of [`BufferBodyLayer`].
#[derive(Clone, Debug)]
pub struct BufferBody<S> {
    inner: S,
    limit: usize,
}

impl<S, B, ResBody> Service<Request<B>> for BufferBody<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    /// Always ready: the inner service is driven to readiness once the body
    /// is read.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let limit = self.limit;
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let status = if e.downcast_ref::<LengthLimitError>().is_some() {
                        StatusCode::PAYLOAD_TOO_LARGE
                    } else {
                        StatusCode::BAD_REQUEST
                    };
                    tracing::debug!(error = %e, %status, "request body not read");
                    let mut response = Response::new(ResBody::default());
                    *response.status_mut() = status;
                    return Ok(response);
                }
            };
            parts.extensions.insert(BufferedBody(bytes.clone()));
            inner
                .oneshot(Request::from_parts(parts, Full::new(bytes)))
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    #[tokio::test]
    async fn buffers_up_to_the_limit() {
        let service = BufferBodyLayer::new(4).layer(tower::service_fn(
            |request: Request<Full<Bytes>>| async move {
                let seen = request.extensions().get::<BufferedBody>().cloned();
                let body = request.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(seen.map(|b| b.bytes().clone()), Some(body.clone()));
                Ok::<_, Infallible>(Response::new(String::from_utf8(body.to_vec()).unwrap()))
            },
        ));
        let request = |body: &'static str| {
            Request::post("/")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        };
        let response = service.clone().oneshot(request("abcd")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), "abcd");
        let response = service.oneshot(request("abcde")).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
