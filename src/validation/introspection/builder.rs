use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use rustls::RootCertStore;
use tokio::sync::Semaphore;

use super::IntrospectionValidator;
use super::answers::Answers;
use super::exchange::{Auth, Endpoint, Exchange, Secret};
use super::response::Expectations;
use super::shape::{DEFAULT_MAX_TOKEN_LENGTH, ShapeCheck, TokenShape};
use super::validator::Inner;
use crate::ConfigError;
use crate::discovery::{self, UrlError, redacted};
use crate::identity::{IdentitySource, SharedIdentity};
use crate::pool::MtlsClientPool;
use crate::pool::Roots;
use crate::validation::TokenProfile;

/// Builds an [`IntrospectionValidator`]; [`build`](Self::build) refuses what
/// cannot work.
///
/// | setting | default |
/// | --- | --- |
/// | [`endpoint`](Self::endpoint) or [`discover`](Self::discover) | required |
/// | [`client_id`](Self::client_id) | required |
/// | [`client_secret_basic`](Self::client_secret_basic), [`client_secret_post`](Self::client_secret_post) or [`tls_client_auth`](Self::tls_client_auth) | required |
/// | [`issuer`](Self::issuer) | required: `iss` must be exactly it |
/// | [`audience`](Self::audience) | required: `aud` must name one of them |
/// | [`allow_missing_audience`](Self::allow_missing_audience) | off: an answer without `aud` is refused |
/// | [`require_exp`](Self::require_exp) | `exp` checked when present |
/// | [`leeway`](Self::leeway) | 30 s |
/// | [`timeout`](Self::timeout) | 5 s |
/// | [`cache_ttl`](Self::cache_ttl) | 60 s (never past the token's `exp`) |
/// | [`inactive_ttl`](Self::inactive_ttl) | 10 s |
/// | [`cache_capacity`](Self::cache_capacity) | 10 000 |
/// | [`max_concurrent_calls`](Self::max_concurrent_calls) | 64 |
/// | [`recheck_reserve`](Self::recheck_reserve) | an eighth of `max_concurrent_calls`, at least 1 (none with 1 call, or nothing remembered) |
/// | [`max_token_length`](Self::max_token_length) | 4096 bytes: longer tokens are refused without a call |
/// | [`token_shape`](Self::token_shape) | none: every token within the length is asked about |
/// | [`root_store`](Self::root_store) or [`pool`](Self::pool) | the platform's roots |
#[derive(Clone, Default)]
pub struct IntrospectionValidatorBuilder {
    endpoint: Option<String>,
    issuer_to_discover: Option<String>,
    client_id: Option<String>,
    auth: Option<Auth>,
    issuer: Option<String>,
    audiences: Vec<String>,
    allow_missing_audience: bool,
    require_exp: bool,
    max_concurrent_calls: Option<usize>,
    recheck_reserve: Option<usize>,
    max_token_length: Option<usize>,
    token_shape: Option<Arc<dyn TokenShape>>,
    leeway: Option<Duration>,
    timeout: Option<Duration>,
    cache_ttl: Option<Duration>,
    inactive_ttl: Option<Duration>,
    cache_capacity: Option<usize>,
    roots: Option<Roots>,
    pool: Option<MtlsClientPool<Full<Bytes>>>,
    profile: Option<TokenProfile>,
    /// The fleet's shared answers (L2), set in `shared.rs`.
    pub(super) shared: super::shared::SharedSettings,
}

/// Trusted roots: given, or a PEM file read at build.
impl fmt::Debug for IntrospectionValidatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = self.endpoint.as_deref().map(|url| {
            url.parse()
                .map_or_else(|_| "<not a URL>".to_owned(), |uri| redacted(&uri))
        });
        f.debug_struct("IntrospectionValidatorBuilder")
            .field("endpoint", &endpoint)
            .field("discover", &self.issuer_to_discover)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth.as_ref().map(Auth::name))
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("allow_missing_audience", &self.allow_missing_audience)
            .field("require_exp", &self.require_exp)
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("recheck_reserve", &self.recheck_reserve)
            .field("max_token_length", &self.max_token_length)
            .field("token_shape", &self.token_shape.as_ref().map(|_| "set"))
            .finish_non_exhaustive()
    }
}

