//! Keys fetched from a JWKS URL: [`Remote`] fetches them (once at a time),
//! keeps the last good set, refreshes it in the background and on an
//! unknown `kid` (with a cooldown), and [`Keys`] is what a validator holds.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::discovery::{self, DiscoveryError, Fetched, MAX_METADATA_BYTES, redacted};
use crate::metrics::JwksFetch;
use crate::tls;

use super::{JwksError, KeySet, MAX_JWKS_BYTES, RemoteJwks, Target};
use crate::ConfigError;

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

/// A background refresh under way: clears [`Remote::refreshing`] when
/// dropped.
struct Refreshing(Arc<Remote>);

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.0.refreshing.store(false, Ordering::Release);
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
    pub(super) fn new(config: RemoteJwks) -> Result<Self, ConfigError> {
        let roots = match &config.roots {
            Some(roots) => roots.clone(),
            None => Arc::new(tls::platform_roots().ok_or_else(|| {
                ConfigError::unavailable(
                    "RemoteJwks",
                    Some("root_store"),
                    "no platform root certificates found; give the JWKS server's roots with RemoteJwks::root_store",
                )
            })?),
        };
        let tls = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| {
                ConfigError::unavailable("RemoteJwks", None, "TLS configuration").with_source(e)
            })?
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
            None => self.fetch_once_per_cooldown(None).await,
        }
    }

    /// Fetches the keys again because a token had `kid`, which is not in
    /// them, unless keys published meanwhile hold it, or a fetch happened
    /// within the cooldown; then returns the keys as they are.
    pub(crate) async fn refetch_for_unknown_kid(
        self: &Arc<Self>,
        kid: &str,
    ) -> Option<Arc<KeySet>> {
        self.fetch_once_per_cooldown(Some(kid.to_owned())).await
    }

    /// Fetches unless someone fetched while we waited for the lock, or (for
    /// an unknown `kid`) the keys hold that `kid` by now, or the last fetch
    /// of this kind (for an unknown `kid`; or any, while there are no keys
    /// at all) is younger than the cooldown.
    async fn fetch_once_per_cooldown(
        self: &Arc<Self>,
        unknown_kid: Option<String>,
    ) -> Option<Arc<KeySet>> {
        let asked = Instant::now();
        let this = self.clone();
        let fetch = async move {
            let mut state = this.fetch.lock().await;
            if state.last_attempt.is_some_and(|last| last >= asked) {
                return;
            }
            if let Some(kid) = &unknown_kid {
                // A fetch that started before this caller asked (a
                // background refresh, say) may have published the key
                // while it waited for the lock.
                if this.current().is_some_and(|keys| keys.has_kid(Some(kid))) {
                    return;
                }
            }
            let gate = if unknown_kid.is_some() {
                state.last_unknown_kid
            } else {
                state.last_attempt
            };
            if gate.is_some_and(|last| asked.duration_since(last) < this.config.cooldown) {
                return;
            }
            if unknown_kid.is_some() {
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
        // Cleared however the task ends (done, panicked, or dropped with its
        // runtime, even before its first poll), so that refreshing never
        // stops for good: made here, not in the task.
        let refreshing = Refreshing(self.clone());
        runtime.spawn(async move {
            let this = &refreshing.0;
            let mut state = this.fetch.lock().await;
            let cooled = state
                .last_attempt
                .is_none_or(|t| t.elapsed() >= this.config.cooldown);
            if cooled {
                this.fetch_locked(&mut state).await;
            }
        });
    }

    /// What a failed fetch leaves: the last good keys, or none yet (every
    /// request with a token is then answered `503`).
    fn keeping(&self) -> &'static str {
        if self.current().is_some() {
            "keeping the last good keys"
        } else {
            "no keys yet: requests with a token are answered 503"
        }
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
                tracing::warn!(error = %e, "JWKS discovery failed; {}", self.keeping());
                return;
            }
        };
        let shown = redacted(&url);
        match self.get(&url, MAX_JWKS_BYTES).await {
            Ok(bytes) => match KeySet::parse(&bytes, generation) {
                Ok(keys) if keys.keys.is_empty() => {
                    crate::metrics::jwks_fetch(JwksFetch::Invalid);
                    tracing::warn!(url = %shown, "JWKS has no usable signing key; {}", self.keeping())
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
                    tracing::warn!(url = %shown, error = %e, "JWKS refused; {}", self.keeping())
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
                tracing::warn!(url = %shown, error = %e, "JWKS fetch failed; {}", self.keeping())
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
        let named = self.config.metadata_issuer.as_deref().unwrap_or(issuer);
        let metadata = discovery::fetch_metadata_naming(issuer, named, |uri| async move {
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
                .map_err(|e| FetchError::Transport(format!("request failed: {}", chain(&e))))?;
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

/// `error` and every cause under it, joined with ": " ("client error
/// (Connect): invalid peer certificate: UnknownIssuer"), including the
/// errors that `io::Error`s wrap (`io::Error::source` skips those); a cause
/// whose text the previous one already shows is left out.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = cause(error);
    // A bound, should a chain ever loop.
    for _ in 0..16 {
        let Some(e) = next else { break };
        let shown = e.to_string();
        if !shown.is_empty() && !text.ends_with(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        next = cause(e);
    }
    text
}

/// The error under `error`: an `io::Error`'s wrapped error, else its source.
fn cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match error
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => Some(inner),
        None => error.source(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_names_the_cause_inside_an_io_error() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let error = Outer(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        assert_eq!(
            chain(&error),
            "client error (Connect): invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn a_refresh_dropped_before_it_ran_does_not_stop_refreshing() {
        let config = RemoteJwks::new("https://issuer.example/jwks")
            .unwrap()
            .root_store(rustls::RootCertStore::empty());
        let remote = Arc::new(Remote::new(config).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();

        // The keys are due (never fetched): a refresh task is spawned, and
        // never polled, since the runtime never runs.
        {
            let _entered = runtime.enter();
            remote.refresh_if_stale();
        }
        assert!(remote.refreshing.load(Ordering::Acquire));

        // The runtime shuts down, dropping the task before its first poll.
        drop(runtime);
        assert!(
            !remote.refreshing.load(Ordering::Acquire),
            "a refresh that never ran still counts as under way"
        );
    }
}
