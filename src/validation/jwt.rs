use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::cache::{TokenDigest, VerifiedCache, digest};
use super::jwks::{JwksError, JwksSource, KeySet, Keys};
use super::{TokenError, TokenErrorKind, ValidateToken, VerifiedToken};
use crate::json::{StrictJsonError, check_no_duplicate_members};

/// The asymmetric algorithms allowed by default.
const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// The claims RFC 9068 section 2.2 requires that a validator may be told to
/// do without ([`JwtValidatorBuilder::allow_missing_claims`]). `iss`, `aud`
/// and `exp` are always required: without them a token is not tied to an
/// issuer, a resource or a lifetime.
pub const RELAXABLE_CLAIMS: &[&str] = &["sub", "client_id", "iat", "jti"];

/// Validates RFC 9068 JWT access tokens with jsonwebtoken: the default
/// [`ValidateToken`].
///
/// Strict by default. Checks, in this order:
///
/// 1. the JWT shape, and that neither the header nor the payload names a
///    JSON member twice, at any depth (two `alg`, two `cnf`, two `x5t#S256`
///    inside `cnf`): parsers disagree on which one counts, so such a token
///    is refused before anything else is read;
/// 2. `typ` is `at+jwt` or `application/at+jwt` (RFC 9068 section 4);
/// 3. `alg` is allowed (asymmetric only by default, so `none` and
///    HMAC-with-a-public-key never pass);
/// 4. a key with the token's `kid` and algorithm is in the key set (an
///    unknown `kid` refetches a remote JWKS, at most once per cooldown);
/// 5. the signature;
/// 6. `iss` (exactly, a string), `aud`, `exp` and `nbf` with a leeway
///    (default 30 s);
/// 7. the other claims RFC 9068 section 2.2 requires: `sub`, `client_id`,
///    `jti` (non-empty strings) and `iat` (a number, not in the future
///    beyond the leeway). An issuer that leaves some out can be accepted
///    with [`allow_missing_claims`](JwtValidatorBuilder::allow_missing_claims),
///    naming each one; a claim that is present is checked all the same;
/// 8. `cnf`, if present, is well-formed.
///
/// A missing claim is answered `401 invalid_token` with an
/// `error_description` that names it. Whether `cnf` matches the client
/// certificate is the layer's check, on every request.
///
/// Verified tokens are remembered (keyed by a SHA-256 digest of the whole
/// token, bounded, until the token's `exp`, forgotten when the key set
/// changes), so a token seen before costs a hash and a lookup.
///
/// ```
/// use tower_token_binding::validation::{JwksSource, JwtValidator};
///
/// let validator = JwtValidator::builder()
///     .issuer("https://issuer.example")
///     .audience("https://api.example")
///     .jwks(JwksSource::remote("https://issuer.example/jwks").unwrap())
///     .build()
///     .unwrap();
/// # let _ = validator;
/// ```
#[derive(Clone)]
pub struct JwtValidator {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Keys,
    /// One prepared `Validation` per allowed algorithm.
    validations: Vec<(Algorithm, Validation)>,
    leeway: u64,
    /// The relaxable claims that are required all the same.
    required: Vec<&'static str>,
    cache: VerifiedCache,
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field(
                "algorithms",
                &self
                    .inner
                    .validations
                    .iter()
                    .map(|(a, _)| a)
                    .collect::<Vec<_>>(),
            )
            .field("leeway", &self.inner.leeway)
            .field("required", &self.inner.required)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtValidator`]. `issuer`, `audience` and `jwks` are required.
#[derive(Debug, Clone)]
pub struct JwtValidatorBuilder {
    issuer: Option<String>,
    audiences: Vec<String>,
    jwks: Option<JwksSource>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    allow_missing: Vec<String>,
    cache_capacity: usize,
}

impl JwtValidator {
    /// A builder.
    pub fn builder() -> JwtValidatorBuilder {
        JwtValidatorBuilder {
            issuer: None,
            audiences: Vec::new(),
            jwks: None,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: Duration::from_secs(30),
            allow_missing: Vec::new(),
            cache_capacity: 10_000,
        }
    }

    /// Validates `token` without the cache, in the calling task.
    async fn validate_uncached(
        self,
        token: String,
        key: TokenDigest,
    ) -> Result<VerifiedToken, TokenError> {
        let inner = &self.inner;
        let keys = match &inner.keys {
            Keys::Static(keys) => keys.clone(),
            Keys::Remote(remote) => remote
                .keys()
                .await
                .ok_or_else(|| TokenError::new(TokenErrorKind::KeysUnavailable))?,
        };
        let result = match self.verify(&token, &keys) {
            Err(e) if e.kind() == TokenErrorKind::UnknownKey => match &inner.keys {
                Keys::Remote(remote) => {
                    let kid = decode_header(&token).ok().and_then(|h| h.kid);
                    match kid {
                        Some(kid) if !keys.has_kid(Some(&kid)) => {
                            match remote.refetch_for_unknown_kid(&kid).await {
                                Some(fresh) if fresh.generation != keys.generation => {
                                    self.verify(&token, &fresh).map(|t| (t, fresh.generation))
                                }
                                _ => Err(e),
                            }
                        }
                        _ => Err(e),
                    }
                }
                Keys::Static(_) => Err(e),
            },
            other => other.map(|t| (t, keys.generation)),
        };
        let (verified, generation) = result?;
        if inner.keys.generation() != generation {
            // The key set changed under us: what was cached is stale.
            inner.cache.clear();
        }
        if let Some(exp) = verified.expires_at() {
            let now = now();
            inner.cache.insert(
                key,
                verified.clone(),
                exp.saturating_add(inner.leeway),
                generation,
                now,
            );
        }
        Ok(verified)
    }

    /// Checks `token` against `keys`.
    fn verify(&self, token: &str, keys: &KeySet) -> Result<VerifiedToken, TokenError> {
        use TokenErrorKind as K;
        refuse_duplicate_members(token)?;
        let header = decode_header(token)
            .map_err(|e| TokenError::with_detail(K::Malformed, e.to_string()))?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(TokenError::new(K::WrongType));
        }
        let Some((_, validation)) = self
            .inner
            .validations
            .iter()
            .find(|(a, _)| *a == header.alg)
        else {
            return Err(TokenError::with_detail(
                K::DisallowedAlgorithm,
                format!("{:?}", header.alg),
            ));
        };
        let key = keys
            .find(header.kid.as_deref(), header.alg)
            .ok_or_else(|| TokenError::new(K::UnknownKey))?;
        let data = decode::<Map<String, Value>>(token, key, validation).map_err(map_jwt_error)?;
        self.check_claims(&data.claims)?;
        VerifiedToken::from_claims(data.claims)
            .map_err(|e| TokenError::with_detail(K::InvalidConfirmation, e.to_string()))
    }

    /// RFC 9068 section 2.2, beyond what jsonwebtoken checks.
    fn check_claims(&self, claims: &Map<String, Value>) -> Result<(), TokenError> {
        // RFC 7519: `iss` is a string. jsonwebtoken would take an `iss`
        // array that merely contains ours.
        if !claims.get("iss").is_some_and(Value::is_string) {
            return Err(TokenError::new(TokenErrorKind::WrongIssuer));
        }
        for &name in RELAXABLE_CLAIMS {
            match claims.get(name) {
                Some(value) if well_typed(name, value) => {}
                // Present but malformed: refused even where it may be missing.
                Some(_) => return Err(TokenError::missing_claim(name)),
                None if self.inner.required.contains(&name) => {
                    return Err(TokenError::missing_claim(name));
                }
                None => {}
            }
        }
        let iat = claims.get("iat").and_then(Value::as_f64);
        if iat.is_some_and(|iat| iat > now().saturating_add(self.inner.leeway) as f64) {
            return Err(TokenError::with_detail(
                TokenErrorKind::NotYetValid,
                "iat is in the future",
            ));
        }
        Ok(())
    }
}

/// Refuses a name in `allow_missing` that is not one of [`RELAXABLE_CLAIMS`].
pub(crate) fn check_relaxable(allow_missing: &[String]) -> Result<(), String> {
    match allow_missing
        .iter()
        .find(|name| !RELAXABLE_CLAIMS.contains(&name.as_str()))
    {
        None => Ok(()),
        Some(name) => Err(format!(
            "cannot accept tokens without {name:?}: only {} may be allowed to be missing \
             (iss, aud and exp are always required)",
            RELAXABLE_CLAIMS.join(", ")
        )),
    }
}

/// The type RFC 9068 section 2.2 gives each relaxable claim.
fn well_typed(name: &str, value: &Value) -> bool {
    match name {
        "iat" => value.is_number(),
        _ => value.as_str().is_some_and(|s| !s.is_empty()),
    }
}

/// Step 1: three segments, and no JSON member named twice in the header or
/// the payload.
fn refuse_duplicate_members(token: &str) -> Result<(), TokenError> {
    use TokenErrorKind as K;
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(_), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(TokenError::with_detail(K::Malformed, "not three segments"));
    };
    for (part, segment) in [("header", header), ("payload", payload)] {
        let json = URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|e| TokenError::with_detail(K::Malformed, format!("{part}: {e}")))?;
        check_no_duplicate_members(&json).map_err(|e| match e {
            StrictJsonError::DuplicateMember(name) => {
                TokenError::with_detail(K::DuplicateMember, format!("{part}: {name:?} twice"))
            }
            StrictJsonError::Malformed(e) => {
                TokenError::with_detail(K::Malformed, format!("{part}: {e}"))
            }
        })?;
    }
    Ok(())
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    use TokenErrorKind as K;
    let kind = match e.kind() {
        JwtErrorKind::InvalidSignature
        | JwtErrorKind::InvalidEcdsaKey
        | JwtErrorKind::InvalidEddsaKey
        | JwtErrorKind::InvalidRsaKey(_)
        | JwtErrorKind::InvalidKeyFormat => K::BadSignature,
        JwtErrorKind::ExpiredSignature => K::Expired,
        JwtErrorKind::ImmatureSignature => K::NotYetValid,
        JwtErrorKind::InvalidIssuer => K::WrongIssuer,
        JwtErrorKind::InvalidAudience => K::WrongAudience,
        JwtErrorKind::MissingRequiredClaim(name) | JwtErrorKind::InvalidClaimFormat(name) => {
            let mut error = match name.as_str() {
                "exp" => TokenError::missing_claim("exp"),
                "iss" => TokenError::missing_claim("iss"),
                "aud" => TokenError::missing_claim("aud"),
                "nbf" => TokenError::missing_claim("nbf"),
                "sub" => TokenError::missing_claim("sub"),
                _ => TokenError::new(K::MissingClaim),
            };
            error.set_detail(e.to_string());
            return error;
        }
        JwtErrorKind::InvalidAlgorithm
        | JwtErrorKind::UnsupportedAlgorithm
        | JwtErrorKind::MissingAlgorithm
        | JwtErrorKind::InvalidAlgorithmName => K::DisallowedAlgorithm,
        JwtErrorKind::InvalidToken
        | JwtErrorKind::Base64(_)
        | JwtErrorKind::Json(_)
        | JwtErrorKind::Utf8(_) => K::Malformed,
        _ => K::Other,
    };
    TokenError::with_detail(kind, e.to_string())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl JwtValidatorBuilder {
    /// The expected `iss`, exactly.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// An accepted `aud`: this resource server. May be called more than once.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Where the signing keys come from.
    pub fn jwks(mut self, jwks: impl Into<JwksSource>) -> Self {
        self.jwks = Some(jwks.into());
        self
    }

    /// The allowed signature algorithms, replacing the default (every
    /// asymmetric algorithm jsonwebtoken knows). HMAC algorithms can be named
    /// but never verify: keys from a JWKS are never symmetric.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Clock skew allowed for `exp` and `nbf`. Default 30 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Accepts tokens that lack some of the claims RFC 9068 section 2.2
    /// requires, for issuers that leave them out; each must be one of
    /// [`RELAXABLE_CLAIMS`] (`sub`, `client_id`, `iat`, `jti`), anything else
    /// is an error from [`build`](Self::build). Adds to earlier calls.
    ///
    /// A claim allowed to be missing is still checked when present. Microsoft
    /// Entra access tokens, for example, carry `azp` or `appid` instead of
    /// `client_id` and `uti` instead of `jti`:
    ///
    /// ```
    /// use tower_token_binding::validation::{JwksSource, JwtValidator};
    ///
    /// let validator = JwtValidator::builder()
    ///     .issuer("https://login.microsoftonline.com/tenant/v2.0")
    ///     .audience("api://orders")
    ///     .jwks(JwksSource::remote("https://login.microsoftonline.com/tenant/discovery/v2.0/keys").unwrap())
    ///     .allow_missing_claims(["client_id", "jti"])
    ///     .build()
    ///     .unwrap();
    /// # let _ = validator;
    ///
    /// // `exp` cannot be done without.
    /// let refused = JwtValidator::builder()
    ///     .issuer("https://issuer.example")
    ///     .audience("https://api.example")
    ///     .jwks(JwksSource::remote("https://issuer.example/jwks").unwrap())
    ///     .allow_missing_claims(["exp"])
    ///     .build();
    /// assert!(refused.is_err());
    /// ```
    pub fn allow_missing_claims<I>(mut self, claims: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.allow_missing
            .extend(claims.into_iter().map(Into::into));
        self
    }

