use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::Error;
use crate::{ClientIdentity, Thumbprint, tls};

/// A throwaway certificate authority, generated at run time.
///
/// It issues server certificates for `localhost`, `127.0.0.1` and `::1`, and
/// client certificates; [`TestPki::self_signed_client`] makes client
/// certificates no CA vouches for (RFC 8705 `self_signed_tls_client_auth`).
/// All keys are ECDSA P-256. Clones share the CA.
#[derive(Clone)]
pub struct TestPki {
    ca: Arc<CertifiedIssuer<'static, KeyPair>>,
}

impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki")
            .field("ca", &Thumbprint::from_certificate(self.ca.der()))
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// Generates a new CA.
    pub fn new() -> Result<Self, Error> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "tower-token-binding test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        let ca = CertifiedIssuer::self_signed(params, new_key()?)
            .map_err(|e| Error::new("cannot make the test CA", e))?;
        Ok(Self { ca: Arc::new(ca) })
    }

    /// The CA certificate.
    pub fn ca_cert(&self) -> &CertificateDer<'static> {
        self.ca.der()
    }

    /// The CA certificate as PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A root store that trusts this CA only.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        // A certificate rcgen just made always parses.
        let _ = roots.add(self.ca.der().clone());
        roots
    }

    /// A server certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn server_cert(&self) -> Result<TestCert, Error> {
        let mut params = leaf_params("localhost", &["localhost", "127.0.0.1", "::1"])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, new_key()?)
    }

    /// A new [server certificate](Self::server_cert)'s chain (leaf, then
    /// this CA) and private key, in memory: for
    /// [`ResourceServerBuilder::tls_identity`](crate::server::ResourceServerBuilder::tls_identity)
    /// or [`ServerTlsConfig::build`](crate::server::ServerTlsConfig::build),
    /// with no files.
    ///
    /// ```
    /// use tower_token_binding::test_util::TestPki;
    ///
    /// # fn main() -> Result<(), tower_token_binding::test_util::Error> {
    /// let pki = TestPki::new()?;
    /// let (chain, key) = pki.server_identity()?;
    /// assert_eq!(chain.len(), 2);
    /// assert_eq!(&chain[1], pki.ca_cert());
    /// # let _ = key;
    /// # Ok(())
    /// # }
    /// ```
    pub fn server_identity(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
        let cert = self.server_cert()?;
        Ok((cert.chain(), cert.private_key()))
    }

    /// A client certificate issued by this CA, with common name and DNS
    /// subject alternative name `name` (for RFC 8705 `tls_client_auth_san_dns`).
    pub fn client_cert(&self, name: &str) -> Result<TestCert, Error> {
        let mut params = leaf_params(name, &[name])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, new_key()?)
    }

    /// A client certificate as [`client_cert`](Self::client_cert) makes,
    /// valid from `not_before` to `not_after` (to the second): to test
    /// certificates that have expired, are not valid yet, or expire soon.
    pub fn client_cert_valid(
        &self,
        name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<TestCert, Error> {
        let mut params = leaf_params(name, &[name])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + seconds_since_1970(not_before)?;
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + seconds_since_1970(not_after)?;
        self.issue(params, new_key()?)
    }

    /// A self-signed client certificate with common name and DNS subject
    /// alternative name `name`.
    pub fn self_signed_client(name: &str) -> Result<TestCert, Error> {
        let mut params = leaf_params(name, &[name])?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = new_key()?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| Error::new("cannot make a self-signed certificate", e))?;
        Ok(TestCert::new(&cert, &key, params, None))
    }

    /// The same certificate issued again: same names, same key, a new serial
    /// number, so different DER and a different [`Thumbprint`]. A self-signed
    /// certificate is re-signed by itself; a CA-issued one by this CA.
    pub fn reissue(&self, cert: &TestCert) -> Result<TestCert, Error> {
        let key = KeyPair::from_pem(&cert.key_pem)
            .map_err(|e| Error::new("cannot read the certificate's key", e))?;
        let mut params = cert.params.clone();
        params.serial_number = Some(random_serial()?);
        if cert.issuer.is_some() {
            self.issue(params, key)
        } else {
            let cert = params
                .self_signed(&key)
                .map_err(|e| Error::new("cannot re-sign the certificate", e))?;
            Ok(TestCert::new(&cert, &key, params, None))
        }
    }

    /// A rustls server config with a fresh server certificate from this CA,
    /// client certificates checked by `client_verifier`, and ALPN `h2` and
    /// `http/1.1`.
    pub fn server_config(
        &self,
        client_verifier: Arc<dyn ClientCertVerifier>,
    ) -> Result<ServerConfig, Error> {
        let server = self.server_cert()?;
        let mut config = ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::new("cannot build a server config", e))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(server.chain(), server.private_key())
            .map_err(|e| Error::new("cannot build a server config", e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// A rustls client config that trusts this CA and presents `identity`,
    /// if any.
    pub fn client_config(&self, identity: Option<&ClientIdentity>) -> Result<ClientConfig, Error> {
        let roots = Arc::new(self.root_store());
        match identity {
            Some(identity) => Ok(identity.client_config(roots)?),
            None => Ok(ClientConfig::builder_with_provider(tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::new("cannot build a client config", e))?
                .with_root_certificates(roots)
                .with_no_client_auth()),
        }
    }

    /// A client certificate for `public_key` (whose private half the
    /// holder keeps), with common name `name`, valid from `not_before` to
    /// `not_after` (to the second): for a CA that signs requests, such as
    /// the IMDS emulator.
    #[cfg(feature = "managed-identity")]
    pub(crate) fn client_cert_for_key(
        &self,
        name: &str,
        public_key: &impl rcgen::PublicKeyData,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<CertificateDer<'static>, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + seconds_since_1970(not_before)?;
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + seconds_since_1970(not_after)?;
        let cert = params
            .signed_by(public_key, &*self.ca)
            .map_err(|e| Error::new("cannot issue a certificate", e))?;
        Ok(cert.der().clone())
    }

    fn issue(&self, params: CertificateParams, key: KeyPair) -> Result<TestCert, Error> {
        let cert = params
            .signed_by(&key, &*self.ca)
            .map_err(|e| Error::new("cannot issue a certificate", e))?;
        Ok(TestCert::new(
            &cert,
            &key,
            params,
            Some(self.ca.der().clone()),
        ))
    }
}

/// The identity of `svc.example` from a fresh [`TestPki`], for the crate's
/// unit tests.
#[cfg(test)]
pub(crate) fn svc_identity() -> ClientIdentity {
    TestPki::new()
        .unwrap()
        .client_cert("svc.example")
        .unwrap()
        .identity()
        .unwrap()
}

fn new_key() -> Result<KeyPair, Error> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| Error::new("cannot generate a key", e))
}

