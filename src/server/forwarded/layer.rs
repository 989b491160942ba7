use std::fmt;
use std::sync::Arc;

use http::header::HeaderName;
use tower::Layer;

use super::trusted::TrustedProxies;
use super::{CLIENT_CERT, ForwardedClientCert, IpNetwork, X_FORWARDED_CLIENT_CERT, XfccElement};
use crate::warn_limit::WarnLimit;
use crate::{ConfigError, Thumbprint};

/// Layer that applies [`ForwardedClientCert`]: takes the client certificate
/// from a header set by a trusted TLS-terminating proxy, the RFC 9440
/// `Client-Cert` header ([`client_cert`](Self::client_cert)), a URL-escaped
/// PEM in a header of your choosing ([`escaped_pem`](Self::escaped_pem):
/// nginx, ingress-nginx, AWS ALB, Traefik) or Envoy's
/// `x-forwarded-client-cert` ([`xfcc`](Self::xfcc)).
///
/// Built with a [`ForwardedClientCertBuilder`], which requires the list of
/// trusted proxies. See the [module docs](super) for what happens to
/// requests from other peers.
#[derive(Clone)]
pub struct ForwardedClientCertLayer {
    pub(super) config: Arc<Config>,
}

/// What the layer does; shared by its services.
pub(super) struct Config {
    pub(super) header: Header,
    pub(super) proxies: TrustedProxies,
    pub(super) element: XfccElement,
    pub(super) warnings: WarnLimit,
}

/// The header a layer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Header {
    ClientCert,
    EscapedPem(HeaderName),
    Xfcc,
}

impl Header {
    pub(super) fn name(&self) -> HeaderName {
        match self {
            Header::ClientCert => CLIENT_CERT,
            Header::EscapedPem(name) => name.clone(),
            Header::Xfcc => X_FORWARDED_CLIENT_CERT,
        }
    }
}

impl ForwardedClientCertLayer {
    /// A builder for a layer that reads the RFC 9440 `Client-Cert` header.
    ///
    /// ```
    /// use tower_token_binding::server::forwarded::ForwardedClientCertLayer;
    ///
    /// let layer = ForwardedClientCertLayer::client_cert()
    ///     .trusted_proxy("10.0.0.0/8".parse().unwrap())
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn client_cert() -> ForwardedClientCertBuilder {
        ForwardedClientCertBuilder::new(Header::ClientCert)
    }

    /// A builder for a layer that reads a URL-escaped PEM (the client's
    /// certificate, or its chain with the leaf first) from the header
    /// `name`, which has no default: each proxy names its own. The presets
    /// [`NGINX`](super::NGINX), [`INGRESS_NGINX`](super::INGRESS_NGINX),
    /// [`AWS_ALB_LEAF`](super::AWS_ALB_LEAF),
    /// [`AWS_ALB_CHAIN`](super::AWS_ALB_CHAIN) and
    /// [`TRAEFIK`](super::TRAEFIK) name each product's (each documented with
    /// the proxy configuration that sets it); any other name works the
    /// same. See [`parse_escaped_pem`](super::parse_escaped_pem) for what is
    /// accepted; an empty value is no certificate.
    ///
    /// ```
    /// use tower_token_binding::server::forwarded::{self, ForwardedClientCertLayer};
    ///
    /// let layer = ForwardedClientCertLayer::escaped_pem(forwarded::NGINX)
    ///     .trusted_proxy("10.0.0.0/8".parse().unwrap())
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.header_name(), "x-ssl-client-cert");
    /// ```
    pub fn escaped_pem(name: HeaderName) -> ForwardedClientCertBuilder {
        ForwardedClientCertBuilder::new(Header::EscapedPem(name))
    }

    /// A builder for a layer that reads Envoy's `x-forwarded-client-cert`
    /// header.
    ///
    /// ```
    /// use tower_token_binding::server::forwarded::{ForwardedClientCertLayer, XfccElement};
    ///
    /// let layer = ForwardedClientCertLayer::xfcc()
    ///     .trusted_proxy("fd00::/8".parse().unwrap())
    ///     .xfcc_element(XfccElement::Last)
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn xfcc() -> ForwardedClientCertBuilder {
        ForwardedClientCertBuilder::new(Header::Xfcc)
    }

    /// The header this layer reads.
    pub fn header_name(&self) -> HeaderName {
        self.config.header.name()
    }
}