    /// How many verified tokens to remember. Default 10 000; 0 turns the
    /// cache off.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Builds the validator. Needs a Tokio runtime only later, when a remote
    /// JWKS is fetched.
    pub fn build(self) -> Result<JwtValidator, JwksError> {
        crate::tls::ensure_jwt_provider();
        let issuer = self
            .issuer
            .ok_or_else(|| JwksError::config("JwtValidator needs an issuer"))?;
        if self.audiences.is_empty() {
            return Err(JwksError::config("JwtValidator needs an audience"));
        }
        let jwks = self
            .jwks
            .ok_or_else(|| JwksError::config("JwtValidator needs a JWKS source"))?;
        if self.algorithms.is_empty() {
            return Err(JwksError::config(
                "JwtValidator needs at least one algorithm",
            ));
        }
        if let Err(refusal) = check_relaxable(&self.allow_missing) {
            return Err(JwksError::config(format!("JwtValidator {refusal}")));
        }
        let required = RELAXABLE_CLAIMS
            .iter()
            .copied()
            .filter(|claim| !self.allow_missing.iter().any(|name| name == claim))
            .collect();
        let leeway = self.leeway.as_secs();
        let validations = self
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.set_issuer(&[&issuer]);
                v.set_audience(&self.audiences);
                // `sub` is checked with the other relaxable claims.
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                v.leeway = leeway;
                v.validate_exp = true;
                v.validate_nbf = true;
                (alg, v)
            })
            .collect();
        Ok(JwtValidator {
            inner: Arc::new(Inner {
                keys: jwks.into_keys()?,
                validations,
                leeway,
                required,
                cache: VerifiedCache::new(self.cache_capacity),
            }),
        })
    }
}

