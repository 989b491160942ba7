//! Signing keys: a JWKS given once, or fetched from a URL and kept fresh.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use rustls::RootCertStore;
use serde_json::Value;

use crate::ConfigError;
use crate::discovery::{self, UrlError, redacted};
use crate::proof::{Algorithm, PublicJwk};

mod remote;
#[cfg(test)]
mod tests;

pub(crate) use remote::{Keys, Remote};

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
///     .issuer_timeout(Duration::from_secs(5));
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
    pub fn from_json(jwks: &str) -> Result<Self, ConfigError> {
        let keys = KeySet::parse(jwks.as_bytes(), 0)
            .map_err(|e| ConfigError::invalid("JwksSource", "from_json", e.to_string()))?;
        Ok(Self {
            kind: SourceKind::Static(Arc::new(keys)),
        })
    }

    /// Keys fetched over HTTPS from `url`, configured further through the
    /// returned [`RemoteJwks`].
    pub fn remote(url: &str) -> Result<RemoteJwks, ConfigError> {
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
    pub fn discover(issuer: &str) -> Result<RemoteJwks, ConfigError> {
        RemoteJwks::discover(issuer)
    }

    pub(crate) fn into_keys(self) -> Result<Keys, ConfigError> {
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
    /// The issuer the metadata must name, when not the one discovered from.
    metadata_issuer: Option<String>,
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
        if let Some(named) = &self.metadata_issuer {
            d.field("metadata_issuer", named);
        }
        d.field("refresh_interval", &self.refresh_interval)
            .field("unknown_kid_cooldown", &self.cooldown)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RemoteJwks {
    fn new(url: &str) -> Result<Self, ConfigError> {
        let invalid = |message| ConfigError::invalid("JwksSource", "remote", message);
        let url = discovery::https_uri(url).map_err(|e| match e {
            UrlError::Invalid => invalid("the JWKS URL is not a valid URL".into()),
            UrlError::NotHttps => invalid(format!(
                "the JWKS URL must be an https:// URL, got {}",
                discovery::shown(url)
            )),
        })?;
        Ok(Self::with_target(Target::Url(url)))
    }

    fn discover(issuer: &str) -> Result<Self, ConfigError> {
        discovery::issuer_uri(issuer)
            .map_err(|e| ConfigError::invalid("JwksSource", "discover", e.message(issuer)))?;
        // Kept as given: the metadata must name it exactly (RFC 8414
        // section 3.3).
        Ok(Self::with_target(Target::Discover(issuer.to_owned())))
    }

    fn with_target(target: Target) -> Self {
        Self {
            target,
            metadata_issuer: None,
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

    /// With [`JwksSource::discover`] from a multi-tenant endpoint: the
    /// issuer its metadata names, a template, instead of the URL discovered
    /// from. Microsoft Entra's `https://login.microsoftonline.com/organizations/v2.0`
    /// (or `/common/v2.0`) metadata names
    /// `https://login.microsoftonline.com/{tenantid}/v2.0`; trust its tokens
    /// with [`TrustedIssuer::tenants`](super::TrustedIssuer::tenants).
    ///
    /// ```
    /// use tower_token_binding::validation::JwksSource;
    ///
    /// let keys = JwksSource::discover("https://login.microsoftonline.com/organizations/v2.0")
    ///     .unwrap()
    ///     .metadata_issuer("https://login.microsoftonline.com/{tenantid}/v2.0");
    /// # let _ = keys;
    /// ```
    pub fn metadata_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.metadata_issuer = Some(issuer.into());
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

    /// How long one request to the issuer may take, body included (the
    /// JWKS request, and each metadata request with
    /// [`JwksSource::discover`]). Default 10 s. The same name as
    /// [`ResourceServerBuilder::issuer_timeout`](crate::server::ResourceServerBuilder::issuer_timeout).
    pub fn issuer_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The old name of [`issuer_timeout`](Self::issuer_timeout).
    #[deprecated(note = "renamed issuer_timeout, as on ResourceServerBuilder")]
    pub fn timeout(self, timeout: Duration) -> Self {
        self.issuer_timeout(timeout)
    }
}

/// The error for a key set that cannot be fetched or used, once the
/// validator runs; a configuration that cannot work is refused at build
/// with a [`ConfigError`] instead.
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
    /// The key's own `alg`, when it names one: the only one it verifies.
    alg: Option<Algorithm>,
    jwk: PublicJwk,
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
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&PublicJwk> {
        let fits = |key: &&Key| key.jwk.supports(alg) && key.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(fits)
                .find(|key| key.kid.as_deref() == Some(kid))
                .map(|key| &key.jwk),
            None => {
                let mut candidates = self.keys.iter().filter(fits);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Some(&only.jwk),
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
    /// A key that verifies signatures, or `None`: one for encryption
    /// (`use` other than `sig`, or `key_ops` without `verify`), of an unknown or symmetric algorithm or
    /// type (a published key set is public: a symmetric key in it would let
    /// anyone mint tokens), with private members, or that does not parse
    /// (see [`PublicJwk::from_map`]).
    fn parse(value: &Value) -> Option<Self> {
        let members = value.as_object()?;
        let text = |name: &str| match members.get(name) {
            None => Some(None),
            Some(Value::String(text)) => Some(Some(text.as_str())),
            Some(_) => None,
        };
        if text("use")?.is_some_and(|u| u != "sig") {
            return None;
        }
        // RFC 7517 section 4.3: a key whose operations are named verifies
        // only if `verify` is among them.
        if let Some(ops) = members.get("key_ops") {
            let ops = ops.as_array()?;
            if !ops.iter().all(Value::is_string) || !ops.iter().any(|op| op == "verify") {
                return None;
            }
        }
        let alg = match text("alg")? {
            None => None,
            Some(name) => Some(Algorithm::from_name(name)?),
        };
        let kid = text("kid")?.map(str::to_owned);
        let jwk = PublicJwk::from_published(members).ok()?;
        if alg.is_some_and(|alg| !jwk.supports(alg)) {
            return None;
        }
        Some(Self { kid, alg, jwk })
    }
}
