use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use tower::ServiceExt;

use super::{ConfigError, TokenEndpointError, TokenEndpointErrorKind as Kind};
use crate::discovery::{self, DiscoveryError, Fetched, Metadata, UrlError};
use crate::identity::{IdentitySource, SharedIdentity};
use crate::pool::MtlsClientPool;
use crate::token::{BoxError, CacheKey, Token, TokenSource};
use crate::{ClientIdentity, Confirmation};

/// Largest token or metadata response read.
const MAX_BODY: usize = 64 * 1024;

/// OAuth 2.0 client credentials (RFC 6749 section 4.4) over mutual TLS
/// (RFC 8705): a [`TokenSource`] of certificate-bound tokens.
///
/// - Client authentication: `tls_client_auth` (a CA-issued certificate),
///   `self_signed_tls_client_auth` (the certificate is the credential), or a
///   client secret (`client_secret_basic`, `client_secret_post`) with the
///   token still bound to the certificate presented.
/// - The token endpoint is given, or discovered from the issuer
///   (`/.well-known/oauth-authorization-server`, then
///   `/.well-known/openid-configuration`), preferring
///   `mtls_endpoint_aliases.token_endpoint` (RFC 8705 section 5).
/// - The call goes out through an [`MtlsClientPool`] presenting the same
///   identity the API calls will present; share the pool with
///   [`pool`](ClientCredentialsBuilder::pool) so both use one connection set.
/// - Checks on the answer: `token_type` as the scheme expects (`Bearer`, or
///   `mtls_pop` in [Microsoft Entra's flavour](ClientCredentialsBuilder::entra_mtls_pop),
///   where a `Bearer` answer is an error); `expires_in` or a default; a JWT
///   whose `cnf.x5t#S256` is not our certificate is an error, and one
///   without `cnf` is returned as an unbound token (the binding layer then
///   refuses it unless told otherwise).
/// - Every failure is a typed [`TokenEndpointError`]; bodies are read up to
///   64 KiB; the whole exchange has a timeout (default 10 s). The client
///   secret never reaches logs or `Debug`.
///
/// ```no_run
/// use tower_token_binding::{ClientIdentity, TokenBindingLayer};
/// use tower_token_binding::source::ClientCredentials;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let identity = ClientIdentity::from_pem_files("client.pem", "client.key")?;
/// let source = ClientCredentials::builder()
///     .issuer("https://login.example.com")
///     .client_id("my-service")
///     .tls_client_auth(identity)
///     .scope("api.read")
///     .build()?;
/// let layer = TokenBindingLayer::bound(source);
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    client_id: String,
    auth: Auth,
    identity: SharedIdentity,
    params: Vec<(String, String)>,
    entra: bool,
    default_lifetime: Duration,
    timeout: Duration,
    pool: MtlsClientPool<Full<Bytes>>,
    /// The key without a thumbprint; the key for the identity the source
    /// was built with; and the latest key, replaced when the identity
    /// changes. All read without a lock on every request.
    base_key: CacheKey,
    first_key: CacheKey,
    key: ArcSwap<CacheKey>,
}

enum Endpoint {
    Fixed(Uri),
    Discover {
        issuer: String,
        resolved: Mutex<Option<Uri>>,
    },
}

#[derive(Clone)]
enum Auth {
    CaIssued,
    SelfSigned,
    SecretBasic(Secret),
    SecretPost(Secret),
    None,
}

impl Auth {
    fn name(&self) -> &'static str {
        match self {
            Auth::CaIssued => "tls_client_auth",
            Auth::SelfSigned => "self_signed_tls_client_auth",
            Auth::SecretBasic(_) => "client_secret_basic",
            Auth::SecretPost(_) => "client_secret_post",
            Auth::None => "none",
        }
    }
}

/// A client secret: never printed.
#[derive(Clone)]
struct Secret(Arc<str>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("key", &self.cache_key())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Builds [`ClientCredentials`]; [`build`](Self::build) refuses what cannot
/// work.
#[derive(Default)]
pub struct ClientCredentialsBuilder {
    token_endpoint: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
    auth: Option<Auth>,
    identity: Option<SharedIdentity>,
    params: Vec<(String, String)>,
    entra: bool,
    default_lifetime: Option<Duration>,
    timeout: Option<Duration>,
    pool: Option<MtlsClientPool<Full<Bytes>>>,
    roots: Option<Arc<rustls::RootCertStore>>,
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("token_endpoint", &self.token_endpoint)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth.as_ref().map(Auth::name))
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// A builder.
    pub fn builder() -> ClientCredentialsBuilder {
        ClientCredentialsBuilder::default()
    }

    /// The identity tokens are bound to now (a [`ReloadingIdentity`](crate::identity::ReloadingIdentity)
    /// moves on when its files are renewed).
    pub fn identity(&self) -> ClientIdentity {
        self.inner.identity.current()
    }
}

