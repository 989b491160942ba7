use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use rustls::RootCertStore;
use tower::retry::Retry;

use super::error::{BuildError, BuildErrorKind as Kind};
use super::service::BoundClient;
use crate::TokenBindingLayer;
use crate::binding::{HeaderWord, Scheme};
use crate::identity::{IdentitySource, ReloadingIdentity, SharedIdentity};
use crate::pool::{MtlsClientPool, PoolBuilder};
use crate::proof::{Algorithm, ProofKey};
use crate::source::ClientCredentials;
use crate::token::{SharedTokenCache, TokenCache, TokenCacheBuilder, TokenSource};

/// Builds a [`BoundClient`]; [`build`](Self::build) refuses every
/// configuration that could not work, before the first request.
///
/// Defaults, each overridable:
///
/// | setting | default |
/// | --- | --- |
/// | scheme | [`Scheme::MtlsPop`]: bound tokens, `Authorization: Bearer` (RFC 8705) |
/// | DPoP key, with [`Scheme::Dpop`] | a new ES256 key in memory ([`dpop_key`](Self::dpop_key), [`dpop_key_file`](Self::dpop_key_file)) |
/// | PoP key, with [`Scheme::Pop`] | a new RSA-2048 key in memory, signing with PS256, as MSAL ([`pop_key`](Self::pop_key), [`pop_key_file`](Self::pop_key_file)) |
/// | header word | `Bearer`; `mtls_pop` with [`entra_mtls_pop`](Self::entra_mtls_pop) |
/// | client authentication | `tls_client_auth` with the identity |
/// | identity files | polled every 30 s ([`identity_poll_interval`](Self::identity_poll_interval)) |
/// | token refresh | at 80 % of the lifetime, minus up to 10 % jitter; backoff 500 ms to 30 s |
/// | token endpoint | 10 s per exchange |
/// | retry on `401 invalid_token` | once |
/// | retry on `401 use_dpop_nonce` (DPoP) | once |
/// | pool | platform roots; connect 10 s; 64 identities, idle 10 min; HTTP/2 and HTTP/1.1 |
/// | response body read by [`send`](BoundClient::send) | 16 MiB |
///
/// ```no_run
/// use tower_token_binding::BoundClient;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let client = BoundClient::builder()
///     .issuer("https://login.example.com")
///     .client_id("my-service")
///     .identity_files("/etc/tls/client.pem", "/etc/tls/client.key")
///     .scope("api.read")
///     .build()?;
/// let response = client.get("https://api.example.com/orders").await?;
/// println!("{}: {:?}", response.status(), response.body());
/// # Ok(())
/// # }
/// ```
///
/// DPoP (RFC 9449) instead of a certificate, with one setting: tokens bound
/// to a key, a fresh proof on every request, no client certificate needed
/// (a client secret authenticates; a certificate may, too):
///
/// ```
/// use tower_token_binding::BoundClient;
/// use tower_token_binding::binding::Scheme;
///
/// let client = BoundClient::builder()
///     .token_endpoint("https://login.example.com/oauth2/token")
///     .client_id("my-service")
///     .client_secret_basic("s3cret")
///     .scheme(Scheme::Dpop) // a new ES256 key, unless dpop_key(..) gives one
///     .build()
///     .unwrap();
/// assert!(client.dpop_proofs().is_some());
/// ```
///
/// Microsoft's PoP (signed HTTP requests), likewise with one setting:
///
/// ```
/// use tower_token_binding::BoundClient;
/// use tower_token_binding::binding::Scheme;
/// use tower_token_binding::proof::{Algorithm, ProofKey};
///
/// let client = BoundClient::builder()
///     .token_endpoint("https://login.example.com/oauth2/token")
///     .client_id("my-service")
///     .client_secret_basic("s3cret")
///     .scheme(Scheme::Pop)
///     .pop_key(ProofKey::generate(Algorithm::Es256).unwrap()) // else RSA-2048, PS256
///     .build()
///     .unwrap();
/// assert!(client.pop_requests().is_some());
/// ```
pub struct BoundClientBuilder {
    issuer: Option<String>,
    token_endpoint: Option<String>,
    client_id: Option<String>,
    secret: Option<(SecretMode, String)>,
    self_signed: bool,
    params: Vec<(String, String)>,
    entra: bool,
    token_timeout: Option<Duration>,
    default_expires_in: Option<Duration>,
    token_source: Option<Box<dyn FnOnce(TokenCacheBuilder) -> TokenCache + Send>>,
    identity: Option<IdentityChoice>,
    poll_interval: Option<Duration>,
    scheme: Scheme,
    dpop_key: Option<KeyChoice>,
    pop_key: Option<KeyChoice>,
    pop_query: bool,
    pop_headers: Vec<http::HeaderName>,
    word: Option<HeaderWord>,
    allow_unbound_fallback: bool,
    cache: TokenCacheBuilder,
    retries: usize,
    pool: PoolBuilder,
    roots: Option<Roots>,
    max_body: usize,
    #[cfg(feature = "managed-identity")]
    managed: Option<crate::identity::managed::ManagedIdentity>,
}

