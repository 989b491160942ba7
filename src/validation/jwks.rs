//! Signing keys: a JWKS given once, or fetched from a URL and kept fresh.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use rustls::RootCertStore;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::discovery::{self, DiscoveryError, Fetched, MAX_METADATA_BYTES, UrlError, redacted};
use crate::metrics::JwksFetch;
use crate::tls;

const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where a [`JwtValidator`](super::JwtValidator) gets its signing keys.
///
/// Either a fixed key set ([`JwksSource::from_json`]), a JWKS URL
/// ([`JwksSource::remote`]), or the JWKS URL an issuer publishes in its
/// metadata ([`JwksSource::discover`]); the last two are configured
/// through [`RemoteJwks`].
///
/// ```
/// use std::time::Duration;
/// use tower_token_binding::validation::JwksSource;
///
/// let fixed = JwksSource::from_json(r#"{"keys": []}"#).unwrap();
/// let remote = JwksSource::remote("https://issuer.example/jwks")
///     .unwrap()
///     .refresh_interval(Duration::from_secs(600))
///     .unknown_kid_cooldown(Duration::from_secs(30));
/// let discovered = JwksSource::discover("https://issuer.example")
///     .unwrap()
///     .timeout(Duration::from_secs(5));
/// # let _ = (fixed, remote, discovered);
/// ```
#[derive(Clone)]
pub struct JwksSource {
    kind: SourceKind,
}

#[derive(Clone)]
enum SourceKind {
    Static(Arc<KeySet>),
    Remote(RemoteJwks),
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SourceKind::Static(keys) => f
                .debug_struct("JwksSource::Static")
                .field("keys", &keys.keys.len())
                .finish(),
            SourceKind::Remote(remote) => remote.fmt(f),
        }
    }
}

impl JwksSource {
    /// A fixed key set from JWKS JSON (RFC 7517: `{"keys": [...]}`).
    ///
    /// Keys that are not usable for verifying signatures (symmetric keys,
    /// encryption keys, unknown types) are skipped.
    pub fn from_json(jwks: &str) -> Result<Self, JwksError> {
        let keys = KeySet::parse(jwks.as_bytes(), 0)?;
        Ok(Self {
            kind: SourceKind::Static(Arc::new(keys)),
        })
    }

    /// Keys fetched over HTTPS from `url`, configured further through the
    /// returned [`RemoteJwks`].
    pub fn remote(url: &str) -> Result<RemoteJwks, JwksError> {
        RemoteJwks::new(url)
    }

    /// Keys fetched over HTTPS from the `jwks_uri` that `issuer` publishes
    /// in its metadata, configured further through the returned
    /// [`RemoteJwks`] (trusted roots, refresh interval, cooldown and timeout
    /// apply to the metadata requests too).
    ///
    /// The JWKS URL is found at the first key fetch, not here: from RFC 8414
    /// metadata (`/.well-known/oauth-authorization-server`, inserted between
    /// the host and the issuer's path), else from OpenID Connect Discovery
    /// (`{issuer}/.well-known/openid-configuration`). The metadata must name
    /// the same `issuer` and an `https://` `jwks_uri`; bodies are read up to
    /// 64 KiB. The URL found is kept, and
    /// looked up again only if the JWKS endpoint answers with a `4xx`
    /// status (the issuer moved it). A failed discovery is a failed key
    /// fetch like any other: the last good keys stay in use, and it is tried
    /// again after the [cooldown](RemoteJwks::unknown_kid_cooldown).
    ///
    /// `issuer` must be an `https://` URL without user info, query or
    /// fragment (RFC 8414 section 2), and the metadata must name it exactly,
    /// trailing slash included (RFC 8414 section 3.3).
    ///
    /// ```
    /// use tower_token_binding::validation::{JwksSource, JwtValidator};
    ///
    /// let validator = JwtValidator::builder()
    ///     .issuer("https://login.example.com/tenant")
    ///     .audience("https://api.example.com")
    ///     .jwks(JwksSource::discover("https://login.example.com/tenant").unwrap())
    ///     .build()
    ///     .unwrap();
    /// # let _ = validator;
    ///
    /// assert!(JwksSource::discover("http://login.example.com").is_err());
    /// assert!(JwksSource::discover("https://login.example.com/?tenant=1").is_err());
    /// ```
    pub fn discover(issuer: &str) -> Result<RemoteJwks, JwksError> {
        RemoteJwks::discover(issuer)
    }

