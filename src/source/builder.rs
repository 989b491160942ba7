use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Uri;
use http_body_util::Full;

use super::client_auth::Secret;
use super::client_credentials::{Auth, ClientCredentials, Endpoint, Inner};
use crate::ConfigError;
use crate::discovery::{self, UrlError};
use crate::identity::{IdentitySource, SharedIdentity};
use crate::pool::MtlsClientPool;
use crate::pool::Roots;
use crate::proof::ProofKey;
use crate::proof::dpop::DpopProofs;
use crate::proof::pop::PopProofs;
use crate::token::CacheKey;

/// Trusted roots: given, or a PEM file read at build.
/// The name [`ConfigError`]s of this builder give.
pub(super) const BUILDER: &str = "ClientCredentialsBuilder";

/// The default of [`ClientCredentialsBuilder::max_expires_in`]: 24 hours.
const MAX_EXPIRES_IN: Duration = Duration::from_secs(24 * 3600);

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
    opaque_certificate_bound: bool,
    default_lifetime: Option<Duration>,
    max_lifetime: Option<Duration>,
    timeout: Option<Duration>,
    pool: Option<MtlsClientPool<Full<Bytes>>>,
    roots: Option<Roots>,
    dpop: Option<DpopProofs>,
    pop: Option<PopProofs>,
}

