mod assemble;
#[cfg(feature = "reqwest")]
mod reqwest;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use rustls::RootCertStore;
use tower::retry::Retry;

use super::service::BoundClient;
use crate::ConfigError;
use crate::TokenBindingLayer;
use crate::binding::{HeaderWord, InvalidTokenRetry, Scheme};
use crate::identity::{IdentitySource, ReloadingIdentity, SharedIdentity};
use crate::pool::Roots;
use crate::pool::{MtlsClientPool, PoolBuilder};
use crate::proof::dpop::DpopProofs;
use crate::proof::pop::PopProofs;
use crate::proof::{Algorithm, ProofKey};
use crate::source::{ClientCredentials, ClientCredentialsBuilder};
use crate::token::{SharedTokenCache, TokenCache, TokenCacheBuilder, TokenSource};

/// The name [`ConfigError`]s of this builder give.
const BUILDER: &str = "BoundClientBuilder";

/// Builds a [`BoundClient`]; [`build`](Self::build) refuses every
/// configuration that could not work, before the first request, with a
/// [`ConfigError`] naming the setting.
///
/// It holds the builders it configures: the client-credentials settings
/// (issuer, token endpoint, client id, client secret, scope, resource,
/// parameters, Entra's flavour, token lifetimes, [`token_timeout`](Self::token_timeout))
/// go to a [`ClientCredentialsBuilder`] under the same names, which keeps
/// their defaults and checks them; [`token_cache`](Self::token_cache) and
/// [`pool`](Self::pool) take a [`TokenCacheBuilder`] and a [`PoolBuilder`]
/// whole. A refusal of an inner builder comes back as it is:
/// [`ConfigError::builder`] names it, [`ConfigError::setting`] the setter
/// both have.
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
/// assert!(client.pop_proofs().is_some());
/// ```
pub struct BoundClientBuilder {
    /// The client-credentials settings, forwarded under their names; the
    /// identity, pool and proof key are added at build.
    credentials: ClientCredentialsBuilder,
    self_signed: bool,
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
    allow_http_to_loopback: bool,
    cache: TokenCacheBuilder,
    retries: usize,
    pool: PoolBuilder,
    roots: Option<Roots>,
    max_body: usize,
    request_timeout: Duration,
    #[cfg(feature = "managed-identity")]
    managed: Option<crate::identity::managed::ManagedIdentity>,
    #[cfg(feature = "reqwest")]
    reqwest_configure: Option<crate::reqwest::Configure>,
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

impl Default for BoundClientBuilder {
    fn default() -> Self {
        Self {
            credentials: ClientCredentials::builder(),
            self_signed: false,
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
            allow_http_to_loopback: false,
            cache: TokenCache::builder(),
            retries: 1,
            pool: MtlsClientPool::builder(),
            roots: None,
            max_body: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            #[cfg(feature = "managed-identity")]
            managed: None,
            #[cfg(feature = "reqwest")]
            reqwest_configure: None,
        }
    }
}

impl fmt::Debug for BoundClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundClientBuilder")
            .field("credentials", &self.credentials)
            .field("self_signed_tls_client_auth", &self.self_signed)
            .field("scheme", &self.scheme)
            .field("word", &self.word)
            .finish_non_exhaustive()
    }
}

impl BoundClientBuilder {
    /// One setting of the client-credentials builder held.
    fn credentials(
        mut self,
        set: impl FnOnce(ClientCredentialsBuilder) -> ClientCredentialsBuilder,
    ) -> Self {
        self.credentials = set(self.credentials);
        self
    }

    // Where tokens come from.

    /// The authorization server's issuer URL (`https://`, without user
    /// info, query or fragment: [`build`](Self::build) refuses those): the
    /// token endpoint is discovered from its metadata, preferring the mTLS
    /// alias (RFC 8705 section 5), and the metadata must name this issuer
    /// exactly, trailing slash included (RFC 8414 section 3.3). Either this
    /// or [`token_endpoint`](Self::token_endpoint).
    pub fn issuer(self, url: impl Into<String>) -> Self {
        self.credentials(|c| c.issuer(url))
    }

