//! Signing keys: a JWKS given once, or fetched from a URL and kept fresh.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
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

use crate::tls;

const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where a [`JwtValidator`](super::JwtValidator) gets its signing keys.
///
/// Either a fixed key set ([`JwksSource::from_json`]) or a JWKS URL
/// ([`JwksSource::remote`], configured through [`RemoteJwks`]).
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
/// # let _ = (fixed, remote);
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
    url: Uri,
    roots: Option<Arc<RootCertStore>>,
    refresh_interval: Duration,
    cooldown: Duration,
    timeout: Duration,
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("url", &redacted(&self.url))
            .field("refresh_interval", &self.refresh_interval)
            .field("unknown_kid_cooldown", &self.cooldown)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    fn new(url: &str) -> Result<Self, JwksError> {
        let url: Uri = url
            .parse()
            .map_err(|_| JwksError::config(format!("{url:?} is not a valid URL")))?;
        if url.scheme_str() != Some("https") || url.host().is_none() {
            return Err(JwksError::config(format!(
                "the JWKS URL must be an https:// URL, got {url}"
            )));
        }
        Ok(Self {
            url,
            roots: None,
            refresh_interval: Duration::from_secs(300),
            cooldown: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
        })
    }

    /// Trusts `roots` for the JWKS server's certificate, instead of the
    /// platform's root certificates.
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

    /// How long one fetch may take, body included.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// The URL without any `user:password@` or query it may carry, for logs.
fn redacted(url: &Uri) -> String {
    let port = url.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!(
        "{}://{}{port}{}",
        url.scheme_str().unwrap_or("https"),
        url.host().unwrap_or_default(),
        url.path()
    )
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
    fetch: Mutex<FetchTimes>,
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

#[derive(Default)]
struct FetchTimes {
    /// The last fetch of any kind.
    last_attempt: Option<Instant>,
    /// The last fetch for a token with an unknown `kid`.
    last_unknown_kid: Option<Instant>,
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
            fetch: Mutex::new(FetchTimes::default()),
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
            let mut times = this.fetch.lock().await;
            if times.last_attempt.is_some_and(|last| last >= asked) {
                return;
            }
            let gate = if unknown_kid {
                times.last_unknown_kid
            } else {
                times.last_attempt
            };
            if gate.is_some_and(|last| asked.duration_since(last) < this.config.cooldown) {
                return;
            }
            if unknown_kid {
                times.last_unknown_kid = Some(Instant::now());
            }
            this.fetch_locked(&mut times).await;
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
            let mut times = this.fetch.lock().await;
            let cooled = times
                .last_attempt
                .is_none_or(|t| t.elapsed() >= this.config.cooldown);
            if cooled {
                this.fetch_locked(&mut times).await;
            }
        });
    }

    fn millis_since_start(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn fetch_locked(&self, times: &mut FetchTimes) {
        times.last_attempt = Some(Instant::now());
        // The next background refresh: after the interval if this works, after
        // the cooldown if not (set again below on success).
        self.next_refresh.store(
            self.millis_since_start().saturating_add(
                u64::try_from(self.config.cooldown.as_millis()).unwrap_or(u64::MAX),
            ),
            Ordering::Relaxed,
        );
        let generation = self.generation.load(Ordering::Acquire);
        match tokio::time::timeout(self.config.timeout, self.download()).await {
            Ok(Ok(bytes)) => match KeySet::parse(&bytes, generation) {
                Ok(keys) if keys.keys.is_empty() => {
                    tracing::warn!(url = %redacted(&self.config.url), "JWKS has no usable signing key; keeping the last good keys")
                }
                Ok(mut keys) => {
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
                        tracing::debug!(url = %redacted(&self.config.url), keys = keys.keys.len(), "JWKS loaded");
                        *current = Some(Arc::new(keys));
                    }
                }
                Err(e) => {
                    tracing::warn!(url = %redacted(&self.config.url), error = %e, "JWKS refused; keeping the last good keys")
                }
            },
            Ok(Err(e)) => {
                tracing::warn!(url = %redacted(&self.config.url), error = %e, "JWKS fetch failed; keeping the last good keys")
            }
            Err(_) => {
                tracing::warn!(url = %redacted(&self.config.url), "JWKS fetch timed out; keeping the last good keys")
            }
        }
    }

    async fn download(&self) -> Result<Bytes, JwksError> {
        let request = Request::get(self.config.url.clone())
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| JwksError::config(e.to_string()))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| JwksError::config(format!("request failed: {e}")))?;
        if !response.status().is_success() {
            return Err(JwksError::config(format!(
                "the JWKS endpoint answered {}",
                response.status()
            )));
        }
        Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| JwksError::config(format!("cannot read the JWKS: {e}")))
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
}
