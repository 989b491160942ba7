//! The IMDS v2 wire protocol, as MSAL speaks it: the probe, the platform
//! metadata, and the credential issued for a certificate signing request.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use serde_json::Value;

use super::csr::CredentialKey;
use super::error::{ManagedIdentityError, ManagedIdentityErrorKind as Kind};
use crate::ClientIdentity;
use crate::identity::{IdentityErrorKind, IdentityLoader};

/// Where IMDS answers on every Azure host.
pub(crate) const DEFAULT_BASE_URL: &str = "http://169.254.169.254";
/// The variable MSAL reads to point at another IMDS (a pod identity
/// endpoint, a test double).
pub(crate) const BASE_URL_VARIABLE: &str = "AZURE_POD_IDENTITY_AUTHORITY_HOST";
/// The platform metadata, also the probe.
pub(crate) const METADATA_PATH: &str = "/metadata/identity/getplatformmetadata";
/// Where a certificate signing request is sent.
pub(crate) const ISSUE_CREDENTIAL_PATH: &str = "/metadata/identity/issuecredential";
/// The API version of both.
pub(crate) const API_VERSION: &str = "cred-api-version=2.0";
/// Largest answer read from IMDS.
const MAX_BODY: usize = 64 * 1024;
/// Most of an error body quoted in an error message.
const QUOTED: usize = 200;

/// What `getplatformmetadata` says about this host's identity.
#[derive(Clone)]
pub(crate) struct PlatformMetadata {
    pub(crate) client_id: String,
    pub(crate) tenant_id: String,
    /// The compute unit's ids, as JSON text, as they go in the request.
    pub(crate) cu_id: String,
    pub(crate) attestation_endpoint: Option<String>,
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
pub(crate) struct Issued {
    pub(crate) identity: ClientIdentity,
    pub(crate) endpoint: Endpoint,
}

/// Where and as whom tokens are asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) client_id: String,
    pub(crate) tenant_id: String,
    pub(crate) identity_type: String,
    /// `<mtls_authentication_endpoint>/<tenant_id>/oauth2/v2.0/token`.
    pub(crate) token_endpoint: String,
}

/// An HTTP client for IMDS (plain HTTP, as IMDS is served).
#[derive(Clone)]
pub(crate) struct Imds {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    probe_timeout: Duration,
    timeout: Duration,
}

impl fmt::Debug for Imds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imds")
            .field("base_url", &self.base)
            .field("probe_timeout", &self.probe_timeout)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The base URL to use: the one given, else the variable's, else IMDS's