impl ClientCredentialsBuilder {
    /// The token endpoint, `https://...`. Either this or [`issuer`](Self::issuer).
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// The issuer, for discovery of the token endpoint: an `https://` URL
    /// without user info, query or fragment (RFC 8414 section 2), which
    /// [`build`](Self::build) checks. The metadata found must name this
    /// issuer exactly, trailing slash included (RFC 8414 section 3.3).
    pub fn issuer(mut self, url: impl Into<String>) -> Self {
        self.issuer = Some(url.into());
        self
    }

    /// The `client_id`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// `tls_client_auth`: authenticate with `identity`, a CA-issued
    /// certificate, and bind tokens to it. A fixed [`ClientIdentity`], or
    /// any [`IdentitySource`] such as a [`ReloadingIdentity`](crate::identity::ReloadingIdentity).
    pub fn tls_client_auth(mut self, identity: impl IdentitySource) -> Self {
        self.auth = Some(Auth::CaIssued);
        self.identity = Some(SharedIdentity::new(identity));
        self
    }

    /// `self_signed_tls_client_auth`: authenticate with `identity`, a
    /// certificate registered with the server, and bind tokens to it.
    pub fn self_signed_tls_client_auth(mut self, identity: impl IdentitySource) -> Self {
        self.auth = Some(Auth::SelfSigned);
        self.identity = Some(SharedIdentity::new(identity));
        self
    }

    /// `client_secret_basic` (RFC 6749 section 2.3.1), with tokens bound to
    /// the certificate set by [`identity`](Self::identity).
    pub fn client_secret_basic(mut self, secret: impl Into<String>) -> Self {
        self.auth = Some(Auth::SecretBasic(Secret(Arc::from(secret.into()))));
        self
    }

    /// `client_secret_post`, with tokens bound to the certificate set by
    /// [`identity`](Self::identity).
    pub fn client_secret_post(mut self, secret: impl Into<String>) -> Self {
        self.auth = Some(Auth::SecretPost(Secret(Arc::from(secret.into()))));
        self
    }

    /// The certificate to present (and bind tokens to) with a client secret.
    pub fn identity(mut self, identity: impl IdentitySource) -> Self {
        self.identity = Some(SharedIdentity::new(identity));
        self
    }

    /// The `scope` to ask for (space-separated).
    pub fn scope(self, scope: impl Into<String>) -> Self {
        self.param("scope", scope)
    }

    /// An RFC 8707 `resource` to ask for; may be given more than once.
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// Any other form parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Microsoft Entra's flavour: asks for `token_type=mtls_pop` and expects
    /// a `mtls_pop` token back (a `Bearer` answer is an error, as MSAL has
    /// it). Send such tokens with the `mtls_pop` header word.
    pub fn entra_mtls_pop(mut self) -> Self {
        self.entra = true;
        self
    }

    /// The lifetime assumed when the answer has no `expires_in`. Default 5 min.
    pub fn default_expires_in(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = Some(lifetime);
        self
    }

