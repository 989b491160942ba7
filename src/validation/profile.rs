//! [`TokenProfile`]: how an issuer shapes its access tokens, so that tokens
//! from Microsoft Entra, Keycloak, Auth0 or Okta are read as they are sent,
//! and [`VerifiedToken::client_id`](super::VerifiedToken::client_id) and
//! [`scopes`](super::VerifiedToken::scopes) answer the same under each.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use super::jwt::RELAXABLE_CLAIMS;
use super::{TokenError, TokenErrorKind};

/// The form of a claim that carries permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClaimForm {
    /// One string of space-separated values (`scope` in RFC 9068 section
    /// 2.2.3, Entra's `scp`).
    SpaceSeparated,
    /// A JSON array of strings (Entra's `roles`, Okta's `scp`, Auth0's
    /// `permissions`).
    Array,
}

/// How an issuer shapes its access tokens: which header `typ` it sends,
/// which claims name the client and the token, which RFC 9068 claims it
/// leaves out, and where it puts permissions.
///
/// A profile only reads the token's shape. It never weakens the signature,
/// `iss`, `aud`, `exp`/`nbf`, the algorithm allow-list, the duplicate-member
/// check or the binding check, and it never accepts a `typ` that names
/// another kind of JWT: `at+jwt` and `application/at+jwt` are always
/// accepted; a profile may add `JWT` ([`accept_typ_jwt`](Self::accept_typ_jwt))
/// and no `typ` at all ([`accept_missing_typ`](Self::accept_missing_typ)),
/// nothing else (`dpop+jwt`, `pop`, `id_token+jwt`... are always refused).
/// Where it accepts `JWT` or no `typ`, a token that carries the marks of an
/// OpenID Connect ID token (`at_hash`, `c_hash` or `s_hash`, or a payload
/// `typ` other than `Bearer`) is still refused.
///
/// The presets, and the shape each was made for:
///
/// | preset | header `typ` | client | unique id | permissions |
/// | --- | --- | --- | --- | --- |
/// | [`rfc9068`](Self::rfc9068) (the default) | `at+jwt` | `client_id` | `jti` | `scope` (space-separated) |
/// | [`entra`](Self::entra) (v1 and v2) | `JWT` | `azp` (v2), `appid` (v1) | `uti` | `scp` (space-separated, delegated), else `roles` (array, app-only) |
/// | [`keycloak`](Self::keycloak) | `JWT` | `client_id`, `azp` | `jti` | `scope` (space-separated) |
/// | [`auth0`](Self::auth0) | `JWT` | `client_id`, `azp` | none | `scope` (space-separated), else `permissions` (array, RBAC) |
/// | [`okta`](Self::okta) | none | `cid` | `jti` | `scp` (array) |
///
/// Any other issuer (Ping, Curity, ForgeRock, Cognito...) gets a profile of
/// its own with [`custom`](Self::custom) and the setters:
///
/// ```
/// use tower_token_binding::validation::{ClaimForm, TokenProfile};
///
/// // Amazon Cognito access tokens: `token_use: access`, no `typ` check
/// // possible (`typ` is absent), `client_id`, `jti`, `scope`.
/// let cognito = TokenProfile::custom("cognito")
///     .accept_missing_typ()
///     .permission_claims([("scope", ClaimForm::SpaceSeparated)]);
/// assert_eq!(cognito.name(), "cognito");
///
/// let claims = serde_json::json!({ "cid": "app", "scp": ["orders.read"] });
/// let claims = claims.as_object().unwrap();
/// let okta = TokenProfile::okta();
/// assert_eq!(okta.client_id(claims), Some("app"));
/// assert!(okta.permissions(claims).eq(["orders.read"]));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct TokenProfile {
    name: Cow<'static, str>,
    typ_jwt: bool,
    typ_missing: bool,
    client_claims: Vec<Cow<'static, str>>,
    unique_id: Option<Cow<'static, str>>,
    may_be_absent: Vec<Cow<'static, str>>,
    permissions: Vec<(Cow<'static, str>, ClaimForm)>,
    tenant_claim: Option<Cow<'static, str>>,
}

