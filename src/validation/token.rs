use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::{Confirmation, InvalidConfirmation, ProvenBinding};

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
}

impl VerifiedToken {
    /// Wraps claims that a [`ValidateToken`](super::ValidateToken)
    /// implementation has verified. Fails when `cnf` is present but malformed.
    pub fn from_claims(claims: Map<String, Value>) -> Result<Self, InvalidConfirmation> {
        let cnf = match claims.get("cnf") {
            None => None,
            Some(cnf) => Some(Confirmation::from_value(cnf)?),
        };
        Ok(Self {
            inner: Arc::new(Inner { claims, cnf }),
            binding: ProvenBinding::None,
        })
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

    /// `client_id` (RFC 9068), or `azp` as Microsoft Entra v1 tokens carry it.
    pub fn client_id(&self) -> Option<&str> {
        self.str_claim("client_id")
            .or_else(|| self.str_claim("azp"))
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

    /// The `scope` claim as it is (space-separated, RFC 9068 section 2.2.3).
    pub fn scope(&self) -> Option<&str> {
        self.str_claim("scope")
    }

    /// The granted scopes: `scope` split on spaces, or else `scp` (a string
    /// or an array of strings, as Microsoft Entra and others send it).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        let from_string = self
            .scope()
            .or_else(|| self.str_claim("scp"))
            .into_iter()
            .flat_map(|s| s.split(' '))
            .filter(|s| !s.is_empty());
        let from_array = self
            .inner
            .claims
            .get("scp")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        from_string.chain(from_array)
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
    fn scopes_from_scope_or_scp() {
        assert!(token(json!({ "scope": "a  b" })).scopes().eq(["a", "b"]));
        assert!(token(json!({ "scp": "a b" })).scopes().eq(["a", "b"]));
        assert!(
            token(json!({ "scp": ["a", 1, "b"] }))
                .scopes()
                .eq(["a", "b"])
        );
        assert!(token(json!({})).scopes().next().is_none());
        assert!(!token(json!({ "scope": "ab" })).has_scope("a"));
    }

    #[test]
    fn malformed_cnf_is_refused() {
        let claims = json!({ "cnf": "x" }).as_object().unwrap().clone();
        assert!(VerifiedToken::from_claims(claims).is_err());
    }
}
