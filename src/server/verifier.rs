use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::tls;

/// A rustls client-certificate verifier that accepts any well-formed client
/// certificate, CA-issued or self-signed, and still verifies the handshake
/// signature (TLS `CertificateVerify`), so the client must hold the
/// certificate's private key.
///
/// No chain, validity period or name is checked: use it where the certificate
/// is only a key the token is bound to (RFC 8705 section 2.2,
/// `self_signed_tls_client_auth`), and where the application checks the
/// binding of every token against the certificate. Where clients have
/// CA-issued certificates, rustls' `WebPkiClientVerifier` is the stricter
/// choice.
///
/// ```
/// use std::sync::Arc;
/// use tower_token_binding::server::AnyClientCertVerifier;
///
/// let verifier = Arc::new(AnyClientCertVerifier::optional());
/// let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
///     rustls::crypto::aws_lc_rs::default_provider(),
/// ))
/// .with_safe_default_protocol_versions()
/// .unwrap()
/// .with_client_cert_verifier(verifier);
/// # let _ = builder;
/// ```
#[derive(Debug, Clone)]
pub struct AnyClientCertVerifier {
    provider: Arc<CryptoProvider>,
    mandatory: bool,
}

impl AnyClientCertVerifier {
    /// Asks every client for a certificate and lets those without one connect.
    ///
    /// Requests on such connections have no peer certificate, so bound tokens
    /// sent on them get a proper `401` instead of a failed handshake.
    pub fn optional() -> Self {
        Self {
            provider: tls::provider(),
            mandatory: false,
        }
    }

    /// Refuses the handshake of a client that presents no certificate.
    pub fn required() -> Self {
        Self {
            provider: tls::provider(),
            mandatory: true,
        }
    }
}

impl ClientCertVerifier for AnyClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Refuse what is not an X.509 certificate at all; trust nothing else.
        ParsedCertificate::try_from(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    // The handshake-signature checks run over real handshakes in
    // `tests/server/any_client_cert.rs`: rustls offers no public way to build a
    // `DigitallySignedStruct` by hand.
    use super::*;
    use rustls_pki_types::pem::PemObject;

    const CERT: &[u8] = include_bytes!("../../tests/data/client.pem");

    #[test]
    fn garbage_is_not_a_certificate() {
        let verifier = AnyClientCertVerifier::optional();
        let garbage = CertificateDer::from(b"not a certificate".to_vec());
        assert!(
            verifier
                .verify_client_cert(&garbage, &[], UnixTime::now())
                .is_err()
        );
        let cert = CertificateDer::from_pem_slice(CERT).unwrap();
        assert!(
            verifier
                .verify_client_cert(&cert, &[], UnixTime::now())
                .is_ok()
        );
    }

    #[test]
    fn optional_and_required() {
        assert!(AnyClientCertVerifier::optional().offer_client_auth());
        assert!(!AnyClientCertVerifier::optional().client_auth_mandatory());
        assert!(AnyClientCertVerifier::required().client_auth_mandatory());
        assert!(
            !AnyClientCertVerifier::optional()
                .supported_verify_schemes()
                .is_empty()
        );
    }
}