impl ValidateToken for JwtValidator {
    type Future = JwtFuture;

    fn validate(&self, token: &str) -> JwtFuture {
        let key = digest(token);
        let generation = self.inner.keys.generation();
        if let Some(hit) = self.inner.cache.get(&key, now(), generation) {
            crate::metrics::validation_cache(crate::metrics::Validator::Jwt, true);
            if let Keys::Remote(remote) = &self.inner.keys {
                // Keys can change while every request is a cache hit.
                remote.refresh_if_stale();
            }
            return JwtFuture {
                state: FutureState::Ready(Some(Ok(hit))),
            };
        }
        crate::metrics::validation_cache(crate::metrics::Validator::Jwt, false);
        let this = self.clone();
        let token = token.to_owned();
        JwtFuture {
            state: FutureState::Pending(Box::pin(this.validate_uncached(token, key))),
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<VerifiedToken, TokenError>> + Send>>;

/// The future of [`JwtValidator`]: ready at once on a cache hit.
pub struct JwtFuture {
    state: FutureState,
}

enum FutureState {
    Ready(Option<Result<VerifiedToken, TokenError>>),
    Pending(BoxFuture),
}

impl fmt::Debug for JwtFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtFuture").finish_non_exhaustive()
    }
}

impl Future for JwtFuture {
    type Output = Result<VerifiedToken, TokenError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            FutureState::Ready(result) => Poll::Ready(result.take().unwrap_or_else(|| {
                Err(TokenError::with_detail(
                    TokenErrorKind::Other,
                    "polled after completion",
                ))
            })),
            FutureState::Pending(future) => future.as_mut().poll(cx),
        }
    }
}
