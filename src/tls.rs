//! TLS plumbing shared by both halves: the one crypto provider.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// The crate's crypto provider: aws-lc-rs, passed explicitly to every rustls
/// config the crate builds. The process-wide rustls default is never read or
/// installed.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The platform's root certificates (rustls-native-certs); `None` when it
/// has none that parse.
#[cfg(any(feature = "client", feature = "server"))]
pub(crate) fn platform_roots() -> Option<rustls::RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    (!roots.is_empty()).then_some(roots)
}