impl fmt::Debug for ClientCredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsBuilder")
            .field("token_endpoint", &self.token_endpoint)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth.as_ref().map(Auth::name))
            .field("dpop", &self.dpop)
            .field("pop", &self.pop)
            .finish_non_exhaustive()
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
    /// certificate, and bind tokens to it (to the [DPoP key](Self::dpop)
    /// instead, when there is one). A fixed [`ClientIdentity`](crate::ClientIdentity), or
    /// any [`IdentitySource`] such as a [`ReloadingIdentity`](crate::identity::ReloadingIdentity).
    pub fn tls_client_auth(mut self, identity: impl IdentitySource) -> Self {
        self.auth = Some(Auth::CaIssued);
        self.identity = Some(SharedIdentity::new(identity));
        self
    }

    /// `self_signed_tls_client_auth`: authenticate with `identity`, a
    /// certificate registered with the server, and bind tokens to it (to
    /// the [DPoP key](Self::dpop) instead, when there is one).
    pub fn self_signed_tls_client_auth(mut self, identity: impl IdentitySource) -> Self {
        self.auth = Some(Auth::SelfSigned);
        self.identity = Some(SharedIdentity::new(identity));
        self
    }

    /// `client_secret_basic` (RFC 6749 section 2.3.1), with tokens bound to
    /// the certificate set by [`identity`](Self::identity), or to the
    /// [DPoP key](Self::dpop).
    pub fn client_secret_basic(mut self, secret: impl Into<String>) -> Self {
        self.auth = Some(Auth::SecretBasic(Secret(Arc::from(secret.into()))));
        self
    }

    /// `client_secret_post`, with tokens bound to the certificate set by
    /// [`identity`](Self::identity), or to the [DPoP key](Self::dpop).
    pub fn client_secret_post(mut self, secret: impl Into<String>) -> Self {
        self.auth = Some(Auth::SecretPost(Secret(Arc::from(secret.into()))));
        self
    }

    /// The certificate to present (and bind tokens to) with a client secret.
    pub fn identity(mut self, identity: impl IdentitySource) -> Self {
        self.identity = Some(SharedIdentity::new(identity));
        self
    }

    /// [`identity`](Self::identity), when there is one.
    pub(crate) fn identity_if_any(self, identity: Option<SharedIdentity>) -> Self {
        match identity {
            Some(identity) => Self {
                identity: Some(identity),
                ..self
            },
            None => self,
        }
    }

    /// The `scope` to ask for (space-separated). Given more than once, the
    /// scopes are joined into one `scope` parameter, each named once: a
    /// token request carries a parameter at most once (RFC 6749 §3.2).
    pub fn scope(self, scope: impl Into<String>) -> Self {
        self.param("scope", scope)
    }

    /// An RFC 8707 `resource` to ask for; may be given more than once.
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// Any other form parameter. A `scope` joins the one given before, as
    /// with [`scope`](Self::scope).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        let earlier = match name.as_str() {
            "scope" => self.params.iter_mut().find(|(n, _)| n == "scope"),
            _ => None,
        };
        match earlier {
            Some((_, scope)) => join_scope(scope, &value),
            None => self.params.push((name, value)),
        }
        self
    }

    /// Microsoft Entra's flavour: asks for `token_type=mtls_pop` and expects
    /// a `mtls_pop` token back (a `Bearer` answer is an error, as MSAL has
    /// it). Send such tokens with the `mtls_pop` header word.
    pub fn entra_mtls_pop(mut self) -> Self {
        self.entra = true;
        self
    }

    /// Says that the authorization server binds the opaque (non-JWT) tokens
    /// it issues to this client's certificate (RFC 8705; the client is
    /// registered with `tls_client_certificate_bound_access_tokens`).
    ///
    /// A JWT says how it is bound (`cnf`), but an opaque token does not, and
    /// neither does the token response: a server that uses the certificate
    /// only to authenticate the client issues bearer tokens. Without this
    /// setting (or [`entra_mtls_pop`](Self::entra_mtls_pop), whose
    /// `mtls_pop` type says it), an opaque token is still sent over the
    /// certificate's connection but counts as a bearer token
    /// ([`Binding::None`](crate::cnf::Binding::None)): a shared
    /// token cache does not store it unless bearer tokens are allowed there.
    pub fn opaque_tokens_certificate_bound(mut self) -> Self {
        self.opaque_certificate_bound = true;
        self
    }

    /// DPoP (RFC 9449): binds tokens to `key` instead of a certificate.
    ///
    /// Every token request carries a `DPoP` proof signed by `key` (no
    /// `ath`; the nonce the authorization server last sent, if any). The
    /// proof is not a client authentication: one is still needed, any of
    /// them: a client secret, which then needs no certificate, or
    /// `tls_client_auth` / `self_signed_tls_client_auth`, whose certificate
    /// only authenticates. The answer must say
    /// `token_type: DPoP` (in any case) and, for a JWT, carry this key's
    /// thumbprint in `cnf.jkt`; the tokens come [bound to the
    /// key](crate::token::Token::dpop_bound), for
    /// [`Scheme::Dpop`](crate::binding::Scheme::Dpop). A `400
    /// use_dpop_nonce` is answered once, with a new proof carrying the
    /// nonce sent along with it. The cache key holds the key's `jkt`.
    ///
    /// ```
    /// use tower_token_binding::proof::{Algorithm, ProofKey};
    /// use tower_token_binding::source::ClientCredentials;
    ///
    /// let key = ProofKey::generate(Algorithm::Es256).unwrap();
    /// let jkt = key.thumbprint();
    /// let source = ClientCredentials::builder()
    ///     .token_endpoint("https://login.example.com/token")
    ///     .client_id("my-service")
    ///     .client_secret_basic("s3cret")
    ///     .dpop(key)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(source.dpop_proofs().map(|p| p.thumbprint()), Some(jkt));
    /// ```
    pub fn dpop(mut self, key: ProofKey) -> Self {
        self.dpop = Some(DpopProofs::new(key));
        self
    }

    /// [`dpop`](Self::dpop) with proofs made already, to share their nonce
    /// memory with something else that sends proofs of the same key.
    pub fn dpop_proofs(mut self, proofs: DpopProofs) -> Self {
        self.dpop = Some(proofs);
        self
    }

    /// Microsoft's PoP: binds tokens to `key` (`cnf.kid`), to be sent
    /// inside signed HTTP requests.
    ///
    /// The token request carries `token_type=pop` and `req_cnf` (base64url
    /// of `{"kid":"<KID>"}`, the KID being the key's RFC 7638 thumbprint).
    /// A client authentication is still needed, any of them: a client
    /// secret, which then needs no certificate, or `tls_client_auth` /
    /// `self_signed_tls_client_auth`, whose certificate only authenticates. The answer must say
    /// `token_type: pop` (in any case) and, for a JWT, carry this key's KID
    /// in `cnf.kid`; the tokens come [bound to the
    /// key](crate::token::Token::pop_bound), for
    /// [`Scheme::Pop`](crate::binding::Scheme::Pop). The cache key holds
    /// the KID. Microsoft's default key is RSA-2048 with PS256
    /// (`ProofKey::generate(Algorithm::Ps256)`).
    ///
    /// ```
    /// use tower_token_binding::proof::{Algorithm, ProofKey};
    /// use tower_token_binding::source::ClientCredentials;
    ///
    /// let key = ProofKey::generate(Algorithm::Es256).unwrap();
    /// let kid = key.thumbprint();
    /// let source = ClientCredentials::builder()
    ///     .token_endpoint("https://login.example.com/token")
    ///     .client_id("my-service")
    ///     .client_secret_basic("s3cret")
    ///     .pop(key)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(source.pop_proofs().map(|p| p.kid()), Some(kid));
    /// ```
    pub fn pop(mut self, key: ProofKey) -> Self {
        self.pop = Some(PopProofs::new(key));
        self
    }

    /// [`pop`](Self::pop) with the signed HTTP requests made already.
    pub fn pop_proofs(mut self, shrs: PopProofs) -> Self {
        self.pop = Some(shrs);
        self
    }

    /// Now [`pop_proofs`](Self::pop_proofs).
    #[deprecated(note = "renamed `pop_proofs`")]
    pub fn pop_requests(self, proofs: PopProofs) -> Self {
        self.pop_proofs(proofs)
    }

    /// The lifetime assumed when the answer has no `expires_in`. Default 5 min.
    pub fn default_expires_in(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = Some(lifetime);
        self
    }

    /// The longest `expires_in` accepted: an answer that says more is
    /// refused ([`InvalidResponse`](super::TokenEndpointErrorKind::InvalidResponse)),
    /// as is one of `0` (a token already expired) or one that is not
    /// whole digits or a non-negative number. Default 24 hours: access
    /// tokens of Entra, Okta, Auth0 and Keycloak live minutes to hours, and
    /// a lifetime that cannot be represented would make a token that is
    /// never refreshed.
    pub fn max_expires_in(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// The most one token-endpoint exchange (request and answer, and each
    /// metadata request with [`issuer`](Self::issuer)) may take. Default
    /// 10 s; 0 is refused at build. The same name as
    /// [`BoundClientBuilder::token_timeout`](crate::client::BoundClientBuilder::token_timeout).
    pub fn token_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The old name of [`token_timeout`](Self::token_timeout).
    #[deprecated(note = "renamed token_timeout, as on BoundClientBuilder")]
    pub fn timeout(self, timeout: Duration) -> Self {
        self.token_timeout(timeout)
    }

    /// Sends through `pool` (share it with the API calls).
    pub fn pool(mut self, pool: MtlsClientPool<Full<Bytes>>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// Trusts `roots` for the authorization server (when no pool is given),
    /// instead of the platform's roots. Replaces a
    /// [`root_ca_file`](Self::root_ca_file).
    pub fn root_store(mut self, roots: impl Into<Arc<rustls::RootCertStore>>) -> Self {
        self.roots = Some(Roots::Store(roots.into()));
        self
    }

    /// Trusts the CA certificates in this PEM file for the authorization
    /// server (when no pool is given), as [`root_store`](Self::root_store)
    /// does; read by [`build`](Self::build).
    pub fn root_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots = Some(Roots::File(path.into()));
        self
    }

    /// Whether any setting of the token request was given, for a facade
    /// that offers another way to get tokens.
    pub(crate) fn is_configured(&self) -> bool {
        self.first_given().is_some() || !self.params.is_empty()
    }

    /// The first of the settings that say where and as whom tokens are
    /// asked for (all but the parameters) that was given, by name.
    pub(crate) fn first_given(&self) -> Option<&'static str> {
        [
            (self.issuer.is_some(), "issuer"),
            (self.token_endpoint.is_some(), "token_endpoint"),
            (self.client_id.is_some(), "client_id"),
            (self.has_secret(), "client_secret_basic"),
            (self.auth.is_some(), "tls_client_auth"),
            (self.entra, "entra_mtls_pop"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }

    /// The settings that cannot go together, whatever the files or the
    /// network hold: checked by [`build`](Self::build), and by a facade
    /// before it reads its own files.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if self.token_endpoint.is_some() && self.issuer.is_some() {
            return Err(Self::both_endpoints());
        }
        Ok(())
    }

    fn both_endpoints() -> ConfigError {
        ConfigError::conflict(
            BUILDER,
            "token_endpoint",
            "give a token endpoint or an issuer, not both",
        )
    }

    /// Whether a client secret authenticates.
    pub(crate) fn has_secret(&self) -> bool {
        matches!(self.auth, Some(Auth::SecretBasic(_) | Auth::SecretPost(_)))
    }

    /// Whether Entra's `mtls_pop` tokens are asked for.
    pub(crate) fn is_entra(&self) -> bool {
        self.entra
    }

    /// `params` before the ones given so far (a managed identity's scope
    /// first, then the caller's, joined as [`param`](Self::param) joins).
    #[cfg(feature = "managed-identity")]
    pub(crate) fn params_first(mut self, params: &[(String, String)]) -> Self {
        let later = std::mem::take(&mut self.params);
        for (name, value) in params.iter().cloned().chain(later) {
            self = self.param(name, value);
        }
        self
    }

    /// Builds the source.
    pub fn build(self) -> Result<ClientCredentials, ConfigError> {
        if self.timeout == Some(Duration::ZERO) {
            return Err(ConfigError::invalid(
                BUILDER,
                "token_timeout",
                "must be more than 0: a token request could never finish",
            ));
        }
        let client_id = self
            .client_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ConfigError::missing(BUILDER, "client_id", "a client_id is required"))?;
        let auth = self.auth.unwrap_or(Auth::None);
        if self.dpop.is_some() && self.entra {
            return Err(ConfigError::conflict(
                BUILDER,
                "dpop",
                "DPoP and Entra's mtls_pop tokens (entra_mtls_pop) are two different bindings: choose one",
            ));
        }
        if self.pop.is_some() && (self.entra || self.dpop.is_some()) {
            return Err(ConfigError::conflict(
                BUILDER,
                "pop",
                "PoP, DPoP and Entra's mtls_pop tokens are different bindings: choose one",
            ));
        }
        let key_bound = self.dpop.is_some() || self.pop.is_some();
        let identity = match (self.identity, key_bound, &auth) {
            (Some(identity), _, _) => Some(identity),
            (None, true, Auth::SecretBasic(_) | Auth::SecretPost(_)) => None,
            (None, true, _) => {
                return Err(ConfigError::missing(
                    BUILDER,
                    "tls_client_auth",
                    "choose a client authentication: a client secret, tls_client_auth or self_signed_tls_client_auth",
                ));
            }
            (None, false, Auth::SecretBasic(_) | Auth::SecretPost(_)) => {
                return Err(ConfigError::missing(
                    BUILDER,
                    "identity",
                    "certificate-bound tokens need a client certificate: set identity(...) next to the client secret, or dpop(...) / pop(...) for key-bound tokens",
                ));
            }
            (None, false, _) => {
                return Err(ConfigError::missing(
                    BUILDER,
                    "tls_client_auth",
                    "choose a client authentication: tls_client_auth, self_signed_tls_client_auth or a client secret with an identity",
                ));
            }
        };
        let endpoint = match (self.token_endpoint, self.issuer) {
            (Some(url), None) => {
                Endpoint::Fixed(https_uri(&url, "token_endpoint", "token endpoint")?)
            }
            (None, Some(issuer)) => {
                discovery::issuer_uri(&issuer)
                    .map_err(|e| ConfigError::invalid(BUILDER, "issuer", e.message(&issuer)))?;
                // Kept as given: the metadata must name it exactly (RFC
                // 8414 section 3.3).
                Endpoint::discover(issuer)
            }
            (Some(_), Some(_)) => return Err(Self::both_endpoints()),
            (None, None) => {
                return Err(ConfigError::missing(
                    BUILDER,
                    "issuer",
                    "a token endpoint or an issuer is required",
                ));
            }
        };
        let pool = MtlsClientPool::given_or_new(self.pool, self.roots, BUILDER)?;
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
            .part(
                "flavour",
                match (&self.dpop, &self.pop, self.entra) {
                    (Some(_), _, _) => "dpop",
                    (None, Some(_), _) => "pop",
                    (None, None, true) => "mtls_pop",
                    (None, None, false) => "rfc8705",
                },
            );
        if let Some(proofs) = &self.dpop {
            key = key.jkt(proofs.thumbprint());
        }
        if let Some(shrs) = &self.pop {
            key = key.part("kid", shrs.kid().to_string());
        }
        for (name, value) in &self.params {
            key = key.part(name, value);
        }
        let base_key = key.build();
        let first_key = match &identity {
            Some(identity) => base_key.with_thumbprint(identity.thumbprint()),
            None => base_key.clone(),
        };
        let key = ArcSwap::from_pointee(first_key.clone());
        Ok(ClientCredentials {
            inner: Arc::new(Inner {
                endpoint,
                client_id,
                auth,
                identity,
                params: self.params,
                entra: self.entra,
                opaque_certificate_bound: self.opaque_certificate_bound,
                default_lifetime: self.default_lifetime.unwrap_or(Duration::from_secs(300)),
                max_lifetime: self.max_lifetime.unwrap_or(MAX_EXPIRES_IN),
                timeout: self.timeout.unwrap_or(Duration::from_secs(10)),
                pool,
                dpop: self.dpop,
                pop: self.pop,
                base_key,
                first_key,
                key,
            }),
        })
    }
}

pub(super) fn https_uri(url: &str, setting: &'static str, what: &str) -> Result<Uri, ConfigError> {
    checked_https_uri(url, what).map_err(|message| ConfigError::invalid(BUILDER, setting, message))
}

/// `url` as an `https` URI, or what is wrong with it, naming it `what`.
pub(super) fn checked_https_uri(url: &str, what: &str) -> Result<Uri, String> {
    discovery::https_uri(url).map_err(|e| match e {
        UrlError::Invalid => format!("the {what} is not a valid URL"),
        UrlError::NotHttps => format!(
            "the {what} must be an https:// URL (mutual TLS, and secrets, need TLS), got {}",
            discovery::shown(url)
        ),
    })
}

/// Adds the scopes of `more` that `scope` does not hold yet, space-separated.
fn join_scope(scope: &mut String, more: &str) {
    let mut joined: Vec<&str> = scope.split_whitespace().collect();
    for token in more.split_whitespace() {
        if !joined.contains(&token) {
            joined.push(token);
        }
    }
    *scope = joined.join(" ");
}
