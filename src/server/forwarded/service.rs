use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower::Service;

use super::future::ResponseFuture;
use super::layer::{Config, Header};
use super::{XfccErrorKind, client_cert_from_headers, escaped_pem_from_headers, xfcc_from_headers};
use crate::metrics::Forwarded;
use crate::server::PeerCertificate;

/// Middleware that takes the client certificate from a header set by a
/// trusted proxy: for requests from a trusted proxy, it replaces the
/// request's [`PeerCertificate`] with the one in the header (or with none,
/// when there is no header, or when an XFCC header has several elements
/// where one is expected) and answers a malformed header with
/// `400 Bad Request`; from any other peer, it removes the header, leaves
/// the connection's own `PeerCertificate` as it is, and logs a `warn`
/// event.
///
/// Made by a [`ForwardedClientCertLayer`](super::ForwardedClientCertLayer);
/// see the [module docs](super) for an example.
pub struct ForwardedClientCert<S> {
    pub(super) inner: S,
    pub(super) config: Arc<Config>,
}

impl<S> ForwardedClientCert<S> {
    /// Gets a reference to the underlying service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the underlying service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the underlying service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for ForwardedClientCert<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for ForwardedClientCert<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardedClientCert")
            .field("inner", &self.inner)
            .field("header", &self.config.header.name())
            .field("trusted", &self.config.proxies)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ForwardedClientCert<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let name = config.header.name();
        if request.extensions().get::<Decided>().is_some() {
            // Another forwarded-certificate layer, outside this one, has
            // decided the request's certificate: it stands, and this
            // layer's header is dropped unread.
            if request.headers_mut().remove(&name).is_some() {
                crate::metrics::forwarded_certificate(Forwarded::Ignored);
            }
            if let Some(also_ignored) = config.warnings.allow() {
                tracing::warn!(
                    header = %name,
                    also_ignored,
                    "two forwarded-certificate layers on one request: the outer one decided \
                     the client certificate, and this one's header is removed unread; stack one",
                );
            }
            return ResponseFuture::future(self.inner.call(request));
        }
        request.extensions_mut().insert(Decided);
        let peer = config.proxies.check(request.extensions());
        if !peer.trusted {
            if request.headers().contains_key(&name) {
                crate::metrics::forwarded_certificate(Forwarded::Ignored);
                // Never the value: only where it came from.
                if let Some(also_ignored) = config.warnings.allow() {
                    match peer.addr {
                        Some(addr) => tracing::warn!(
                            remote_addr = %addr,
                            header = %name,
                            also_ignored,
                            "ignoring a forwarded client certificate from a peer that is not \
                             a trusted proxy",
                        ),
                        None => tracing::warn!(
                            header = %name,
                            also_ignored,
                            "ignoring a forwarded client certificate from a peer whose address \
                             is unknown (no ConnectionInfo or ConnectInfo extension)",
                        ),
                    }
                }
                request.headers_mut().remove(&name);
            }
            return ResponseFuture::future(self.inner.call(request));
        }

        // A trusted proxy: the header is the only source, never the proxy's
        // own certificate.
        request.extensions_mut().remove::<PeerCertificate>();
        if !request.headers().contains_key(&name) {
            tracing::debug!(
                header = %name,
                "a trusted proxy sent no client certificate header: the request has no \
                 client certificate",
            );
        }
        let parsed = match &config.header {
            Header::ClientCert => {
                client_cert_from_headers(request.headers()).map_err(Rejection::ClientCert)
            }
            Header::EscapedPem(name) => match escaped_pem_from_headers(request.headers(), name) {
                // An empty value: the proxy says the client sent none.
                Ok(None) if request.headers().contains_key(name) => {
                    crate::metrics::forwarded_certificate(Forwarded::NoneTaken);
                    Ok(None)
                }
                result => result.map_err(Rejection::EscapedPem),
            },
            Header::Xfcc => match xfcc_from_headers(request.headers(), config.element) {
                // Not malformed, but which element names the client is
                // ambiguous: none does, so a bound token gets a 401 from
                // the validation layer, which says why in its response.
                Err(error) if error.kind() == XfccErrorKind::MultipleElements => {
                    crate::metrics::forwarded_certificate(Forwarded::NoneTaken);
                    tracing::debug!(%error, "no client certificate taken");
                    return ResponseFuture::annotated(self.inner.call(request), error);
                }
                result => result.map_err(Rejection::Xfcc),
            },
        };
        match parsed {
            Ok(peer) => {
                if let Some(peer) = peer {
                    crate::metrics::forwarded_certificate(Forwarded::Used);
                    request.extensions_mut().insert(peer);
                }
                ResponseFuture::future(self.inner.call(request))
            }
            Err(rejection) => {
                crate::metrics::forwarded_certificate(Forwarded::Malformed);
                ResponseFuture::rejected(rejection.into_response())
            }
        }
    }
}

/// Marks a request whose client certificate a forwarded-certificate layer
/// has decided, so that a second such layer inside it changes nothing.
#[derive(Debug, Clone, Copy)]
struct Decided;