#[derive(Clone, Copy, Debug)]
enum SecretMode {
    Basic,
    Post,
}

enum IdentityChoice {
    Source(SharedIdentity),
    Files(PathBuf, PathBuf),
}

/// A DPoP or PoP key: given, or a PEM file read at build.
enum KeyChoice {
    Key(ProofKey),
    File(PathBuf),
}

enum Roots {
    Store(Arc<RootCertStore>),
    File(PathBuf),
}

impl Default for BoundClientBuilder {
    fn default() -> Self {
        Self {
            issuer: None,
            token_endpoint: None,
            client_id: None,
            secret: None,
            self_signed: false,
            params: Vec::new(),
            entra: false,
            token_timeout: None,
            default_expires_in: None,
            token_source: None,
            identity: None,
            poll_interval: None,
            scheme: Scheme::MtlsPop,
            dpop_key: None,
            pop_key: None,
            pop_query: false,
            pop_headers: Vec::new(),
            word: None,
            allow_unbound_fallback: false,
            cache: TokenCache::builder(),
            retries: 1,
            pool: MtlsClientPool::builder(),
            roots: None,
            max_body: 16 * 1024 * 1024,
            #[cfg(feature = "managed-identity")]
            managed: None,
        }
    }
}

impl fmt::Debug for BoundClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundClientBuilder")
            .field("issuer", &self.issuer)
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .field("secret", &self.secret.as_ref().map(|(mode, _)| mode))
            .field("scheme", &self.scheme)
            .field("word", &self.word)
            .finish_non_exhaustive()
    }
}

impl BoundClientBuilder {
    // Where tokens come from.

    /// The authorization server's issuer URL (`https://`, without user
    /// info, query or fragment: [`build`](Self::build) refuses those): the
    /// token endpoint is discovered from its metadata, preferring the mTLS
    /// alias (RFC 8705 section 5), and the metadata must name this issuer
    /// exactly, trailing slash included (RFC 8414 section 3.3). Either this
    /// or [`token_endpoint`](Self::token_endpoint).
    pub fn issuer(mut self, url: impl Into<String>) -> Self {
        self.issuer = Some(url.into());
        self
    }

