use std::fmt;

use crate::BoxError;

/// The error of [`MtlsClientPool`](super::MtlsClientPool): the request could
/// not be sent, or no answer came. With the `reqwest` feature, also what
/// `MtlsReqwestPool::client` answers when it cannot build a certificate's
/// client ([`is_config`](Self::is_config)); the requests themselves fail
/// with reqwest's errors there.
///
/// Predicates in the manner of hyper-util: [`is_connect`](Self::is_connect),
/// [`is_tls`](Self::is_tls), [`is_timeout`](Self::is_timeout),
/// [`is_no_identity`](Self::is_no_identity), [`is_config`](Self::is_config).
/// The source chain holds hyper-util's, rustls' or std's error.
pub struct PoolError {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The request carries no identity and the pool refuses such requests.
    NoIdentity,
    /// A request with an identity to a URI that is not `https`.
    NotHttps,
    /// No response head within the response timeout.
    Timeout,
    /// A TLS configuration could not be built for an identity.
    Config,
    /// Sending the request or reading the response head failed.
    Request,
}

impl PoolError {
    pub(crate) fn new(kind: Kind, source: Option<BoxError>) -> Self {
        Self { kind, source }
    }

    /// A client could not be built with this configuration.
    #[cfg(feature = "reqwest")]
    pub(crate) fn config(source: impl Into<BoxError>) -> Self {
        Self::new(Kind::Config, Some(source.into()))
    }

    /// Every error in the source chain, including the errors that
    /// `io::Error`s wrap (`io::Error::source` skips those).
    fn chain(&self) -> Vec<&(dyn std::error::Error + 'static)> {
        let mut all = Vec::new();
        let mut next = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = next {
            all.push(e);
            let mut inner = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref());
            while let Some(wrapped) = inner {
                let wrapped = wrapped as &(dyn std::error::Error + 'static);
                all.push(wrapped);
                inner = wrapped
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref());
            }
            next = e.source();
        }
        all
    }

    /// The connection could not be made (refused, unreachable, DNS, TLS
    /// handshake).
    pub fn is_connect(&self) -> bool {
        self.chain().into_iter().any(|e| {
            e.downcast_ref::<hyper_util::client::legacy::Error>()
                .is_some_and(|e| e.is_connect())
        })
    }

    /// The TLS handshake failed (the server's certificate was not trusted, or
    /// the server refused ours).
    pub fn is_tls(&self) -> bool {
        self.chain().into_iter().any(|e| e.is::<rustls::Error>())
    }

    /// Connecting took longer than the connect timeout, or the response
    /// head longer than the [response timeout](super::PoolBuilder::response_timeout).
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
            || self.chain().into_iter().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            })
    }

    /// The request carried no [`ClientIdentity`](crate::ClientIdentity) and
    /// the pool was built to refuse such requests.
    pub fn is_no_identity(&self) -> bool {
        self.kind == Kind::NoIdentity
    }

    /// A request with an identity was for a URI that is not `https`, or a
    /// TLS configuration could not be built.
    pub fn is_config(&self) -> bool {
        matches!(self.kind, Kind::Config | Kind::NotHttps)
    }
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::NoIdentity => {
                "the request carries no client identity, and this pool sends none without"
            }
            Kind::NotHttps => "a request with a client identity must use https",
            Kind::Config => "cannot build a client with this configuration",
            Kind::Request => "the request failed",
            Kind::Timeout => "no response within the pool's response timeout",
        })?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
            // hyper-util's errors keep the cause one level down.
            if let Some(cause) = source.source() {
                write!(f, ": {cause}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PoolError");
        d.field("kind", &self.kind);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