    pub(crate) fn into_keys(self) -> Result<Keys, JwksError> {
        match self.kind {
            SourceKind::Static(keys) => Ok(Keys::Static(keys)),
            SourceKind::Remote(config) => Ok(Keys::Remote(Arc::new(Remote::new(config)?))),
        }
    }
}

impl From<RemoteJwks> for JwksSource {
    fn from(remote: RemoteJwks) -> Self {
        Self {
            kind: SourceKind::Remote(remote),
        }
    }
}

/// A JWKS URL and how to keep its keys fresh.
///
/// - The keys are fetched on first use, then again every
///   [`refresh_interval`](Self::refresh_interval) (default 5 minutes) in the
///   background.
/// - A token signed with a `kid` not in the set makes the keys be fetched
///   again at once, but at most once per
///   [`unknown_kid_cooldown`](Self::unknown_kid_cooldown) (default 10 s):
///   random `kid`s cannot hammer the key server.
/// - When a fetch fails, the last good keys stay in use.
#[derive(Clone)]
pub struct RemoteJwks {
    target: Target,
    roots: Option<Arc<RootCertStore>>,
    refresh_interval: Duration,
    cooldown: Duration,
    timeout: Duration,
}

/// Where the keys are.
#[derive(Clone)]
enum Target {
    /// At this URL.
    Url(Uri),
    /// At the `jwks_uri` in this issuer's metadata.
    Discover(String),
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RemoteJwks");
        match &self.target {
            Target::Url(url) => d.field("url", &redacted(url)),
            Target::Discover(issuer) => d.field("issuer", issuer),
        };
        d.field("refresh_interval", &self.refresh_interval)
            .field("unknown_kid_cooldown", &self.cooldown)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    fn new(url: &str) -> Result<Self, JwksError> {
        let url = discovery::https_uri(url).map_err(|e| match e {
            UrlError::Invalid => JwksError::config(format!("{url:?} is not a valid URL")),
            UrlError::NotHttps => {
                JwksError::config(format!("the JWKS URL must be an https:// URL, got {url}"))
            }
        })?;
        Ok(Self::with_target(Target::Url(url)))
    }

    fn discover(issuer: &str) -> Result<Self, JwksError> {
        discovery::issuer_uri(issuer).map_err(|e| JwksError::config(e.message(issuer)))?;
        // Kept as given: the metadata must name it exactly (RFC 8414
        // section 3.3).
        Ok(Self::with_target(Target::Discover(issuer.to_owned())))
    }

    fn with_target(target: Target) -> Self {
        Self {
            target,
            roots: None,
            refresh_interval: Duration::from_secs(300),
            cooldown: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
        }
    }

    /// Trusts `roots` for the JWKS server's certificate (and the metadata
    /// server's, with [`JwksSource::discover`]), instead of the platform's
    /// root certificates.
    pub fn root_store(mut self, roots: impl Into<Arc<RootCertStore>>) -> Self {
        self.roots = Some(roots.into());
        self
    }

    /// How often the keys are fetched again in the background.
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The least time between two fetches caused by unknown `kid`s (or by
    /// failures to load any keys).
    pub fn unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// How long one request may take, body included (each of the metadata
    /// and JWKS requests, with [`JwksSource::discover`]). Default 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The error for a key set that cannot be used or fetched.
#[derive(Debug, Clone)]
pub struct JwksError {
    message: String,
}

impl JwksError {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JwksError {}

/// A parsed key set.
pub(crate) struct KeySet {
    keys: Vec<Key>,
    /// Changes whenever the published keys change; verified tokens cached
    /// under another generation are not trusted.
    pub(crate) generation: u64,
    source: Value,
}

struct Key {
    kid: Option<String>,
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    decoding: DecodingKey,
}

impl KeySet {
    fn parse(bytes: &[u8], generation: u64) -> Result<Self, JwksError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| JwksError::config(format!("the JWKS is not JSON: {e}")))?;
        let Some(entries) = value.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::config("the JWKS has no \"keys\" array"));
        };
        let keys = entries.iter().filter_map(Key::parse).collect();
        Ok(Self {
            keys,
            generation,
            source: value,
        })
    }

    /// The key for a token with `kid` and `alg`. A token without `kid` is
    /// matched only when exactly one key fits its algorithm.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&DecodingKey> {
        let fits = |key: &&Key| key.family == alg.family() && key.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(fits)
                .find(|key| key.kid.as_deref() == Some(kid))
                .map(|key| &key.decoding),
            None => {
                let mut candidates = self.keys.iter().filter(fits);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Some(&only.decoding),
                    _ => None,
                }
            }
        }
    }

    pub(crate) fn has_kid(&self, kid: Option<&str>) -> bool {
        kid.is_none_or(|kid| self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }
}