/// The names of the presets, for command lines and configuration files:
/// each is accepted by [`TokenProfile::named`].
pub const PRESETS: &[&str] = &["rfc9068", "entra", "keycloak", "auth0", "okta"];

impl TokenProfile {
    /// RFC 9068 read literally, the default: header `typ` `at+jwt`;
    /// `sub`, `client_id`, `iat` and `jti` present; permissions in `scope`,
    /// space-separated. The shape oidc-provider issues:
    ///
    /// ```text
    /// header  {"typ":"at+jwt","alg":"ES256","kid":"..."}
    /// payload {"iss":"https://issuer.example","aud":"https://api.example",
    ///          "sub":"svc","client_id":"svc","jti":"...","iat":...,"exp":...,
    ///          "scope":"orders.read","cnf":{"x5t#S256":"..."}}
    /// ```
    pub fn rfc9068() -> Self {
        Self {
            name: Cow::Borrowed("rfc9068"),
            typ_jwt: false,
            typ_missing: false,
            client_claims: vec![Cow::Borrowed("client_id")],
            unique_id: Some(Cow::Borrowed("jti")),
            may_be_absent: Vec::new(),
            permissions: vec![(Cow::Borrowed("scope"), ClaimForm::SpaceSeparated)],
            tenant_claim: None,
        }
    }

    /// Microsoft Entra ID access tokens, v1 and v2: header `typ` `JWT`; the
    /// client in `azp` (v2) or `appid` (v1); `uti` instead of `jti`;
    /// delegated permissions in `scp` (space-separated), application
    /// permissions in `roles` (an array), read only when there is no `scp`
    /// (in a delegated token `roles` are the user's app roles, not what the
    /// client was granted); the tenant in `tid`, which fills
    /// the `{tenantid}` of a multi-tenant issuer
    /// ([`TrustedIssuer::tenants`](super::TrustedIssuer::tenants)). An
    /// mTLS-bound (`mtls_pop`) token carries `cnf.x5t#S256`.
    ///
    /// ```text
    /// header  {"typ":"JWT","alg":"RS256","kid":"...","x5t":"..."}
    /// payload {"aud":"<API client id>","iss":"https://login.microsoftonline.com/{tid}/v2.0",
    ///          "iat":...,"nbf":...,"exp":...,"azp":"<client app id>","azpacr":"2",
    ///          "oid":"...","sub":"...","tid":"...","uti":"...","ver":"2.0",
    ///          "roles":["Orders.Read"],"cnf":{"x5t#S256":"..."}}
    /// v1:     {"iss":"https://sts.windows.net/{tid}/","appid":"...","ver":"1.0",...}
    /// ```
    pub fn entra() -> Self {
        Self {
            name: Cow::Borrowed("entra"),
            typ_jwt: true,
            typ_missing: false,
            client_claims: vec![Cow::Borrowed("azp"), Cow::Borrowed("appid")],
            unique_id: Some(Cow::Borrowed("uti")),
            may_be_absent: Vec::new(),
            permissions: vec![
                (Cow::Borrowed("scp"), ClaimForm::SpaceSeparated),
                (Cow::Borrowed("roles"), ClaimForm::Array),
            ],
            tenant_claim: Some(Cow::Borrowed("tid")),
        }
    }