    /// The most one exchange (request and answer) may take. Default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends through `pool` (share it with the API calls).
    pub fn pool(mut self, pool: MtlsClientPool<Full<Bytes>>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Trusts `roots` for the authorization server (when no pool is given).
    pub fn root_store(mut self, roots: impl Into<Arc<rustls::RootCertStore>>) -> Self {
        self.roots = Some(roots.into());
        self
    }

    /// Builds the source.
    pub fn build(self) -> Result<ClientCredentials, ConfigError> {
        let client_id = self
            .client_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ConfigError::new("a client_id is required"))?;
        let auth = self.auth.unwrap_or(Auth::None);
        let Some(identity) = self.identity else {
            return Err(ConfigError::new(match auth {
                Auth::SecretBasic(_) | Auth::SecretPost(_) => {
                    "certificate-bound tokens need a client certificate: set identity(...) next to the client secret"
                }
                _ => {
                    "choose a client authentication: tls_client_auth, self_signed_tls_client_auth or a client secret with an identity"
                }
            }));
        };
        let endpoint = match (self.token_endpoint, self.issuer) {
            (Some(url), None) => Endpoint::Fixed(https_uri(&url, "token endpoint")?),
            (None, Some(issuer)) => {
                discovery::issuer_uri(&issuer).map_err(|e| ConfigError::new(e.message(&issuer)))?;
                // Kept as given: the metadata must name it exactly (RFC
                // 8414 section 3.3).
                Endpoint::Discover {
                    issuer,
                    resolved: Mutex::new(None),
                }
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "give a token endpoint or an issuer, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "a token endpoint or an issuer is required",
                ));
            }
        };
        let pool = match self.pool {
            Some(pool) => pool,
            None => {
                let mut builder = MtlsClientPool::builder();
                if let Some(roots) = self.roots {
                    builder = builder.root_store(roots);
                }
                builder
                    .build()
                    .map_err(|e| ConfigError::new(format!("cannot build the HTTPS client: {e}")))?
            }
        };
        let mut key = CacheKey::builder()
            .part(
                "endpoint",
                match &endpoint {
                    Endpoint::Fixed(uri) => uri.to_string(),
                    Endpoint::Discover { issuer, .. } => issuer.clone(),
                },
            )
            .part("client_id", &client_id)
            .part("auth", auth.name())
            .part("flavour", if self.entra { "mtls_pop" } else { "rfc8705" });
        for (name, value) in &self.params {
            key = key.part(name, value);
        }
        let base_key = key.build();
        let first_key = base_key.with_thumbprint(identity.thumbprint());
        let key = ArcSwap::from_pointee(first_key.clone());
        Ok(ClientCredentials {
            inner: Arc::new(Inner {
                endpoint,
                client_id,
                auth,
                identity,
                params: self.params,
                entra: self.entra,
                default_lifetime: self.default_lifetime.unwrap_or(Duration::from_secs(300)),
                timeout: self.timeout.unwrap_or(Duration::from_secs(10)),
                pool,
                base_key,
                first_key,
                key,
            }),
        })
    }
}

fn https_uri(url: &str, what: &str) -> Result<Uri, ConfigError> {
    discovery::https_uri(url).map_err(|e| {
        ConfigError::new(match e {
            UrlError::Invalid => format!("the {what} {url:?} is not a valid URL"),
            UrlError::NotHttps => format!(
                "the {what} must be an https:// URL (mutual TLS, and secrets, need TLS), got {url:?}"
            ),
        })
    })
}

impl TokenSource for ClientCredentials {
    type Future = Pin<Box<dyn Future<Output = Result<Token, BoxError>> + Send>>;

    fn fetch(&self) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.request_token().await.map_err(BoxError::from) })
    }

    /// The settings and the thumbprint of the current identity.
    ///
    /// Asked on every request: the key made for the current thumbprint is
    /// read without a lock, and made again only when the identity changed.
    fn cache_key(&self) -> CacheKey {
        let thumbprint = self.inner.identity.thumbprint();
        if self.inner.first_key.thumbprint() == Some(thumbprint) {
            // No renewal yet, or back to the first certificate.
            return self.inner.first_key.clone();
        }
        let key = self.inner.key.load();
        if key.thumbprint() == Some(thumbprint) {
            return CacheKey::clone(&key);
        }
        let key = self.inner.base_key.with_thumbprint(thumbprint);
        self.inner.key.store(Arc::new(key.clone()));
        key
    }
}