impl<S> Layer<S> for ForwardedClientCertLayer {
    type Service = ForwardedClientCert<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardedClientCert {
            inner,
            config: self.config.clone(),
        }
    }
}

impl fmt::Debug for ForwardedClientCertLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardedClientCertLayer")
            .field("header", &self.config.header.name())
            .field("trusted", &self.config.proxies)
            .field("xfcc_element", &self.config.element)
            .finish()
    }
}

/// Builds a [`ForwardedClientCertLayer`]; made by
/// [`ForwardedClientCertLayer::client_cert`],
/// [`ForwardedClientCertLayer::escaped_pem`] or
/// [`ForwardedClientCertLayer::xfcc`].
///
/// The trusted proxies are required: at least one
/// [`trusted_proxy`](Self::trusted_proxy) network or
/// [`trusted_proxy_certificate`](Self::trusted_proxy_certificate), or else
/// [`trust_any_peer`](Self::trust_any_peer); without them
/// [`build`](Self::build) is an error.
#[derive(Clone)]
pub struct ForwardedClientCertBuilder {
    header: Header,
    proxies: TrustedProxies,
    element: Option<XfccElement>,
}

impl ForwardedClientCertBuilder {
    fn new(header: Header) -> Self {
        Self {
            header,
            proxies: TrustedProxies::default(),
            element: None,
        }
    }

    /// Trusts the peers whose address is in `network` (CIDR, IPv4 or IPv6:
    /// `"10.0.0.0/8".parse()?`; `IpNetwork::from(ip)` for one address).
    /// Adds to earlier calls. A network of every address (`0.0.0.0/0`) is
    /// refused by [`build`](Self::build): that is
    /// [`trust_any_peer`](Self::trust_any_peer).
    ///
    /// The address is the remote address of the TCP connection, read from
    /// the request's [`ConnectionInfo`](crate::server::ConnectionInfo)
    /// extension (set by [`serve`](crate::server::serve())) or, with the
    /// `axum` feature, axum's `ConnectInfo<SocketAddr>` (set by
    /// `axum::serve` with `into_make_service_with_connect_info`). A request
    /// with neither comes from an unknown peer, which no network trusts.
    pub fn trusted_proxy(mut self, network: IpNetwork) -> Self {
        self.proxies.networks.push(network);
        self
    }

    /// Trusts the peers whose address is in any of `networks`; see
    /// [`trusted_proxy`](Self::trusted_proxy).
    pub fn trusted_proxies(mut self, networks: impl IntoIterator<Item = IpNetwork>) -> Self {
        self.proxies.networks.extend(networks);
        self
    }

    /// Trusts the peer that connects over mutual TLS with the certificate of
    /// this thumbprint: the [`PeerCertificate`](crate::server::PeerCertificate)
    /// that [`serve`](crate::server::serve()) puts on its requests. Adds to
    /// earlier calls. With
    /// [`ClientCertMode::any_certificate`](crate::server::ClientCertMode::any_certificate)
    /// the handshake still proves the proxy holds the certificate's key.
    pub fn trusted_proxy_certificate(mut self, thumbprint: Thumbprint) -> Self {
        self.proxies.certificates.push(thumbprint);
        self
    }

    /// **Unsafe**: believes the header from every peer that can reach the
    /// server, with no allow-list. Only for a server that nothing but the
    /// proxy can reach (a Unix socket, a network namespace shared with the
    /// proxy alone): anyone else who reaches it can claim any certificate,
    /// and so use any stolen certificate-bound token. Cannot be combined
    /// with an allow-list.
    pub fn trust_any_peer(mut self) -> Self {
        self.proxies.any = true;
        self
    }

    /// Which element of an `x-forwarded-client-cert` header holds the
    /// client's certificate. Default [`XfccElement::Only`]: exactly one.
    /// Only for [`ForwardedClientCertLayer::xfcc`].
    pub fn xfcc_element(mut self, element: XfccElement) -> Self {
        self.element = Some(element);
        self
    }

