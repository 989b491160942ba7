//! [`PeerCertificate`]: the client certificate a request came with, below
//! both the serving (`server`) and the checking (`validation`) of it.

use std::fmt;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use crate::Thumbprint;

/// The client certificate of the connection a request came on: the leaf
/// certificate's DER and its [`Thumbprint`].
///
/// The server plumbing computes it once per connection and puts a clone (a
/// reference count) into the extensions of every request on that connection.
/// A request on a connection without a client certificate has no
/// `PeerCertificate` extension.
///
/// Behind a TLS-terminating proxy the certificate may be known by its
/// thumbprint only: Envoy's `x-forwarded-client-cert` header can carry just
/// the certificate's SHA-256 digest (`Hash=`), not the certificate. Such a
/// `PeerCertificate` is made with [`from_thumbprint`](Self::from_thumbprint)
/// and its [`certificate`](Self::certificate) is `None`. The binding check
/// of [`CnfValidationLayer`](crate::CnfValidationLayer) reads the
/// [`thumbprint`](Self::thumbprint) only, so it works the same for both.
///
/// ```
/// use tower_token_binding::server::PeerCertificate;
/// # let der = rustls_pki_types::CertificateDer::from(b"DER bytes".to_vec());
///
/// let peer = PeerCertificate::new(der);
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(peer.clone());
///
/// let seen = request.extensions().get::<PeerCertificate>().unwrap();
/// assert_eq!(seen.thumbprint(), peer.thumbprint());
/// assert!(seen.certificate().is_some());
/// ```
#[derive(Clone)]
pub struct PeerCertificate {
    inner: Arc<Inner>,
}

struct Inner {
    leaf: Option<CertificateDer<'static>>,
    thumbprint: Thumbprint,
}

impl PeerCertificate {
    /// Wraps the leaf certificate a client presented, computing its thumbprint.
    pub fn new(leaf: CertificateDer<'static>) -> Self {
        let thumbprint = Thumbprint::from_certificate(&leaf);
        Self {
            inner: Arc::new(Inner {
                leaf: Some(leaf),
                thumbprint,
            }),
        }
    }

    /// A certificate known only by its thumbprint, such as the `Hash` of an
    /// Envoy `x-forwarded-client-cert` element: the binding check works
    /// with it, and [`certificate`](Self::certificate) is `None`.
    ///
    /// ```
    /// use tower_token_binding::Thumbprint;
    /// use tower_token_binding::server::PeerCertificate;
    ///
    /// let thumbprint = Thumbprint::from_der(b"DER bytes");
    /// let peer = PeerCertificate::from_thumbprint(thumbprint);
    /// assert_eq!(peer.thumbprint(), thumbprint);
    /// assert!(peer.certificate().is_none());
    /// ```
    pub fn from_thumbprint(thumbprint: Thumbprint) -> Self {
        Self {
            inner: Arc::new(Inner {
                leaf: None,
                thumbprint,
            }),
        }
    }

    /// The leaf certificate, DER; `None` when only its thumbprint is known
    /// (see [`from_thumbprint`](Self::from_thumbprint)). Always `Some` for
    /// the certificates of TLS connections.
    pub fn certificate(&self) -> Option<&CertificateDer<'static>> {
        self.inner.leaf.as_ref()
    }

    /// The leaf certificate's RFC 8705 `x5t#S256` thumbprint.
    pub fn thumbprint(&self) -> Thumbprint {
        self.inner.thumbprint
    }
}

impl fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerCertificate")
            .field("thumbprint", &self.inner.thumbprint)
            .field("certificate", &self.inner.leaf.is_some())
            .finish()
    }
}
