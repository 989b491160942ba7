//! The answers of IMDS v2, read and checked: pure functions of the bytes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;

use super::csr::CredentialKey;
use super::error::{ManagedIdentityError, ManagedIdentityErrorKind as Kind};
use crate::ClientIdentity;
use crate::identity::{IdentityErrorKind, IdentityLoader};

/// What `getplatformmetadata` says about this host's identity.
#[derive(Clone)]
pub(super) struct PlatformMetadata {
    pub(super) client_id: String,
    pub(super) tenant_id: String,
    /// The compute unit's ids, as JSON text, as they go in the request.
    pub(super) cu_id: String,
    pub(super) attestation_endpoint: Option<String>,
}

impl fmt::Debug for PlatformMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformMetadata")
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .finish_non_exhaustive()
    }
}

/// What `issuecredential` answered, checked, with the identity made of the
/// certificate and our key (whose `Debug` shows no key).
#[derive(Debug)]
pub(super) struct Issued {
    pub(super) identity: ClientIdentity,
    pub(super) endpoint: Endpoint,
}

/// Where and as whom tokens are asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    pub(super) client_id: String,
    pub(super) tenant_id: String,
    pub(super) identity_type: String,
    /// `<mtls_authentication_endpoint>/<tenant_id>/oauth2/v2.0/token`.
    pub(super) token_endpoint: String,
}

/// The answer of `getplatformmetadata`, checked: a client id, a tenant id
/// and the compute unit's ids (a JSON object).
pub(super) fn platform_metadata(body: &[u8]) -> Result<PlatformMetadata, ManagedIdentityError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        client_id: Option<String>,
        tenant_id: Option<String>,
        cu_id: Option<Value>,
        attestation_endpoint: Option<String>,
    }
    let answer: Answer = parse(body, "the platform metadata")?;
    let client_id = required(answer.client_id, "clientId", "the platform metadata")?;
    let tenant_id = required(answer.tenant_id, "tenantId", "the platform metadata")?;
    let cu_id = match answer.cu_id {
        Some(Value::Object(ids)) if !ids.is_empty() => Value::Object(ids).to_string(),
        _ => {
            return Err(invalid(
                "the platform metadata has no cuId (a JSON object of the compute unit's ids)",
            ));
        }
    };
    Ok(PlatformMetadata {
        client_id,
        tenant_id,
        cu_id,
        attestation_endpoint: answer.attestation_endpoint.filter(|e| !e.is_empty()),
    })
}

/// The answer of `issuecredential`, checked: every field there, a tenant id
/// that fits in a path, an `https://` token endpoint, and a certificate for
/// `key` that is valid now.
pub(super) fn credential(body: &[u8], key: &CredentialKey) -> Result<Issued, ManagedIdentityError> {
    #[derive(Deserialize)]
    struct Answer {
        client_id: Option<String>,
        tenant_id: Option<String>,
        certificate: Option<String>,
        identity_type: Option<String>,
        mtls_authentication_endpoint: Option<String>,
    }
    let what = "the credential";
    let answer: Answer = parse(body, what)?;
    let client_id = required(answer.client_id, "client_id", what)?;
    let tenant_id = required(answer.tenant_id, "tenant_id", what)?;
    let certificate = required(answer.certificate, "certificate", what)?;
    let identity_type = required(answer.identity_type, "identity_type", what)?;
    let mtls = required(
        answer.mtls_authentication_endpoint,
        "mtls_authentication_endpoint",
        what,
    )?;
    let tenant = tenant_id.trim_matches('/');
    if tenant.is_empty()
        || !tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(invalid(format!(
            "the credential's tenant_id {tenant_id:?} is not a tenant id"
        )));
    }
    if client_id.chars().any(char::is_control) {
        return Err(invalid(
            "the credential's client_id holds control characters",
        ));
    }
    let token_endpoint = format!("{}/{tenant}/oauth2/v2.0/token", mtls.trim_end_matches('/'));
    if crate::discovery::https_uri(&token_endpoint).is_err() {
        return Err(invalid(format!(
            "the credential's mtls_authentication_endpoint {mtls:?} does not make an https:// token endpoint"
        )));
    }

    let der = STANDARD
        .decode(certificate.trim())
        .map_err(|e| invalid("the credential's certificate is not base64").with_source(e))?;
    check_public_key(&der, key.spki())?;
    let chain = vec![rustls_pki_types::CertificateDer::from(der)];
    let identity = ClientIdentity::new(chain, key.private_key()?)
        .and_then(|identity| IdentityLoader::default().check(identity))
        .map_err(|e| {
            let kind = match e.kind() {
                IdentityErrorKind::KeyMismatch => Kind::CertificateMismatch,
                _ => Kind::InvalidCertificate,
            };
            ManagedIdentityError::new(kind, "the certificate IMDS issued cannot be used")
                .with_source(e)
        })?;
    Ok(Issued {
        identity,
        endpoint: Endpoint {
            client_id,
            tenant_id: tenant.to_owned(),
            identity_type,
            token_endpoint,
        },
    })
}

