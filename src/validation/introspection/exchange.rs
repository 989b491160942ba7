//! One introspection request (RFC 7662 section 2.1): where it goes, how the
//! resource server authenticates, and the answer's body within a time and a
//! size limit.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use tower::ServiceExt;

use crate::ClientIdentity;
use crate::discovery::{self, DiscoveryError, Fetched, MAX_METADATA_BYTES, Metadata, redacted};
use crate::identity::SharedIdentity;
use crate::pool::MtlsClientPool;
pub(super) use crate::source::client_auth::Secret;
use crate::source::client_auth::{basic_authorization, json_request};

/// Largest introspection answer read.
pub(super) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How the resource server authenticates to the introspection endpoint.
#[derive(Clone, Debug)]
pub(super) enum Auth {
    /// `client_secret_basic`: HTTP Basic (RFC 6749 section 2.3.1).
    SecretBasic(Secret),
    /// `client_secret_post`: `client_id` and `client_secret` in the form.
    SecretPost(Secret),
    /// `tls_client_auth` (RFC 8705 section 2): the certificate in the
    /// handshake, `client_id` in the form.
    Tls(SharedIdentity),
}

impl Auth {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Auth::SecretBasic(_) => "client_secret_basic",
            Auth::SecretPost(_) => "client_secret_post",
            Auth::Tls(_) => "tls_client_auth",
        }
    }
}

/// Where the endpoint is.
pub(super) enum Endpoint {
    Fixed(Uri),
    /// In this issuer's metadata, found at the first call and kept.
    Discover {
        issuer: String,
        resolved: Mutex<Option<Uri>>,
        /// One metadata lookup at a time (as the JWKS source fetches under
        /// its fetch lock): calls that find the endpoint unresolved wait
        /// here, then take the endpoint, or the failure of the lookup that
        /// ran while they waited. Holds that failure.
        lookup: tokio::sync::Mutex<Option<String>>,
        /// Lookups finished, to tell whether one ran while a call waited.
        lookups: AtomicU64,
    },
}

impl Endpoint {
    /// Found in `issuer`'s metadata at the first call.
    pub(super) fn discover(issuer: String) -> Self {
        Endpoint::Discover {
            issuer,
            resolved: Mutex::new(None),
            lookup: tokio::sync::Mutex::new(None),
            lookups: AtomicU64::new(0),
        }
    }
}

impl Endpoint {
    /// Forgets the discovered endpoint, if it is still `used` (the one a
    /// call sent to): a call that used an endpoint found before must not
    /// wipe one found since, which a lookup just paid for.
    fn forget(&self, used: &Uri) {
        if let Endpoint::Discover { resolved, .. } = self {
            let mut resolved = resolved.lock().unwrap_or_else(|p| p.into_inner());
            if resolved.as_ref() == Some(used) {
                *resolved = None;
            }
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Fixed(uri) => f.write_str(&redacted(uri)),
            Endpoint::Discover { issuer, .. } => write!(f, "discovered from {issuer}"),
        }
    }
}

/// Why no answer could be had: the message is for logs (it never holds the
/// token or a secret).
#[derive(Debug)]
pub(super) struct NoAnswer(pub(super) String);

/// Sends introspection requests.
#[derive(Debug)]
pub(super) struct Exchange {
    pub(super) endpoint: Endpoint,
    pub(super) client_id: String,
    pub(super) auth: Auth,
    pub(super) pool: MtlsClientPool<Full<Bytes>>,
    pub(super) timeout: Duration,
}

