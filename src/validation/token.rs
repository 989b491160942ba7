use std::fmt;
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};

use super::TokenProfile;
use crate::{Confirmation, InvalidConfirmation, ProvenBinding};

/// The profile of tokens made with [`VerifiedToken::from_claims`].
static RFC9068: LazyLock<Arc<TokenProfile>> = LazyLock::new(|| Arc::new(TokenProfile::rfc9068()));

/// A validated access token: its claims, its `cnf` read strictly, and which
/// binding the request proved.
///
/// [`CnfValidationLayer`](super::CnfValidationLayer) puts one into the
/// extensions of every request it lets through, with
/// [`binding`](Self::binding) set to what that request proved (its client
/// certificate, its DPoP proof or its signed HTTP request); with the `axum`
/// feature it is also an extractor. Cloning is cheap (a reference count).
///
/// ```
/// use tower_token_binding::ProvenBinding;
/// use tower_token_binding::validation::VerifiedToken;
///
/// let claims = serde_json::json!({ "sub": "svc", "scope": "read write" });
/// let token = VerifiedToken::from_claims(claims.as_object().unwrap().clone()).unwrap();
/// assert_eq!(token.subject(), Some("svc"));
/// assert!(token.has_scope("write"));
/// assert!(token.confirmation().is_none());
/// // Set by the layer, per request; a validator's token has proven nothing.
/// assert_eq!(token.binding(), ProvenBinding::None);
/// ```
#[derive(Clone)]
pub struct VerifiedToken {
    inner: Arc<Inner>,
    binding: ProvenBinding,
}

struct Inner {
    claims: Map<String, Value>,
    cnf: Option<Confirmation>,
    profile: Arc<TokenProfile>,
}

impl VerifiedToken {
    /// Wraps claims that a [`ValidateToken`](super::ValidateToken)
    /// implementation has verified, read as RFC 9068 shapes them
    /// ([`TokenProfile::rfc9068`]: the client in `client_id`, permissions
    /// in `scope`). Fails when `cnf` is present but malformed.
    pub fn from_claims(claims: Map<String, Value>) -> Result<Self, InvalidConfirmation> {
        Self::from_claims_with_profile(claims, RFC9068.clone())
    }

