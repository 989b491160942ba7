use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use tower::ServiceExt;

use super::builder::{ClientCredentialsBuilder, checked_https_uri};
use super::client_auth::{Secret, basic_authorization, json_request};
use super::response::{oauth_error, read_token};
use super::{TokenEndpointError, TokenEndpointErrorKind as Kind};
use crate::ClientIdentity;
use crate::discovery::{self, DiscoveryError, Fetched, Metadata};
use crate::identity::{IdentitySource, SharedIdentity};
use crate::pool::MtlsClientPool;
use crate::proof::dpop::{DPOP, DpopProofs};
use crate::proof::pop::{POP_TYPE, PopProofs};
use crate::token::{BoxError, CacheKey, Token, TokenSource};

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
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) endpoint: Endpoint,
    pub(super) client_id: String,
    pub(super) auth: Auth,
    /// The certificate presented; none with a client secret and DPoP or
    /// PoP.
    pub(super) identity: Option<SharedIdentity>,
    pub(super) params: Vec<(String, String)>,
    pub(super) entra: bool,
    /// Opaque tokens fetched with a certificate are bound to it.
    pub(super) opaque_certificate_bound: bool,
    pub(super) default_lifetime: Duration,
    /// The longest `expires_in` accepted.
    pub(super) max_lifetime: Duration,
    pub(super) timeout: Duration,
    pub(super) pool: MtlsClientPool<Full<Bytes>>,
    /// The DPoP key's proofs, when tokens are bound to it.
    pub(super) dpop: Option<DpopProofs>,
    /// The PoP key's signed HTTP requests, when tokens are bound to it.
    pub(super) pop: Option<PopProofs>,
    /// The key without a thumbprint; the key for the identity the source
    /// was built with; and the latest key, replaced when the identity
    /// changes. All read without a lock on every request.
    pub(super) base_key: CacheKey,
    pub(super) first_key: CacheKey,
    pub(super) key: ArcSwap<CacheKey>,
}

pub(super) enum Endpoint {
    Fixed(Uri),
    Discover {
        issuer: String,
        resolved: Mutex<Option<Uri>>,
        /// One metadata lookup at a time: fetches that find the endpoint
        /// unresolved wait here, then take the endpoint a lookup found
        /// while they waited (or look it up themselves after a failure).
        lookup: tokio::sync::Mutex<()>,
    },
}

impl Endpoint {
    /// Found in `issuer`'s metadata at the first fetch.
    pub(super) fn discover(issuer: String) -> Self {
        Endpoint::Discover {
            issuer,
            resolved: Mutex::new(None),
            lookup: tokio::sync::Mutex::new(()),
        }
    }
}

#[derive(Clone)]
pub(super) enum Auth {
    CaIssued,
    SelfSigned,
    SecretBasic(Secret),
    SecretPost(Secret),
    None,
}

impl Auth {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Auth::CaIssued => "tls_client_auth",
            Auth::SelfSigned => "self_signed_tls_client_auth",
            Auth::SecretBasic(_) => "client_secret_basic",
            Auth::SecretPost(_) => "client_secret_post",
            Auth::None => "none",
        }
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

impl ClientCredentials {
    /// A builder.
    pub fn builder() -> ClientCredentialsBuilder {
        ClientCredentialsBuilder::default()
    }

    /// The identity presented now (a [`ReloadingIdentity`](crate::identity::ReloadingIdentity)
    /// moves on when its files are renewed): the one tokens are bound to,
    /// without DPoP or PoP. `None` for a client secret with DPoP or PoP.
    pub fn identity(&self) -> Option<ClientIdentity> {
        self.inner.identity.as_ref().map(SharedIdentity::current)
    }

    /// The proofs of the DPoP key tokens are bound to, if
    /// [DPoP](ClientCredentialsBuilder::dpop) is on; their nonce memory
    /// holds the nonces of the authorization server.
    pub fn dpop_proofs(&self) -> Option<&DpopProofs> {
        self.inner.dpop.as_ref()
    }

    /// The signed HTTP requests of the PoP key tokens are bound to, if
    /// [PoP](ClientCredentialsBuilder::pop) is on.
    pub fn pop_proofs(&self) -> Option<&PopProofs> {
        self.inner.pop.as_ref()
    }

    /// Now [`pop_proofs`](Self::pop_proofs).
    #[deprecated(note = "renamed `pop_proofs`")]
    pub fn pop_requests(&self) -> Option<&PopProofs> {
        self.pop_proofs()
    }
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
        let Some(identity) = &self.inner.identity else {
            return self.inner.first_key.clone();
        };
        let thumbprint = identity.thumbprint();
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

