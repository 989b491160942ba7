//! `AnyClientCertVerifier` over real TLS handshakes on loopback: any
//! certificate is accepted, but only from a client that holds its key.
#![cfg(feature = "test-util")]

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tower_token_binding::Thumbprint;
use tower_token_binding::server::AnyClientCertVerifier;
use tower_token_binding::test_util::TestPki;

/// Runs one handshake and a one-byte exchange; returns the thumbprint of the
/// certificate the server saw, or the server's handshake error.
async fn handshake(
    pki: &TestPki,
    verifier: AnyClientCertVerifier,
    client: ClientConfig,
) -> Result<Option<Thumbprint>, String> {
    let server = pki.server_config(Arc::new(verifier)).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let seen = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(Thumbprint::from_certificate);
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.map_err(|e| e.to_string())?;
        tls.write_all(&byte).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.ok();
        Ok(seen)
    });
    let connector = TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    // With TLS 1.3 the client may think it is done before the server has
    // checked its certificate: the exchange below makes the outcome visible.
    if let Ok(mut tls) = connector.connect(name, tcp).await {
        if tls.write_all(b"x").await.is_ok() {
            let mut byte = [0u8; 1];
            let _ = tls.read_exact(&mut byte).await;
        }
    }
    server.await.unwrap()
}

#[tokio::test]
async fn self_signed_and_ca_issued_certificates_are_accepted() {
    let pki = TestPki::new().unwrap();
    let other_pki = TestPki::new().unwrap();
    for cert in [
        TestPki::self_signed_client("self.example").unwrap(),
        pki.client_cert("ca.example").unwrap(),
        // Issued by a CA nobody here trusts: still just a key.
        other_pki.client_cert("elsewhere.example").unwrap(),
    ] {
        let identity = cert.identity().unwrap();
        let client = pki.client_config(Some(&identity)).unwrap();
        let seen = handshake(&pki, AnyClientCertVerifier::required(), client).await;
        assert_eq!(seen, Ok(Some(cert.thumbprint())));
    }
}

/// Presents one certificate and signs with another key: a client that copied
/// somebody's certificate but does not hold its key.
#[derive(Debug)]
struct Impostor(Arc<CertifiedKey>);

impl ResolvesClientCert for Impostor {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused() {
    let pki = TestPki::new().unwrap();
    let victim = pki.client_cert("victim.example").unwrap();
    let thief = pki
        .client_cert("thief.example")
        .unwrap()
        .identity()
        .unwrap();
    let stolen = CertifiedKey::new(
        vec![victim.cert().clone()],
        thief.certified_key().key.clone(),
    );

    for tls13 in [true, false] {
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13 {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS12]
        };
        let client = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(pki.root_store())
        .with_client_cert_resolver(Arc::new(Impostor(Arc::new(stolen.clone()))));
        let outcome = handshake(&pki, AnyClientCertVerifier::optional(), client).await;
        let err = outcome.expect_err("the impostor's handshake must fail");
        assert!(
            err.to_lowercase().contains("signature"),
            "TLS 1.{}: {err}",
            if tls13 { 3 } else { 2 }
        );
    }
}

#[tokio::test]
async fn optional_lets_a_client_without_certificate_in_and_required_does_not() {
    let pki = TestPki::new().unwrap();
    let anonymous = || pki.client_config(None).unwrap();
    assert_eq!(
        handshake(&pki, AnyClientCertVerifier::optional(), anonymous()).await,
        Ok(None)
    );
    assert!(
        handshake(&pki, AnyClientCertVerifier::required(), anonymous())
            .await
            .is_err()
    );
}
