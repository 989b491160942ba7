//! An embedded IMDS v2, for tests of [`ManagedIdentity`](crate::identity::managed::ManagedIdentity)
//! without Azure.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::signature::{RSA_PSS_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pkcs1::RsaPssParams;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use x509_cert::der::asn1::{Ia5StringRef, Utf8StringRef};
use x509_cert::der::{Decode, Encode};
use x509_cert::request::CertReq;

use super::token_endpoint::{Reply, json_reply};
use super::{Error, TestIssuer, TestPki};
use crate::identity::managed::{
    API_VERSION, COMMON_NAME, CU_ID_ATTRIBUTE, DOMAIN_COMPONENT, ISSUE_CREDENTIAL_PATH,
    METADATA_PATH, RSA_ENCRYPTION, RSASSA_PSS, pss_sha256_params,
};

/// What the emulator says it is, in every answer's `Server` header.
const SERVER: &str = "IMDS/150.870.65.1854";
/// Largest request body read.
const MAX_BODY: usize = 64 * 1024;

/// An embedded IMDS v2 (Azure's instance metadata service, managed identity
/// part) for tests and demos, faithful to the protocol as MSAL speaks it.
///
/// **Not for production**, and not Azure: plain HTTP on `127.0.0.1`.
///
/// - `GET /metadata/identity/getplatformmetadata?cred-api-version=2.0`
///   without `Metadata: true` is refused with `400` and
///   `Server: IMDS/...` (the probe); with it, answers `clientId`,
///   `tenantId`, `cuId` and `attestationEndpoint`.
/// - `POST /metadata/identity/issuecredential?cred-api-version=2.0` with
///   `Metadata: true` and `{"csr": "<base64 DER>"}` checks the request (an
///   RSA key of 2048 bits or more; an RSASSA-PSS SHA-256 signature that
///   verifies; a subject of exactly `CN=<clientId>` and `DC=<tenantId>`; the
///   attribute `1.3.6.1.4.1.311.90.2.10` holding the `cuId` JSON) and
///   answers `client_id`, `tenant_id`, `certificate` (base64 DER, issued by
///   the [`TestPki`] for the request's key, valid from now for the
///   [certificate lifetime](ImdsEmulatorBuilder::certificate_lifetime)),
///   `identity_type` and `mtls_authentication_endpoint`: the
///   [`TestIssuer`]'s URL, whose `/<tenant>/oauth2/v2.0/token` issues tokens
///   bound to the certificate presented. A request that fails a check is
///   refused with `400` and says why.
/// - [`set_fault`](Self::set_fault) makes it misbehave ([`ImdsFault`]).
///
/// It counts what it was asked. Dropping it stops the server and closes its
/// connections.
///
/// ```
/// use tower_token_binding::test_util::{ImdsEmulator, TestIssuer, TestPki};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_token_binding::test_util::Error> {
/// let pki = TestPki::new()?;
/// let issuer = TestIssuer::start(&pki).await?;
/// let imds = ImdsEmulator::builder()
///     .client_id("my-identity")
///     .start(&pki, &issuer)
///     .await?;
/// assert!(imds.base_url().starts_with("http://127.0.0.1:"));
/// assert_eq!(imds.credentials_issued(), 0);
/// # Ok(())
/// # }
/// ```
pub struct ImdsEmulator {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

/// A way for the emulator to misbehave ([`ImdsEmulator::set_fault`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImdsFault {
    /// Every request gets `404` from a server that does not say it is IMDS
    /// (a host without IMDS v2).
    NotFound,
    /// Every request is accepted and never answered.
    Silent,
    /// Every request gets `400` from a server that is not IMDS.
    NotImds,
    /// The platform metadata is not JSON.
    GarbageMetadata,
    /// The credential is not JSON.
    GarbageCredential,
    /// The credential's certificate is for another key than the request's.
    ForeignCertificate,
    /// `issuecredential` answers `503`.
    CredentialUnavailable,
    /// The credential names another client and tenant
    /// ([`FOREIGN_CLIENT_ID`](Self::FOREIGN_CLIENT_ID),
    /// [`FOREIGN_TENANT_ID`](Self::FOREIGN_TENANT_ID)) than the platform
    /// metadata.
    ForeignIdentity,
}

impl ImdsFault {
    /// The client id a [`ForeignIdentity`](Self::ForeignIdentity) credential names.
    pub const FOREIGN_CLIENT_ID: &'static str = "0f0f0f0f-0000-4000-8000-00000000f0f0";
    /// The tenant id a [`ForeignIdentity`](Self::ForeignIdentity) credential names.
    pub const FOREIGN_TENANT_ID: &'static str = "0f0f0f0f-0000-4000-8000-0000000f0f0f";
}