/// A malformed header: `400 Bad Request`, the reason in the extensions.
enum Rejection {
    ClientCert(super::ClientCertHeaderError),
    EscapedPem(super::EscapedPemError),
    Xfcc(super::XfccError),
}

impl Rejection {
    fn into_response<B: Default>(self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::BAD_REQUEST;
        match self {
            Rejection::ClientCert(error) => {
                tracing::debug!(%error, "refusing the request");
                response.extensions_mut().insert(error);
            }
            Rejection::EscapedPem(error) => {
                tracing::debug!(%error, "refusing the request");
                response.extensions_mut().insert(error);
            }
            Rejection::Xfcc(error) => {
                tracing::debug!(%error, "refusing the request");
                response.extensions_mut().insert(error);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use http::HeaderValue;
    use rustls_pki_types::CertificateDer;
    use tower::{ServiceBuilder, ServiceExt as _};

    use super::*;
    use crate::Thumbprint;
    use crate::server::ConnectionInfo;
    use crate::server::forwarded::client_cert::tests::{CERT, X5T, der, header};
    use crate::server::forwarded::{
        CLIENT_CERT, ClientCertHeaderError, ForwardedClientCertBuilder, ForwardedClientCertLayer,
        X_FORWARDED_CLIENT_CERT, XfccError, XfccErrorKind,
    };

    fn hash() -> String {
        let t = Thumbprint::from_certificate(&der());
        t.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    async fn echo(request: Request<String>) -> Result<Response<String>, Infallible> {
        let peer = request.extensions().get::<PeerCertificate>();
        let headers = request.headers().len();
        Ok(Response::new(format!(
            "{} {headers}",
            peer.map_or("none".to_owned(), |p| p.thumbprint().to_string())
        )))
    }

    /// A request from `remote`, with the proxy's own certificate on the
    /// connection.
    fn request(remote: &str, name: &http::HeaderName, values: &[&str]) -> Request<String> {
        let mut request = Request::new(String::new());
        let remote: SocketAddr = remote.parse().unwrap();
        request.extensions_mut().insert(ConnectionInfo::new(
            remote,
            "127.0.0.1:443".parse().unwrap(),
        ));
        request
            .extensions_mut()
            .insert(PeerCertificate::new(CertificateDer::from(
                b"proxy".to_vec(),
            )));
        for value in values {
            request
                .headers_mut()
                .append(name, HeaderValue::from_str(value).unwrap());
        }
        request
    }

    /// `builder`, trusting the proxies of 10.0.0.0/8.
    fn behind_proxies(builder: ForwardedClientCertBuilder) -> ForwardedClientCertBuilder {
        builder.trusted_proxy("10.0.0.0/8".parse().unwrap())
    }

    #[tokio::test]
    async fn the_header_is_the_only_source_from_a_trusted_proxy() {
        let layer = behind_proxies(ForwardedClientCertLayer::client_cert())
            .build()
            .unwrap();
        let service = ServiceBuilder::new().layer(layer).service_fn(echo);
        let proxy = "10.1.2.3:5000";

        let response = service
            .clone()
            .oneshot(request(proxy, &CLIENT_CERT, &[]))
            .await
            .unwrap();
        assert_eq!(response.into_body(), "none 0");

        let response = service
            .clone()
            .oneshot(request(proxy, &CLIENT_CERT, &[&header()]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.into_body(), format!("{} 1", X5T.trim()));

        for values in [&["garbage"][..], &[&header(), &header()]] {
            let response = service
                .clone()
                .oneshot(request(proxy, &CLIENT_CERT, values))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert!(
                response
                    .extensions()
                    .get::<ClientCertHeaderError>()
                    .is_some()
            );
            assert_eq!(response.into_body(), "");
        }
    }

    /// The PEM of the test certificate, escaped as nginx escapes it.
    fn escaped_pem() -> String {
        crate::server::forwarded::escaped_pem::tests::nginx(std::str::from_utf8(CERT).unwrap())
    }

    #[tokio::test]
    async fn an_escaped_pem_in_the_header_named() {
        use crate::server::forwarded::{EscapedPemError, EscapedPemErrorKind, NGINX};
        let layer = behind_proxies(ForwardedClientCertLayer::escaped_pem(NGINX))
            .build()
            .unwrap();
        let service = ServiceBuilder::new().layer(layer).service_fn(echo);
        let proxy = "10.1.2.3:5000";
        let own = Thumbprint::from_der(b"proxy").to_string();
        let pem = escaped_pem();
        let call = |remote: &'static str, values: Vec<String>| {
            let service = service.clone();
            async move {
                let values: Vec<&str> = values.iter().map(String::as_str).collect();
                service
                    .oneshot(request(remote, &NGINX, &values))
                    .await
                    .unwrap()
            }
        };

        // From the proxy: the header's certificate, never the proxy's own.
        let response = call(proxy, vec![pem.clone()]).await;
        assert_eq!(response.into_body(), format!("{} 1", X5T.trim()));
        // An empty value (nginx's, without a client certificate): none.
        let response = call(proxy, vec![String::new()]).await;
        assert_eq!(response.into_body(), "none 1");
        // No header: none.
        let response = call(proxy, vec![]).await;
        assert_eq!(response.into_body(), "none 0");
        // Malformed, or twice: 400, the reason in the extensions.
        for (values, kind) in [
            (
                vec![pem.replace("%0A", "%250A")],
                EscapedPemErrorKind::DoubleEscaped,
            ),
            (
                vec![pem.clone(), pem.clone()],
                EscapedPemErrorKind::MultipleValues,
            ),
        ] {
            let response = call(proxy, values).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            let error = response.extensions().get::<EscapedPemError>().unwrap();
            assert_eq!(error.kind(), kind);
        }
        // From anyone else: the header goes unread, the connection's stays.
        for value in [pem.clone(), "garbage".to_owned()] {
            let response = call("192.0.2.1:5000", vec![value]).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.into_body(), format!("{own} 0"));
        }
    }

    #[tokio::test]
    async fn the_header_of_other_peers_is_removed_and_their_certificate_kept() {
        let proxy_cert = Thumbprint::from_der(b"trusted proxy");
        let layer = behind_proxies(ForwardedClientCertLayer::xfcc())
            .trusted_proxy_certificate(proxy_cert)
            .build()
            .unwrap();
        let service = ServiceBuilder::new().layer(layer).service_fn(echo);
        let own = Thumbprint::from_der(b"proxy").to_string();
        let xfcc = format!("Hash={}", hash());

        // Not listed: the header is dropped (even a malformed one), the
        // connection's certificate stays.
        for value in [xfcc.as_str(), "garbage"] {
            let response = service
                .clone()
                .oneshot(request(
                    "192.0.2.1:5000",
                    &X_FORWARDED_CLIENT_CERT,
                    &[value],
                ))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.into_body(), format!("{own} 0"));
        }

        // Listed by address.
        let response = service
            .clone()
            .oneshot(request(
                "[::ffff:10.0.0.9]:5000",
                &X_FORWARDED_CLIENT_CERT,
                &[&xfcc],
            ))
            .await
            .unwrap();
        assert_eq!(response.into_body(), format!("{} 1", X5T.trim()));

        // Listed by certificate.
        let mut by_cert = request("192.0.2.1:5000", &X_FORWARDED_CLIENT_CERT, &[&xfcc]);
        by_cert
            .extensions_mut()
            .insert(PeerCertificate::from_thumbprint(proxy_cert));
        let response = service.clone().oneshot(by_cert).await.unwrap();
        assert_eq!(response.into_body(), format!("{} 1", X5T.trim()));

        // Two elements: no certificate by default, and the inner service's
        // response says why.
        let two = format!("{xfcc},{xfcc}");
        let response = service
            .clone()
            .oneshot(request("10.0.0.1:1", &X_FORWARDED_CLIENT_CERT, &[&two]))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let error = response.extensions().get::<XfccError>().unwrap();
        assert_eq!(error.kind(), XfccErrorKind::MultipleElements);
        assert_eq!(response.into_body(), "none 1");

        // No address at all: not trusted by any network.
        let mut unknown = Request::new(String::new());
        unknown.headers_mut().insert(
            X_FORWARDED_CLIENT_CERT,
            HeaderValue::from_str(&xfcc).unwrap(),
        );
        let response = service.clone().oneshot(unknown).await.unwrap();
        assert_eq!(response.into_body(), "none 0");
    }

    proptest::proptest! {
        #[test]
        fn from_a_proxy_400_exactly_when_the_header_is_malformed(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
            real in proptest::prelude::any::<bool>(),
            copies in 1..3usize,
        ) {
            use futures_util::FutureExt as _;
            let value = if real { format!("Hash={}", hash()).into_bytes() } else { bytes };
            let Ok(value) = HeaderValue::from_bytes(&value) else {
                return Ok(());
            };
            let layer = ForwardedClientCertLayer::xfcc().trust_any_peer().build().unwrap();
            let service = ServiceBuilder::new().layer(layer).service_fn(echo);
            let mut request = Request::new(String::new());
            for _ in 0..copies {
                request.headers_mut().append(X_FORWARDED_CLIENT_CERT, value.clone());
            }
            let expected = xfcc_from_headers(request.headers(), crate::server::forwarded::XfccElement::Only);
            let response = service
                .oneshot(request)
                .now_or_never()
                .expect("the layer does not wait")
                .unwrap();
            match expected {
                Ok(peer) => {
                    proptest::prop_assert_eq!(response.status(), StatusCode::OK);
                    let seen = peer.map_or("none".to_owned(), |p| p.thumbprint().to_string());
                    proptest::prop_assert_eq!(response.into_body(), format!("{seen} {copies}"));
                }
                Err(error) if error.kind() == XfccErrorKind::MultipleElements => {
                    proptest::prop_assert_eq!(response.status(), StatusCode::OK);
                    proptest::prop_assert!(response.extensions().get::<XfccError>().is_some());
                    proptest::prop_assert_eq!(response.into_body(), format!("none {copies}"));
                }
                Err(error) => {
                    proptest::prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST);
                    let seen = response.extensions().get::<XfccError>().unwrap();
                    proptest::prop_assert_eq!(seen.kind(), error.kind());
                }
            }
        }
    }
}
