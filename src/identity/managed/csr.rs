//! The credential key (RSA-2048, made in memory) and the PKCS#10
//! certificate signing request IMDS v2 issues a certificate for: subject
//! `CN=<clientId>, DC=<tenantId>`, the `cuId` JSON in a request attribute,
//! signed with RSA-PSS and SHA-256.
//!
//! The structures and their DER come from the `x509-cert` and `pkcs1`
//! crates; the key and the signature from aws-lc-rs. (rcgen, the crate's
//! certificate maker for tests, cannot sign with RSA-PSS.)

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RSA_PSS_SHA256, RsaKeyPair};
use pkcs1::{RsaPssParams, TrailerField};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_cert::attr::{Attribute, AttributeTypeAndValue};
use x509_cert::der::asn1::{
    Any, AnyRef, BitString, Ia5StringRef, ObjectIdentifier, SetOfVec, Utf8StringRef,
};
use x509_cert::der::{Decode, Encode};
use x509_cert::name::{RdnSequence, RelativeDistinguishedName};
use x509_cert::request::{CertReq, CertReqInfo, Version};
use x509_cert::spki::{
    AlgorithmIdentifier, AlgorithmIdentifierOwned, AlgorithmIdentifierRef,
    SubjectPublicKeyInfoOwned,
};

use super::error::{ManagedIdentityError, ManagedIdentityErrorKind as Kind};

