//! Trusted-proxy mode: the client certificate from a header set by a
//! TLS-terminating proxy, believed only from the proxies you list.
//!
//! Behind a TLS-terminating reverse proxy, the application never sees the
//! client's TLS handshake; the proxy forwards the client certificate in a
//! header. Three formats are read:
//!
//! - [RFC 9440] `Client-Cert` ([`ForwardedClientCertLayer::client_cert`]):
//!   an RFC 8941 byte sequence, `:` the DER in standard base64 `:`
//!   ([`parse_client_cert_header`]).
//! - A URL-escaped PEM in a header the proxy's operator names
//!   ([`ForwardedClientCertLayer::escaped_pem`]), as nginx
//!   (`$ssl_client_escaped_cert`), Kubernetes ingress-nginx, AWS
//!   Application Load Balancers and Traefik send it; [`parse_escaped_pem`]
//!   says what is accepted, and [`NGINX`], [`INGRESS_NGINX`],
//!   [`AWS_ALB_LEAF`], [`AWS_ALB_CHAIN`] and [`TRAEFIK`] name each product's
//!   header. An empty value means the client sent no certificate.
//! - Envoy's `x-forwarded-client-cert`, XFCC
//!   ([`ForwardedClientCertLayer::xfcc`]): `By=...;Hash=...;Cert="..."`
//!   elements, the certificate as URL-encoded PEM (`Cert`) or as the hex
//!   SHA-256 of its DER (`Hash`, which is the thumbprint a bound token
//!   carries); [`parse_xfcc_header`] says exactly what is accepted. By
//!   default the header must hold exactly one element, as Envoy's
//!   `SANITIZE_SET` sends, and a header with several gives no certificate
//!   (so a bound token gets `401`); [`XfccElement`] picks the first or the
//!   last of several instead.
//!
//! [`ForwardedClientCertLayer`] turns the header into the
//! [`PeerCertificate`](super::PeerCertificate) extension that
//! [`CnfValidationLayer`](crate::CnfValidationLayer) checks bound tokens
//! against. Whoever can send this header can claim any certificate, so the
//! layer believes it only from **trusted proxies**, a list you must give:
//! IP networks (the connection's remote address, see
//! [`trusted_proxy`](ForwardedClientCertBuilder::trusted_proxy)) or the
//! thumbprint of the certificate the proxy itself presents over mutual TLS
//! ([`trusted_proxy_certificate`](ForwardedClientCertBuilder::trusted_proxy_certificate)).
//! Building the layer without the list is an error, unless you call
//! [`trust_any_peer`](ForwardedClientCertBuilder::trust_any_peer), which
//! is unsafe wherever anyone but the proxy can reach the server. The list
//! says whom to believe, not what they pass on: the proxy must also remove
//! or overwrite the header its clients send (Envoy's `SANITIZE_SET`, or
//! `APPEND_FORWARD` with [`XfccElement::Last`]).
//!
//! For each request:
//!
//! - **from a trusted proxy**, the header is the only source: the layer
//!   removes any `PeerCertificate` extension (such as the proxy's own
//!   certificate, when the proxy connects with mTLS through
//!   [`serve`](super::serve())) and adds one made from the header, if there
//!   is a header. A malformed header is answered with `400 Bad Request` and
//!   the reason ([`ClientCertHeaderError`], [`EscapedPemError`] or
//!   [`XfccError`]) in the response's extensions, never guessed at.
//! - **from any other peer**, the header is removed from the request and
//!   not read, a `warn` event is logged (with the peer's address, never the
//!   header's value; at most one a second per layer, each counting the
//!   ones left out in `also_ignored`), and the connection's own `PeerCertificate`, proven in
//!   its TLS handshake, stays as it is: a client that reaches the server
//!   directly over mutual TLS is served as without a proxy, and one that
//!   only claims a certificate in a header has none.
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt as _};
//! use tower_token_binding::server::{ConnectionInfo, PeerCertificate};
//! use tower_token_binding::server::forwarded::{
//!     ForwardedClientCertLayer, X_FORWARDED_CLIENT_CERT, XfccError, XfccErrorKind,
//! };
//! # use tower_token_binding::test_util::TestPki;
//!
//! async fn whoami(request: Request<String>) -> Result<Response<String>, Infallible> {
//!     let peer = request.extensions().get::<PeerCertificate>();
//!     Ok(Response::new(peer.map_or(String::new(), |p| p.thumbprint().to_string())))
//! }
//!
//! /// A request as `serve` hands it over: with the connection's addresses.
//! fn from(remote: &str, xfcc: &str) -> Request<String> {
//!     let mut request = Request::get("/").header(X_FORWARDED_CLIENT_CERT, xfcc);
//!     let info = ConnectionInfo::new(remote.parse().unwrap(), "10.0.0.1:443".parse().unwrap());
//!     request.extensions_mut().unwrap().insert(info);
//!     request.body(String::new()).unwrap()
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let service = ServiceBuilder::new()
//!     .layer(
//!         ForwardedClientCertLayer::xfcc()
//!             .trusted_proxy("10.0.0.0/8".parse()?) // where the proxies are
//!             .build()?,
//!     )
//!     .service_fn(whoami);
//!
//! # let cert = TestPki::self_signed_client("client.example")?;
//! // What Envoy sends: the SHA-256 of the client's certificate, in hex.
//! let hash: String = cert.thumbprint().as_bytes().iter().map(|b| format!("{b:02x}")).collect();
//! let xfcc = format!(r#"By=spiffe://proxy;Hash={hash};Subject="CN=client,O=Example""#);
//!
//! // From a proxy: believed.
//! let response = service.clone().oneshot(from("10.1.2.3:5000", &xfcc)).await?;
//! assert_eq!(response.into_body(), cert.thumbprint().to_string());
//!
//! // From anyone else: ignored (and logged).
//! let response = service.clone().oneshot(from("203.0.113.9:5000", &xfcc)).await?;
//! assert_eq!(response.into_body(), "");
//!
//! // A malformed header from a proxy is a 400, with the reason in the extensions.
//! let response = service.oneshot(from("10.1.2.3:5000", "Hash=abc")).await?;
//! assert_eq!(response.status(), StatusCode::BAD_REQUEST);
//! let error = response.extensions().get::<XfccError>().unwrap();
//! assert_eq!(error.kind(), XfccErrorKind::InvalidHash);
//! # Ok(())
//! # }
//! ```
//!
//! [RFC 9440]: https://www.rfc-editor.org/rfc/rfc9440