    /// The token endpoint URL (`https://`), when there is no discovery.
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = Some(url.into());
        self
    }

    /// The OAuth `client_id`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }

    /// Authenticates with `self_signed_tls_client_auth` (RFC 8705 section
    /// 2.2) instead of `tls_client_auth`: the certificate is registered with
    /// the authorization server rather than issued by a CA it trusts.
    pub fn self_signed_tls_client_auth(mut self) -> Self {
        self.self_signed = true;
        self
    }

    /// Authenticates with a client secret (`client_secret_basic`); tokens
    /// are still bound to the identity's certificate.
    pub fn client_secret_basic(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some((SecretMode::Basic, secret.into()));
        self
    }

    /// Authenticates with a client secret in the form (`client_secret_post`);
    /// tokens are still bound to the identity's certificate.
    pub fn client_secret_post(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some((SecretMode::Post, secret.into()));
        self
    }

    /// The `scope` to ask for (space-separated). Scopes given more than
    /// once (or by a [managed identity](Self::managed_identity) too) go out
    /// joined in one `scope` parameter.
    pub fn scope(self, scope: impl Into<String>) -> Self {
        self.param("scope", scope)
    }

    /// An RFC 8707 `resource` to ask for; may be given more than once.
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// Any other token-request parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Microsoft Entra's flavour: asks for `token_type=mtls_pop`, expects
    /// `mtls_pop` tokens, and sends them with the `mtls_pop` header word
    /// (unless [`header_word`](Self::header_word) says otherwise).
    pub fn entra_mtls_pop(mut self) -> Self {
        self.entra = true;
        self
    }

    /// The most one token-endpoint exchange may take. Default 10 s.
    pub fn token_timeout(mut self, timeout: Duration) -> Self {
        self.token_timeout = Some(timeout);
        self
    }

    /// The lifetime assumed for a token answer without `expires_in`.
    /// Default 5 minutes.
    pub fn default_expires_in(mut self, lifetime: Duration) -> Self {
        self.default_expires_in = Some(lifetime);
        self
    }

    /// Any other [`TokenSource`], instead of OAuth client credentials. Its
    /// tokens carry the identities they are bound to, so no
    /// [`identity`](Self::identity) is needed for bound schemes.
    pub fn token_source(mut self, source: impl TokenSource) -> Self {
        self.token_source = Some(Box::new(move |cache: TokenCacheBuilder| {
            cache.build(source)
        }));
        self
    }

    // The identity.

    /// The client certificate and key, from PEM files that are watched: when
    /// a renewal rewrites them, the next request gets a token bound to the
    /// new certificate, over a connection presenting it. See
    /// [`ReloadingIdentity`]. A certificate that has expired or is not valid
    /// yet is refused at [`build`](Self::build); to present one anyway, give
    /// [`identity`](Self::identity) a `ReloadingIdentity` built with
    /// [`accept_outside_validity`](crate::identity::ReloadingIdentityBuilder::accept_outside_validity).
    pub fn identity_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some(IdentityChoice::Files(cert.into(), key.into()));
        self
    }

    /// How often [`identity_files`](Self::identity_files) are looked at.
    /// Default 30 s.
    pub fn identity_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = Some(interval);
        self
    }

    /// The client identity: a fixed [`ClientIdentity`](crate::ClientIdentity),
    /// a [`ReloadingIdentity`], or any [`IdentitySource`].
    pub fn identity(mut self, identity: impl IdentitySource) -> Self {
        self.identity = Some(IdentityChoice::Source(SharedIdentity::new(identity)));
        self
    }

    /// Azure's managed identity as the identity and the token source at
    /// once: the certificate IMDS issued (renewed as it runs out), and
    /// client credentials at its token endpoint for Entra's `mtls_pop`
    /// tokens bound to it, with its client id and its scope or resource
    /// (more may be added with [`scope`](Self::scope), joined to its scope
    /// in one `scope` parameter, and [`resource`](Self::resource)). Sent
    /// with the `mtls_pop` header word
    /// unless [`header_word`](Self::header_word) says otherwise.
    ///
    /// It replaces the issuer, token endpoint, client id, client
    /// authentication and identity settings, and goes with
    /// [`Scheme::MtlsPop`] only: [`build`](Self::build) refuses those
    /// together with it. See [`crate::identity::managed`].
    #[cfg(feature = "managed-identity")]
    #[cfg_attr(docsrs, doc(cfg(feature = "managed-identity")))]
    pub fn managed_identity(mut self, identity: crate::identity::managed::ManagedIdentity) -> Self {
        self.managed = Some(identity);
        self
    }

    // How requests are authorized.

    /// The [`Scheme`]. Default [`Scheme::MtlsPop`]. [`Scheme::Dpop`] binds
    /// tokens to a DPoP key (a new ES256 key unless [`dpop_key`](Self::dpop_key)
    /// or [`dpop_key_file`](Self::dpop_key_file) gives one) and needs no
    /// identity when a client secret authenticates. [`Scheme::Pop`] does
    /// the same with a PoP key (a new RSA-2048 PS256 key unless
    /// [`pop_key`](Self::pop_key) or [`pop_key_file`](Self::pop_key_file)
    /// gives one) and Microsoft's signed HTTP requests.
    pub fn scheme(mut self, scheme: Scheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// The DPoP key for [`Scheme::Dpop`] (instead of a new ES256 key made
    /// at build): tokens are bound to it and every proof is signed by it.
    pub fn dpop_key(mut self, key: ProofKey) -> Self {
        self.dpop_key = Some(KeyChoice::Key(key));
        self
    }

    /// The DPoP key for [`Scheme::Dpop`] from a PEM file (PKCS#8, SEC1 or
    /// PKCS#1; see [`ProofKey::from_pem`]), read at [`build`](Self::build).
    pub fn dpop_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.dpop_key = Some(KeyChoice::File(path.into()));
        self
    }

    /// The PoP key for [`Scheme::Pop`] (instead of a new RSA-2048 PS256
    /// key made at build): tokens are bound to it (`cnf.kid`) and every
    /// signed HTTP request is signed by it. PS256 and ES256 are what
    /// Microsoft's resources accept.
    pub fn pop_key(mut self, key: ProofKey) -> Self {
        self.pop_key = Some(KeyChoice::Key(key));
        self
    }

    /// The PoP key for [`Scheme::Pop`] from a PEM file (PKCS#8, SEC1 or
    /// PKCS#1; an RSA key signs with PS256; see [`ProofKey::from_pem`]),
    /// read at [`build`](Self::build).
    pub fn pop_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pop_key = Some(KeyChoice::File(path.into()));
        self
    }

    /// With [`Scheme::Pop`], puts `q` (the query's hash) in every signed
    /// HTTP request; see [`TokenBindingLayer::pop_sign_query`]. Off by
    /// default.
    pub fn pop_sign_query(mut self) -> Self {
        self.pop_query = true;
        self
    }

    /// With [`Scheme::Pop`], puts `h` over the headers `names` in every
    /// signed HTTP request (every request must carry them); see
    /// [`TokenBindingLayer::pop_sign_headers`]. None by default. There is
    /// no body hash: bodies may stream.
    pub fn pop_sign_headers(mut self, names: impl IntoIterator<Item = http::HeaderName>) -> Self {
        self.pop_headers = names.into_iter().collect();
        self
    }

    /// The word before bound tokens in `Authorization`. Default `Bearer`
    /// (RFC 8705), or `mtls_pop` in [Entra's flavour](Self::entra_mtls_pop).
    pub fn header_word(mut self, word: HeaderWord) -> Self {
        self.word = Some(word);
        self
    }

    /// Sends an unbound token as a plain bearer token when the source
    /// returns one, instead of failing the request. Off by default; see
    /// [`TokenBindingLayer::allow_unbound_fallback`].
    pub fn allow_unbound_fallback(mut self) -> Self {
        self.allow_unbound_fallback = true;
        self
    }

    /// The token cache's timings (refresh share, jitter, backoff).
    pub fn token_cache(mut self, cache: TokenCacheBuilder) -> Self {
        self.cache = cache.keep_shared(self.cache);
        self
    }

    /// Shares tokens with the other processes of a fleet through `cache`
    /// (such as a `RedisTokenCache`, feature `redis`), under the in-memory
    /// cache: one process fetches for all. Only bound tokens are shared;
    /// never a key or a secret. For DPoP, give every process the same key
    /// ([`dpop_key_file`](Self::dpop_key_file)): tokens are shared per key.
    /// A shared cache that fails is skipped, never failing a request.
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")]
    /// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use tower_token_binding::BoundClient;
    /// use tower_token_binding::token::RedisTokenCache;
    ///
    /// let client = BoundClient::builder()
    ///     .issuer("https://login.example.com")
    ///     .client_id("my-service")
    ///     .identity_files("/etc/tls/client.pem", "/etc/tls/client.key")
    ///     .shared_token_cache(RedisTokenCache::connect("redis://redis:6379").await?)
    ///     .build()?;
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    pub fn shared_token_cache(mut self, cache: impl SharedTokenCache) -> Self {
        self.cache = self.cache.shared(cache);
        self
    }

    /// How many times one request is sent again after `401 invalid_token`,
    /// each time with a fresh token. Default 1; 0 turns retries off.
    pub fn retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    // Connections.

    /// Trusts `roots` for servers (the authorization server and the APIs),
    /// instead of the platform's roots.
    pub fn root_store(mut self, roots: impl Into<Arc<RootCertStore>>) -> Self {
        self.roots = Some(Roots::Store(roots.into()));
        self
    }

    /// Trusts the CA certificates in a PEM file, instead of the platform's
    /// roots.
    pub fn root_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots = Some(Roots::File(path.into()));
        self
    }

    /// The connection pool's settings (timeouts, bounds, HTTP versions).
    /// Roots set on the builder here are replaced by
    /// [`root_store`](Self::root_store) or [`root_ca_file`](Self::root_ca_file)
    /// when those are given.
    pub fn pool(mut self, pool: PoolBuilder) -> Self {
        self.pool = pool;
        self
    }

    /// How much of a response body [`BoundClient::send`] reads at most.
    /// Default 16 MiB.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Builds the client: loads the identity files and roots, checks that
    /// the settings go together, and stacks the layers.
    pub fn build(self) -> Result<BoundClient, BuildError> {
        self.build_with_body()
    }

    /// [`build`](Self::build), for request bodies of another type than
    /// `Full<Bytes>` (they must be `Clone`, for the retry).
    pub fn build_with_body<B>(self) -> Result<BoundClient<B>, BuildError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        self.with_managed_identity()?.build_checked()
    }

    /// The settings of a managed identity in place of the client-credentials
    /// and identity settings, which must not be given with it.
    #[cfg(feature = "managed-identity")]
    fn with_managed_identity(mut self) -> Result<Self, BuildError> {
        let Some(managed) = self.managed.take() else {
            return Ok(self);
        };
        let given = [
            (self.issuer.is_some(), "issuer"),
            (self.token_endpoint.is_some(), "token_endpoint"),
            (self.client_id.is_some(), "client_id"),
            (self.secret.is_some(), "a client secret"),
            (self.self_signed, "self_signed_tls_client_auth"),
            (self.token_source.is_some(), "token_source"),
            (self.identity.is_some(), "identity or identity_files"),
            (self.entra, "entra_mtls_pop"),
            (self.allow_unbound_fallback, "allow_unbound_fallback"),
        ];
        if let Some((_, name)) = given.iter().find(|(set, _)| *set) {
            return Err(BuildError::new(
                Kind::Conflict,
                format!(
                    "a managed identity brings its own token endpoint, client id and certificate, and never falls back to unbound tokens: drop {name}"
                ),
            ));
        }
        if self.scheme != Scheme::MtlsPop {
            return Err(BuildError::new(
                Kind::Conflict,
                format!(
                    "a managed identity gets certificate-bound tokens: use Scheme::MtlsPop, not Scheme::{:?}",
                    self.scheme
                ),
            ));
        }
        self.token_endpoint = Some(managed.token_endpoint().to_owned());
        self.client_id = Some(managed.client_id().to_owned());
        self.entra = true;
        let mut params = managed.params().to_vec();
        params.append(&mut self.params);
        self.params = params;
        self.identity = Some(IdentityChoice::Source(SharedIdentity::new(managed)));
        Ok(self)
    }

    #[cfg(not(feature = "managed-identity"))]
    fn with_managed_identity(self) -> Result<Self, BuildError> {
        Ok(self)
    }

    fn build_checked<B>(self) -> Result<BoundClient<B>, BuildError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        self.check()?;
        let identity = match self.identity {
            Some(IdentityChoice::Source(identity)) => Some(identity),
            Some(IdentityChoice::Files(cert, key)) => {
                let mut builder = ReloadingIdentity::builder(&cert, &key);
                if let Some(interval) = self.poll_interval {
                    builder = builder.poll_interval(interval);
                }
                let identity = builder.build().map_err(|e| {
                    BuildError::new(Kind::Identity, "cannot load the client identity")
                        .with_source(e)
                })?;
                Some(SharedIdentity::new(identity))
            }
            None => None,
        };
        let mut pool = self.pool;
        match self.roots {
            Some(Roots::Store(roots)) => pool = pool.root_store(roots),
            Some(Roots::File(path)) => {
                let roots = crate::identity::root_store_from_pem_file(&path).map_err(|e| {
                    BuildError::new(Kind::Roots, "cannot load the trusted roots").with_source(e)
                })?;
                pool = pool.root_store(roots);
            }
            None => {}
        }
        let build_pool = |what: &str| {
            BuildError::new(Kind::Pool, format!("cannot build the {what} HTTPS client"))
        };
        let api_pool = pool
            .clone()
            .build::<B>()
            .map_err(|e| build_pool("API").with_source(e))?;

        let dpop = match (self.scheme, self.dpop_key) {
            (Scheme::Dpop, Some(KeyChoice::Key(key))) => Some(key),
            (Scheme::Dpop, Some(KeyChoice::File(path))) => {
                Some(ProofKey::from_pem_file(&path).map_err(|e| {
                    BuildError::new(
                        Kind::DpopKey,
                        format!("cannot load the DPoP key from {}", path.display()),
                    )
                    .with_source(e)
                })?)
            }
            (Scheme::Dpop, None) if self.token_source.is_none() => {
                Some(ProofKey::generate(Algorithm::Es256).map_err(|e| {
                    BuildError::new(Kind::DpopKey, "cannot generate a DPoP key").with_source(e)
                })?)
            }
            _ => None,
        };
        let pop = match (self.scheme, self.pop_key) {
            (Scheme::Pop, Some(KeyChoice::Key(key))) => Some(key),
            (Scheme::Pop, Some(KeyChoice::File(path))) => {
                Some(ProofKey::from_pem_file(&path).map_err(|e| {
                    BuildError::new(
                        Kind::PopKey,
                        format!("cannot load the PoP key from {}", path.display()),
                    )
                    .with_source(e)
                })?)
            }
            (Scheme::Pop, None) if self.token_source.is_none() => {
                Some(ProofKey::generate(Algorithm::Ps256).map_err(|e| {
                    BuildError::new(Kind::PopKey, "cannot generate a PoP key").with_source(e)
                })?)
            }
            _ => None,
        };
        let mut dpop_proofs = None;
        let mut pop_requests = None;
        let cache = if self.scheme == Scheme::MtlsOnly {
            None
        } else if let Some(source) = self.token_source {
            Some(source(self.cache))
        } else {
            if identity.is_none() && dpop.is_none() && pop.is_none() {
                return Err(BuildError::new(
                    Kind::NoIdentity,
                    "client credentials over mTLS need an identity",
                ));
            }
            let token_pool = pool
                .build::<Full<Bytes>>()
                .map_err(|e| build_pool("token endpoint").with_source(e))?;
            let mut credentials = ClientCredentials::builder().pool(token_pool);
            credentials = match (self.issuer, self.token_endpoint) {
                (Some(issuer), _) => credentials.issuer(issuer),
                (None, Some(endpoint)) => credentials.token_endpoint(endpoint),
                (None, None) => credentials,
            };
            if let Some(id) = self.client_id {
                credentials = credentials.client_id(id);
            }
            credentials = match (self.secret, identity.clone()) {
                (Some((SecretMode::Basic, secret)), identity) => credentials
                    .client_secret_basic(secret)
                    .identity_if_any(identity),
                (Some((SecretMode::Post, secret)), identity) => credentials
                    .client_secret_post(secret)
                    .identity_if_any(identity),
                (None, Some(identity)) if self.self_signed => {
                    credentials.self_signed_tls_client_auth(identity)
                }
                (None, Some(identity)) => credentials.tls_client_auth(identity),
                // `check` asked for one or the other.
                (None, None) => credentials,
            };
            if let Some(key) = dpop {
                credentials = credentials.dpop(key);
            }
            if let Some(key) = pop {
                credentials = credentials.pop(key);
            }
            for (name, value) in self.params {
                credentials = credentials.param(name, value);
            }
            if self.entra {
                credentials = credentials.entra_mtls_pop();
            }
            if let Some(timeout) = self.token_timeout {
                credentials = credentials.timeout(timeout);
            }
            if let Some(lifetime) = self.default_expires_in {
                credentials = credentials.default_expires_in(lifetime);
            }
            let source = credentials.build().map_err(|e| {
                BuildError::new(Kind::TokenSource, "invalid client-credentials settings")
                    .with_source(e)
            })?;
            dpop_proofs = source.dpop_proofs().cloned();
            pop_requests = source.pop_requests().cloned();
            Some(self.cache.build(source))
        };

        let mut layer = match &cache {
            Some(cache) => TokenBindingLayer::with_cache(cache.clone(), self.scheme),
            None => {
                let identity = identity.clone().ok_or_else(|| {
                    BuildError::new(Kind::NoIdentity, "Scheme::MtlsOnly needs an identity")
                })?;
                TokenBindingLayer::mtls_only(identity)
            }
        };
        let word = self.word.unwrap_or(if self.entra {
            HeaderWord::MtlsPop
        } else {
            HeaderWord::Bearer
        });
        layer = layer.header_word(word);
        if self.allow_unbound_fallback {
            layer = layer.allow_unbound_fallback();
        }
        if self.pop_query {
            layer = layer.pop_sign_query();
        }
        if !self.pop_headers.is_empty() {
            layer = layer.pop_sign_headers(self.pop_headers.iter().cloned());
        }
        let retry = layer.retry_policy().attempts(self.retries);
        let service = Retry::new(retry, tower::Layer::layer(&layer, api_pool.clone()));
        Ok(BoundClient {
            service,
            cache,
            pool: api_pool,
            identity,
            dpop: dpop_proofs,
            pop: pop_requests,
            max_body: self.max_body,
        })
    }

    /// The settings that cannot go together, whatever the files hold.
    fn check(&self) -> Result<(), BuildError> {
        let conflict = |message: &str| Err(BuildError::new(Kind::Conflict, message));
        let oauth_settings = self.issuer.is_some()
            || self.token_endpoint.is_some()
            || self.client_id.is_some()
            || self.secret.is_some()
            || self.self_signed
            || !self.params.is_empty()
            || self.entra;
        if self.issuer.is_some() && self.token_endpoint.is_some() {
            return conflict("give an issuer or a token endpoint, not both");
        }
        if self.token_source.is_some() && oauth_settings {
            return conflict(
                "a token_source replaces the client-credentials settings (issuer, token endpoint, client id, secret, scope...): give one or the other",
            );
        }
        if self.secret.is_some() && self.self_signed {
            return conflict(
                "choose one client authentication: a client secret or self_signed_tls_client_auth",
            );
        }
        if self.dpop_key.is_some() && self.scheme != Scheme::Dpop {
            return conflict(
                "dpop_key and dpop_key_file are for Scheme::Dpop: set scheme(Scheme::Dpop), or drop the key",
            );
        }
        if self.pop_key.is_some() && self.scheme != Scheme::Pop {
            return conflict(
                "pop_key and pop_key_file are for Scheme::Pop: set scheme(Scheme::Pop), or drop the key",
            );
        }
        if (self.pop_query || !self.pop_headers.is_empty()) && self.scheme != Scheme::Pop {
            return conflict(
                "pop_sign_query and pop_sign_headers are for Scheme::Pop: set scheme(Scheme::Pop), or drop them",
            );
        }
        // DPoP and PoP bind tokens to a proof key the same way, and are
        // misconfigured the same ways.
        let proof_scheme = match self.scheme {
            Scheme::Dpop => Some(("Dpop", "DPoP", self.dpop_key.is_some(), "dpop")),
            Scheme::Pop => Some(("Pop", "PoP", self.pop_key.is_some(), "pop")),
            _ => None,
        };
        if let Some((variant, word, has_key, lower)) = proof_scheme {
            if self.entra || self.word.is_some() {
                return conflict(&format!(
                    "Scheme::{variant} sends Authorization: {word}; the header word and Entra's mtls_pop tokens are for certificate-bound tokens"
                ));
            }
            if self.token_source.is_some() && has_key {
                return conflict(&format!(
                    "a token_source brings tokens bound to its own {word} key (Token::{lower}_bound): drop {lower}_key, or the token_source"
                ));
            }
            if self.token_source.is_none()
                && oauth_settings
                && self.secret.is_none()
                && self.identity.is_none()
            {
                return Err(BuildError::new(
                    Kind::NoIdentity,
                    format!(
                        "{word} client credentials need a client authentication: a client secret, or a certificate (identity_files(..) or identity(..)) for tls_client_auth"
                    ),
                ));
            }
        }
        if self.scheme == Scheme::MtlsOnly && (self.token_source.is_some() || oauth_settings) {
            return conflict(
                "Scheme::MtlsOnly sends no token: drop the token settings, or choose Scheme::MtlsPop",
            );
        }
        if self.scheme == Scheme::Bearer {
            if self.word == Some(HeaderWord::MtlsPop) || self.entra {
                return conflict(
                    "the mtls_pop header word and Entra's mtls_pop tokens are for bound tokens: use Scheme::MtlsPop",
                );
            }
            if self.token_source.is_none() && oauth_settings {
                return conflict(
                    "Scheme::Bearer sends tokens without a client certificate, but client credentials over mTLS get tokens bound to one: use Scheme::MtlsPop, or token_source(...) for unbound tokens",
                );
            }
            if self.allow_unbound_fallback {
                return conflict(
                    "allow_unbound_fallback is for bound schemes; Scheme::Bearer is unbound already",
                );
            }
        }
        let has_identity = self.identity.is_some();
        if self.scheme == Scheme::MtlsOnly && !has_identity {
            return Err(BuildError::new(
                Kind::NoIdentity,
                "Scheme::MtlsOnly presents a client certificate: set identity_files(..) or identity(..)",
            ));
        }
        if self.scheme == Scheme::MtlsOnly {
            return Ok(());
        }
        if self.token_source.is_none() && !oauth_settings {
            return Err(BuildError::new(
                Kind::NoTokenSource,
                "nowhere to get tokens from: set issuer(..) or token_endpoint(..) with client_id(..), or token_source(..)",
            ));
        }
        if self.token_source.is_none()
            && !has_identity
            && !matches!(self.scheme, Scheme::Dpop | Scheme::Pop)
        {
            return Err(BuildError::new(
                Kind::NoIdentity,
                if self.secret.is_some() {
                    "certificate-bound tokens need a client certificate next to the client secret: set identity_files(..) or identity(..)"
                } else {
                    "client credentials over mTLS need a client certificate: set identity_files(..) or identity(..)"
                },
            ));
        }
        if self.issuer.is_none() && self.token_endpoint.is_none() && self.token_source.is_none() {
            return Err(BuildError::new(
                Kind::NoTokenSource,
                "set issuer(..) (discovery) or token_endpoint(..)",
            ));
        }
        Ok(())
    }
}