    /// Binds a token from a shared cache as [`fetch`](Self::fetch) would:
    /// to the DPoP or PoP key, if any, and to the current identity, whose
    /// thumbprint must be the one in `key` (a certificate renewed meanwhile
    /// gets a token of its own).
    fn bind_shared(&self, key: &CacheKey, token: Token) -> Option<Token> {
        let identity = self.identity();
        if identity.as_ref().map(ClientIdentity::thumbprint) != key.thumbprint() {
            return None;
        }
        let token = match identity {
            Some(identity) if self.inner.dpop.is_some() || self.inner.pop.is_some() => {
                token.with_identity(identity)
            }
            Some(identity) => token.bound_to(identity),
            None => token,
        };
        if let Some(proofs) = &self.inner.dpop {
            return Some(token.dpop_bound(proofs.clone()));
        }
        if let Some(shrs) = &self.inner.pop {
            return Some(token.pop_bound(shrs.clone()));
        }
        // Certificate-bound: only with a certificate.
        token.identity().is_some().then_some(token)
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
        // Every answer of the authorization server may carry its next
        // DPoP nonce.
        let nonces = self
            .inner
            .dpop
            .as_ref()
            .map(|proofs| (proofs.nonces().clone(), request.uri().clone()));
        let exchange = async move {
            let response = pool
                .oneshot(request)
                .await
                .map_err(|e| TokenEndpointError::new(Kind::Transport).source(e))?;
            let status = response.status();
            if let Some((nonces, uri)) = &nonces {
                nonces.remember_from_headers(uri, response.headers());
            }
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

    /// The token endpoint: given, or discovered (once, and by one fetch at
    /// a time: concurrent first fetches share one lookup).
    async fn token_endpoint(
        &self,
        identity: Option<&ClientIdentity>,
    ) -> Result<Uri, TokenEndpointError> {
        let (issuer, resolved, lookup) = match &self.inner.endpoint {
            Endpoint::Fixed(uri) => return Ok(uri.clone()),
            Endpoint::Discover {
                issuer,
                resolved,
                lookup,
            } => (issuer, resolved, lookup),
        };
        let known = || resolved.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(uri) = known() {
            return Ok(uri);
        }
        let _lookup = lookup.lock().await;
        // A lookup may have finished while this fetch waited.
        if let Some(uri) = known() {
            return Ok(uri);
        }
        let metadata = discovery::fetch_metadata(issuer, |uri| async move {
            match self
                .exchange(json_request(Method::GET, uri, Bytes::new(), identity))
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
        checked_https_uri(chosen, "token endpoint")
    }

    /// The client-credentials request (RFC 6749 section 4.4.2).
    fn token_request(
        &self,
        endpoint: Uri,
        identity: Option<&ClientIdentity>,
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
        if let Some(shrs) = &inner.pop {
            form.append_pair("token_type", POP_TYPE);
            form.append_pair("req_cnf", shrs.req_cnf());
        }
        for (name, value) in &inner.params {
            form.append_pair(name, value);
        }
        let mut request =
            json_request(Method::POST, endpoint, Bytes::from(form.finish()), identity);
        request.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        if let Auth::SecretBasic(secret) = &inner.auth {
            let value = basic_authorization(&inner.client_id, secret).ok_or_else(|| {
                TokenEndpointError::new(Kind::InvalidResponse)
                    .message("the client credentials make no valid header")
            })?;
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        if let Some(proofs) = &inner.dpop {
            // A new proof for each request, with the nonce last sent.
            let proof = proofs
                .proof(&Method::POST, request.uri(), None)
                .map_err(|e| {
                    TokenEndpointError::new(Kind::Proof)
                        .message("cannot make the DPoP proof")
                        .source(e)
                })?;
            let mut proof = HeaderValue::try_from(proof).map_err(|_| {
                TokenEndpointError::new(Kind::Proof).message("the DPoP proof makes no valid header")
            })?;
            proof.set_sensitive(true);
            request.headers_mut().insert(DPOP, proof);
        }
        Ok(request)
    }

    async fn request_token(&self) -> Result<Token, TokenEndpointError> {
        // One identity for the whole exchange, even if it is renewed
        // meanwhile: the token is bound to the certificate that asked.
        let identity = self.inner.identity.as_ref().map(SharedIdentity::current);
        let endpoint = self.token_endpoint(identity.as_ref()).await?;
        let request = self.token_request(endpoint.clone(), identity.as_ref())?;
        let (mut status, mut body) = self.exchange(request).await?;
        if self.asks_for_dpop_nonce(status, &body, &endpoint) {
            // RFC 9449 section 8: once, with a new proof carrying the nonce
            // just sent. A second refusal is the answer.
            tracing::debug!("the token endpoint asked for a DPoP nonce; asking again with it");
            let request = self.token_request(endpoint, identity.as_ref())?;
            (status, body) = self.exchange(request).await?;
        }
        if !status.is_success() {
            return Err(oauth_error(status, &body));
        }
        read_token(&self.inner, status, &body, identity)
    }

    /// Whether the answer is `400 use_dpop_nonce` and a nonce for the
    /// endpoint is known now (it came with the answer), so asking again
    /// can help.
    fn asks_for_dpop_nonce(&self, status: StatusCode, body: &[u8], endpoint: &Uri) -> bool {
        let Some(proofs) = &self.inner.dpop else {
            return false;
        };
        status == StatusCode::BAD_REQUEST
            && oauth_error(status, body).oauth_error() == Some("use_dpop_nonce")
            && proofs.nonces().get(endpoint).is_some()
    }
}