/// `time` since 1970, in whole seconds: the precision of certificate dates.
fn seconds_since_1970(time: SystemTime) -> Result<std::time::Duration, Error> {
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .map_err(|e| Error::new("a certificate date before 1970", e))?;
    Ok(std::time::Duration::from_secs(since_epoch.as_secs()))
}

fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = [0u8; 16];
    tls::provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|e| Error::new("no randomness", format!("{e:?}")))?;
    // A positive DER integer.
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn leaf_params(common_name: &str, names: &[&str]) -> Result<CertificateParams, Error> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names)
        .map_err(|e| Error::new(format!("{common_name:?} is not a valid name"), e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// A certificate made by [`TestPki`], with its private key.
///
/// `Debug` shows the thumbprint, never the key.
#[derive(Clone)]
pub struct TestCert {
    der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
    key_der: Vec<u8>,
    issuer: Option<CertificateDer<'static>>,
    params: CertificateParams,
}

impl fmt::Debug for TestCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCert")
            .field("thumbprint", &self.thumbprint())
            .field("self_signed", &self.issuer.is_none())
            .finish_non_exhaustive()
    }
}

impl TestCert {
    fn new(
        cert: &rcgen::Certificate,
        key: &KeyPair,
        params: CertificateParams,
        issuer: Option<CertificateDer<'static>>,
    ) -> Self {
        Self {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            issuer,
            params,
        }
    }

    /// The certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate followed by its issuer's (none for a self-signed one).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        std::iter::once(self.der.clone())
            .chain(self.issuer.clone())
            .collect()
    }

    /// The private key as PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The private key as PKCS#8 DER.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// The certificate's RFC 8705 thumbprint.
    pub fn thumbprint(&self) -> Thumbprint {
        Thumbprint::from_certificate(&self.der)
    }

    /// The certificate and key as a [`ClientIdentity`].
    pub fn identity(&self) -> Result<ClientIdentity, crate::IdentityError> {
        ClientIdentity::from_der(vec![self.der.clone()], self.private_key())
    }

    /// Writes `NAME.pem` (the certificate) and `NAME.key` (the key) into `dir`
    /// and returns their paths.
    pub fn write_pem_files(
        &self,
        dir: impl AsRef<Path>,
        name: &str,
    ) -> std::io::Result<(PathBuf, PathBuf)> {
        let cert_path = dir.as_ref().join(format!("{name}.pem"));
        let key_path = dir.as_ref().join(format!("{name}.key"));
        std::fs::write(&cert_path, &self.cert_pem)?;
        std::fs::write(&key_path, &self.key_pem)?;
        Ok((cert_path, key_path))
    }
}
