//! The rule that a token travels over TLS: a request that carries a token
//! (any scheme) to an absolute URI must be `https`.

use std::fmt;
use std::net::IpAddr;

use http::Uri;

use super::Scheme;

/// A request that would have carried a token over plain HTTP, refused
/// before the token was fetched or attached.
///
/// Every request [`TokenBindingLayer`](super::TokenBindingLayer) gives a
/// token to (`Bearer`, `mtls_pop`, `DPoP`, `PoP`) must have an `https`
/// URI: over plain HTTP an eavesdropper keeps the token, and a DPoP proof
/// or signed request can be replayed within its window.
/// [`allow_http_to_loopback`](super::TokenBindingLayer::allow_http_to_loopback)
/// lets `http` through to loopback addresses only, for tests. A request
/// without a scheme (origin-form, `/path`) goes to a transport of the
/// inner service's own choosing and is not refused here.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_token_binding::TokenBindingLayer;
/// use tower_token_binding::binding::InsecureTransport;
/// use tower_token_binding::token::Token;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = ServiceBuilder::new()
///     .layer(TokenBindingLayer::bearer(|| async { Ok(Token::new("secret")) }))
///     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
/// let request = Request::get("http://api.example/orders").body(()).unwrap();
/// let error = service.oneshot(request).await.unwrap_err();
/// let refused = error.downcast_ref::<InsecureTransport>().unwrap();
/// assert_eq!(refused.uri_scheme(), "http");
/// assert_eq!(
///     error.to_string(),
///     "a request carrying a bearer token must use https, not http (to api.example)"
/// );
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct InsecureTransport {
    scheme: Scheme,
    uri_scheme: String,
    host: String,
}

impl InsecureTransport {
    /// The binding scheme of the token that was not sent.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The request URI's scheme (`http`, ...), or `CONNECT` for an
    /// authority-form target (a tunnel).
    pub fn uri_scheme(&self) -> &str {
        &self.uri_scheme
    }
}

impl fmt::Display for InsecureTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = match self.scheme {
            Scheme::Bearer => "a bearer token",
            Scheme::Dpop => "a DPoP-bound token",
            Scheme::Pop => "a PoP-bound token",
            // Whatever the header word: the certificate goes in the TLS
            // handshake, so there is no exception for loopback either.
            _ => "a certificate-bound token",
        };
        write!(
            f,
            "a request carrying {token} must use https, not {} (to {})",
            self.uri_scheme, self.host
        )?;
        if self.scheme.binding() != crate::cnf::Binding::Certificate
            && self.uri_scheme.eq_ignore_ascii_case("http")
            && is_loopback(&self.host)
        {
            f.write_str(
                "; for a test server on loopback without TLS, allow it with allow_http_to_loopback()",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for InsecureTransport {}

/// Checks `uri` for a request that carries a `scheme` token.
pub(crate) fn check(
    uri: &Uri,
    scheme: Scheme,
    http_to_loopback: bool,
) -> Result<(), InsecureTransport> {
    let Some(uri_scheme) = uri.scheme_str() else {
        // Origin-form (`/path`): the inner service's transport. An
        // authority-form target (`CONNECT host:port`) opens a tunnel over
        // plain TCP: refused.
        if let Some(authority) = uri.authority() {
            return Err(InsecureTransport {
                scheme,
                uri_scheme: "CONNECT".to_owned(),
                host: authority.host().to_owned(),
            });
        }
        return Ok(());
    };
    if uri_scheme.eq_ignore_ascii_case("https") {
        return Ok(());
    }
    let host = uri.host().unwrap_or_default();
    if http_to_loopback && uri_scheme.eq_ignore_ascii_case("http") && is_loopback(host) {
        return Ok(());
    }
    Err(InsecureTransport {
        scheme,
        uri_scheme: uri_scheme.to_owned(),
        host: host.to_owned(),
    })
}

/// `localhost`, or an IP address in 127.0.0.0/8 or `::1`.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(uri: &str, loopback: bool) -> Result<(), String> {
        check(&uri.parse().unwrap(), Scheme::Dpop, loopback).map_err(|e| e.to_string())
    }

    #[test]
    fn https_only_unless_loopback_is_allowed() {
        for uri in ["https://api.example/a", "HTTPS://api.example", "/relative"] {
            assert_eq!(checked(uri, false), Ok(()), "{uri}");
        }
        for uri in [
            "http://api.example/a",
            "http://127.0.0.1:8080/a",
            "http://localhost/a",
            "ws://api.example/a",
        ] {
            assert!(checked(uri, false).is_err(), "{uri}");
        }
        for uri in [
            "http://127.0.0.1:8080/a",
            "http://127.9.9.9/a",
            "http://[::1]:80/a",
            "http://LOCALHOST/a",
        ] {
            assert_eq!(checked(uri, true), Ok(()), "{uri}");
        }
        for uri in [
            "http://10.0.0.1/a",
            "http://localhost.example/a",
            "http://[::2]/a",
            "ftp://127.0.0.1/a",
        ] {
            assert!(checked(uri, true).is_err(), "{uri}");
        }
        assert_eq!(
            checked("http://api.example/a?secret=1", false).unwrap_err(),
            "a request carrying a DPoP-bound token must use https, not http (to api.example)"
        );
        // To loopback, the error names the switch.
        assert!(
            checked("http://127.0.0.1:8080/a", false)
                .unwrap_err()
                .ends_with("allow it with allow_http_to_loopback()")
        );
        // Not for a certificate-bound token, whatever its header word: the
        // switch would not help.
        for scheme in [Scheme::MtlsPop, Scheme::MtlsOnly] {
            let uri: Uri = "http://127.0.0.1:8080/a".parse().unwrap();
            assert_eq!(
                check(&uri, scheme, false).unwrap_err().to_string(),
                "a request carrying a certificate-bound token must use https, not http (to 127.0.0.1)"
            );
        }
    }
}
