//! The trusted-proxy allow-list: which peers may forward a client
//! certificate in a header.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use http::Extensions;

use crate::Thumbprint;
use crate::server::{ConnectionInfo, PeerCertificate};

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), or a
/// single address (`192.0.2.7`, the same as `192.0.2.7/32`).
///
/// Parsing is strict: the prefix length must fit the address family and
/// the address must have no bits set past the prefix (`10.1.0.0/8` is
/// refused: write `10.0.0.0/8`, or `10.1.0.0/16`).
///
/// An IPv4 network also contains the IPv4-mapped IPv6 form of its
/// addresses (`::ffff:10.0.0.1`), as a dual-stack listener reports them.
///
/// ```
/// use tower_token_binding::server::forwarded::IpNetwork;
///
/// let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.20.30.40".parse().unwrap()));
/// assert!(net.contains("::ffff:10.0.0.1".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert!("10.1.0.0/8".parse::<IpNetwork>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// The network of `addr` with a prefix of `prefix` bits; an error when
    /// the prefix is longer than the address or `addr` has host bits set.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, ParseIpNetworkError> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix > max {
            return Err(ParseIpNetworkError("the prefix length is too long"));
        }
        let network = Self { addr, prefix };
        if network.mask_host(addr) != addr {
            return Err(ParseIpNetworkError(
                "the address has bits set past the prefix length",
            ));
        }
        Ok(network)
    }

    /// The network's first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the network (IPv4-mapped IPv6 addresses included
    /// in IPv4 networks).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exactly(ip) || self.contains_exactly(ip.to_canonical())
    }

    fn contains_exactly(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                self.mask_host(ip) == self.addr
            }
            _ => false,
        }
    }

    /// `ip` with the bits past the prefix cleared.
    fn mask_host(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

impl From<IpAddr> for IpNetwork {
    /// The network of exactly this address (`/32` or `/128`).
    fn from(addr: IpAddr) -> Self {
        let prefix = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        Self { addr, prefix }
    }
}

impl FromStr for IpNetwork {
    type Err = ParseIpNetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((addr, prefix)) = s.split_once('/') else {
            return s
                .parse::<IpAddr>()
                .map(Self::from)
                .map_err(|_| ParseIpNetworkError("not an IP address"));
        };
        let addr = addr
            .parse::<IpAddr>()
            .map_err(|_| ParseIpNetworkError("not an IP address before the '/'"))?;
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseIpNetworkError("the prefix length is not a number"));
        }
        let prefix = prefix
            .parse::<u8>()
            .map_err(|_| ParseIpNetworkError("the prefix length is too long"))?;
        Self::new(addr, prefix)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Debug for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not an [`IpNetwork`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIpNetworkError(&'static str);

impl fmt::Display for ParseIpNetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid IP network: {}", self.0)
    }
}

impl std::error::Error for ParseIpNetworkError {}

/// The peers whose forwarded-certificate headers are believed.
#[derive(Clone, Default)]
pub(super) struct TrustedProxies {
    pub(super) networks: Vec<IpNetwork>,
    pub(super) certificates: Vec<Thumbprint>,
    pub(super) any: bool,
}

/// Who sent a request, as far as the connection tells.
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer {
    pub(super) addr: Option<SocketAddr>,
    pub(super) trusted: bool,
}

impl TrustedProxies {
    pub(super) fn is_empty(&self) -> bool {
        !self.any && self.networks.is_empty() && self.certificates.is_empty()
    }

    /// Whether the peer of the connection `extensions` came on is trusted:
    /// its address (from [`ConnectionInfo`], else axum's
    /// `ConnectInfo<SocketAddr>`) in a listed network, or its TLS client
    /// certificate (the [`PeerCertificate`] extension) listed.
    pub(super) fn check(&self, extensions: &Extensions) -> Peer {
        let addr = remote_addr(extensions);
        let trusted = self.any
            || addr.is_some_and(|addr| self.networks.iter().any(|n| n.contains(addr.ip())))
            || extensions.get::<PeerCertificate>().is_some_and(|peer| {
                let thumbprint = peer.thumbprint();
                self.certificates.iter().any(|t| t.matches(&thumbprint))
            });
        Peer { addr, trusted }
    }
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any {
            return f.write_str("AnyPeer");
        }
        f.debug_struct("TrustedProxies")
            .field("networks", &self.networks)
            .field("certificates", &self.certificates)
            .finish()
    }
}

fn remote_addr(extensions: &Extensions) -> Option<SocketAddr> {
    if let Some(info) = extensions.get::<ConnectionInfo>() {
        return Some(info.remote_addr());
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses() {
        let cases = [
            ("10.0.0.0/8", "10.255.255.255", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "::10.1.2.3", false),
            ("192.0.2.7", "192.0.2.7", true),
            ("192.0.2.7", "192.0.2.8", false),
            ("192.0.2.7/32", "192.0.2.7", true),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::/0", "2001:db8::1", true),
            ("::/0", "10.0.0.1", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::1", "::1", true),
            ("::1/128", "::2", false),
            ("127.0.0.0/8", "127.0.0.1", true),
            ("fe80::/10", "febf::1", true),
            ("fe80::/10", "fec0::1", false),
        ];
        for (network, addr, inside) in cases {
            assert_eq!(net(network).contains(ip(addr)), inside, "{network} {addr}");
        }
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("::1").to_string(), "::1/128");
        assert_eq!(IpNetwork::from(ip("192.0.2.1")), net("192.0.2.1/32"));
    }

    #[test]
    fn malformed_networks_are_refused() {
        for s in [
            "",
            "/",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/ 8",
            " 10.0.0.0/8",
            "10.0.0.0/0008",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "10.1.0.0/8",
            "2001:db8::1/32",
            "10.0.0.0/256",
            "localhost",
            "10.0.0.0/8,11.0.0.0/8",
        ] {
            assert!(s.parse::<IpNetwork>().is_err(), "{s:?}");
        }
        assert!(IpNetwork::new(ip("10.0.0.0"), 33).is_err());
        assert!(IpNetwork::new(ip("10.0.0.1"), 31).is_err());
        assert!(IpNetwork::new(ip("10.0.0.0"), 0).is_err());
        assert!(IpNetwork::new(ip("0.0.0.0"), 0).is_ok());
    }

    #[test]
    fn the_peer_is_found_in_the_extensions() {
        let proxies = TrustedProxies {
            networks: vec![net("10.0.0.0/8")],
            certificates: vec![Thumbprint::from_der(b"proxy")],
            any: false,
        };
        let mut ext = Extensions::new();
        assert!(!proxies.check(&ext).trusted, "no address: not trusted");
        #[cfg(feature = "axum")]
        {
            let addr: SocketAddr = "10.0.0.1:1234".parse().unwrap();
            ext.insert(axum::extract::ConnectInfo(addr));
            assert!(proxies.check(&ext).trusted);
            ext = Extensions::new();
        }
        ext.insert(PeerCertificate::from_thumbprint(Thumbprint::from_der(
            b"proxy",
        )));
        assert!(proxies.check(&ext).trusted);
        ext.insert(PeerCertificate::from_thumbprint(Thumbprint::from_der(
            b"other",
        )));
        assert!(!proxies.check(&ext).trusted);
        assert!(
            TrustedProxies {
                any: true,
                ..TrustedProxies::default()
            }
            .check(&Extensions::new())
            .trusted
        );
    }
}