impl Key {
    fn parse(value: &Value) -> Option<Self> {
        let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
        if matches!(
            jwk.common.public_key_use,
            Some(ref u) if *u != PublicKeyUse::Signature
        ) {
            return None;
        }
        let alg = match &jwk.common.key_algorithm {
            None => None,
            Some(alg) => Some(alg.to_string().parse::<Algorithm>().ok()?),
        };
        let decoding = DecodingKey::from_jwk(&jwk).ok()?;
        let family = decoding.family();
        // A published key set is public: a symmetric key in it would let
        // anyone mint tokens. Never use one.
        if family == AlgorithmFamily::Hmac {
            return None;
        }
        Some(Self {
            kid: jwk.common.key_id,
            alg,
            family,
            decoding,
        })
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The keys a validator uses.
pub(crate) enum Keys {
    Static(Arc<KeySet>),
    Remote(Arc<Remote>),
}

impl Keys {
    /// The generation of the current keys, without waiting.
    pub(crate) fn generation(&self) -> u64 {
        match self {
            Keys::Static(keys) => keys.generation,
            Keys::Remote(remote) => remote.generation.load(Ordering::Acquire),
        }
    }
}

pub(crate) struct Remote {
    config: RemoteJwks,
    client: HttpsClient,
    current: RwLock<Option<Arc<KeySet>>>,
    fetch: Mutex<FetchState>,
    refreshing: AtomicBool,
    generation: AtomicU64,
    /// When the next background refresh is due, in ms since `started`.
    next_refresh: AtomicU64,
    started: Instant,
}

/// Clears a flag when dropped.
struct ClearOnDrop<'a>(&'a AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What the fetches share, behind the fetch lock.
#[derive(Default)]
struct FetchState {
    /// The last fetch of any kind.
    last_attempt: Option<Instant>,
    /// The last fetch for a token with an unknown `kid`.
    last_unknown_kid: Option<Instant>,
    /// The JWKS URL found in the issuer's metadata, when discovering.
    discovered: Option<Uri>,
}

/// How a fetch failed.
enum FetchError {
    /// The server answered with this status.
    Status(StatusCode),
    /// No answer: connection, TLS, timeout.
    Transport(String),
    /// A success, with a body that cannot be read or is over the limit.
    Body(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Status(status) => write!(f, "the server answered {status}"),
            FetchError::Transport(message) | FetchError::Body(message) => f.write_str(message),
        }
    }
}

impl Remote {
    fn new(config: RemoteJwks) -> Result<Self, JwksError> {
        let roots = match &config.roots {
            Some(roots) => roots.clone(),
            None => Arc::new(tls::platform_roots().ok_or_else(|| {
                JwksError::config(
                    "no platform root certificates found; give the JWKS server's roots with RemoteJwks::root_store",
                )
            })?),
        };
        let tls = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| JwksError::config(format!("TLS configuration: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(Self {
            config,
            client: Client::builder(TokioExecutor::new()).build(connector),
            current: RwLock::new(None),
            fetch: Mutex::new(FetchState::default()),
            refreshing: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            next_refresh: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current keys, loading them first if there are none yet.
    pub(crate) async fn keys(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        match self.current() {
            Some(keys) => {
                self.refresh_if_stale();
                Some(keys)
            }
            None => self.fetch_once_per_cooldown(false).await,
        }
    }

    /// Fetches the keys again because a token had a `kid` not in them,
    /// unless a fetch happened within the cooldown; then returns the keys as
    /// they are.
    pub(crate) async fn refetch_for_unknown_kid(self: &Arc<Self>) -> Option<Arc<KeySet>> {
        self.fetch_once_per_cooldown(true).await
    }

    /// Fetches unless someone fetched while we waited for the lock, or the
    /// last fetch of this kind (for an unknown `kid`; or any, while there are
    /// no keys at all) is younger than the cooldown.
    async fn fetch_once_per_cooldown(self: &Arc<Self>, unknown_kid: bool) -> Option<Arc<KeySet>> {
        let asked = Instant::now();
        let this = self.clone();
        let fetch = async move {
            let mut state = this.fetch.lock().await;
            if state.last_attempt.is_some_and(|last| last >= asked) {
                return;
            }
            let gate = if unknown_kid {
                state.last_unknown_kid
            } else {
                state.last_attempt
            };
            if gate.is_some_and(|last| asked.duration_since(last) < this.config.cooldown) {
                return;
            }
            if unknown_kid {
                state.last_unknown_kid = Some(Instant::now());
            }
            this.fetch_locked(&mut state).await;
        };
        // In its own task: a request that is dropped (client gone, timeout)
        // must not cancel the fetch it started, or the cooldown would be
        // spent with nothing fetched.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let _ = runtime.spawn(fetch).await;
            }
            Err(_) => fetch.await,
        }
        self.current()
    }

    /// Starts a background refresh when the keys are older than the refresh
    /// interval. Cheap when they are not: one atomic load.
    pub(crate) fn refresh_if_stale(self: &Arc<Self>) {
        if self.millis_since_start() < self.next_refresh.load(Ordering::Relaxed) {
            return;
        }
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            // Cleared however the task ends (done, panicked, or dropped with
            // its runtime), so that refreshing never stops for good.
            let _clear = ClearOnDrop(&this.refreshing);
            let mut state = this.fetch.lock().await;
            let cooled = state
                .last_attempt
                .is_none_or(|t| t.elapsed() >= this.config.cooldown);
            if cooled {
                this.fetch_locked(&mut state).await;
            }
        });
    }

