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
/// ```
#[derive(Clone)]
pub struct PeerCertificate {
    inner: Arc<Inner>,
}

struct Inner {
    leaf: CertificateDer<'static>,
    thumbprint: Thumbprint,
}

impl PeerCertificate {
    /// Wraps the leaf certificate a client presented, computing its thumbprint.
    pub fn new(leaf: CertificateDer<'static>) -> Self {
        let thumbprint = Thumbprint::from_certificate(&leaf);
        Self {
            inner: Arc::new(Inner { leaf, thumbprint }),
        }
    }

    /// The leaf certificate, DER.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.inner.leaf
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
            .finish_non_exhaustive()
    }
}
