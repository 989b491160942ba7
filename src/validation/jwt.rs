use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::cache::VerifiedCache;
use super::issuer::{IssuerMatch, Peek, TrustedIssuer};
use super::jwks::{JwksSource, KeySet, Keys};
use super::profile::{TokenProfile, typ_is_rfc9068};
use super::{TokenError, TokenErrorKind, ValidateToken, VerifiedToken};
use crate::ConfigError;
use crate::proof::Algorithm;
use crate::proof::jws::{self, CompactJws, JwsError, JwsErrorKind};
use crate::warn_limit::WarnLimit;

/// The algorithms allowed by default: all of them (every one is
/// asymmetric).
const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::Es256,
    Algorithm::Es384,
    Algorithm::Es512,
    Algorithm::Rs256,
    Algorithm::Rs384,
    Algorithm::Rs512,
    Algorithm::Ps256,
    Algorithm::Ps384,
    Algorithm::Ps512,
    Algorithm::EdDsa,
];

/// The claims RFC 9068 section 2.2 requires that a validator may be told to
/// do without ([`JwtValidatorBuilder::allow_missing_claims`]). `iss`, `aud`
/// and `exp` are always required: without them a token is not tied to an
/// issuer, a resource or a lifetime.
pub const RELAXABLE_CLAIMS: &[&str] = &["sub", "client_id", "iat", "jti"];

/// Validates RFC 9068 JWT access tokens: the default [`ValidateToken`].
///
/// Signatures are checked by the crate's one JOSE stack
/// ([`proof::jws`](crate::proof::jws), on aws-lc-rs), the same that checks
/// DPoP proofs.
///
/// Strict by default. Checks, in this order:
///
/// 1. its `iss` names one of the [trusted issuers](JwtValidatorBuilder::trust),
///    read from the payload in one streaming pass before anything is built
///    from the token or any key is fetched; the token is checked against
///    that issuer's keys only;
/// 2. `typ`, from the header alone, is `at+jwt` or `application/at+jwt`
///    (RFC 9068 section 4), or what the
///    [token profile](JwtValidatorBuilder::token_profile) adds (`JWT`, or
///    none; never another kind of JWT);
/// 3. the JWT shape, and that neither the header nor the payload names a
///    JSON member twice, at any depth (two `alg`, two `cnf`, two `x5t#S256`
///    inside `cnf`): parsers disagree on which one counts, so such a token
///    is refused before its signature is looked at;
/// 4. `alg` is allowed (asymmetric only by default, so `none` and
///    HMAC-with-a-public-key never pass);
/// 5. a key with the token's `kid` and algorithm is in the issuer's key set
///    (an unknown `kid` refetches a remote JWKS, at most once per cooldown);
///    a token without `kid` is checked with the one key of its algorithm's
///    family, and refused when the set has several;
/// 6. the signature;
/// 7. `iss` (exactly, a string; for a multi-tenant issuer, its template
///    filled from an allowed tenant), `aud`, `exp` and `nbf` with a leeway
///    (default 30 s);
/// 8. the other claims RFC 9068 section 2.2 requires, as the profile names
///    them: `sub`, the client (`client_id`), the unique id (`jti`) as
///    non-empty strings, and `iat` (a number, not in the future beyond the
///    leeway). An issuer that leaves some out can be accepted with
///    [`allow_missing_claims`](JwtValidatorBuilder::allow_missing_claims),
///    naming each one; a claim that is present is checked all the same;
/// 9. `cnf`, if present, is well-formed.
///
/// A missing claim is answered `401 invalid_token` with an
/// `error_description` that names it. Whether `cnf` matches the client
/// certificate is the layer's check, on every request. When a token is
/// refused for its shape alone (`typ` `JWT`, say, or `azp` where
/// `client_id` is expected) and a preset profile would accept that shape,
/// a `warn` (at most one a second) names the profile.
///
/// Verified tokens are remembered (bounded, until the token's `exp`,
/// forgotten when the key set changes, in this process only), so a token
/// seen before costs a hash of its last bytes, a lookup and a comparison.
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
    issuers: Vec<IssuerKeys>,
    /// The allowed `alg`s.
    algorithms: Vec<Algorithm>,
    /// The accepted `aud`s.
    audiences: Vec<String>,
    leeway: u64,
    profile: Arc<TokenProfile>,
    /// The relaxable claims allowed to be missing beyond the profile's.
    also_absent: Vec<String>,
    cache: VerifiedCache<str>,
    /// Longer tokens are refused before any work.
    max_token_length: usize,
    /// Paces the warning that names a profile that would accept a token.
    shape_warning: WarnLimit,
}