/// own; checked to be `http://host[:port]` with at most a path.
pub(crate) fn base_url(
    given: Option<&str>,
    variable: Option<&str>,
) -> Result<String, ManagedIdentityError> {
    let (url, from) = match (given, variable.filter(|v| !v.trim().is_empty())) {
        (Some(url), _) => (url.trim(), "the base URL"),
        (None, Some(url)) => (url.trim(), BASE_URL_VARIABLE),
        (None, None) => return Ok(DEFAULT_BASE_URL.to_owned()),
    };
    let config =
        |why: &str| ManagedIdentityError::new(Kind::Config, format!("{from} {url:?} {why}"));
    let uri: Uri = url.parse().map_err(|_| config("is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(config("must be an http:// URL (IMDS is plain HTTP)"));
    }
    let Some(authority) = uri.authority() else {
        return Err(config("has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(config("must not carry user info"));
    }
    if uri.query().is_some() {
        return Err(config("must not have a query"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl Imds {
    pub(crate) fn new(base: String, probe_timeout: Duration, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(connector);
        Self {
            client,
            base,
            probe_timeout,
            timeout,
        }
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base
    }

    fn uri(&self, path: &str) -> Result<Uri, ManagedIdentityError> {
        format!("{}{path}?{API_VERSION}", self.base)
            .parse()
            .map_err(|e| {
                ManagedIdentityError::new(
                    Kind::Config,
                    format!("cannot make a URL of {:?}", self.base),
                )
                .with_source(e)
            })
    }

    /// One request, its status, `Server` header and body (bounded), within
    /// `timeout`.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Option<String>, Bytes), Failure> {
        let what = format!("{} {}", request.method(), request.uri().path());
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Failure::Transport(what.clone(), e.into()))?;
            let status = response.status();
            let server = response
                .headers()
                .get(header::SERVER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| Failure::Transport(what.clone(), e))?
                .to_bytes();
            Ok((status, server, body))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout(what, timeout)),
        }
    }

    /// Whether IMDS v2 is here: `GET getplatformmetadata` without the
    /// `Metadata` header must be refused with `400` by a server that says
    /// it is IMDS. Anything else, or nothing in time, is "not available".
    pub(crate) async fn probe(&self) -> Result<(), ManagedIdentityError> {
        let uri = self.uri(METADATA_PATH)?;
        let request = get(uri);
        let not_here = |why: String| {
            ManagedIdentityError::new(
                Kind::NotAvailable,
                format!(
                    "no IMDS v2 at {} ({why}); not running on Azure, or on a host without IMDS v2",
                    self.base
                ),
            )
        };
        let (status, server, _) = match self.exchange(request, self.probe_timeout).await {
            Ok(answer) => answer,
            Err(Failure::Timeout(_, timeout)) => {
                return Err(not_here(format!(
                    "no answer to the probe within {timeout:?}"
                )));
            }
            Err(Failure::Transport(_, e)) => {
                return Err(not_here("the probe could not connect".to_owned()).with_source(e));
            }
        };
        let imds = server
            .as_deref()
            .is_some_and(|s| s.to_ascii_lowercase().contains("imds"));
        match (status, imds) {
            (StatusCode::BAD_REQUEST, true) => Ok(()),
            (StatusCode::BAD_REQUEST, false) => Err(not_here(match server {
                Some(server) => format!("the probe was answered 400 by {server:?}, not by IMDS"),
                None => "the probe was answered 400 without a Server header naming IMDS".to_owned(),
            })
            .with_status(status)),
            (status, _) => {
                Err(not_here(format!("the probe was answered {status}")).with_status(status))
            }
        }
    }

    /// `GET getplatformmetadata` with `Metadata: true`.
    pub(crate) async fn platform_metadata(&self) -> Result<PlatformMetadata, ManagedIdentityError> {
        let mut request = get(self.uri(METADATA_PATH)?);
        request
            .headers_mut()
            .insert("metadata", HeaderValue::from_static("true"));
        let body = self.expect_ok(request, "the platform metadata").await?;
        platform_metadata(&body)
    }

    /// A new key, a request for it, and the certificate IMDS issues for it:
    /// checked to be for our key and valid now.
    pub(crate) async fn issue(
        &self,
        metadata: &PlatformMetadata,
    ) -> Result<Issued, ManagedIdentityError> {
        // Finding RSA primes takes a while: off the async threads.
        let (client_id, tenant_id, cu_id) = (
            metadata.client_id.clone(),
            metadata.tenant_id.clone(),
            metadata.cu_id.clone(),
        );
        let (key, csr) = tokio::task::spawn_blocking(move || {
            let key = CredentialKey::generate()?;
            let csr = key.csr(&client_id, &tenant_id, &cu_id)?;
            Ok::<_, ManagedIdentityError>((key, csr))
        })
        .await
        .map_err(|e| {
            ManagedIdentityError::new(Kind::Crypto, "the key generation did not finish")
                .with_source(e)
        })??;
        let body = serde_json::json!({ "csr": STANDARD.encode(&csr) }).to_string();
        let mut request = Request::new(Full::new(Bytes::from(body)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri(ISSUE_CREDENTIAL_PATH)?;
        let headers = request.headers_mut();
        headers.insert("metadata", HeaderValue::from_static("true"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let body = self.expect_ok(request, "the credential").await?;
        credential(&body, &key)
    }

    /// The body of a `200` answer; any other status is an error that
    /// quotes the start of the body.
    async fn expect_ok(
        &self,
        request: Request<Full<Bytes>>,
        what: &str,
    ) -> Result<Bytes, ManagedIdentityError> {
        let (status, _, body) = self
            .exchange(request, self.timeout)
            .await
            .map_err(|failure| failure.into_error(what))?;
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body);
            let quoted: String = text
                .chars()
                .filter(|c| !c.is_control())
                .take(QUOTED)
                .collect();
            return Err(ManagedIdentityError::new(
                Kind::Status,
                format!("IMDS answered {status} when asked for {what}: {quoted:?}"),
            )
            .with_status(status));
        }
        Ok(body)
    }
}

/// The answer of `getplatformmetadata`, checked: a client id, a tenant id
/// and the compute unit's ids (a JSON object).
fn platform_metadata(body: &[u8]) -> Result<PlatformMetadata, ManagedIdentityError> {
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
fn credential(body: &[u8], key: &CredentialKey) -> Result<Issued, ManagedIdentityError> {
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

/// A request that did not get an answer.
enum Failure {
    Timeout(String, Duration),
    Transport(String, crate::token::BoxError),
}

impl Failure {
    fn into_error(self, what: &str) -> ManagedIdentityError {
        match self {
            Failure::Timeout(request, timeout) => ManagedIdentityError::new(
                Kind::Timeout,
                format!("no answer to {request} ({what}) within {timeout:?}"),
            ),
            Failure::Transport(request, e) => {
                ManagedIdentityError::new(Kind::Transport, format!("{request} ({what}) failed"))
                    .with_source(e)
            }
        }
    }
}

fn get(uri: Uri) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::default());
    *request.uri_mut() = uri;
    request
        .headers_mut()
        .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    request
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
    fn the_base_url_comes_from_the_builder_then_the_variable() {
        assert_eq!(base_url(None, None).unwrap(), DEFAULT_BASE_URL);
        assert_eq!(base_url(None, Some("  ")).unwrap(), DEFAULT_BASE_URL);
        assert_eq!(
            base_url(None, Some("http://10.0.0.1:8080/")).unwrap(),
            "http://10.0.0.1:8080"
        );
        assert_eq!(
            base_url(Some("http://127.0.0.1:1"), Some("http://10.0.0.1")).unwrap(),
            "http://127.0.0.1:1"
        );
        for bad in [
            "https://imds",
            "imds",
            "http://u:p@imds",
            "http://imds/?x=1",
            "ftp://x",
        ] {
            let error = base_url(Some(bad), None).unwrap_err();
            assert_eq!(error.kind(), Kind::Config, "{bad}");
        }
        let error = base_url(None, Some("nonsense")).unwrap_err();
        assert!(error.to_string().contains(BASE_URL_VARIABLE), "{error}");
    }

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
    fn garbage_certificates_are_refused_not_panicked_on() {
        for bad in [&b""[..], b"\x30\x03\x02\x01\x01", b"not DER at all"] {
            let error = check_public_key(bad, b"").unwrap_err();
            assert_eq!(error.kind(), Kind::InvalidCertificate);
        }
    }
}