impl ClientCredentials {
    /// One exchange: the request, the status and the body (bounded), within
    /// the timeout.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), TokenEndpointError> {
        let pool = self.inner.pool.clone();
        let exchange = async move {
            let response = pool
                .oneshot(request)
                .await
                .map_err(|e| TokenEndpointError::new(Kind::Transport).source(e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    TokenEndpointError::new(Kind::InvalidResponse)
                        .status(status)
                        .message(format!("cannot read the body (limit {MAX_BODY} bytes)"))
                        .source(e)
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.inner.timeout, exchange)
            .await
            .map_err(|_| {
                TokenEndpointError::new(Kind::Timeout)
                    .message(format!("no answer within {:?}", self.inner.timeout))
            })?
    }

    fn request(
        method: Method,
        uri: Uri,
        body: Full<Bytes>,
        identity: &ClientIdentity,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        request
            .headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        request.extensions_mut().insert(identity.clone());
        request
    }

    /// The token endpoint: given, or discovered (once).
    async fn token_endpoint(&self, identity: &ClientIdentity) -> Result<Uri, TokenEndpointError> {
        let (issuer, resolved) = match &self.inner.endpoint {
            Endpoint::Fixed(uri) => return Ok(uri.clone()),
            Endpoint::Discover { issuer, resolved } => (issuer, resolved),
        };
        if let Some(uri) = resolved.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(uri);
        }
        let metadata = discovery::fetch_metadata(issuer, |uri| async move {
            match self
                .exchange(Self::request(Method::GET, uri, Full::default(), identity))
                .await
            {
                Ok((status, body)) => Fetched::Answer(status, body),
                Err(e) if e.kind() == Kind::Transport || e.kind() == Kind::Timeout => {
                    Fetched::Failed(e)
                }
                Err(e) => Fetched::Unusable(e.to_string()),
            }
        })
        .await
        .map_err(|e| match e {
            DiscoveryError::Fetch(e) => e,
            DiscoveryError::NoMetadata(message) => {
                TokenEndpointError::new(Kind::Discovery).message(message)
            }
        })?;
        let endpoint = self.pick_endpoint(&metadata).map_err(|message| {
            TokenEndpointError::new(Kind::Discovery)
                .message(format!("{}: {message}", metadata.url()))
        })?;
        tracing::debug!(endpoint = %discovery::redacted(&endpoint), "token endpoint discovered");
        *resolved.lock().unwrap_or_else(|p| p.into_inner()) = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// The mTLS alias if there is one (RFC 8705 section 5), else the plain
    /// token endpoint; the metadata's issuer is checked already (RFC 8414).
    fn pick_endpoint(&self, metadata: &Metadata) -> Result<Uri, String> {
        let alias = metadata.mtls_alias("token_endpoint");
        let plain = metadata.string("token_endpoint");
        let chosen = match (alias, plain) {
            (Some(alias), _) => alias,
            (None, Some(plain)) => plain,
            _ => return Err("the metadata has no token_endpoint".to_owned()),
        };
        https_uri(chosen, "token endpoint").map_err(|e| e.to_string())
    }

    /// The client-credentials request (RFC 6749 section 4.4.2).
    fn token_request(
        &self,
        endpoint: Uri,
        identity: &ClientIdentity,
    ) -> Result<Request<Full<Bytes>>, TokenEndpointError> {
        let inner = &self.inner;
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        match &inner.auth {
            Auth::SecretBasic(_) => {}
            Auth::SecretPost(secret) => {
                form.append_pair("client_id", &inner.client_id);
                form.append_pair("client_secret", &secret.0);
            }
            _ => {
                form.append_pair("client_id", &inner.client_id);
            }
        }
        if inner.entra {
            form.append_pair("token_type", "mtls_pop");
        }
        for (name, value) in &inner.params {
            form.append_pair(name, value);
        }
        let mut request = Self::request(
            Method::POST,
            endpoint,
            Full::new(Bytes::from(form.finish())),
            identity,
        );
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        if let Auth::SecretBasic(secret) = &inner.auth {
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let credentials = STANDARD.encode(format!(
                "{}:{}",
                encode(&inner.client_id),
                encode(&secret.0)
            ));
            let mut value =
                HeaderValue::try_from(format!("Basic {credentials}")).map_err(|_| {
                    TokenEndpointError::new(Kind::InvalidResponse)
                        .message("the client credentials make no valid header")
                })?;
            value.set_sensitive(true);
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        Ok(request)
    }

    async fn request_token(&self) -> Result<Token, TokenEndpointError> {
        // One identity for the whole exchange, even if it is renewed
        // meanwhile: the token is bound to the certificate that asked.
        let identity = self.inner.identity.current();
        let endpoint = self.token_endpoint(&identity).await?;
        let request = self.token_request(endpoint, &identity)?;
        let (status, body) = self.exchange(request).await?;
        if !status.is_success() {
            return Err(oauth_error(status, &body));
        }
        self.read_token(status, &body, identity)
    }

    fn read_token(
        &self,
        status: StatusCode,
        body: &[u8],
        identity: ClientIdentity,
    ) -> Result<Token, TokenEndpointError> {
        let invalid = |message: String| {
            TokenEndpointError::new(Kind::InvalidResponse)
                .status(status)
                .message(message)
        };
        let answer: Value = serde_json::from_slice(body)
            .map_err(|e| invalid(format!("the answer is not JSON: {e}")))?;
        let access_token = answer
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("no access_token string".to_owned()))?;
        let token_type = answer
            .get("token_type")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("no token_type string".to_owned()))?;
        let expected = if self.inner.entra {
            "mtls_pop"
        } else {
            "Bearer"
        };
        if !token_type.eq_ignore_ascii_case(expected) {
            return Err(TokenEndpointError::new(Kind::TokenType)
                .status(status)
                .message(format!("expected {expected}, got {token_type:?}")));
        }
        let lifetime = match answer.get("expires_in") {
            None | Some(Value::Null) => self.inner.default_lifetime,
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| invalid("expires_in is not a positive number".to_owned()))?,
            // Some servers send it as a string.
            Some(Value::String(s)) => s
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| invalid("expires_in is not a number".to_owned()))?,
            Some(_) => return Err(invalid("expires_in is not a number".to_owned())),
        };
        let token = Token::new(access_token)
            .with_token_type(token_type)
            .expires_in(lifetime);
        match jwt_confirmation(access_token) {
            // Not a JWT: opaque to us; the server binds it.
            JwtCnf::NotJwt => Ok(token.bound_to(identity)),
            JwtCnf::Unbound => {
                tracing::warn!("the token endpoint returned a JWT without cnf: an unbound token");
                Ok(token)
            }
            JwtCnf::Bound(cnf) if cnf.is_bound_to(&identity.thumbprint()) => {
                Ok(token.bound_to(identity))
            }
            JwtCnf::Bound(cnf) => Err(TokenEndpointError::new(Kind::CertificateMismatch)
                .status(status)
                .message(format!(
                    "cnf.x5t#S256 is {}, our certificate's is {}",
                    cnf.thumbprint()
                        .map_or("absent".to_owned(), |t| t.to_string()),
                    identity.thumbprint()
                ))),
            JwtCnf::Malformed(e) => {
                Err(invalid(format!("the token's cnf claim is malformed: {e}")))
            }
        }
    }
}

