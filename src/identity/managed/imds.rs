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

use super::answer::{self, Issued, PlatformMetadata};
use super::csr::CredentialKey;
use super::error::{ManagedIdentityError, ManagedIdentityErrorKind as Kind};

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
        answer::platform_metadata(&body)
    }

    /// A new key, a request for it, and the certificate IMDS issues for it:
    /// checked to be for our key, valid now, and issued to the client and
    /// tenant `metadata` names.
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
        let issued = answer::credential(&body, &key)?;
        answer::check_same_identity(metadata, &issued.endpoint)?;
        Ok(issued)
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

/// A request that did not get an answer.
enum Failure {
    Timeout(String, Duration),
    Transport(String, crate::BoxError),
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
}