    fn millis_since_start(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn fetch_locked(&self, state: &mut FetchState) {
        state.last_attempt = Some(Instant::now());
        // The next background refresh: after the interval if this works, after
        // the cooldown if not (set again below on success).
        self.next_refresh.store(
            self.millis_since_start().saturating_add(
                u64::try_from(self.config.cooldown.as_millis()).unwrap_or(u64::MAX),
            ),
            Ordering::Relaxed,
        );
        let generation = self.generation.load(Ordering::Acquire);
        let url = match self.jwks_url(state).await {
            Ok(url) => url,
            Err(e) => {
                crate::metrics::jwks_fetch(JwksFetch::Discovery);
                tracing::warn!(error = %e, "JWKS discovery failed; keeping the last good keys");
                return;
            }
        };
        let shown = redacted(&url);
        match self.get(&url, MAX_JWKS_BYTES).await {
            Ok(bytes) => match KeySet::parse(&bytes, generation) {
                Ok(keys) if keys.keys.is_empty() => {
                    crate::metrics::jwks_fetch(JwksFetch::Invalid);
                    tracing::warn!(url = %shown, "JWKS has no usable signing key; keeping the last good keys")
                }
                Ok(mut keys) => {
                    crate::metrics::jwks_fetch(JwksFetch::Ok);
                    self.next_refresh.store(
                        self.millis_since_start().saturating_add(
                            u64::try_from(self.config.refresh_interval.as_millis())
                                .unwrap_or(u64::MAX),
                        ),
                        Ordering::Relaxed,
                    );
                    let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                    let changed = current.as_ref().is_none_or(|old| old.source != keys.source);
                    if changed {
                        keys.generation = generation + 1;
                        self.generation.store(keys.generation, Ordering::Release);
                        tracing::debug!(url = %shown, keys = keys.keys.len(), "JWKS loaded");
                        *current = Some(Arc::new(keys));
                    }
                }
                Err(e) => {
                    crate::metrics::jwks_fetch(JwksFetch::Invalid);
                    tracing::warn!(url = %shown, error = %e, "JWKS refused; keeping the last good keys")
                }
            },
            Err(e) => {
                crate::metrics::jwks_fetch(match e {
                    FetchError::Status(_) => JwksFetch::HttpStatus,
                    FetchError::Transport(_) => JwksFetch::Transport,
                    FetchError::Body(_) => JwksFetch::Invalid,
                });
                if matches!(e, FetchError::Status(status) if status.is_client_error()) {
                    // Perhaps the issuer moved its keys: look again next time.
                    state.discovered = None;
                }
                tracing::warn!(url = %shown, error = %e, "JWKS fetch failed; keeping the last good keys")
            }
        }
    }

    /// The JWKS URL: configured, found earlier, or found now in the issuer's
    /// metadata.
    async fn jwks_url(&self, state: &mut FetchState) -> Result<Uri, JwksError> {
        let issuer = match &self.config.target {
            Target::Url(url) => return Ok(url.clone()),
            Target::Discover(issuer) => issuer,
        };
        if let Some(url) = &state.discovered {
            return Ok(url.clone());
        }
        let metadata = discovery::fetch_metadata(issuer, |uri| async move {
            match self.get(&uri, MAX_METADATA_BYTES).await {
                Ok(body) => Fetched::Answer(StatusCode::OK, body),
                Err(FetchError::Status(status)) => Fetched::Answer(status, Bytes::new()),
                Err(e @ FetchError::Body(_)) => Fetched::Unusable(e.to_string()),
                Err(e @ FetchError::Transport(_)) => Fetched::Failed(e),
            }
        })
        .await
        .map_err(|e| match e {
            DiscoveryError::Fetch(e) => {
                JwksError::config(format!("no metadata from issuer {issuer}: {e}"))
            }
            DiscoveryError::NoMetadata(message) => JwksError::config(format!(
                "no usable metadata from issuer {issuer}: {message}"
            )),
        })?;
        let url = metadata
            .https_url("jwks_uri")
            .map_err(|message| JwksError::config(format!("{}: {message}", metadata.url())))?;
        tracing::debug!(%issuer, url = %redacted(&url), "JWKS URL discovered");
        state.discovered = Some(url.clone());
        Ok(url)
    }

    /// `GET url` within the timeout; the body (up to `limit` bytes) of a
    /// success, else why not.
    async fn get(&self, url: &Uri, limit: usize) -> Result<Bytes, FetchError> {
        let request = Request::get(url.clone())
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Transport(format!("request failed: {e}")))?;
            if !response.status().is_success() {
                return Err(FetchError::Status(response.status()));
            }
            Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map(|body| body.to_bytes())
                .map_err(|e| {
                    FetchError::Body(format!("cannot read the body (limit {limit} bytes): {e}"))
                })
        };
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(FetchError::Transport(format!(
                    "no answer within {:?}",
                    self.config.timeout
                )))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unusable_keys_are_skipped() {
        let jwks = json!({ "keys": [
            { "kty": "oct", "k": "c2VjcmV0", "kid": "hmac" },
            { "kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
              "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
              "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" },
            { "kty": "EC", "crv": "P-256", "kid": "sig",
              "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
              "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" },
            { "kty": "weird" },
            "not an object"
        ]});
        let set = KeySet::parse(jwks.to_string().as_bytes(), 0).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(set.find(Some("sig"), Algorithm::ES256).is_some());
        assert!(set.find(None, Algorithm::ES256).is_some());
        assert!(set.find(Some("sig"), Algorithm::RS256).is_none());
        assert!(set.find(Some("hmac"), Algorithm::HS256).is_none());
        assert!(set.find(Some("enc"), Algorithm::ES256).is_none());
    }