impl Exchange {
    /// Asks about `token`: the body of a `200` answer.
    pub(super) async fn introspect(&self, token: &str) -> Result<Bytes, NoAnswer> {
        // One identity for the whole exchange.
        let identity = match &self.auth {
            Auth::Tls(identity) => Some(identity.current()),
            _ => None,
        };
        let endpoint = self.endpoint(identity.as_ref()).await?;
        let request = self.request(endpoint.clone(), token, identity.as_ref())?;
        match self.send(request, MAX_ANSWER_BYTES).await? {
            (StatusCode::OK, body) => Ok(body),
            (status, _) => {
                if status.is_client_error() {
                    // Perhaps the issuer moved it: look again next time.
                    self.endpoint.forget(&endpoint);
                }
                let hint = match status {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                        " (are the resource server's credentials right?)"
                    }
                    _ => "",
                };
                Err(NoAnswer(format!(
                    "{} answered {status}{hint}",
                    redacted(&endpoint)
                )))
            }
        }
    }

    /// The introspection request (RFC 7662 section 2.1).
    fn request(
        &self,
        endpoint: Uri,
        token: &str,
        identity: Option<&ClientIdentity>,
    ) -> Result<Request<Full<Bytes>>, NoAnswer> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token);
        form.append_pair("token_type_hint", "access_token");
        match &self.auth {
            Auth::SecretBasic(_) => {}
            Auth::SecretPost(secret) => {
                form.append_pair("client_id", &self.client_id);
                form.append_pair("client_secret", &secret.0);
            }
            Auth::Tls(_) => {
                form.append_pair("client_id", &self.client_id);
            }
        }
        let mut request = json_request(Method::POST, endpoint, form.finish().into(), identity);
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        if let Auth::SecretBasic(secret) = &self.auth {
            let value = basic_authorization(&self.client_id, secret)
                .ok_or_else(|| NoAnswer("the client credentials make no valid header".into()))?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        Ok(request)
    }

    /// One exchange within the timeout: the status and the body (at most
    /// `limit` bytes).
    async fn send(
        &self,
        request: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), NoAnswer> {
        let shown = redacted(request.uri());
        let pool = self.pool.clone();
        let exchange = async move {
            let response = pool
                .oneshot(request)
                .await
                .map_err(|e| NoAnswer(format!("{shown}: request failed: {e}")))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    NoAnswer(format!(
                        "{shown}: cannot read the answer (limit {limit} bytes): {e}"
                    ))
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| NoAnswer(format!("no answer within {:?}", self.timeout)))?
    }

    /// The endpoint: given, or found in the issuer's metadata (once, and
    /// by one call at a time: concurrent first calls share one lookup).
    async fn endpoint(&self, identity: Option<&ClientIdentity>) -> Result<Uri, NoAnswer> {
        let (issuer, resolved, lookup, lookups) = match &self.endpoint {
            Endpoint::Fixed(uri) => return Ok(uri.clone()),
            Endpoint::Discover {
                issuer,
                resolved,
                lookup,
                lookups,
            } => (issuer, resolved, lookup, lookups),
        };
        let known = || resolved.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(uri) = known() {
            return Ok(uri);
        }
        let seen = lookups.load(Ordering::Acquire);
        let mut last_failure = lookup.lock().await;
        if let Some(uri) = known() {
            return Ok(uri);
        }
        if lookups.load(Ordering::Acquire) != seen {
            if let Some(failure) = last_failure.as_ref() {
                // A lookup ran while this call waited, and failed.
                return Err(NoAnswer(failure.clone()));
            }
        }
        let result = self.discover(issuer, identity).await;
        match &result {
            Ok(uri) => {
                *resolved.lock().unwrap_or_else(|p| p.into_inner()) = Some(uri.clone());
                *last_failure = None;
            }
            Err(failure) => *last_failure = Some(failure.0.clone()),
        }
        lookups.fetch_add(1, Ordering::Release);
        result
    }

    /// Looks the endpoint up in `issuer`'s metadata.
    async fn discover(
        &self,
        issuer: &str,
        identity: Option<&ClientIdentity>,
    ) -> Result<Uri, NoAnswer> {
        let metadata = discovery::fetch_metadata(issuer, |uri| async move {
            let request = json_request(Method::GET, uri, Bytes::new(), identity);
            match self.send(request, MAX_METADATA_BYTES).await {
                Ok((status, body)) => Fetched::Answer(status, body),
                Err(e) => Fetched::Failed(e),
            }
        })
        .await
        .map_err(|e| match e {
            DiscoveryError::Fetch(e) => e,
            DiscoveryError::NoMetadata(message) => NoAnswer(format!(
                "no usable metadata from issuer {issuer}: {message}"
            )),
        })?;
        let endpoint = self
            .pick_endpoint(&metadata)
            .map_err(|message| NoAnswer(format!("{}: {message}", metadata.url())))?;
        tracing::debug!(endpoint = %redacted(&endpoint), "introspection endpoint discovered");
        Ok(endpoint)
    }

    /// With a certificate, the RFC 8705 section 5 alias when there is one;
    /// else the plain `introspection_endpoint`.
    fn pick_endpoint(&self, metadata: &Metadata) -> Result<Uri, String> {
        let alias = match self.auth {
            Auth::Tls(_) => metadata.mtls_alias("introspection_endpoint"),
            _ => None,
        };
        match alias {
            Some(alias) => discovery::https_uri(alias).map_err(|_| {
                "mtls_endpoint_aliases.introspection_endpoint is not an https:// URL".to_owned()
            }),
            None => metadata.https_url("introspection_endpoint"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(endpoint: &Endpoint) -> Option<Uri> {
        match endpoint {
            Endpoint::Discover { resolved, .. } => resolved.lock().unwrap().clone(),
            Endpoint::Fixed(_) => unreachable!(),
        }
    }

    fn resolve(endpoint: &Endpoint, uri: &Uri) {
        if let Endpoint::Discover { resolved, .. } = endpoint {
            *resolved.lock().unwrap() = Some(uri.clone());
        }
    }

    #[test]
    fn a_refusal_from_an_old_endpoint_keeps_the_one_found_since() {
        let old = Uri::from_static("https://as.example.com/old/introspect");
        let new = Uri::from_static("https://as.example.com/new/introspect");
        let endpoint = Endpoint::discover("https://as.example.com".into());

        // A call takes the old endpoint; meanwhile another's 4xx made it be
        // looked up again, and the new one is found.
        resolve(&endpoint, &new);

        // The call that used the old one is refused in turn: the new one
        // stays.
        endpoint.forget(&old);
        assert_eq!(resolved(&endpoint), Some(new.clone()));

        // A refusal from the endpoint in use does forget it.
        endpoint.forget(&new);
        assert_eq!(resolved(&endpoint), None);
    }
}
