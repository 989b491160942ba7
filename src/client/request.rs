//! [`RequestBuilder`]: a request made on a [`BoundClient`] (method, URL,
//! headers, body), sent with [`send`](RequestBuilder::send).

use std::fmt;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::Full;

use super::BoundClient;
use crate::BoxError;

/// A request on its way through a [`BoundClient`]: from
/// [`BoundClient::request`], given headers and a body, then
/// [`send`](Self::send)-ed. The client adds the token (and its proof) and
/// picks the connection; set neither `Authorization` nor `DPoP` here.
///
/// An invalid method, URL or header is not a panic: it is the error that
/// [`send`](Self::send) returns.
///
/// `Debug` shows the method and the URL without its query or user info;
/// never a header or the body.
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    client: BoundClient,
    request: Result<http::request::Builder, BoxError>,
    method: Method,
    shown_url: String,
    body: Bytes,
}

impl RequestBuilder {
    pub(super) fn new(client: BoundClient, method: Method, url: &str) -> Self {
        let (request, shown_url) = match url.parse::<Uri>() {
            Ok(uri) => (
                Ok(Request::builder().method(method.clone()).uri(uri.clone())),
                crate::discovery::redacted(&uri),
            ),
            Err(e) => (
                Err(format!("invalid request URL: {e}").into()),
                "<invalid URL>".to_owned(),
            ),
        };
        Self {
            client,
            request,
            method,
            shown_url,
            body: Bytes::new(),
        }
    }

    /// Adds a header (one more value when the name is there already).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        HeaderName: TryFrom<K>,
        <HeaderName as TryFrom<K>>::Error: Into<http::Error>,
        HeaderValue: TryFrom<V>,
        <HeaderValue as TryFrom<V>>::Error: Into<http::Error>,
    {
        self.request = self.request.map(|r| r.header(name, value));
        self
    }

    /// The body, replacing any given before. Default: empty. Kept in
    /// memory, so that the client can send it again (a retry with a new
    /// token).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends the request through the client's whole stack and reads the
    /// response, as [`BoundClient::send`] does: any status is a response;
    /// errors are an invalid request, or failures to get a token, to
    /// connect or to read.
    pub async fn send(self) -> Result<Response<Bytes>, BoxError> {
        let request = self
            .request?
            .body(Full::new(self.body))
            .map_err(|e| format!("invalid request: {e}"))?;
        self.client.send(request).await
    }
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBuilder")
            .field("method", &self.method)
            .field("url", &self.shown_url)
            .finish_non_exhaustive()
    }
}