/// Builds an [`ImdsEmulator`].
#[derive(Debug, Clone)]
pub struct ImdsEmulatorBuilder {
    client_id: String,
    tenant_id: String,
    cu_id: Value,
    identity_type: String,
    lifetime: Duration,
}

impl Default for ImdsEmulatorBuilder {
    fn default() -> Self {
        Self {
            client_id: "00000000-0000-0000-0000-00000000c1d0".to_owned(),
            tenant_id: "00000000-0000-0000-0000-0000000000a7".to_owned(),
            cu_id: json!({ "vmId": "test-vm", "vmssId": "" }),
            identity_type: "SystemAssigned".to_owned(),
            lifetime: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl ImdsEmulatorBuilder {
    /// The managed identity's client id. Default a fixed GUID.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// The tenant id. Default a fixed GUID.
    pub fn tenant_id(mut self, id: impl Into<String>) -> Self {
        self.tenant_id = id.into();
        self
    }

    /// The compute unit's ids (`cuId`), a JSON object. Default
    /// `{"vmId":"test-vm","vmssId":""}`.
    pub fn cu_id(mut self, ids: Value) -> Self {
        self.cu_id = ids;
        self
    }

    /// How long issued certificates are valid. Default seven days.
    pub fn certificate_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Starts the emulator on `127.0.0.1`: certificates from `pki`, tokens
    /// from `issuer`.
    pub async fn start(self, pki: &TestPki, issuer: &TestIssuer) -> Result<ImdsEmulator, Error> {
        let (listener, addr) = super::listen().await?;
        let state = Arc::new(State {
            pki: pki.clone(),
            mtls_endpoint: issuer.issuer().to_owned(),
            client_id: self.client_id,
            tenant_id: self.tenant_id,
            cu_id: self.cu_id,
            identity_type: self.identity_type,
            lifetime: Mutex::new(self.lifetime),
            fault: Mutex::new(None),
            probes: AtomicUsize::new(0),
            metadata_requests: AtomicUsize::new(0),
            credentials_issued: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept(listener, state.clone()));
        Ok(ImdsEmulator { addr, state, task })
    }
}

impl ImdsEmulator {
    /// A builder, to set the identity and the certificate lifetime.
    pub fn builder() -> ImdsEmulatorBuilder {
        ImdsEmulatorBuilder::default()
    }

    /// Its base URL, `http://127.0.0.1:PORT`: give it to
    /// [`ManagedIdentityBuilder::base_url`](crate::identity::managed::ManagedIdentityBuilder::base_url).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The managed identity's client id.
    pub fn client_id(&self) -> &str {
        &self.state.client_id
    }

    /// The tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.state.tenant_id
    }

    /// Makes it misbehave (`Some`) or behave (`None`).
    pub fn set_fault(&self, fault: Option<ImdsFault>) {
        *lock(&self.state.fault) = fault;
    }

    /// Sets how long certificates issued from now on are valid.
    pub fn set_certificate_lifetime(&self, lifetime: Duration) {
        *lock(&self.state.lifetime) = lifetime;
    }

    /// Probes received: platform-metadata requests without `Metadata: true`.
    pub fn probes(&self) -> usize {
        self.state.probes.load(Ordering::SeqCst)
    }

    /// Platform-metadata requests with `Metadata: true`.
    pub fn metadata_requests(&self) -> usize {
        self.state.metadata_requests.load(Ordering::SeqCst)
    }

    /// Certificates issued.
    pub fn credentials_issued(&self) -> usize {
        self.state.credentials_issued.load(Ordering::SeqCst)
    }

    /// Credential requests refused because the request did not pass a
    /// check.
    pub fn requests_refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ImdsEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImdsEmulator")
            .field("base_url", &self.base_url())
            .field("client_id", &self.state.client_id)
            .field("credentials_issued", &self.credentials_issued())
            .finish_non_exhaustive()
    }
}

impl Drop for ImdsEmulator {
    fn drop(&mut self) {
        // The accept loop owns the connections: they go with it.
        self.task.abort();
    }
}

struct State {
    pki: TestPki,
    mtls_endpoint: String,
    client_id: String,
    tenant_id: String,
    cu_id: Value,
    identity_type: String,
    lifetime: Mutex<Duration>,
    fault: Mutex<Option<ImdsFault>>,
    probes: AtomicUsize,
    metadata_requests: AtomicUsize,
    credentials_issued: AtomicUsize,
    refused: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(route(&state, request).await) }
                });
                connections.spawn(async move {
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn route(state: &State, request: Request<Incoming>) -> Reply {
    let fault = lock(&state.fault).clone();
    match fault {
        Some(ImdsFault::Silent) => std::future::pending::<()>().await,
        Some(ImdsFault::NotFound) => {
            return json_reply(StatusCode::NOT_FOUND, &json!({ "error": "not_found" }));
        }
        Some(ImdsFault::NotImds) => {
            let mut reply = json_reply(StatusCode::BAD_REQUEST, &json!({ "error": "bad_request" }));
            reply
                .headers_mut()
                .insert(header::SERVER, HeaderValue::from_static("nginx/1.27"));
            return reply;
        }
        _ => {}
    }
    let mut reply = answer(state, fault, request).await;
    reply
        .headers_mut()
        .insert(header::SERVER, HeaderValue::from_static(SERVER));
    reply
}

fn refuse(status: StatusCode, description: impl Into<String>) -> Reply {
    json_reply(
        status,
        &json!({ "error": "invalid_request", "error_description": description.into() }),
    )
}

async fn answer(state: &State, fault: Option<ImdsFault>, request: Request<Incoming>) -> Reply {
    let path = request.uri().path();
    if path != METADATA_PATH && path != ISSUE_CREDENTIAL_PATH {
        return json_reply(StatusCode::NOT_FOUND, &json!({ "error": "not_found" }));
    }
    let versioned = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == API_VERSION));
    let metadata = request
        .headers()
        .get("metadata")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    if !metadata {
        if path == METADATA_PATH {
            state.probes.fetch_add(1, Ordering::SeqCst);
        }
        return refuse(
            StatusCode::BAD_REQUEST,
            "Required metadata header not specified",
        );
    }
    if !versioned {
        return refuse(StatusCode::BAD_REQUEST, "cred-api-version=2.0 is required");
    }
    match (request.method(), path) {
        (&Method::GET, METADATA_PATH) => {
            state.metadata_requests.fetch_add(1, Ordering::SeqCst);
            if fault == Some(ImdsFault::GarbageMetadata) {
                return garbage();
            }
            json_reply(
                StatusCode::OK,
                &json!({
                    "clientId": state.client_id,
                    "tenantId": state.tenant_id,
                    "cuId": state.cu_id,
                    "attestationEndpoint": "https://attest.test",
                }),
            )
        }
        (&Method::POST, ISSUE_CREDENTIAL_PATH) => issue(state, fault, request).await,
        _ => json_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({ "error": "method_not_allowed" }),
        ),
    }
}