/// The request attribute that carries the compute unit's ids (`cuId`) as
/// JSON in a UTF8String.
pub(crate) const CU_ID_ATTRIBUTE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.90.2.10");
/// `commonName`.
pub(crate) const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// `domainComponent` (RFC 4519: an IA5String).
pub(crate) const DOMAIN_COMPONENT: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25");
/// `id-RSASSA-PSS` (RFC 4055).
pub(crate) const RSASSA_PSS: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// `rsaEncryption` (what the emulator checks a request's key is).
#[cfg_attr(not(any(test, feature = "test-util")), allow(dead_code))]
pub(crate) const RSA_ENCRYPTION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-sha256`.
pub(crate) const SHA_256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
/// `id-mgf1`.
pub(crate) const MGF_1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
/// The salt of RSA-PSS with SHA-256 as aws-lc-rs signs: the digest's length.
pub(crate) const PSS_SALT_LEN: u8 = 32;

/// The RSA-PSS SHA-256 parameters (RFC 4055): SHA-256, MGF1 with SHA-256,
/// a 32-byte salt, the usual trailer.
pub(crate) fn pss_sha256_params() -> RsaPssParams<'static> {
    let sha256 = AlgorithmIdentifierRef {
        oid: SHA_256,
        parameters: Some(AnyRef::NULL),
    };
    RsaPssParams {
        hash: sha256,
        mask_gen: AlgorithmIdentifier {
            oid: MGF_1,
            parameters: Some(sha256),
        },
        salt_len: PSS_SALT_LEN,
        trailer_field: TrailerField::BC,
    }
}

/// A new RSA-2048 key, made in memory and never written anywhere. `Debug`
/// shows no key material.
pub(super) struct CredentialKey {
    pair: RsaKeyPair,
    /// The public key as an X.509 `SubjectPublicKeyInfo`, DER.
    spki: Vec<u8>,
}

impl fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialKey")
            .field("alg", &"RSA-2048")
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

fn crypto(what: &str) -> ManagedIdentityError {
    ManagedIdentityError::new(Kind::Crypto, what.to_owned())
}

impl CredentialKey {
    /// Generates a new key.
    pub(super) fn generate() -> Result<Self, ManagedIdentityError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| crypto("cannot generate an RSA-2048 key"))?;
        let spki = pair
            .public_key()
            .as_der()
            .map_err(|_| crypto("cannot encode the public key"))?
            .as_ref()
            .to_vec();
        Ok(Self { pair, spki })
    }

    /// The public key as an X.509 `SubjectPublicKeyInfo`, DER.
    pub(super) fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The private key as PKCS#8, for the TLS identity. It stays in memory.
    pub(super) fn private_key(&self) -> Result<PrivateKeyDer<'static>, ManagedIdentityError> {
        let pkcs8 = self
            .pair
            .as_der()
            .map_err(|_| crypto("cannot encode the private key"))?;
        Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            pkcs8.as_ref().to_vec(),
        )))
    }

    /// The PKCS#10 request for `client_id` in `tenant_id`, carrying `cu_id`
    /// (JSON), signed by this key with RSA-PSS SHA-256: DER.
    pub(super) fn csr(
        &self,
        client_id: &str,
        tenant_id: &str,
        cu_id: &str,
    ) -> Result<Vec<u8>, ManagedIdentityError> {
        let invalid = |what: &str, e: x509_cert::der::Error| {
            ManagedIdentityError::new(
                Kind::InvalidResponse,
                format!("cannot put the {what} in a certificate request"),
            )
            .with_source(e)
        };
        // RFC 4514 order, as MSAL writes `CN=<clientId>, DC=<tenantId>`:
        // the DER sequence has the DC first and the CN last.
        let subject = RdnSequence(vec![
            rdn(
                DOMAIN_COMPONENT,
                Any::encode_from(
                    &Ia5StringRef::new(tenant_id).map_err(|e| invalid("tenant id", e))?,
                ),
            )
            .map_err(|e| invalid("tenant id", e))?,
            rdn(
                COMMON_NAME,
                Any::encode_from(
                    &Utf8StringRef::new(client_id).map_err(|e| invalid("client id", e))?,
                ),
            )
            .map_err(|e| invalid("client id", e))?,
        ]);
        let public_key = SubjectPublicKeyInfoOwned::from_der(&self.spki)
            .map_err(|e| invalid("public key", e))?;
        let cu_id = Any::encode_from(&Utf8StringRef::new(cu_id).map_err(|e| invalid("cuId", e))?)
            .map_err(|e| invalid("cuId", e))?;
        let attribute = Attribute {
            oid: CU_ID_ATTRIBUTE,
            values: SetOfVec::try_from(vec![cu_id]).map_err(|e| invalid("cuId", e))?,
        };
        let info = CertReqInfo {
            version: Version::V1,
            subject,
            public_key,
            attributes: SetOfVec::try_from(vec![attribute]).map_err(|e| invalid("cuId", e))?,
        };
        let to_be_signed = info.to_der().map_err(|e| invalid("request", e))?;
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PSS_SHA256,
                &SystemRandom::new(),
                &to_be_signed,
                &mut signature,
            )
            .map_err(|_| crypto("cannot sign the certificate request"))?;
        let request = CertReq {
            info,
            algorithm: AlgorithmIdentifierOwned {
                oid: RSASSA_PSS,
                parameters: Some(
                    Any::encode_from(&pss_sha256_params())
                        .map_err(|e| invalid("signature algorithm", e))?,
                ),
            },
            signature: BitString::from_bytes(&signature).map_err(|e| invalid("signature", e))?,
        };
        request.to_der().map_err(|e| invalid("request", e))
    }
}

/// One relative distinguished name of one attribute.
fn rdn(
    oid: ObjectIdentifier,
    value: Result<Any, x509_cert::der::Error>,
) -> Result<RelativeDistinguishedName, x509_cert::der::Error> {
    let value = value?;
    Ok(RelativeDistinguishedName(SetOfVec::try_from(vec![
        AttributeTypeAndValue { oid, value },
    ])?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA256, UnparsedPublicKey};

    #[test]
    fn the_request_is_signed_with_pss_and_says_who_asks() {
        let key = CredentialKey::generate().unwrap();
        let der = key
            .csr("client-1", "tenant-1", r#"{"vmId":"vm-1"}"#)
            .unwrap();
        let request = CertReq::from_der(&der).unwrap();
        assert_eq!(request.algorithm.oid, RSASSA_PSS);
        let params = request
            .algorithm
            .parameters
            .as_ref()
            .unwrap()
            .to_der()
            .unwrap();
        let params = RsaPssParams::try_from(params.as_slice()).unwrap();
        assert_eq!(params, pss_sha256_params());
        assert_eq!(request.info.subject.to_string(), "CN=client-1,DC=tenant-1");
        assert_eq!(request.info.public_key.to_der().unwrap(), key.spki());
        assert_eq!(request.info.public_key.algorithm.oid, RSA_ENCRYPTION);
        let attribute = request.info.attributes.iter().next().unwrap();
        assert_eq!(attribute.oid, CU_ID_ATTRIBUTE);
        let value = attribute.values.iter().next().unwrap();
        let text = value.decode_as::<Utf8StringRef<'_>>().unwrap();
        assert_eq!(text.as_str(), r#"{"vmId":"vm-1"}"#);

        let public = request.info.public_key.subject_public_key.raw_bytes();
        let signed = request.info.to_der().unwrap();
        UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, public)
            .verify(&signed, request.signature.raw_bytes())
            .unwrap();
        assert!(format!("{key:?}").contains("redacted"));
    }

    #[test]
    fn names_that_do_not_fit_are_errors() {
        let key = CredentialKey::generate().unwrap();
        // A DC is an IA5String: ASCII only.
        let error = key.csr("client", "tenänt", "{}").unwrap_err();
        assert_eq!(error.kind(), Kind::InvalidResponse);
    }
}