enum JwtCnf {
    NotJwt,
    Unbound,
    Bound(Confirmation),
    Malformed(crate::InvalidConfirmation),
}

/// Reads `cnf` from a JWT's payload, unverified: only to check that the
/// server bound the token to our certificate.
fn jwt_confirmation(token: &str) -> JwtCnf {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return JwtCnf::NotJwt;
    };
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')) else {
        return JwtCnf::NotJwt;
    };
    let Ok(claims) = serde_json::from_slice::<Value>(&bytes) else {
        return JwtCnf::NotJwt;
    };
    match Confirmation::from_claims(&claims) {
        Ok(None) => JwtCnf::Unbound,
        Ok(Some(cnf)) => JwtCnf::Bound(cnf),
        Err(e) => JwtCnf::Malformed(e),
    }
}

/// RFC 6749 section 5.2 error, or a plain status error.
fn oauth_error(status: StatusCode, body: &[u8]) -> TokenEndpointError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str);
    match error {
        Some(error) => {
            let description = parsed
                .as_ref()
                .and_then(|v| v.get("error_description"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            TokenEndpointError::new(Kind::OAuth)
                .status(status)
                .oauth(error.to_owned(), description)
        }
        None => TokenEndpointError::new(Kind::Status).status(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_cnf() {
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        assert!(matches!(jwt_confirmation("opaque"), JwtCnf::NotJwt));
        assert!(matches!(
            jwt_confirmation(&format!("h.{}.s", enc(serde_json::json!({"sub": "x"})))),
            JwtCnf::Unbound
        ));
        assert!(matches!(
            jwt_confirmation(&format!("h.{}.s", enc(serde_json::json!({"cnf": "x"})))),
            JwtCnf::Malformed(_)
        ));
        assert!(matches!(jwt_confirmation("a.!!!.c"), JwtCnf::NotJwt));
    }

    #[test]
    fn oauth_errors_keep_code_and_description() {
        let e = oauth_error(
            StatusCode::UNAUTHORIZED,
            br#"{"error":"invalid_client","error_description":"no such client"}"#,
        );
        assert_eq!(e.kind(), Kind::OAuth);
        assert_eq!(e.oauth_error(), Some("invalid_client"));
        assert_eq!(e.oauth_description(), Some("no such client"));
        assert!(e.to_string().contains("invalid_client"));
        let e = oauth_error(StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(
            (e.kind(), e.http_status()),
            (Kind::Status, Some(StatusCode::BAD_GATEWAY))
        );
    }
}