    /// Like [`from_claims`](Self::from_claims), for an issuer that shapes
    /// its tokens as `profile` says: [`client_id`](Self::client_id) and
    /// [`scopes`](Self::scopes) read the profile's claims.
    ///
    /// ```
    /// use tower_token_binding::validation::{TokenProfile, VerifiedToken};
    ///
    /// let claims = serde_json::json!({ "azp": "app", "roles": ["Orders.Read"] });
    /// let token = VerifiedToken::from_claims_with_profile(
    ///     claims.as_object().unwrap().clone(),
    ///     TokenProfile::entra(),
    /// )
    /// .unwrap();
    /// assert_eq!(token.client_id(), Some("app"));
    /// assert!(token.has_scope("Orders.Read"));
    /// ```
    pub fn from_claims_with_profile(
        claims: Map<String, Value>,
        profile: impl Into<Arc<TokenProfile>>,
    ) -> Result<Self, InvalidConfirmation> {
        let cnf = match claims.get("cnf") {
            None => None,
            Some(cnf) => Some(Confirmation::from_value(cnf)?),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                claims,
                cnf,
                profile: profile.into(),
            }),
            binding: ProvenBinding::None,
        })
    }

    /// The profile the claims are read with.
    pub fn profile(&self) -> &TokenProfile {
        &self.inner.profile
    }

    /// This token, as proven by one request (the claims are shared).
    pub(crate) fn with_binding(mut self, binding: ProvenBinding) -> Self {
        self.binding = binding;
        self
    }

    /// Which binding the request proved: the client certificate the token
    /// is bound to ([`ProvenBinding::Certificate`]), the DPoP key
    /// ([`ProvenBinding::Dpop`]), the key of a signed HTTP request
    /// ([`ProvenBinding::Pop`], with its KID), or nothing for an unbound
    /// bearer token ([`ProvenBinding::None`], also what a token straight
    /// from a [`ValidateToken`](super::ValidateToken) says).
    pub fn binding(&self) -> ProvenBinding {
        self.binding
    }

    /// All claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.inner.claims
    }

    fn str_claim(&self, name: &str) -> Option<&str> {
        self.inner.claims.get(name).and_then(Value::as_str)
    }

    /// `sub`.
    pub fn subject(&self) -> Option<&str> {
        self.str_claim("sub")
    }

    /// The client the token was issued to, from the claim the
    /// [profile](Self::profile) names: `client_id` (RFC 9068, Keycloak
    /// service accounts), `azp` (Entra v2, Keycloak, Auth0), `appid` (Entra
    /// v1) or `cid` (Okta).
    pub fn client_id(&self) -> Option<&str> {
        self.inner.profile.client_id(&self.inner.claims)
    }

    /// `iss`.
    pub fn issuer(&self) -> Option<&str> {
        self.str_claim("iss")
    }

    /// `exp`, seconds since the Unix epoch, rounded down: a NumericDate
    /// may have a fraction (RFC 7519 section 2), and a token is not used
    /// past it. `None` without a numeric `exp`; a negative one is 0.
    pub fn expires_at(&self) -> Option<u64> {
        let exp = self.inner.claims.get("exp")?;
        exp.as_u64().or_else(|| {
            exp.as_f64()
                .filter(|exp| exp.is_finite())
                // Saturating: out-of-range values become 0 or u64::MAX.
                .map(|exp| exp.max(0.0).floor() as u64)
        })
    }

    /// The `scope` claim as it is (space-separated, RFC 9068 section 2.2.3),
    /// whatever the profile: `None` for an Entra or Okta token, whose
    /// permissions are elsewhere. [`scopes`](Self::scopes) reads them under
    /// every profile.
    pub fn scope(&self) -> Option<&str> {
        self.str_claim("scope")
    }

    /// The granted scopes (permissions), from the first of the claims the
    /// [profile](Self::profile) names that the token carries: `scope` split
    /// on spaces (RFC 9068), Entra's `scp` (else `roles`, in an app-only
    /// token), Okta's `scp` array, Auth0's `scope` (else `permissions`). See
    /// [`TokenProfile::permissions`].
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.inner.profile.permissions(&self.inner.claims)
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// The `cnf` claim, when the token is bound to something.
    pub fn confirmation(&self) -> Option<&Confirmation> {
        self.inner.cnf.as_ref()
    }
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("sub", &self.subject())
            .field("client_id", &self.client_id())
            .field("scope", &self.scope())
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(claims: Value) -> VerifiedToken {
        VerifiedToken::from_claims(claims.as_object().unwrap().clone()).unwrap()
    }

    #[test]
    fn expires_at_rounds_numeric_dates_down() {
        let exp = |v: Value| token(json!({ "exp": v })).expires_at();
        assert_eq!(exp(json!(1_800_000_060)), Some(1_800_000_060));
        assert_eq!(exp(json!(1_800_000_060.5)), Some(1_800_000_060));
        assert_eq!(exp(json!(1_800_000_060.999)), Some(1_800_000_060));
        assert_eq!(exp(json!(-5)), Some(0));
        assert_eq!(exp(json!(-0.5)), Some(0));
        assert_eq!(exp(json!(1e300)), Some(u64::MAX));
        assert_eq!(exp(json!("1800000060")), None);
        assert_eq!(token(json!({})).expires_at(), None);
    }

    #[test]
    fn scopes_as_the_profile_names_them() {
        assert!(token(json!({ "scope": "a  b" })).scopes().eq(["a", "b"]));
        // The default reads RFC 9068's claim only.
        assert!(token(json!({ "scp": "a b" })).scopes().next().is_none());
        assert!(token(json!({})).scopes().next().is_none());
        assert!(!token(json!({ "scope": "ab" })).has_scope("a"));
        let okta = VerifiedToken::from_claims_with_profile(
            json!({ "scp": ["a", 1, "b"], "cid": "c" })
                .as_object()
                .unwrap()
                .clone(),
            TokenProfile::okta(),
        )
        .unwrap();
        assert!(okta.scopes().eq(["a", "b"]));
        assert_eq!(okta.client_id(), Some("c"));
        assert_eq!(okta.profile().name(), "okta");
    }

    #[test]
    fn malformed_cnf_is_refused() {
        let claims = json!({ "cnf": "x" }).as_object().unwrap().clone();
        assert!(VerifiedToken::from_claims(claims).is_err());
    }
}