    /// Keycloak access tokens: header `typ` `JWT` (`at+jwt` only when the
    /// client opts in, also accepted); the client in `client_id` (service
    /// accounts) or `azp`; `jti`; `scope`. Keycloak 25 and later leave `sub`
    /// out unless the client has the `basic` scope, so `sub` may be absent.
    ///
    /// ```text
    /// header  {"alg":"RS256","typ":"JWT","kid":"..."}
    /// payload {"exp":...,"iat":...,"jti":"...","iss":"https://kc.example/realms/orders",
    ///          "aud":"orders-api","sub":"...","typ":"Bearer","azp":"orders-client",
    ///          "client_id":"orders-client","scope":"profile orders.read",
    ///          "cnf":{"x5t#S256":"..."}}
    /// ```
    pub fn keycloak() -> Self {
        Self {
            name: Cow::Borrowed("keycloak"),
            typ_jwt: true,
            typ_missing: false,
            client_claims: vec![Cow::Borrowed("client_id"), Cow::Borrowed("azp")],
            unique_id: Some(Cow::Borrowed("jti")),
            may_be_absent: vec![Cow::Borrowed("sub")],
            permissions: vec![(Cow::Borrowed("scope"), ClaimForm::SpaceSeparated)],
            tenant_claim: None,
        }
    }

    /// Auth0 access tokens in Auth0's default token profile: header `typ`
    /// `JWT`; the client in `azp` (or `client_id` in Auth0's RFC 9068
    /// profile); no unique id; `scope`, or else `permissions` (an array,
    /// where RBAC is on).
    ///
    /// ```text
    /// header  {"alg":"RS256","typ":"JWT","kid":"..."}
    /// payload {"iss":"https://tenant.auth0.com/","sub":"app@clients",
    ///          "aud":"https://orders.example","iat":...,"exp":...,"azp":"app",
    ///          "gty":"client-credentials","scope":"read:orders",
    ///          "permissions":["read:orders"],"cnf":{"x5t#S256":"..."}}
    /// ```
    pub fn auth0() -> Self {
        Self {
            name: Cow::Borrowed("auth0"),
            typ_jwt: true,
            typ_missing: false,
            client_claims: vec![Cow::Borrowed("client_id"), Cow::Borrowed("azp")],
            unique_id: None,
            may_be_absent: Vec::new(),
            permissions: vec![
                (Cow::Borrowed("scope"), ClaimForm::SpaceSeparated),
                (Cow::Borrowed("permissions"), ClaimForm::Array),
            ],
            tenant_claim: None,
        }
    }

    /// Okta access tokens (custom and org authorization servers): no header
    /// `typ`; the client in `cid`; `jti`; `scp` as an array.
    ///
    /// ```text
    /// header  {"kid":"...","alg":"RS256"}
    /// payload {"ver":1,"jti":"AT....","iss":"https://org.okta.com/oauth2/default",
    ///          "aud":"api://orders","iat":...,"exp":...,"cid":"0oa...",
    ///          "scp":["orders.read"],"sub":"0oa...","cnf":{"x5t#S256":"..."}}
    /// ```
    pub fn okta() -> Self {
        Self {
            name: Cow::Borrowed("okta"),
            typ_jwt: false,
            typ_missing: true,
            client_claims: vec![Cow::Borrowed("cid")],
            unique_id: Some(Cow::Borrowed("jti")),
            may_be_absent: Vec::new(),
            permissions: vec![(Cow::Borrowed("scp"), ClaimForm::Array)],
            tenant_claim: None,
        }
    }