fn garbage() -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from_static(b"<html>oops</html>")));
    reply
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    reply
}

async fn issue(state: &State, fault: Option<ImdsFault>, request: Request<Incoming>) -> Reply {
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the body is unreadable or too large",
            );
        }
    };
    let csr = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|body| body.get("csr").and_then(Value::as_str).map(str::to_owned))
        .and_then(|csr| STANDARD.decode(csr.trim()).ok());
    let Some(csr) = csr else {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return refuse(
            StatusCode::BAD_REQUEST,
            "expected {\"csr\": \"<base64 DER>\"}",
        );
    };
    let public_key = match check_csr(&csr, state) {
        Ok(key) => key,
        Err(why) => {
            state.refused.fetch_add(1, Ordering::SeqCst);
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("certificate request refused: {why}"),
            );
        }
    };
    match fault {
        Some(ImdsFault::GarbageCredential) => return garbage(),
        Some(ImdsFault::CredentialUnavailable) => {
            return json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": "temporarily_unavailable" }),
            );
        }
        _ => {}
    }
    let now = crate::clock::wall();
    let lifetime = *lock(&state.lifetime);
    let certificate = if fault == Some(ImdsFault::ForeignCertificate) {
        match rcgen::KeyPair::generate() {
            Ok(other) => {
                state
                    .pki
                    .client_cert_for_key(&state.client_id, &other, now, now + lifetime)
            }
            Err(e) => Err(Error::new("cannot generate a key", e)),
        }
    } else {
        state.pki.client_cert_for_key(
            &state.client_id,
            &RsaPublicKey(public_key),
            now,
            now + lifetime,
        )
    };
    let certificate = match certificate {
        Ok(certificate) => certificate,
        Err(e) => {
            return json_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "error": "server_error", "error_description": e.to_string() }),
            );
        }
    };
    state.credentials_issued.fetch_add(1, Ordering::SeqCst);
    let (client_id, tenant_id) = if fault == Some(ImdsFault::ForeignIdentity) {
        (ImdsFault::FOREIGN_CLIENT_ID, ImdsFault::FOREIGN_TENANT_ID)
    } else {
        (state.client_id.as_str(), state.tenant_id.as_str())
    };
    json_reply(
        StatusCode::OK,
        &json!({
            "client_id": client_id,
            "tenant_id": tenant_id,
            "certificate": STANDARD.encode(certificate.as_ref()),
            "identity_type": state.identity_type,
            "mtls_authentication_endpoint": state.mtls_endpoint,
        }),
    )
}