/// The error of [`IntrospectionValidatorBuilder::build`], now the crate's
/// one [`ConfigError`].
#[deprecated(note = "use tower_token_binding::ConfigError, which every builder returns")]
pub type IntrospectionConfigError = ConfigError;

/// The name [`ConfigError`]s of this builder give.
const BUILDER: &str = "IntrospectionValidatorBuilder";

impl IntrospectionValidatorBuilder {
    /// The introspection endpoint, an `https://` URL. Replaces
    /// [`discover`](Self::discover).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self.issuer_to_discover = None;
        self
    }

    /// Finds the endpoint in `issuer`'s metadata (RFC 8414, else OpenID
    /// Connect Discovery) at the first call: `introspection_endpoint`, or,
    /// with [`tls_client_auth`](Self::tls_client_auth),
    /// `mtls_endpoint_aliases.introspection_endpoint` when the metadata has
    /// it (RFC 8705 section 5). The metadata must name `issuer` exactly. A
    /// failed discovery is a failed call (`503`), tried again at the next
    /// token. Replaces [`endpoint`](Self::endpoint).
    pub fn discover(mut self, issuer: impl Into<String>) -> Self {
        self.issuer_to_discover = Some(issuer.into());
        self.endpoint = None;
        self
    }

    /// The resource server's client ID at the authorization server.
    /// Required.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Authenticates with the client ID and `secret` in HTTP Basic
    /// (`client_secret_basic`, both form-encoded first as RFC 6749 section
    /// 2.3.1 asks). The secret never reaches `Debug` or the logs.
    pub fn client_secret_basic(mut self, secret: impl Into<String>) -> Self {
        self.auth = Some(Auth::SecretBasic(Secret(secret.into().into())));
        self
    }

    /// Authenticates with `client_id` and `client_secret` in the request
    /// body (`client_secret_post`).
    pub fn client_secret_post(mut self, secret: impl Into<String>) -> Self {
        self.auth = Some(Auth::SecretPost(Secret(secret.into().into())));
        self
    }

    /// Authenticates with a client certificate (`tls_client_auth`, RFC 8705
    /// section 2; a self-signed one works the same on the wire), presented
    /// through the crate's [`MtlsClientPool`]; any [`IdentitySource`] (a
    /// [`ReloadingIdentity`](crate::identity::ReloadingIdentity) follows
    /// renewals).
    pub fn tls_client_auth(mut self, identity: impl IdentitySource) -> Self {
        self.auth = Some(Auth::Tls(SharedIdentity::new(identity)));
        self
    }

    /// The exact `iss` the answers must carry; an answer without `iss` is
    /// refused. Required (with
    /// [`ResourceServerBuilder::introspection`](crate::server::ResourceServerBuilder::introspection),
    /// the server's issuer when left unset).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// An `aud` accepted: this resource server. An answer must carry an
    /// `aud` naming one of them (unless
    /// [`allow_missing_audience`](Self::allow_missing_audience)). May be
    /// called more than once; at least one is required (with
    /// [`ResourceServerBuilder::introspection`](crate::server::ResourceServerBuilder::introspection),
    /// the server's audiences when left unset).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepts active answers that carry no `aud`, for authorization
    /// servers that leave it out of introspection answers (RFC 7662 makes
    /// it optional; oidc-provider, for one, sends it only for tokens issued
    /// for a resource). An `aud` that is present must still name one of the
    /// [audiences](Self::audience), which stay required. What it gives up:
    /// a token the authorization server issued for another resource server
    /// without saying so is accepted here.
    pub fn allow_missing_audience(mut self) -> Self {
        self.allow_missing_audience = true;
        self
    }

    /// Refuses answers without `exp` (RFC 7662 makes it optional).
    pub fn require_exp(mut self) -> Self {
        self.require_exp = true;
        self
    }

    /// Clock skew allowed for `exp` and `nbf`. Default 30 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// How long one call may take, connection and answer included (and
    /// each metadata request with [`discover`](Self::discover)). Default 5 s.
    pub fn introspection_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The old name of [`introspection_timeout`](Self::introspection_timeout).
    #[deprecated(note = "renamed introspection_timeout: a timeout is named for what it bounds")]
    pub fn timeout(self, timeout: Duration) -> Self {
        self.introspection_timeout(timeout)
    }

    /// The longest an active answer is used without asking again (never
    /// past the token's `exp`). Default 60 s; zero asks every time.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl);
        self
    }

    /// How long a refusal (inactive, expired, not for us) is remembered, so
    /// that a flood of junk tokens costs one call each per window. Default
    /// 10 s; zero asks every time.
    pub fn inactive_ttl(mut self, ttl: Duration) -> Self {
        self.inactive_ttl = Some(ttl);
        self
    }

    /// How many active answers, and how many refusals, are remembered.
    /// Default 10 000 each; 0 turns remembering off (one call is still
    /// shared by concurrent requests with the same token).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = Some(capacity);
        self
    }

    /// How many introspection calls may be in flight at once (distinct
    /// tokens; requests with the same token share one call). A token that
    /// would need one more call is answered at once with
    /// [`TokenErrorKind::IntrospectionUnavailable`](crate::validation::TokenErrorKind::IntrospectionUnavailable)
    /// (`503` with `Retry-After`), with a `warn` event (at most one a
    /// second) and the `overloaded` outcome in the metrics, so that a flood
    /// of unknown tokens cannot open an outbound request each. Default 64;
    /// 0 is an error from [`build`](Self::build). Some of them are kept
    /// for re-checks: see [`recheck_reserve`](Self::recheck_reserve).
    pub fn max_concurrent_calls(mut self, limit: usize) -> Self {
        self.max_concurrent_calls = Some(limit);
        self
    }

    /// How many of the [`max_concurrent_calls`](Self::max_concurrent_calls)
    /// are kept for re-checks: calls for tokens the endpoint said were
    /// active before (until their `exp`, or an hour after the last active
    /// answer for a token without one; forgotten when refused), whose
    /// remembered answer has ended. Other tokens share the rest; a
    /// re-check takes one of the rest while there is one, and a kept one
    /// only then.
    ///
    /// Anyone can send made-up tokens, and while the endpoint is slow a
    /// flood of them holds every slot it can get: without a reserve, the
    /// clients already using this resource server would get `503` too
    /// each time their answer needs asking again (every
    /// [`cache_ttl`](Self::cache_ttl)). Made-up tokens are never active, so
    /// they never reach the reserve. A token never seen active (a client's
    /// first request, or its new token) still gets `503` with
    /// `Retry-After` while a flood holds the other slots: no memory can
    /// tell it from junk of the right shape (a
    /// [`token_shape`](Self::token_shape) narrows what junk can get a slot).
    ///
    /// Default: an eighth of `max_concurrent_calls`, at least 1 (8 of the
    /// default 64). A re-check holds its slot for one round trip, and each
    /// known token needs one at most every `cache_ttl`, so a few slots
    /// carry many clients (8 slots at 50 ms a call are 160 re-checks a
    /// second), while seven eighths stay for tokens not seen before. None
    /// when `max_concurrent_calls` is 1 (the one slot must serve new
    /// tokens), or with [`cache_capacity(0)`](Self::cache_capacity)
    /// (nothing is remembered, so no token is known to have been active).
    /// It must leave at least one slot for other tokens: a reserve of
    /// `max_concurrent_calls` or more is an error from
    /// [`build`](Self::build).
    pub fn recheck_reserve(mut self, slots: usize) -> Self {
        self.recheck_reserve = Some(slots);
        self
    }

    /// The longest token, in bytes, sent to the introspection endpoint: a
    /// longer one cannot be the authorization server's and is refused with
    /// `401 invalid_token`
    /// ([`UnexpectedShape`](crate::validation::TokenErrorKind::UnexpectedShape))
    /// without a call, so that junk costs the authorization server
    /// nothing. Default 4096, far above the opaque tokens of the servers
    /// this crate is tested with (a few dozen bytes); 0 is an error from
    /// [`build`](Self::build). (The alphabet needs no check here:
    /// [`CnfValidationLayer`](crate::CnfValidationLayer) takes only an RFC
    /// 6750 `b64token` from the `Authorization` header.)
    pub fn max_token_length(mut self, bytes: usize) -> Self {
        self.max_token_length = Some(bytes);
        self
    }

    /// The shape of the authorization server's access tokens, checked
    /// before any call: a token it refuses is `401 invalid_token`
    /// ([`UnexpectedShape`](crate::validation::TokenErrorKind::UnexpectedShape))
    /// at once, and costs the authorization server nothing. Default: none,
    /// and then every token within
    /// [`max_token_length`](Self::max_token_length) that has no remembered
    /// answer costs one call.
    ///
    /// A real authorization server's opaque tokens have a fixed shape (a
    /// length, a prefix, a checksum), and this is the place to say it: the
    /// tighter it is, the less a flood of made-up tokens reaches the
    /// authorization server. Junk of the right shape still costs one call
    /// per distinct token (then its refusal is remembered for
    /// [`inactive_ttl`](Self::inactive_ttl)).
    ///
    /// ```
    /// use tower_token_binding::validation::IntrospectionValidator;
    ///
    /// let validator = IntrospectionValidator::builder()
    ///     .endpoint("https://login.example.com/introspect")
    ///     .client_id("orders-api")
    ///     .client_secret_basic("s3cret")
    ///     .issuer("https://login.example.com")
    ///     .audience("https://orders.example.com")
    ///     // This issuer's access tokens: "at_" and 40 base64url characters.
    ///     .token_shape(|token: &str| token.len() == 43 && token.starts_with("at_"))
    ///     .build()
    ///     .unwrap();
    /// # let _ = validator;
    /// ```
    pub fn token_shape(mut self, shape: impl TokenShape) -> Self {
        self.token_shape = Some(Arc::new(shape));
        self
    }

    /// Trusts `roots` for the authorization server's certificate instead of
    /// the platform's roots (ignored with a [`pool`](Self::pool)). Replaces
    /// a [`root_ca_file`](Self::root_ca_file).
    pub fn root_store(mut self, roots: impl Into<Arc<RootCertStore>>) -> Self {
        self.roots = Some(Roots::Store(roots.into()));
        self
    }

    /// Trusts the CA certificates in this PEM file for the authorization
    /// server's certificate, as [`root_store`](Self::root_store) does;
    /// read by [`build`](Self::build).
    pub fn root_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.roots = Some(Roots::File(path.into()));
        self
    }

    /// Sends the calls through `pool` (for instance the one the client half
    /// of the service uses) instead of a pool of its own.
    pub fn pool(mut self, pool: MtlsClientPool<Full<Bytes>>) -> Self {
        self.pool = Some(pool);
        self
    }

    pub(crate) fn has_endpoint(&self) -> bool {
        self.endpoint.is_some() || self.issuer_to_discover.is_some()
    }

    pub(crate) fn has_profile(&self) -> bool {
        self.profile.is_some()
    }

    pub(crate) fn has_roots(&self) -> bool {
        self.roots.is_some() || self.pool.is_some()
    }

    pub(crate) fn has_issuer(&self) -> bool {
        self.issuer.is_some()
    }

    pub(crate) fn has_audience(&self) -> bool {
        !self.audiences.is_empty()
    }

    /// How the authorization server names claims in its answers, where they
    /// differ from RFC 7662 (`client_id`, `scope`): the same
    /// [`TokenProfile`] as for its JWTs, so that
    /// [`VerifiedToken::client_id`](crate::validation::VerifiedToken::client_id),
    /// [`scopes`](crate::validation::VerifiedToken::scopes) and required
    /// scopes answer the same for both. Only the claims read change; the
    /// answer's checks do not. Default [`TokenProfile::rfc9068`] (whose
    /// claim names are RFC 7662's).
    pub fn token_profile(mut self, profile: TokenProfile) -> Self {
        self.profile = Some(profile);
        self
    }

    /// Checks the settings and builds the validator. Makes no request and
    /// needs a Tokio runtime only when tokens are validated.
    pub fn build(self) -> Result<IntrospectionValidator, ConfigError> {
        let endpoint = match (self.endpoint, self.issuer_to_discover) {
            (Some(url), _) => Endpoint::Fixed(discovery::https_uri(&url).map_err(|e| {
                ConfigError::invalid(
                    BUILDER,
                    "endpoint",
                    match e {
                        UrlError::Invalid => "the endpoint is not a valid URL",
                        UrlError::NotHttps => "the endpoint must be an https:// URL",
                    },
                )
            })?),
            (None, Some(issuer)) => {
                discovery::issuer_uri(&issuer)
                    .map_err(|e| ConfigError::invalid(BUILDER, "discover", e.message(&issuer)))?;
                Endpoint::discover(issuer)
            }
            (None, None) => {
                return Err(ConfigError::missing(
                    BUILDER,
                    "endpoint",
                    "an endpoint or an issuer to discover it from is required",
                ));
            }
        };
        let client_id = self
            .client_id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ConfigError::missing(BUILDER, "client_id", "a client_id is required"))?;
        let auth = self.auth.ok_or_else(|| {
            ConfigError::missing(
                BUILDER,
                "client_secret_basic",
                "the resource server must authenticate: client_secret_basic, \
                 client_secret_post or tls_client_auth",
            )
        })?;
        let issuer = self.issuer.filter(|iss| !iss.is_empty()).ok_or_else(|| {
            ConfigError::missing(
                BUILDER,
                "issuer",
                "an issuer is required: the exact iss the answers must carry",
            )
        })?;
        if self.audiences.is_empty() {
            return Err(ConfigError::missing(
                BUILDER,
                "audience",
                "an audience is required: the aud the answers must name \
                 (allow_missing_audience() accepts answers without aud)",
            ));
        }
        if self.audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(ConfigError::invalid(
                BUILDER,
                "audience",
                "an audience is empty",
            ));
        }
        let max_calls = match self.max_concurrent_calls {
            None => 64,
            Some(0) => {
                return Err(ConfigError::invalid(
                    BUILDER,
                    "max_concurrent_calls",
                    "must be at least 1",
                ));
            }
            Some(n) => n.min(Semaphore::MAX_PERMITS),
        };
        let capacity = self.cache_capacity.unwrap_or(10_000);
        let recheck_reserve = match self.recheck_reserve {
            None if max_calls < 2 || capacity == 0 => 0,
            None => (max_calls / 8).max(1),
            Some(n) if n >= max_calls => {
                return Err(ConfigError::invalid(
                    BUILDER,
                    "recheck_reserve",
                    format!(
                        "{n} must leave at least one of the max_concurrent_calls \
                     ({max_calls}) for other tokens"
                    ),
                ));
            }
            Some(n) => n,
        };
        let max_token_length = match self.max_token_length {
            None => DEFAULT_MAX_TOKEN_LENGTH,
            Some(0) => {
                return Err(ConfigError::invalid(
                    BUILDER,
                    "max_token_length",
                    "must be at least 1",
                ));
            }
            Some(n) => n,
        };
        let pool = MtlsClientPool::given_or_new(self.pool, self.roots, BUILDER)?;
        let leeway = self.leeway.unwrap_or(Duration::from_secs(30)).as_secs();
        Ok(IntrospectionValidator {
            inner: Arc::new(Inner {
                exchange: Exchange {
                    endpoint,
                    client_id,
                    auth,
                    pool,
                    timeout: self.timeout.unwrap_or(Duration::from_secs(5)),
                },
                expect: Expectations {
                    issuer,
                    audiences: self.audiences,
                    require_aud: !self.allow_missing_audience,
                    require_exp: self.require_exp,
                    leeway,
                    profile: Arc::new(self.profile.unwrap_or_default()),
                },
                shape: ShapeCheck {
                    max_length: max_token_length,
                    shape: self.token_shape,
                },
                cache_ttl: self.cache_ttl.unwrap_or(Duration::from_secs(60)),
                inactive_ttl: self.inactive_ttl.unwrap_or(Duration::from_secs(10)),
                answers: Answers::new(capacity, leeway),
                calls: Arc::new(Semaphore::new(max_calls - recheck_reserve)),
                rechecks: Arc::new(Semaphore::new(recheck_reserve)),
                max_calls,
                recheck_reserve,
                last_overload_warning: AtomicU64::new(0),
                shared: self.shared.build(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> IntrospectionValidatorBuilder {
        IntrospectionValidator::builder()
            .endpoint("https://as.example/introspect")
            .client_id("rs")
            .client_secret_post("s3cret")
            .issuer("https://as.example")
            .audience("https://api.example")
    }

    #[test]
    fn settings_that_cannot_work() {
        let err = |b: IntrospectionValidatorBuilder| b.build().unwrap_err().to_string();
        assert!(err(base().endpoint("http://as.example/i")).contains("https"));
        assert!(err(base().endpoint("not a url")).contains("valid URL"));
        assert!(err(base().discover("https://as.example/?x=1")).contains("query"));
        assert!(err(IntrospectionValidator::builder().client_id("rs")).contains("endpoint"));
        assert!(
            err(IntrospectionValidator::builder()
                .endpoint("https://as.example/i")
                .client_secret_basic("s"))
            .contains("client_id")
        );
        assert!(
            err(IntrospectionValidator::builder()
                .endpoint("https://as.example/i")
                .client_id("rs"))
            .contains("authenticate")
        );
        assert!(err(base().audience(" ")).contains("audience"));
        assert!(err(base().max_concurrent_calls(0)).contains("max_concurrent_calls"));
        assert!(err(base().max_token_length(0)).contains("max_token_length"));
        assert!(err(base().recheck_reserve(64)).contains("recheck_reserve"));
        assert!(err(base().max_concurrent_calls(4).recheck_reserve(4)).contains("recheck_reserve"));
        assert!(base().build().is_ok());
    }

    #[test]
    fn an_eighth_of_the_calls_is_kept_for_rechecks() {
        let reserve = |b: IntrospectionValidatorBuilder| {
            let validator = b.build().unwrap();
            let inner = &validator.inner;
            assert_eq!(
                inner.calls.available_permits() + inner.rechecks.available_permits(),
                inner.max_calls
            );
            inner.recheck_reserve
        };
        assert_eq!(reserve(base()), 8);
        assert_eq!(reserve(base().max_concurrent_calls(1)), 0);
        assert_eq!(reserve(base().max_concurrent_calls(2)), 1);
        assert_eq!(reserve(base().max_concurrent_calls(15)), 1);
        assert_eq!(reserve(base().max_concurrent_calls(16)), 2);
        assert_eq!(reserve(base().cache_capacity(0)), 0);
        assert_eq!(reserve(base().recheck_reserve(0)), 0);
        assert_eq!(reserve(base().recheck_reserve(63)), 63);
    }

    #[test]
    fn issuer_and_audience_are_required() {
        let bare = || {
            IntrospectionValidator::builder()
                .endpoint("https://as.example/introspect")
                .client_id("rs")
                .client_secret_post("s3cret")
        };
        let err = bare().audience("https://api.example").build().unwrap_err();
        assert!(err.to_string().contains("issuer is required"), "{err}");
        let err = bare().issuer("https://as.example").build().unwrap_err();
        assert!(err.to_string().contains("audience is required"), "{err}");
        // The relax switch drops the need for aud in the answers, not for
        // an audience to check a present one against.
        let err = bare()
            .issuer("https://as.example")
            .allow_missing_audience()
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("audience is required"), "{err}");
        assert!(
            bare()
                .issuer("https://as.example")
                .audience("https://api.example")
                .allow_missing_audience()
                .build()
                .is_ok()
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let builder = base().endpoint("https://u:pw@as.example/introspect?k=v");
        let debug = format!("{builder:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("pw") && !debug.contains("k=v"));
        let debug = format!("{:?}", builder.build().unwrap());
        assert!(
            !debug.contains("s3cret") && !debug.contains("pw"),
            "{debug}"
        );
        assert!(debug.contains("client_secret_post"), "{debug}");
    }
}
