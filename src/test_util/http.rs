//! [`get_with_token`]: a request with a token in hand, over a connection
//! that presents whichever certificate the test chooses.

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{Error, TestPki};
use crate::ClientIdentity;

/// Sends `GET url` with `Authorization: Bearer <token>` over a TLS
/// connection that trusts `pki`'s CA and presents `identity` (`None`: no
/// client certificate), and reads the response: what a thief holding a
/// stolen token, but not its key, can do. Any status is a response.
///
/// A new connection every call; HTTP/1.1 or HTTP/2 by ALPN. For tests only:
/// no timeout, no retry, no token cache.
///
/// ```
/// use tower_token_binding::test_util::{TestIssuer, TestPki, get_with_token};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_token_binding::test_util::Error> {
/// let pki = TestPki::new()?;
/// let issuer = TestIssuer::start(&pki).await?;
/// let token = issuer.sign(&issuer.claims("svc", None))?;
/// // The issuer's JWKS needs no token: it answers 200 all the same.
/// let thief = pki.client_cert("thief.example")?.identity()?;
/// let response = get_with_token(&pki, &issuer.jwks_uri(), &token, Some(&thief)).await?;
/// assert_eq!(response.status(), 200);
/// # Ok(())
/// # }
/// ```
pub async fn get_with_token(
    pki: &TestPki,
    url: &str,
    token: &str,
    identity: Option<&ClientIdentity>,
) -> Result<Response<Bytes>, Error> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(pki.client_config(identity)?)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = Request::get(url)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .map_err(|e| Error::new(format!("invalid request to {url:?}"), e))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| Error::new(format!("GET {url} failed"), e))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| Error::new("cannot read the response body", e))?
        .to_bytes();
    Ok(Response::from_parts(parts, body))
}