    /// The preset called `name` (one of [`PRESETS`]: `rfc9068`, `entra`,
    /// `keycloak`, `auth0`, `okta`), for names read from a command line or a
    /// file.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "rfc9068" => Some(Self::rfc9068()),
            "entra" => Some(Self::entra()),
            "keycloak" => Some(Self::keycloak()),
            "auth0" => Some(Self::auth0()),
            "okta" => Some(Self::okta()),
            _ => None,
        }
    }

    /// A profile of your own, named `name` (for logs), starting from the
    /// [`rfc9068`](Self::rfc9068) shape; change what your issuer does
    /// differently with the setters.
    pub fn custom(name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            name: name.into(),
            ..Self::rfc9068()
        }
    }

    /// The profile's name: the preset's, or the one given to
    /// [`custom`](Self::custom).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Also accepts the header `typ` `JWT` (any case), as most issuers send
    /// by default.
    pub fn accept_typ_jwt(mut self) -> Self {
        self.typ_jwt = true;
        self
    }

    /// Also accepts a header without `typ`.
    pub fn accept_missing_typ(mut self) -> Self {
        self.typ_missing = true;
        self
    }

    /// The claims that name the client, the first present one counting;
    /// replaces the profile's. One must be present, a non-empty string,
    /// unless `client_id` [may be absent](Self::may_be_absent).
    pub fn client_id_claims<I>(mut self, claims: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Cow<'static, str>>,
    {
        self.client_claims = claims.into_iter().map(Into::into).collect();
        self
    }

    /// The claim that holds the token's unique identifier (`jti` in RFC
    /// 9068, `uti` in Entra), which must be present, a non-empty string,
    /// unless `jti` [may be absent](Self::may_be_absent).
    pub fn unique_id_claim(mut self, claim: impl Into<Cow<'static, str>>) -> Self {
        self.unique_id = Some(claim.into());
        self
    }

    /// For an issuer that sends no unique identifier (Auth0): none is
    /// required. A `jti` that is present is checked all the same.
    pub fn without_unique_id(mut self) -> Self {
        self.unique_id = None;
        self
    }

    /// RFC 9068 claims this issuer may leave out: each one of
    /// [`RELAXABLE_CLAIMS`] (`sub`, `client_id` for the
    /// [client claims](Self::client_id_claims), `iat`, `jti` for the
    /// [unique id](Self::unique_id_claim)); any other name is an error when
    /// the validator is built. Adds to the profile's. A claim that is
    /// present is checked all the same.
    pub fn may_be_absent<I>(mut self, claims: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<Cow<'static, str>>,
    {
        self.may_be_absent
            .extend(claims.into_iter().map(Into::into));
        self
    }

    /// The claims that carry permissions, and the form of each, in order
    /// of preference; replaces the profile's.
    /// [`VerifiedToken::scopes`](super::VerifiedToken::scopes) reads the
    /// first one the token carries (see [`permissions`](Self::permissions)),
    /// and a required scope is granted when it holds it.
    pub fn permission_claims<I, N>(mut self, claims: I) -> Self
    where
        I: IntoIterator<Item = (N, ClaimForm)>,
        N: Into<Cow<'static, str>>,
    {
        self.permissions = claims
            .into_iter()
            .map(|(name, form)| (name.into(), form))
            .collect();
        self
    }

    /// The claim that names the issuer's tenant (`tid` for Entra), which
    /// fills the `{tenantid}` of a multi-tenant issuer.
    pub fn tenant_claim(mut self, claim: impl Into<Cow<'static, str>>) -> Self {
        self.tenant_claim = Some(claim.into());
        self
    }

    /// The claim naming the tenant, if this profile has one.
    pub fn tenant_claim_name(&self) -> Option<&str> {
        self.tenant_claim.as_deref()
    }

    /// The client, as this profile names it: the first of its
    /// [client claims](Self::client_id_claims) that is a string.
    pub fn client_id<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a str> {
        self.client_claims
            .iter()
            .find_map(|name| claims.get(name.as_ref()).and_then(Value::as_str))
    }

    /// The permissions the token grants, read from the first of this
    /// profile's [permission claims](Self::permission_claims) that the token
    /// carries: space-separated ones split on spaces, arrays read for their
    /// strings. A claim of another form than the one named gives nothing
    /// (and the claims after it are not read).
    ///
    /// One claim, never a union: under [`entra`](Self::entra) a delegated
    /// token's `scp` is what the client was granted, and the `roles` it may
    /// also carry are the user's app roles, which must not stand in for a
    /// scope; `roles` counts only in an app-only token, which has no `scp`.
    /// Likewise Auth0's `permissions` counts only without `scope`.
    pub fn permissions<'a>(
        &'a self,
        claims: &'a Map<String, Value>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let first = self
            .permissions
            .iter()
            .find_map(|(name, form)| claims.get(name.as_ref()).map(|value| (form, value)));
        let spaced = match first {
            Some((ClaimForm::SpaceSeparated, Value::String(s))) => Some(s.split(' ')),
            _ => None,
        };
        let listed = match first {
            Some((ClaimForm::Array, Value::Array(items))) => Some(items.iter()),
            _ => None,
        };
        spaced
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .chain(listed.into_iter().flatten().filter_map(Value::as_str))
    }

    /// Whether a token of this shape fits the profile: its header `typ`
    /// (`None` when absent) and its claims, the checks a
    /// [`JwtValidator`](super::JwtValidator) makes of the shape (and only
    /// those: no signature, issuer, audience or time). For diagnosis, as
    /// `examples/explain.rs` does.
    ///
    /// ```
    /// use tower_token_binding::validation::TokenProfile;
    ///
    /// let claims = serde_json::json!({ "sub": "s", "iat": 1, "azp": "app", "uti": "u" });
    /// let claims = claims.as_object().unwrap();
    /// assert!(TokenProfile::entra().check_shape(Some("JWT"), claims).is_ok());
    /// let refused = TokenProfile::rfc9068().check_shape(Some("JWT"), claims).unwrap_err();
    /// assert_eq!(refused.kind(), tower_token_binding::validation::TokenErrorKind::WrongType);
    /// ```
    pub fn check_shape(
        &self,
        typ: Option<&str>,
        claims: &Map<String, Value>,
    ) -> Result<(), TokenError> {
        self.check_typ(typ)?;
        self.check_claims(claims, &[], typ_is_rfc9068(typ))
    }

    /// Whether the profile accepts this header `typ` (`None` when absent).
    pub(crate) fn accepts_typ(&self, typ: Option<&str>) -> bool {
        match typ {
            None => self.typ_missing,
            Some(t) => {
                t.eq_ignore_ascii_case("at+jwt")
                    || t.eq_ignore_ascii_case("application/at+jwt")
                    || (self.typ_jwt && t.eq_ignore_ascii_case("JWT"))
            }
        }
    }

    /// Whether this profile accepts a `typ` other than RFC 9068's.
    fn relaxes_typ(&self) -> bool {
        self.typ_jwt || self.typ_missing
    }

    /// Checks the header `typ`, before any signature work.
    pub(crate) fn check_typ(&self, typ: Option<&str>) -> Result<(), TokenError> {
        if self.accepts_typ(typ) {
            return Ok(());
        }
        let shown = match typ {
            None => "no typ".to_owned(),
            Some(t) if t.len() <= 32 && t.bytes().all(|b| b.is_ascii_graphic()) => {
                format!("typ {t:?}")
            }
            Some(_) => "an unprintable or long typ".to_owned(),
        };
        Err(TokenError::with_detail(
            TokenErrorKind::WrongType,
            format!("{shown} is not accepted by the {} token profile", self.name),
        ))
    }

    /// Checks the verified claims' shape: the claims RFC 9068 section 2.2
    /// requires, as this profile names them, less those that may be absent
    /// here or in `also_absent`; and, where `typ` is relaxed, no ID token.
    pub(crate) fn check_claims(
        &self,
        claims: &Map<String, Value>,
        also_absent: &[String],
        header_typ_is_rfc9068: bool,
    ) -> Result<(), TokenError> {
        let absent_ok = |name: &str| {
            self.may_be_absent.iter().any(|n| n == name) || also_absent.iter().any(|n| n == name)
        };
        // Present RFC 9068 claims are checked whatever the profile says.
        for &name in RELAXABLE_CLAIMS {
            if let Some(value) = claims.get(name) {
                if !well_typed(name, value) {
                    return Err(TokenError::missing_claim(name));
                }
            }
        }
        for name in ["sub", "iat"] {
            if !claims.contains_key(name) && !absent_ok(name) {
                return Err(TokenError::missing_claim(name));
            }
        }
        let mut client = false;
        for name in &self.client_claims {
            match claims.get(name.as_ref()) {
                None => {}
                Some(value) if non_empty_string(value) => client = true,
                Some(_) => return Err(TokenError::missing_claim(name.clone())),
            }
        }
        if !client && !absent_ok("client_id") {
            let first = self
                .client_claims
                .first()
                .cloned()
                .unwrap_or(Cow::Borrowed("client_id"));
            return Err(TokenError::missing_claim(first));
        }
        if let Some(name) = &self.unique_id {
            match claims.get(name.as_ref()) {
                Some(value) if non_empty_string(value) => {}
                Some(_) => return Err(TokenError::missing_claim(name.clone())),
                None if absent_ok("jti") => {}
                None => return Err(TokenError::missing_claim(name.clone())),
            }
        }
        if !header_typ_is_rfc9068 && self.relaxes_typ() {
            if let Some(mark) = id_token_mark(claims) {
                return Err(TokenError::with_detail(
                    TokenErrorKind::WrongType,
                    format!("an OpenID Connect ID token ({mark}), not an access token"),
                ));
            }
        }
        Ok(())
    }

    /// Checks the profile's settings: claim names that can be shown in an
    /// `error_description`, and absent claims that may be absent.
    pub(crate) fn check(&self) -> Result<(), String> {
        let names = self
            .client_claims
            .iter()
            .chain(&self.unique_id)
            .chain(self.permissions.iter().map(|(n, _)| n))
            .chain(&self.tenant_claim);
        for name in names {
            let fine = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.:#$".contains(&b));
            if !fine {
                return Err(format!(
                    "the {} token profile names a claim {name:?}: claim names are 1 to 64 \
                     letters, digits or _ - . : # $",
                    self.name
                ));
            }
        }
        let absent: Vec<String> = self.may_be_absent.iter().map(|n| n.to_string()).collect();
        super::jwt::check_relaxable(&absent)
            .map_err(|refusal| format!("the {} token profile {refusal}", self.name))
    }

    /// The presets other than this profile that accept a token of this
    /// shape (`typ` and claims, unverified): what the server's operator is
    /// told when this profile refuses it for its shape alone.
    pub(crate) fn presets_that_fit(
        &self,
        typ: Option<&str>,
        claims: &Map<String, Value>,
    ) -> Vec<&'static str> {
        PRESETS
            .iter()
            .copied()
            .filter(|&name| name != self.name)
            .filter(|&name| {
                let Some(preset) = Self::named(name) else {
                    return false;
                };
                preset.check_shape(typ, claims).is_ok()
            })
            .collect()
    }
}