/// An RSA public key for rcgen to issue a certificate for: the PKCS#1
/// `RSAPublicKey` DER.
struct RsaPublicKey(Vec<u8>);

impl rcgen::PublicKeyData for RsaPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        // Only its key algorithm (rsaEncryption) is used for the key.
        &rcgen::PKCS_RSA_SHA256
    }
}

/// Checks a certificate signing request as IMDS v2 would; returns its
/// public key (PKCS#1 DER).
fn check_csr(der: &[u8], state: &State) -> Result<Vec<u8>, String> {
    let request = CertReq::from_der(der).map_err(|e| format!("not a PKCS#10 request: {e}"))?;

    if request.algorithm.oid != RSASSA_PSS {
        return Err(format!(
            "signed with {}, not RSASSA-PSS",
            request.algorithm.oid
        ));
    }
    let params = request
        .algorithm
        .parameters
        .as_ref()
        .ok_or("RSASSA-PSS without parameters")?
        .to_der()
        .map_err(|e| e.to_string())?;
    let params = RsaPssParams::try_from(params.as_slice())
        .map_err(|e| format!("bad RSASSA-PSS parameters: {e}"))?;
    if params != pss_sha256_params() {
        return Err(
            "the RSASSA-PSS parameters are not SHA-256, MGF1 with SHA-256, a 32-byte salt".into(),
        );
    }

    let key = &request.info.public_key;
    if key.algorithm.oid != RSA_ENCRYPTION {
        return Err(format!(
            "the key is a {}, not an RSA key",
            key.algorithm.oid
        ));
    }
    let public = key
        .subject_public_key
        .as_bytes()
        .ok_or("the public key is not whole bytes")?;
    let rsa = pkcs1::RsaPublicKey::from_der(public).map_err(|e| format!("bad RSA key: {e}"))?;
    let bits = rsa.modulus.as_bytes().len() * 8;
    if bits < 2048 {
        return Err(format!("the RSA key has {bits} bits; 2048 at least"));
    }
    let signed = request.info.to_der().map_err(|e| e.to_string())?;
    let signature = request
        .signature
        .as_bytes()
        .ok_or("the signature is not whole bytes")?;
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, public)
        .verify(&signed, signature)
        .map_err(|_| "the signature does not verify")?;

    let (mut common_names, mut domain_components, mut others) = (Vec::new(), Vec::new(), 0);
    for rdn in &request.info.subject.0 {
        for attribute in rdn.0.iter() {
            if attribute.oid == COMMON_NAME {
                let name = attribute
                    .value
                    .decode_as::<Utf8StringRef<'_>>()
                    .map_err(|e| format!("the CN is not a UTF8String: {e}"))?;
                common_names.push(name.as_str().to_owned());
            } else if attribute.oid == DOMAIN_COMPONENT {
                let name = attribute
                    .value
                    .decode_as::<Ia5StringRef<'_>>()
                    .map_err(|e| format!("the DC is not an IA5String: {e}"))?;
                domain_components.push(name.as_str().to_owned());
            } else {
                others += 1;
            }
        }
    }
    if common_names != [state.client_id.as_str()]
        || domain_components != [state.tenant_id.as_str()]
        || others > 0
    {
        return Err(format!(
            "the subject is {}, not CN={},DC={}",
            request.info.subject, state.client_id, state.tenant_id
        ));
    }

    let mut cu_ids = request
        .info
        .attributes
        .iter()
        .filter(|attribute| attribute.oid == CU_ID_ATTRIBUTE);
    let (Some(attribute), None) = (cu_ids.next(), cu_ids.next()) else {
        return Err(format!("expected one {CU_ID_ATTRIBUTE} attribute"));
    };
    let mut values = attribute.values.iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(format!(
            "the {CU_ID_ATTRIBUTE} attribute must have one value"
        ));
    };
    let text = value
        .decode_as::<Utf8StringRef<'_>>()
        .map_err(|e| format!("the cuId is not a UTF8String: {e}"))?;
    let cu_id: Value =
        serde_json::from_str(text.as_str()).map_err(|e| format!("the cuId is not JSON: {e}"))?;
    if cu_id != state.cu_id {
        return Err(format!("the cuId is {cu_id}, not {}", state.cu_id));
    }
    Ok(public.to_vec())
}