    #[test]
    fn bad_jwks_documents() {
        assert!(JwksSource::from_json("nope").is_err());
        assert!(JwksSource::from_json("{}").is_err());
        assert!(JwksSource::from_json(r#"{"keys": {}}"#).is_err());
        assert!(JwksSource::from_json(r#"{"keys": []}"#).is_ok());
    }

    #[test]
    fn only_https_urls() {
        assert!(JwksSource::remote("http://issuer.example/jwks").is_err());
        assert!(JwksSource::remote("not a url").is_err());
        assert!(JwksSource::remote("https://issuer.example/jwks").is_ok());
    }

    #[test]
    fn only_https_issuers_without_extras() {
        for bad in [
            "http://issuer.example",
            "issuer.example",
            "not a url",
            "",
            "https://",
            "https://user:pw@issuer.example",
            "https://issuer.example/?tenant=1",
            "https://issuer.example/#frag",
        ] {
            assert!(JwksSource::discover(bad).is_err(), "{bad:?}");
        }
        let remote = JwksSource::discover("https://issuer.example/tenant/").unwrap();
        assert_eq!(
            format!("{remote:?}"),
            "RemoteJwks { issuer: \"https://issuer.example/tenant/\", refresh_interval: 300s, \
             unknown_kid_cooldown: 10s, timeout: 10s, .. }"
        );
    }

    #[test]
    fn debug_hides_userinfo_and_query() {
        let remote = JwksSource::remote("https://u:pw@issuer.example/jwks?sig=s3cret").unwrap();
        let debug = format!("{remote:?}");
        assert!(debug.contains("https://issuer.example/jwks"), "{debug}");
        assert!(
            !debug.contains("pw") && !debug.contains("s3cret"),
            "{debug}"
        );
    }
}
