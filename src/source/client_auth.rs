//! What every request of an OAuth client to its authorization server shares
//! (the token endpoint here, the introspection endpoint of a resource
//! server): the client secret that is never printed, HTTP Basic client
//! authentication (RFC 6749 section 2.3.1), and a request that asks for
//! JSON and carries the client certificate to present, if any.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri, header};
use http_body_util::Full;

use crate::ClientIdentity;

/// A client secret: never printed.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) Arc<str>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The `Authorization` value of `client_secret_basic`: the client id and
/// the secret each form-urlencoded, then joined and base64-encoded (RFC
/// 6749 section 2.3.1); marked sensitive. `None` when they make no valid
/// header value.
pub(crate) fn basic_authorization(client_id: &str, secret: &Secret) -> Option<HeaderValue> {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = STANDARD.encode(format!("{}:{}", encode(client_id), encode(&secret.0)));
    let mut value = HeaderValue::try_from(format!("Basic {credentials}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// A request for a JSON answer, with the client certificate to present
/// (for the pool) when there is one.
pub(crate) fn json_request(
    method: Method,
    uri: Uri,
    body: Bytes,
    identity: Option<&ClientIdentity>,
) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    request
        .headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(identity) = identity {
        request.extensions_mut().insert(identity.clone());
    }
    request
}