/// Refuses a credential issued to another client or tenant than the
/// platform metadata names (the ids compared without regard to case, as
/// GUIDs are). Both ids are named in the error: they are not secrets.
pub(super) fn check_same_identity(
    metadata: &PlatformMetadata,
    endpoint: &Endpoint,
) -> Result<(), ManagedIdentityError> {
    let same = |a: &str, b: &str| a.trim().eq_ignore_ascii_case(b.trim().trim_matches('/'));
    if !same(&endpoint.client_id, &metadata.client_id) {
        return Err(invalid(format!(
            "the credential is for client_id {:?}, but the platform metadata names clientId {:?}; refused",
            endpoint.client_id, metadata.client_id
        )));
    }
    if !same(&endpoint.tenant_id, &metadata.tenant_id) {
        return Err(invalid(format!(
            "the credential is for tenant_id {:?}, but the platform metadata names tenantId {:?}; refused",
            endpoint.tenant_id, metadata.tenant_id
        )));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> ManagedIdentityError {
    ManagedIdentityError::new(Kind::InvalidResponse, message)
}

fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ManagedIdentityError> {
    serde_json::from_slice(body)
        .map_err(|e| invalid(format!("{what} is not the JSON object expected")).with_source(e))
}

fn required(value: Option<String>, name: &str, what: &str) -> Result<String, ManagedIdentityError> {
    value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| invalid(format!("{what} has no {name}")))
}

/// Refuses a certificate whose public key is not `spki`, the key the
/// request was signed with.
fn check_public_key(certificate: &[u8], spki: &[u8]) -> Result<(), ManagedIdentityError> {
    use x509_cert::der::{Decode, Encode};
    let parsed = x509_cert::Certificate::from_der(certificate).map_err(|e| {
        ManagedIdentityError::new(
            Kind::InvalidCertificate,
            "the credential's certificate is not an X.509 certificate",
        )
        .with_source(e)
    })?;
    let theirs = parsed
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| {
            ManagedIdentityError::new(
                Kind::InvalidCertificate,
                "cannot read the certificate's key",
            )
            .with_source(e)
        })?;
    if theirs != spki {
        return Err(ManagedIdentityError::new(
            Kind::CertificateMismatch,
            "the certificate IMDS issued is not for the key the request was signed with; refused",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_metadata_needs_each_field() {
        let good = platform_metadata(
            br#"{"clientId":"c","tenantId":"t","cuId":{"vmId":"v"},"attestationEndpoint":"https://a"}"#,
        )
        .unwrap();
        assert_eq!(
            (good.client_id.as_str(), good.tenant_id.as_str()),
            ("c", "t")
        );
        assert_eq!(good.cu_id, r#"{"vmId":"v"}"#);
        assert_eq!(good.attestation_endpoint.as_deref(), Some("https://a"));
        for bad in [
            &b""[..],
            b"null",
            b"[]",
            b"<html>",
            b"{}",
            br#"{"clientId":"c","tenantId":"t"}"#,
            br#"{"clientId":"c","tenantId":"t","cuId":"v"}"#,
            br#"{"clientId":"c","tenantId":"t","cuId":{}}"#,
            br#"{"clientId":" ","tenantId":"t","cuId":{"vmId":"v"}}"#,
            br#"{"clientId":1,"tenantId":"t","cuId":{"vmId":"v"}}"#,
        ] {
            let error = platform_metadata(bad).unwrap_err();
            assert_eq!(
                error.kind(),
                Kind::InvalidResponse,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_credential_is_checked_field_by_field() {
        let key = CredentialKey::generate().unwrap();
        let answer = |certificate: &str, tenant: &str, endpoint: &str| {
            serde_json::json!({
                "client_id": "c",
                "tenant_id": tenant,
                "certificate": certificate,
                "identity_type": "SystemAssigned",
                "mtls_authentication_endpoint": endpoint,
            })
            .to_string()
        };
        let kind = |body: String| credential(body.as_bytes(), &key).err().map(|e| e.kind());
        let random = STANDARD.encode([0x30, 0x82, 0x01, 0x00, 0x42]);
        let invalid = Some(Kind::InvalidResponse);
        assert_eq!(
            kind(answer(&random, "t/../x", "https://login.test")),
            invalid
        );
        assert_eq!(kind(answer(&random, "", "https://login.test")), invalid);
        assert_eq!(kind(answer(&random, "t", "http://login.test")), invalid);
        assert_eq!(kind(answer(&random, "t", "login.test")), invalid);
        assert_eq!(
            kind(answer("not base64!", "t", "https://login.test")),
            invalid
        );
        assert_eq!(
            kind(answer(&random, "t", "https://login.test")),
            Some(Kind::InvalidCertificate)
        );
        for bad in [
            "",
            "{}",
            "[]",
            "null",
            "<html>oops</html>",
            r#"{"client_id":"c"}"#,
        ] {
            assert_eq!(kind(bad.to_owned()), invalid, "{bad}");
        }
    }

    #[cfg(feature = "test-util")]
    #[test]
    fn a_credential_must_be_for_our_key_and_valid_now() {
        use std::time::{Duration, SystemTime};
        use x509_cert::der::Decode;

        struct Rsa(Vec<u8>);
        impl rcgen::PublicKeyData for Rsa {
            fn der_bytes(&self) -> &[u8] {
                &self.0
            }
            fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
                &rcgen::PKCS_RSA_SHA256
            }
        }
        let pki = crate::test_util::TestPki::new().unwrap();
        let key = CredentialKey::generate().unwrap();
        let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(key.spki()).unwrap();
        let ours = Rsa(spki.subject_public_key.raw_bytes().to_vec());
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let answer = |certificate: &[u8]| {
            serde_json::json!({
                "client_id": "c",
                "tenant_id": "t",
                "certificate": STANDARD.encode(certificate),
                "identity_type": "SystemAssigned",
                "mtls_authentication_endpoint": "https://login.test/",
            })
            .to_string()
        };

        let good = pki
            .client_cert_for_key("c", &ours, now - hour, now + hour)
            .unwrap();
        let issued = credential(answer(&good).as_bytes(), &key).unwrap();
        assert_eq!(
            issued.endpoint.token_endpoint,
            "https://login.test/t/oauth2/v2.0/token"
        );
        assert_eq!(issued.identity.leaf().as_ref(), good.as_ref());

        let expired = pki
            .client_cert_for_key("c", &ours, now - hour * 2, now - hour)
            .unwrap();
        let error = credential(answer(&expired).as_bytes(), &key).unwrap_err();
        assert_eq!(error.kind(), Kind::InvalidCertificate);

        let other = rcgen::KeyPair::generate().unwrap();
        let theirs = pki
            .client_cert_for_key("c", &other, now - hour, now + hour)
            .unwrap();
        let error = credential(answer(&theirs).as_bytes(), &key).unwrap_err();
        assert_eq!(error.kind(), Kind::CertificateMismatch);
    }

    proptest::proptest! {
        #[test]
        fn no_answer_makes_it_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
                                    text in ".{0,64}") {
            let key = KEY.with(|key| key.clone());
            let _ = platform_metadata(&body);
            let _ = credential(&body, &key);
            let json = serde_json::json!({
                "clientId": text, "tenantId": text, "cuId": { "x": text },
                "client_id": text, "tenant_id": text, "certificate": text,
                "identity_type": text, "mtls_authentication_endpoint": text,
            })
            .to_string();
            let _ = platform_metadata(json.as_bytes());
            let _ = credential(json.as_bytes(), &key);
        }
    }

    thread_local! {
        static KEY: std::rc::Rc<CredentialKey> = std::rc::Rc::new(CredentialKey::generate().unwrap());
    }

    #[test]
    fn the_credential_must_name_the_platform_identity() {
        let metadata =
            platform_metadata(br#"{"clientId":"0A1B-c","tenantId":"7E57-t","cuId":{"vmId":"v"}}"#)
                .unwrap();
        let endpoint = |client: &str, tenant: &str| Endpoint {
            client_id: client.to_owned(),
            tenant_id: tenant.to_owned(),
            identity_type: "SystemAssigned".to_owned(),
            token_endpoint: "https://login.test/t/oauth2/v2.0/token".to_owned(),
        };
        // The same ids in another case: the same identity.
        check_same_identity(&metadata, &endpoint("0A1B-c", "7E57-t")).unwrap();
        check_same_identity(&metadata, &endpoint("0a1b-C", "7e57-T")).unwrap();
        let error = check_same_identity(&metadata, &endpoint("other", "7E57-t")).unwrap_err();
        assert_eq!(error.kind(), Kind::InvalidResponse);
        let message = error.to_string();
        assert!(
            message.contains("\"other\"") && message.contains("\"0A1B-c\""),
            "{message}"
        );
        let error = check_same_identity(&metadata, &endpoint("0a1b-c", "elsewhere")).unwrap_err();
        assert_eq!(error.kind(), Kind::InvalidResponse);
        let message = error.to_string();
        assert!(
            message.contains("\"elsewhere\"") && message.contains("\"7E57-t\""),
            "{message}"
        );
    }

    #[test]
    fn garbage_certificates_are_refused_not_panicked_on() {
        for bad in [&b""[..], b"\x30\x03\x02\x01\x01", b"not DER at all"] {
            let error = check_public_key(bad, b"").unwrap_err();
            assert_eq!(error.kind(), Kind::InvalidCertificate);
        }
    }
}
