//! Reading PEM: certificate chains, private keys and trust anchors, from
//! files or bytes, with errors that name the file they are about.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{IdentityError, IdentityErrorKind};

/// Reads trust anchors from a PEM file (every `CERTIFICATE` section) into a
/// rustls root store: to trust a private CA, for the TLS client or the JWKS
/// fetcher.
///
/// ```no_run
/// let roots = tower_token_binding::identity::root_store_from_pem_file("ca.pem")?;
/// # Ok::<(), tower_token_binding::IdentityError>(())
/// ```
pub fn root_store_from_pem_file(path: impl AsRef<Path>) -> Result<RootCertStore, IdentityError> {
    let path = path.as_ref();
    let certificates = certificates_from_pem(&read(path)?).map_err(|e| e.at(path))?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate).map_err(|e| {
            IdentityError::new(IdentityErrorKind::InvalidCertificate)
                .with_source(e)
                .at(path)
        })?;
    }
    Ok(roots)
}

/// Reads a certificate chain (leaf first) and its private key from PEM
/// files; errors name the file they are about. Shared with the server's TLS
/// configuration.
#[cfg(feature = "server")]
pub(crate) fn read_pem_files(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), IdentityError> {
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let chain = certificates_from_pem(&cert_pem).map_err(|e| e.at(cert_path))?;
    let key = key_from_pem(&key_pem).map_err(|e| e.at(key_path))?;
    Ok((chain, key))
}

pub(super) fn read(path: &Path) -> Result<Vec<u8>, IdentityError> {
    std::fs::read(path).map_err(|e| {
        IdentityError::new(IdentityErrorKind::Io)
            .with_source(e)
            .at(path)
    })
}

pub(super) fn certificates_from_pem(
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if chain.is_empty() {
        return Err(IdentityError::new(IdentityErrorKind::NoCertificate));
    }
    Ok(chain)
}

pub(super) fn key_from_pem(pem: &[u8]) -> Result<PrivateKeyDer<'static>, IdentityError> {
    let mut keys = PrivateKeyDer::pem_slice_iter(pem);
    let key = match keys.next() {
        Some(key) => key.map_err(pem_error)?,
        None if contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----") => {
            return Err(IdentityError::new(IdentityErrorKind::EncryptedKey));
        }
        None => return Err(IdentityError::new(IdentityErrorKind::NoPrivateKey)),
    };
    if keys.next().is_some() {
        return Err(IdentityError::new(IdentityErrorKind::MultipleKeys));
    }
    Ok(key)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn pem_error(e: pem::Error) -> IdentityError {
    IdentityError::new(IdentityErrorKind::MalformedPem).with_source(e)
}