impl Default for TokenProfile {
    /// [`TokenProfile::rfc9068`].
    fn default() -> Self {
        Self::rfc9068()
    }
}

impl fmt::Debug for TokenProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProfile")
            .field("name", &self.name)
            .field("typ_jwt", &self.typ_jwt)
            .field("typ_missing", &self.typ_missing)
            .field("client_id_claims", &self.client_claims)
            .field("unique_id_claim", &self.unique_id)
            .field("may_be_absent", &self.may_be_absent)
            .field("permission_claims", &self.permissions)
            .field("tenant_claim", &self.tenant_claim)
            .finish()
    }
}

/// `at+jwt` or `application/at+jwt`, any case.
pub(crate) fn typ_is_rfc9068(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    })
}

/// The type RFC 9068 section 2.2 gives each relaxable claim.
fn well_typed(name: &str, value: &Value) -> bool {
    match name {
        "iat" => value.is_number(),
        _ => non_empty_string(value),
    }
}

fn non_empty_string(value: &Value) -> bool {
    value.as_str().is_some_and(|s| !s.is_empty())
}

/// What shows a token to be an OpenID Connect ID token rather than an
/// access token, when its header `typ` cannot say: the hashes only ID
/// tokens carry, or a payload `typ` (Keycloak's) other than `Bearer`.
fn id_token_mark(claims: &Map<String, Value>) -> Option<&'static str> {
    for mark in ["at_hash", "c_hash", "s_hash"] {
        if claims.contains_key(mark) {
            return Some(mark);
        }
    }
    match claims.get("typ") {
        None => None,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("Bearer") => None,
        Some(_) => Some("a payload typ other than Bearer"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn typ_is_never_another_kind_of_jwt() {
        for profile in PRESETS.iter().map(|n| TokenProfile::named(n).unwrap()) {
            for typ in [
                "dpop+jwt",
                "pop",
                "id_token+jwt",
                "JOSE",
                "secevent+jwt",
                "at+jwt2",
            ] {
                assert!(
                    !profile.accepts_typ(Some(typ)),
                    "{} took {typ}",
                    profile.name()
                );
            }
            assert!(profile.accepts_typ(Some("at+jwt")));
            assert!(profile.accepts_typ(Some("Application/AT+JWT")));
        }
        assert!(!TokenProfile::rfc9068().accepts_typ(Some("JWT")));
        assert!(!TokenProfile::rfc9068().accepts_typ(None));
        assert!(TokenProfile::entra().accepts_typ(Some("jwt")));
        assert!(!TokenProfile::entra().accepts_typ(None));
        assert!(TokenProfile::okta().accepts_typ(None));
        assert!(!TokenProfile::okta().accepts_typ(Some("JWT")));
    }

    #[test]
    fn each_preset_reads_its_client_and_permissions() {
        let entra_app = map(json!({ "azp": "app", "roles": ["Orders.Read"] }));
        let entra_v1 = map(json!({ "appid": "app1", "scp": "Orders.Read Orders.Write" }));
        let okta = map(json!({ "cid": "0oa", "scp": ["a", 1, "b"] }));
        let auth0 = map(json!({ "azp": "x", "scope": "read:a", "permissions": ["read:b"] }));
        let auth0_rbac = map(json!({ "azp": "x", "permissions": ["read:b"] }));
        let delegated = map(json!({ "azp": "x", "scp": "Orders.Read", "roles": ["Admin"] }));
        let e = TokenProfile::entra();
        assert_eq!(e.client_id(&entra_app), Some("app"));
        assert!(e.permissions(&entra_app).eq(["Orders.Read"]));
        assert_eq!(e.client_id(&entra_v1), Some("app1"));
        assert!(e.permissions(&entra_v1).eq(["Orders.Read", "Orders.Write"]));
        assert!(TokenProfile::okta().permissions(&okta).eq(["a", "b"]));
        // One claim, the first the token carries: never a union.
        assert!(TokenProfile::auth0().permissions(&auth0).eq(["read:a"]));
        assert!(
            TokenProfile::auth0()
                .permissions(&auth0_rbac)
                .eq(["read:b"])
        );
        assert!(e.permissions(&delegated).eq(["Orders.Read"]));
        // The strict default reads RFC 9068 claims only.
        let r = TokenProfile::rfc9068();
        assert_eq!(r.client_id(&entra_app), None);
        assert!(r.permissions(&okta).next().is_none());
        // An array where a string is named gives nothing, and the reverse;
        // a malformed first claim does not fall back to the next.
        let wrong = map(json!({ "scp": ["x"], "roles": ["y"] }));
        assert!(e.permissions(&wrong).next().is_none());
        let wrong = map(json!({ "roles": "y" }));
        assert!(e.permissions(&wrong).next().is_none());
    }

    #[test]
    fn claims_required_as_each_profile_names_them() {
        let entra = map(json!({ "sub": "s", "iat": 1, "azp": "a", "uti": "u" }));
        assert!(
            TokenProfile::entra()
                .check_claims(&entra, &[], false)
                .is_ok()
        );
        let err = TokenProfile::rfc9068()
            .check_claims(&entra, &[], true)
            .unwrap_err();
        assert_eq!(err.claim(), Some("client_id"));
        let no_uti = map(json!({ "sub": "s", "iat": 1, "azp": "a" }));
        let err = TokenProfile::entra()
            .check_claims(&no_uti, &[], false)
            .unwrap_err();
        assert_eq!(err.claim(), Some("uti"));
        assert!(
            TokenProfile::entra()
                .check_claims(&no_uti, &["jti".into()], false)
                .is_ok()
        );
        // A present claim of the wrong type is refused even when it may be
        // absent.
        let bad_jti = map(json!({ "sub": "s", "iat": 1, "azp": "a", "jti": 7 }));
        let err = TokenProfile::auth0()
            .check_claims(&bad_jti, &[], false)
            .unwrap_err();
        assert_eq!(err.claim(), Some("jti"));
        let bad_azp = map(json!({ "sub": "s", "iat": 1, "azp": "" , "appid": "x", "uti": "u" }));
        assert!(
            TokenProfile::entra()
                .check_claims(&bad_azp, &[], false)
                .is_err()
        );
    }

    #[test]
    fn id_tokens_are_refused_where_typ_cannot_tell() {
        let base = json!({ "sub": "s", "iat": 1, "azp": "a", "uti": "u" });
        for (extra, refused) in [
            (json!({ "at_hash": "x" }), true),
            (json!({ "c_hash": "x" }), true),
            (json!({ "typ": "ID" }), true),
            (json!({ "typ": "Bearer" }), false),
            (json!({ "nonce": "n" }), false),
        ] {
            let mut claims = map(base.clone());
            claims.extend(map(extra.clone()));
            let result = TokenProfile::entra().check_claims(&claims, &[], false);
            assert_eq!(result.is_err(), refused, "{extra}");
            // With typ at+jwt the issuer said what it is.
            assert!(
                TokenProfile::entra()
                    .check_claims(&claims, &[], true)
                    .is_ok()
            );
        }
    }

    #[test]
    fn presets_that_fit_name_what_would_accept() {
        let entra = map(json!({ "sub": "s", "iat": 1, "azp": "a", "uti": "u" }));
        assert_eq!(
            TokenProfile::rfc9068().presets_that_fit(Some("JWT"), &entra),
            ["entra", "auth0"]
        );
        let okta = map(json!({ "sub": "s", "iat": 1, "cid": "a", "jti": "u" }));
        assert_eq!(
            TokenProfile::rfc9068().presets_that_fit(None, &okta),
            ["okta"]
        );
        let keycloak = map(json!({ "sub": "s", "iat": 1, "azp": "a", "jti": "u" }));
        assert_eq!(
            TokenProfile::rfc9068().presets_that_fit(Some("JWT"), &keycloak),
            ["keycloak", "auth0"]
        );
        assert!(
            TokenProfile::rfc9068()
                .presets_that_fit(Some("dpop+jwt"), &keycloak)
                .is_empty()
        );
    }

    #[test]
    fn settings_are_checked() {
        assert!(TokenProfile::entra().check().is_ok());
        assert!(
            TokenProfile::custom("x")
                .may_be_absent(["exp"])
                .check()
                .is_err()
        );
        assert!(
            TokenProfile::custom("x")
                .client_id_claims(["a\"b"])
                .check()
                .is_err()
        );
        assert!(
            TokenProfile::custom("x")
                .client_id_claims([""])
                .check()
                .is_err()
        );
        for name in PRESETS {
            assert_eq!(TokenProfile::named(name).unwrap().name(), *name);
        }
        assert!(TokenProfile::named("google").is_none());
    }
}