    /// Checks the settings and builds the layer: a
    /// [`ConfigError`] names the setting at fault.
    ///
    /// ```
    /// use tower_token_binding::ConfigErrorKind;
    /// use tower_token_binding::server::forwarded::ForwardedClientCertLayer;
    ///
    /// let error = ForwardedClientCertLayer::client_cert().build().unwrap_err();
    /// assert_eq!(error.kind(), ConfigErrorKind::Missing);
    /// assert_eq!(error.setting(), Some("trusted_proxy"));
    /// ```
    pub fn build(self) -> Result<ForwardedClientCertLayer, ConfigError> {
        const BUILDER: &str = "ForwardedClientCertBuilder";
        if self.proxies.is_empty() {
            return Err(ConfigError::missing(
                BUILDER,
                "trusted_proxy",
                "a forwarded client certificate needs trusted proxies: name them with \
                 trusted_proxy or trusted_proxy_certificate (or call trust_any_peer, \
                 which believes anyone who can reach the server)",
            ));
        }
        if self.proxies.any
            && !(self.proxies.networks.is_empty() && self.proxies.certificates.is_empty())
        {
            return Err(ConfigError::conflict(
                BUILDER,
                "trust_any_peer",
                "trust_any_peer cannot be combined with trusted proxies",
            ));
        }
        if self.header != Header::Xfcc && self.element.is_some() {
            return Err(ConfigError::conflict(
                BUILDER,
                "xfcc_element",
                "xfcc_element is for the x-forwarded-client-cert header only",
            ));
        }
        if self.proxies.networks.iter().any(|n| n.prefix_len() == 0) {
            return Err(ConfigError::invalid(
                BUILDER,
                "trusted_proxy",
                "a trusted network of every address (a /0 prefix) believes anyone who can \
                 reach the server: list the proxies' networks, or call trust_any_peer if \
                 that is what you mean",
            ));
        }
        Ok(ForwardedClientCertLayer {
            config: Arc::new(Config {
                header: self.header,
                proxies: self.proxies,
                element: self.element.unwrap_or_default(),
                warnings: WarnLimit::new(),
            }),
        })
    }
}

impl fmt::Debug for ForwardedClientCertBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardedClientCertBuilder")
            .field("header", &self.header.name())
            .field("trusted", &self.proxies)
            .field("xfcc_element", &self.element)
            .finish()
    }
}

/// The error of [`ForwardedClientCertBuilder::build`], now the crate's one
/// [`ConfigError`].
#[deprecated(note = "use tower_token_binding::ConfigError, which every builder returns")]
pub type ForwardedConfigError = ConfigError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_is_required() {
        use crate::ConfigErrorKind as K;
        let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
        let kind = |b: ForwardedClientCertBuilder| {
            let e = b.build().unwrap_err();
            (e.kind(), e.setting().unwrap())
        };
        assert_eq!(
            kind(ForwardedClientCertLayer::client_cert()),
            (K::Missing, "trusted_proxy")
        );
        assert_eq!(
            kind(ForwardedClientCertLayer::xfcc()),
            (K::Missing, "trusted_proxy")
        );
        assert_eq!(
            kind(ForwardedClientCertLayer::xfcc().trusted_proxies(Vec::<IpNetwork>::new())),
            (K::Missing, "trusted_proxy")
        );
        assert_eq!(
            kind(
                ForwardedClientCertLayer::xfcc()
                    .trust_any_peer()
                    .trusted_proxy(net)
            ),
            (K::Conflict, "trust_any_peer")
        );
        assert_eq!(
            kind(
                ForwardedClientCertLayer::client_cert()
                    .trusted_proxy(net)
                    .xfcc_element(XfccElement::Last)
            ),
            (K::Conflict, "xfcc_element")
        );
        assert_eq!(
            kind(ForwardedClientCertLayer::xfcc().trusted_proxy("0.0.0.0/0".parse().unwrap())),
            (K::Invalid, "trusted_proxy")
        );
        let error = ForwardedClientCertLayer::client_cert().build().unwrap_err();
        assert!(error.to_string().contains("trusted_proxy"), "{error}");

        let layer = ForwardedClientCertLayer::xfcc()
            .trusted_proxy(net)
            .trusted_proxy_certificate(Thumbprint::from_der(b"proxy"))
            .build()
            .unwrap();
        assert_eq!(layer.header_name(), X_FORWARDED_CLIENT_CERT);
        assert_eq!(layer.config.element, XfccElement::Only);
        let debug = format!("{layer:?}");
        assert!(debug.contains("10.0.0.0/8"), "{debug}");
        let layer = ForwardedClientCertLayer::client_cert()
            .trust_any_peer()
            .build()
            .unwrap();
        assert_eq!(layer.header_name(), CLIENT_CERT);
    }
}