mod client_cert;
mod detail;
mod escaped_pem;
mod future;
mod layer;
mod service;
mod trusted;
mod xfcc;

pub use client_cert::{
    CLIENT_CERT, ClientCertHeaderError, ClientCertHeaderErrorKind, client_cert_from_headers,
    parse_client_cert_header,
};
pub use escaped_pem::{
    AWS_ALB_CHAIN, AWS_ALB_LEAF, EscapedPemError, EscapedPemErrorKind, INGRESS_NGINX,
    MAX_ESCAPED_PEM_LENGTH, NGINX, TRAEFIK, escaped_pem_from_headers, parse_escaped_pem,
};
pub use future::ResponseFuture;
#[allow(deprecated)]
pub use layer::ForwardedConfigError;
pub use layer::{ForwardedClientCertBuilder, ForwardedClientCertLayer};
pub use service::ForwardedClientCert;
pub use trusted::{IpNetwork, ParseIpNetworkError};
pub use xfcc::{
    X_FORWARDED_CLIENT_CERT, XfccElement, XfccEntry, XfccError, XfccErrorKind, parse_xfcc_header,
    xfcc_from_headers,
};

/// `bytes` without the optional whitespace (spaces and tabs, RFC 9110
/// section 5.6.3) around it: header values as the parsers of `Client-Cert`
/// and `x-forwarded-client-cert` read them.
fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The value of one hex digit, either case.
pub(super) fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Strict percent-decoding, for XFCC's `Cert` and the URL-escaped PEM:
/// `None` unless every `%` is followed by two hex digits.
pub(super) fn percent_decode(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%' {
            let hi = hex_value(*value.get(i + 1)?)?;
            let lo = hex_value(*value.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(value[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::trim_ows;

    #[test]
    fn trim_ows_takes_spaces_and_tabs_only() {
        assert_eq!(trim_ows(b" \t:abc: \t "), b":abc:");
        assert_eq!(trim_ows(b"\r\n a \n"), b"\r\n a \n");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b""), b"");
    }
}