    /// The token endpoint URL (`https://`), when there is no discovery.
    pub fn token_endpoint(self, url: impl Into<String>) -> Self {
        self.credentials(|c| c.token_endpoint(url))
    }

    /// The OAuth `client_id`.
    pub fn client_id(self, id: impl Into<String>) -> Self {
        self.credentials(|c| c.client_id(id))
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
    pub fn client_secret_basic(self, secret: impl Into<String>) -> Self {
        self.credentials(|c| c.client_secret_basic(secret))
    }

    /// Authenticates with a client secret in the form (`client_secret_post`);
    /// tokens are still bound to the identity's certificate.
    pub fn client_secret_post(self, secret: impl Into<String>) -> Self {
        self.credentials(|c| c.client_secret_post(secret))
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
    pub fn param(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.credentials(|c| c.param(name, value))
    }

    /// Microsoft Entra's flavour: asks for `token_type=mtls_pop`, expects
    /// `mtls_pop` tokens, and sends them with the `mtls_pop` header word
    /// (unless [`header_word`](Self::header_word) says otherwise).
    pub fn entra_mtls_pop(self) -> Self {
        self.credentials(ClientCredentialsBuilder::entra_mtls_pop)
    }

    /// Says that the authorization server binds the opaque (non-JWT)
    /// tokens it issues to this client's certificate; see
    /// [`ClientCredentialsBuilder::opaque_tokens_certificate_bound`](crate::source::ClientCredentialsBuilder::opaque_tokens_certificate_bound).
    /// Without it, an opaque `Bearer` token fetched with the certificate
    /// counts as a bearer token, which a shared token cache does not store
    /// by default.
    pub fn opaque_tokens_certificate_bound(self) -> Self {
        self.credentials(ClientCredentialsBuilder::opaque_tokens_certificate_bound)
    }

    /// The most one token-endpoint exchange may take; see
    /// [`ClientCredentialsBuilder::token_timeout`]. Default 10 s.
    pub fn token_timeout(self, timeout: Duration) -> Self {
        self.credentials(|c| c.token_timeout(timeout))
    }

    /// The lifetime assumed for a token answer without `expires_in`; see
    /// [`ClientCredentialsBuilder::default_expires_in`]. Default 5 minutes.
    pub fn default_expires_in(self, lifetime: Duration) -> Self {
        self.credentials(|c| c.default_expires_in(lifetime))
    }

    /// The longest `expires_in` accepted from the token endpoint; see
    /// [`ClientCredentialsBuilder::max_expires_in`](crate::source::ClientCredentialsBuilder::max_expires_in).
    /// Default 24 hours.
    pub fn max_expires_in(self, lifetime: Duration) -> Self {
        self.credentials(|c| c.max_expires_in(lifetime))
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

    /// Lets tokens go over plain `http` to loopback addresses, for tests;
    /// see [`TokenBindingLayer::allow_http_to_loopback`]. Off by default:
    /// a request that would carry a token to a URI other than `https`
    /// fails with [`InsecureTransport`](crate::binding::InsecureTransport)
    /// before the token is fetched. Certificate-bound schemes still need
    /// `https` (the certificate is presented in the TLS handshake): with
    /// them this setting is a [`ConfigErrorKind::Conflict`](crate::ConfigErrorKind::Conflict)
    /// at build.
    pub fn allow_http_to_loopback(mut self) -> Self {
        self.allow_http_to_loopback = true;
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

    /// The most one call may take, from the moment it is made to the
    /// response head (for [`Service::call`](tower::Service::call)) or to
    /// the last byte of the body ([`BoundClient::send`](super::BoundClient::send),
    /// [`get`](super::BoundClient::get)): the token, the connection, the
    /// client's own retries and the server's answer together. Past it, the
    /// call fails with [`tower::timeout::error::Elapsed`]. Default 30 s; a
    /// server that sends one byte a second never holds a call longer.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
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
    pub fn build(self) -> Result<BoundClient, ConfigError> {
        self.build_with_body()
    }

    /// [`build`](Self::build), for request bodies of another type than
    /// `Full<Bytes>` (they must be `Clone`, for the retry).
    pub fn build_with_body<B>(self) -> Result<BoundClient<B>, ConfigError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        self.with_managed_identity()?.build_checked()
    }
}