/// A trusted issuer and its keys.
struct IssuerKeys {
    matcher: IssuerMatch,
    keys: Keys,
}

impl Inner {
    /// The generations of all key sets, summed: it grows whenever any of
    /// them changes.
    fn generation(&self) -> u64 {
        self.issuers.iter().fold(0u64, |sum, issuer| {
            sum.wrapping_add(issuer.keys.generation())
        })
    }
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issuers: Vec<&IssuerMatch> = self.inner.issuers.iter().map(|i| &i.matcher).collect();
        let algorithms: Vec<&str> = self.inner.algorithms.iter().map(|a| a.as_str()).collect();
        f.debug_struct("JwtValidator")
            .field("issuers", &issuers)
            .field("profile", &self.inner.profile.name())
            .field("algorithms", &algorithms)
            .field("leeway", &self.inner.leeway)
            .field("also_absent", &self.inner.also_absent)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtValidator`]. An issuer and its keys ([`issuer`](Self::issuer)
/// and [`jwks`](Self::jwks), or [`trust`](Self::trust), or both) and an
/// [`audience`](Self::audience) are required.
#[derive(Debug, Clone)]
pub struct JwtValidatorBuilder {
    issuer: Option<String>,
    audiences: Vec<String>,
    jwks: Option<JwksSource>,
    trusted: Vec<TrustedIssuer>,
    profile: TokenProfile,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    allow_missing: Vec<String>,
    cache_capacity: usize,
    max_token_length: usize,
}

/// The default [`JwtValidatorBuilder::max_token_length`]: 16 KiB, what
/// hyper lets a whole HTTP/2 header list hold by default.
pub const DEFAULT_MAX_JWT_LENGTH: usize = 16 * 1024;

impl JwtValidator {
    /// A builder.
    pub fn builder() -> JwtValidatorBuilder {
        JwtValidatorBuilder {
            issuer: None,
            audiences: Vec::new(),
            jwks: None,
            trusted: Vec::new(),
            profile: TokenProfile::rfc9068(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: Duration::from_secs(30),
            allow_missing: Vec::new(),
            cache_capacity: 10_000,
            max_token_length: DEFAULT_MAX_JWT_LENGTH,
        }
    }

    /// Validates `token` without the cache, in the calling task.
    async fn validate_uncached(self, token: String) -> Result<VerifiedToken, TokenError> {
        let inner = &self.inner;
        // Before anything is built from the token: the one issuer its payload
        // names, read in a streaming pass, and its header's `typ`. A token
        // refused for either costs a scan, not the objects of a full parse.
        let Some([header, payload, _]) = jws::segments(&token) else {
            return Err(TokenError::with_detail(
                TokenErrorKind::Malformed,
                "not three segments",
            ));
        };
        let issuer = self.issuer_of(payload)?;
        let typ_warning = self.early_typ_check(header)?;
        // Step 1: the shape, and no member named twice.
        let jws = CompactJws::parse(&token).map_err(refusal)?;
        let keys = match &issuer.keys {
            Keys::Static(keys) => keys.clone(),
            Keys::Remote(remote) => remote
                .keys()
                .await
                .ok_or_else(|| TokenError::new(TokenErrorKind::KeysUnavailable))?,
        };
        let result = match self.verify(&jws, issuer, &keys, typ_warning) {
            Err(e) if e.kind() == TokenErrorKind::UnknownKey => match &issuer.keys {
                Keys::Remote(remote) => match jws.header().get("kid").and_then(Value::as_str) {
                    Some(kid) if !keys.has_kid(Some(kid)) => {
                        match remote.refetch_for_unknown_kid(kid).await {
                            Some(fresh) if fresh.generation != keys.generation => self
                                .verify(&jws, issuer, &fresh, typ_warning)
                                .map(|()| fresh.generation),
                            _ => Err(e),
                        }
                    }
                    _ => Err(e),
                },
                Keys::Static(_) => Err(e),
            },
            other => other.map(|()| keys.generation),
        };
        let generation = result?;
        let verified =
            VerifiedToken::from_claims_with_profile(jws.into_claims(), inner.profile.clone())
                .map_err(|e| {
                    TokenError::with_detail(TokenErrorKind::InvalidConfirmation, e.to_string())
                })?;
        // Read before the issuer's own generation: if its keys change in
        // between, the entry is never served.
        let all = inner.generation();
        if issuer.keys.generation() != generation {
            // The key set changed under us: what was cached is stale.
            inner.cache.clear();
        } else if let Some(exp) = verified.expires_at() {
            let now = now();
            inner.cache.insert(
                &token,
                verified.clone(),
                exp.saturating_add(inner.leeway),
                all,
                now,
            );
        }
        Ok(verified)
    }

    /// The trusted issuer the unverified `payload` (the encoded segment)
    /// names: its `iss` (and, for a multi-tenant issuer, its tenant) must
    /// match one. Nothing else is decided on what is read here: the strict
    /// parse and the signature follow.
    fn issuer_of(&self, payload: &str) -> Result<&IssuerKeys, TokenError> {
        let malformed = |detail| TokenError::with_detail(TokenErrorKind::Malformed, detail);
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| malformed("the payload is not base64url"))?;
        let peek = Peek::read(&payload, self.inner.profile.tenant_claim_name())
            .ok_or_else(|| malformed("the payload is not a JSON object"))?;
        let Some(iss) = peek.iss.as_deref() else {
            // RFC 7519: `iss` is a string; one of another type names no
            // issuer.
            return Err(if peek.has_iss {
                TokenError::with_detail(TokenErrorKind::WrongIssuer, "iss is not a string")
            } else {
                TokenError::missing_claim("iss")
            });
        };
        self.inner
            .issuers
            .iter()
            .find(|issuer| issuer.matcher.matches(iss, peek.tenant.as_deref()))
            .ok_or_else(|| {
                let detail = match peek.tenant.as_deref() {
                    Some(tenant)
                        if self
                            .inner
                            .issuers
                            .iter()
                            .any(|i| i.matcher.is_multi_tenant()) =>
                    {
                        format!(
                            "iss {} (tenant {}) names no trusted issuer, or a tenant not allowed",
                            shown(iss),
                            shown(tenant)
                        )
                    }
                    _ => format!("iss {} names no trusted issuer", shown(iss)),
                };
                TokenError::with_detail(TokenErrorKind::WrongIssuer, detail)
            })
    }

    /// Step 2, before the full parse, from the encoded header alone: a `typ` the
    /// profile refuses is refused here, unless a warning may go out (once
    /// a second), for which the token is parsed and its signature checked
    /// all the same, so that the advice is given for the issuer's own
    /// tokens only: then the warning's count is returned for
    /// [`verify`](Self::verify).
    fn early_typ_check(&self, header: &str) -> Result<Option<u64>, TokenError> {
        let malformed = |detail| TokenError::with_detail(TokenErrorKind::Malformed, detail);
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| malformed("the header is not base64url"))?;
        let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(&header) else {
            return Err(malformed("the header is not a JSON object"));
        };
        match self.inner.profile.check_typ(typ_of(&header)?) {
            Ok(()) => Ok(None),
            Err(e) => match self.inner.shape_warning.allow() {
                Some(left_out) => Ok(Some(left_out)),
                None => Err(e),
            },
        }
    }

    /// Checks the parsed token against `keys`, the keys of `issuer`: steps
    /// 3 to 8 (step 9, `cnf`, is read with the claims).
    fn verify(
        &self,
        jws: &CompactJws<'_>,
        issuer: &IssuerKeys,
        keys: &KeySet,
        typ_warning: Option<u64>,
    ) -> Result<(), TokenError> {
        let typ = typ_of(jws.header())?;
        if let Err(e) = self.inner.profile.check_typ(typ) {
            // Refused before any signature work, unless the early check
            // left it for the warning.
            if let Some(left_out) = typ_warning {
                if self.check_signed(jws, keys).is_ok() {
                    self.name_fitting_profiles(typ, jws.claims(), &e, left_out);
                }
            }
            return Err(e);
        }
        self.check_signed(jws, keys)?;
        self.check_claims(issuer, typ, jws.claims())
    }

    /// Steps 4 to 7: the algorithm, the key, the signature, `exp`, `nbf`
    /// and `aud`.
    fn check_signed(&self, jws: &CompactJws<'_>, keys: &KeySet) -> Result<(), TokenError> {
        use TokenErrorKind as K;
        let alg = jws.algorithm();
        if !self.inner.algorithms.contains(&alg) {
            return Err(TokenError::with_detail(
                K::DisallowedAlgorithm,
                alg.as_str(),
            ));
        }
        let kid = match jws.header().get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(TokenError::with_detail(K::Malformed, "kid is not a string")),
        };
        let key = keys
            .find(kid, alg)
            .ok_or_else(|| TokenError::new(K::UnknownKey))?;
        jws.verify(key, &self.inner.algorithms).map_err(refusal)?;
        let claims = jws.claims();
        let now = now() as f64;
        let leeway = self.inner.leeway as f64;
        match claims.get("exp") {
            None => return Err(TokenError::missing_claim("exp")),
            Some(exp) => match numeric_date(exp) {
                Some(exp) if exp + leeway < now => return Err(TokenError::new(K::Expired)),
                Some(_) => {}
                None => return Err(wrong_type("exp", NUMERIC_DATE)),
            },
        }
        match claims.get("nbf").map(numeric_date) {
            None => {}
            Some(Some(nbf)) if nbf > now + leeway => return Err(TokenError::new(K::NotYetValid)),
            Some(Some(_)) => {}
            Some(None) => return Err(wrong_type("nbf", NUMERIC_DATE)),
        }
        let audiences = &self.inner.audiences;
        let ours = |aud: &Value| {
            aud.as_str()
                .is_some_and(|aud| audiences.iter().any(|a| a == aud))
        };
        match claims.get("aud") {
            None => Err(TokenError::missing_claim("aud")),
            Some(aud @ Value::String(_)) if ours(aud) => Ok(()),
            Some(Value::String(_)) => Err(TokenError::new(K::WrongAudience)),
            Some(Value::Array(auds)) if auds.iter().all(Value::is_string) => {
                if auds.iter().any(ours) {
                    Ok(())
                } else {
                    Err(TokenError::new(K::WrongAudience))
                }
            }
            Some(_) => Err(wrong_type("aud", "a string or an array of strings")),
        }
    }

    /// RFC 9068 section 2.2 as the profile shapes it, beyond the signature
    /// and the registered claims already checked.
    fn check_claims(
        &self,
        issuer: &IssuerKeys,
        typ: Option<&str>,
        claims: &Map<String, Value>,
    ) -> Result<(), TokenError> {
        // On the verified claims: a template's `iss` is checked here only,
        // and an exact one costs a comparison. RFC 7519: `iss` is a string.
        let peek = Peek::from_claims(claims, self.inner.profile.tenant_claim_name());
        if !peek
            .iss
            .as_deref()
            .is_some_and(|iss| issuer.matcher.matches(iss, peek.tenant.as_deref()))
        {
            return Err(TokenError::new(TokenErrorKind::WrongIssuer));
        }
        if let Err(e) =
            self.inner
                .profile
                .check_claims(claims, &self.inner.also_absent, typ_is_rfc9068(typ))
        {
            if let Some(left_out) = self.inner.shape_warning.allow() {
                self.name_fitting_profiles(typ, claims, &e, left_out);
            }
            return Err(e);
        }
        match claims.get("iat").map(numeric_date) {
            None => Ok(()),
            Some(None) => Err(wrong_type("iat", NUMERIC_DATE)),
            Some(Some(iat)) if iat > now().saturating_add(self.inner.leeway) as f64 => Err(
                TokenError::with_detail(TokenErrorKind::NotYetValid, "iat is in the future"),
            ),
            Some(Some(_)) => Ok(()),
        }
    }

    /// Tells the server's operator which preset profiles would accept a
    /// token, signed by a trusted issuer, that this profile refused for its
    /// shape (the caller paces it: once a second).
    fn name_fitting_profiles(
        &self,
        typ: Option<&str>,
        claims: &Map<String, Value>,
        refusal: &TokenError,
        left_out: u64,
    ) {
        let fits = self.inner.profile.presets_that_fit(typ, claims);
        if fits.is_empty() {
            return;
        }
        let reason = match (refusal.claim(), typ) {
            (Some(claim), _) => format!("it has no valid {claim} claim"),
            (None, Some(typ)) => format!("its header typ is {}", shown(typ)),
            (None, None) => "its header has no typ".to_owned(),
        };
        tracing::warn!(
            profile = %self.inner.profile.name(),
            would_accept = %fits.join(", "),
            warnings_left_out = left_out,
            "an access token signed by a trusted issuer was refused for its shape alone: {reason}, \
             which the {} token profile does not accept; the {} profile accepts that shape: set \
             it with token_profile(TokenProfile::{}()) if this issuer is one of those",
            self.inner.profile.name(),
            fits.join(" or "),
            fits[0],
        );
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

/// `text` from a token, for logs: quoted, escaped, at most 100 characters.
fn shown(text: &str) -> String {
    let mut shown: String = text.chars().take(100).collect();
    if shown.len() < text.len() {
        shown.push_str("...");
    }
    format!("{shown:?}")
}

/// A token refused by the JWS checks: its shape, a member named twice, its
/// `alg`, its signature.
fn refusal(e: JwsError) -> TokenError {
    use TokenErrorKind as K;
    let kind = match e.kind() {
        JwsErrorKind::DuplicateMember => K::DuplicateMember,
        JwsErrorKind::DisallowedAlgorithm => K::DisallowedAlgorithm,
        JwsErrorKind::KeyMismatch | JwsErrorKind::BadSignature => K::BadSignature,
        _ => K::Malformed,
    };
    TokenError::with_detail(kind, e.to_string())
}

/// The header's `typ`: `None` when absent or null.
fn typ_of(header: &Map<String, Value>) -> Result<Option<&str>, TokenError> {
    match header.get("typ") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(typ)) => Ok(Some(typ)),
        Some(_) => Err(TokenError::with_detail(
            TokenErrorKind::Malformed,
            "typ is not a string",
        )),
    }
}

/// What a time claim must be.
const NUMERIC_DATE: &str = "a NumericDate (a number of seconds from 0 to 2^64)";

/// A time claim's seconds since the epoch (RFC 7519 section 2): a JSON
/// number, finite, not negative, below 2^64; `None` for anything else, so
/// that `1e308` is not read as "never expires".
fn numeric_date(value: &Value) -> Option<f64> {
    const LIMIT: f64 = 18_446_744_073_709_551_616.0; // 2^64
    value
        .as_f64()
        .filter(|seconds| seconds.is_finite() && (0.0..LIMIT).contains(seconds))
}

/// A registered claim of the wrong type: refused as missing, naming it.
fn wrong_type(claim: &'static str, expected: &str) -> TokenError {
    let mut error = TokenError::missing_claim(claim);
    error.set_detail(format!("{claim} is not {expected}"));
    error
}

fn now() -> u64 {
    crate::clock::wall()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl JwtValidatorBuilder {
    /// The expected `iss`, exactly, whose keys are the [`jwks`](Self::jwks):
    /// the one issuer of most resource servers. For more than one, add each
    /// with [`trust`](Self::trust).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Also trusts `issuer`, with its own keys; may be called more than
    /// once (Entra v1 and v2 of one tenant, two Keycloak realms, a move
    /// from one issuer to another). A token is checked only against the
    /// keys of the issuer its `iss` names; an `iss` that names none is
    /// refused before any key is fetched. See [`TrustedIssuer`].
    pub fn trust(mut self, issuer: TrustedIssuer) -> Self {
        self.trusted.push(issuer);
        self
    }

    /// How the issuers shape their tokens: which `typ`, which claims name
    /// the client and the token, which may be absent, where permissions
    /// are. Default [`TokenProfile::rfc9068`]; see [`TokenProfile`] for the
    /// presets (`entra`, `keycloak`, `auth0`, `okta`).
    ///
    /// ```
    /// use tower_token_binding::validation::{JwksSource, JwtValidator, TokenProfile};
    ///
    /// let validator = JwtValidator::builder()
    ///     .issuer("https://kc.example/realms/orders")
    ///     .audience("orders-api")
    ///     .jwks(JwksSource::discover("https://kc.example/realms/orders").unwrap())
    ///     .token_profile(TokenProfile::keycloak())
    ///     .build()
    ///     .unwrap();
    /// # let _ = validator;
    /// ```
    pub fn token_profile(mut self, profile: TokenProfile) -> Self {
        self.profile = profile;
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

    /// The allowed signature algorithms, replacing the default (all of
    /// them). Symmetric algorithms have no name here: keys from a JWKS are
    /// never symmetric.
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
    /// A claim allowed to be missing is still checked when present. For an
    /// issuer that names these claims differently (Microsoft Entra's `azp`
    /// and `uti`, Okta's `cid`), a [token profile](Self::token_profile) is
    /// the better fit: it reads the issuer's claims instead of doing
    /// without them.
    ///
    /// ```
    /// use tower_token_binding::validation::{JwksSource, JwtValidator};
    ///
    /// let validator = JwtValidator::builder()
    ///     .issuer("https://issuer.example")
    ///     .audience("https://api.example")
    ///     .jwks(JwksSource::remote("https://issuer.example/jwks").unwrap())
    ///     .allow_missing_claims(["jti"])
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

    /// The longest token looked at, in bytes; a longer one is refused
    /// (`401 invalid_token`) before it is hashed, decoded or verified.
    /// Default [`DEFAULT_MAX_JWT_LENGTH`] (16 KiB); raise it for an issuer
    /// whose tokens are larger (Entra tokens with many `groups`, say).
    pub fn max_token_length(mut self, bytes: usize) -> Self {
        self.max_token_length = bytes;
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
    pub fn build(self) -> Result<JwtValidator, ConfigError> {
        const BUILDER: &str = "JwtValidatorBuilder";
        let mut trusted = Vec::new();
        match (self.issuer, self.jwks) {
            (Some(issuer), Some(jwks)) => trusted.push(TrustedIssuer::new(issuer, jwks)),
            (Some(_), None) => {
                return Err(ConfigError::missing(
                    BUILDER,
                    "jwks",
                    "JwtValidator needs a JWKS source",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::missing(
                    BUILDER,
                    "issuer",
                    "JwtValidator has a JWKS source but no issuer for it",
                ));
            }
            (None, None) => {}
        }
        trusted.extend(self.trusted);
        if trusted.is_empty() {
            return Err(ConfigError::missing(
                BUILDER,
                "issuer",
                "JwtValidator needs an issuer",
            ));
        }
        if self.audiences.is_empty() {
            return Err(ConfigError::missing(
                BUILDER,
                "audience",
                "JwtValidator needs an audience",
            ));
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::invalid(
                BUILDER,
                "algorithms",
                "JwtValidator needs at least one algorithm",
            ));
        }
        let mut algorithms = Vec::with_capacity(self.algorithms.len());
        for &alg in &self.algorithms {
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        if let Err(refusal) = check_relaxable(&self.allow_missing) {
            return Err(ConfigError::invalid(
                BUILDER,
                "allow_missing_claims",
                format!("JwtValidator {refusal}"),
            ));
        }
        self.profile.check().map_err(|e| {
            ConfigError::invalid(BUILDER, "token_profile", format!("JwtValidator: {e}"))
        })?;
        let tenant_claim = self.profile.tenant_claim_name();
        for (i, issuer) in trusted.iter().enumerate() {
            issuer.matcher.check(tenant_claim).map_err(|e| {
                ConfigError::invalid(BUILDER, "trust", format!("JwtValidator: {e}"))
            })?;
            if trusted[..i]
                .iter()
                .any(|other| other.issuer() == issuer.issuer())
            {
                return Err(ConfigError::invalid(
                    BUILDER,
                    "trust",
                    format!("JwtValidator trusts the issuer {:?} twice", issuer.issuer()),
                ));
            }
        }
        let leeway = self.leeway.as_secs();
        let mut issuers = Vec::with_capacity(trusted.len());
        for issuer in trusted {
            issuers.push(IssuerKeys {
                matcher: issuer.matcher,
                keys: issuer.jwks.into_keys()?,
            });
        }
        Ok(JwtValidator {
            inner: Arc::new(Inner {
                issuers,
                algorithms,
                audiences: self.audiences,
                leeway,
                profile: Arc::new(self.profile),
                also_absent: self.allow_missing,
                cache: VerifiedCache::new(self.cache_capacity),
                max_token_length: self.max_token_length,
                shape_warning: WarnLimit::new(),
            }),
        })
    }
}

impl ValidateToken for JwtValidator {
    type Future = JwtFuture;

    fn validate(&self, token: &str) -> JwtFuture {
        if token.len() > self.inner.max_token_length {
            return JwtFuture {
                state: FutureState::Ready(Some(Err(TokenError::with_detail(
                    TokenErrorKind::Malformed,
                    format!(
                        "{} bytes, longer than max_token_length ({})",
                        token.len(),
                        self.inner.max_token_length
                    ),
                )))),
            };
        }
        let generation = self.inner.generation();
        if let Some(hit) = self.inner.cache.get(token, now(), generation) {
            crate::metrics::validation_cache(crate::metrics::Validator::Jwt, true);
            for issuer in &self.inner.issuers {
                if let Keys::Remote(remote) = &issuer.keys {
                    // Keys can change while every request is a cache hit.
                    remote.refresh_if_stale();
                }
            }
            return JwtFuture {
                state: FutureState::Ready(Some(Ok(hit))),
            };
        }
        crate::metrics::validation_cache(crate::metrics::Validator::Jwt, false);
        let this = self.clone();
        let token = token.to_owned();
        JwtFuture {
            state: FutureState::Pending(Box::pin(this.validate_uncached(token))),
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
