//! [`TrustedIssuer`]: an issuer whose tokens a [`JwtValidator`] accepts,
//! with its own keys; and the choice, before any key is fetched, of the one
//! issuer a token's `iss` names.
//!
//! [`JwtValidator`]: super::JwtValidator

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::jwks::JwksSource;

/// The placeholder a multi-tenant issuer's template holds, as Microsoft
/// Entra's `/common` and `/organizations` metadata publish it.
pub const TENANT_PLACEHOLDER: &str = "{tenantid}";

/// An issuer whose tokens are accepted, and where its signing keys are.
/// A token is checked only against the keys of the issuer its `iss` names,
/// and a token whose `iss` names no trusted issuer is refused before any key
/// is fetched.
///
/// ```
/// use tower_token_binding::validation::{JwksSource, JwtValidator, TokenProfile, TrustedIssuer};
///
/// // Entra v1 and v2 tokens of one tenant: two issuers, one key set each.
/// let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// let validator = JwtValidator::builder()
///     .token_profile(TokenProfile::entra())
///     .trust(TrustedIssuer::new(
///         format!("https://login.microsoftonline.com/{tenant}/v2.0"),
///         JwksSource::discover(&format!("https://login.microsoftonline.com/{tenant}/v2.0")).unwrap(),
///     ))
///     .trust(TrustedIssuer::new(
///         format!("https://sts.windows.net/{tenant}/"),
///         JwksSource::discover(&format!("https://sts.windows.net/{tenant}/")).unwrap(),
///     ))
///     .audience("api://orders")
///     .build()
///     .unwrap();
/// # let _ = validator;
/// ```
#[derive(Clone)]
pub struct TrustedIssuer {
    pub(crate) matcher: IssuerMatch,
    pub(crate) jwks: JwksSource,
}

/// How a token's `iss` is matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum IssuerMatch {
    /// Exactly this string.
    Exact(String),
    /// The template with its [`TENANT_PLACEHOLDER`] filled from the token's
    /// tenant claim, which must be one of `tenants`.
    Tenants {
        template: String,
        tenants: Vec<String>,
    },
}

impl TrustedIssuer {
    /// Tokens whose `iss` is exactly `issuer`, signed by keys from `jwks`.
    pub fn new(issuer: impl Into<String>, jwks: impl Into<JwksSource>) -> Self {
        Self {
            matcher: IssuerMatch::Exact(issuer.into()),
            jwks: jwks.into(),
        }
    }

    /// A multi-tenant issuer, as Microsoft Entra's `/common/v2.0` and
    /// `/organizations/v2.0` metadata name it: `template` holds `{tenantid}`
    /// (`https://login.microsoftonline.com/{tenantid}/v2.0`), filled from the
    /// token's tenant claim (`tid` under [`TokenProfile::entra`]); the result
    /// must equal the token's `iss`, and the tenant must be one of `tenants`
    /// (GUIDs, compared in lowercase, as Entra writes them).
    /// The allow-list is required: building with an empty one, or under a
    /// profile without a [tenant claim](super::TokenProfile::tenant_claim),
    /// is an error. [`ResourceServerBuilder`](crate::server::ResourceServerBuilder)
    /// builds one from Entra's endpoint instead:
    /// [`issuer`](crate::server::ResourceServerBuilder::issuer)`("https://login.microsoftonline.com/organizations/v2.0")`
    /// and [`allowed_tenants`](crate::server::ResourceServerBuilder::allowed_tenants).
    ///
    /// ```
    /// use tower_token_binding::validation::{JwksSource, JwtValidator, TokenProfile, TrustedIssuer};
    ///
    /// let validator = JwtValidator::builder()
    ///     .token_profile(TokenProfile::entra())
    ///     .trust(TrustedIssuer::tenants(
    ///         "https://login.microsoftonline.com/{tenantid}/v2.0",
    ///         ["72f988bf-86f1-41af-91ab-2d7cd011db47"],
    ///         JwksSource::remote("https://login.microsoftonline.com/common/discovery/v2.0/keys").unwrap(),
    ///     ))
    ///     .audience("api://orders")
    ///     .build()
    ///     .unwrap();
    /// # let _ = validator;
    /// ```
    ///
    /// [`TokenProfile::entra`]: super::TokenProfile::entra
    pub fn tenants<I>(template: impl Into<String>, tenants: I, jwks: impl Into<JwksSource>) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        Self {
            matcher: IssuerMatch::Tenants {
                template: template.into(),
                // Entra's `tid` is a lowercase GUID.
                tenants: tenants
                    .into_iter()
                    .map(|t| t.into().to_ascii_lowercase())
                    .collect(),
            },
            jwks: jwks.into(),
        }
    }

    /// The issuer, or its template.
    pub fn issuer(&self) -> &str {
        match &self.matcher {
            IssuerMatch::Exact(issuer) => issuer,
            IssuerMatch::Tenants { template, .. } => template,
        }
    }
}

impl fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TrustedIssuer");
        match &self.matcher {
            IssuerMatch::Exact(issuer) => d.field("issuer", issuer),
            IssuerMatch::Tenants { template, tenants } => {
                d.field("template", template).field("tenants", tenants)
            }
        };
        d.field("jwks", &self.jwks).finish()
    }
}

impl IssuerMatch {
    /// Checks the settings: a template holds the placeholder once, and has
    /// tenants, and a tenant claim to fill it from.
    pub(crate) fn check(&self, tenant_claim: Option<&str>) -> Result<(), String> {
        match self {
            IssuerMatch::Exact(issuer) if issuer.is_empty() => {
                Err("a trusted issuer is empty".to_owned())
            }
            IssuerMatch::Exact(issuer) if issuer.contains(TENANT_PLACEHOLDER) => Err(format!(
                "the issuer {issuer:?} is a multi-tenant template: trust it with \
                 TrustedIssuer::tenants and an allow-list of tenants"
            )),
            IssuerMatch::Exact(_) => Ok(()),
            IssuerMatch::Tenants { template, tenants } => {
                if template.matches(TENANT_PLACEHOLDER).count() != 1 {
                    return Err(format!(
                        "the multi-tenant issuer {template:?} must hold {TENANT_PLACEHOLDER} once"
                    ));
                }
                check_tenants(tenants)
                    .map_err(|e| format!("the multi-tenant issuer {template:?}: {e}"))?;
                if tenant_claim.is_none() {
                    return Err(format!(
                        "the multi-tenant issuer {template:?} needs a token profile with a \
                         tenant claim (TokenProfile::entra, or tenant_claim)"
                    ));
                }
                Ok(())
            }
        }
    }

    /// Whether this is a multi-tenant template.
    pub(crate) fn is_multi_tenant(&self) -> bool {
        matches!(self, IssuerMatch::Tenants { .. })
    }

    /// Whether an unverified token naming `iss` (and `tenant`, its tenant
    /// claim) is this issuer's. Used before any key is fetched, and again on
    /// the verified claims.
    pub(crate) fn matches(&self, iss: &str, tenant: Option<&str>) -> bool {
        match self {
            IssuerMatch::Exact(issuer) => issuer == iss,
            IssuerMatch::Tenants { template, tenants } => {
                let Some(tenant) = tenant else {
                    return false;
                };
                if !tenants.iter().any(|t| t == tenant) {
                    return false;
                }
                // `iss` is template's prefix, the tenant, template's suffix.
                let Some((head, tail)) = template.split_once(TENANT_PLACEHOLDER) else {
                    return false;
                };
                iss.len() == head.len() + tenant.len() + tail.len()
                    && iss.starts_with(head)
                    && iss.ends_with(tail)
                    && &iss[head.len()..iss.len() - tail.len()] == tenant
            }
        }
    }
}

/// Checks an allow-list of tenants: not empty, each a tenant identifier.
pub(crate) fn check_tenants(tenants: &[String]) -> Result<(), String> {
    if tenants.is_empty() {
        return Err("an allow-list of tenants is required".to_owned());
    }
    match tenants.iter().find(|t| !is_tenant_id(t)) {
        None => Ok(()),
        Some(t) => Err(format!(
            "the tenant {:?} is not a tenant identifier (1 to 64 letters, digits, '-' or '.')",
            t.chars().take(80).collect::<String>()
        )),
    }
}

/// A tenant identifier: a GUID or a domain name, short.
fn is_tenant_id(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The unverified `iss` and tenant of a JWT payload, read in one pass
/// without building the claims: only to pick whose keys to use, before the
/// strict parse (which refuses a member named twice) and the signature.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Peek<'a> {
    /// `iss`, when it is a string.
    pub(crate) iss: Option<Cow<'a, str>>,
    /// Whether the payload has an `iss` member at all (a string or not).
    pub(crate) has_iss: bool,
    pub(crate) tenant: Option<Cow<'a, str>>,
}

impl<'a> Peek<'a> {
    /// Reads `payload` for `iss` and `tenant_claim`; `None` when it is not a
    /// JSON object.
    pub(crate) fn read(payload: &'a [u8], tenant_claim: Option<&str>) -> Option<Self> {
        let mut de = serde_json::Deserializer::from_slice(payload);
        let peek = PeekSeed { tenant_claim }.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(peek)
    }

    /// The same from claims already parsed.
    pub(crate) fn from_claims(claims: &'a Map<String, Value>, tenant_claim: Option<&str>) -> Self {
        let string = |name: &str| claims.get(name).and_then(Value::as_str).map(Cow::Borrowed);
        Self {
            iss: string("iss"),
            has_iss: claims.contains_key("iss"),
            tenant: tenant_claim.and_then(string),
        }
    }
}

struct PeekSeed<'c> {
    tenant_claim: Option<&'c str>,
}

impl<'de> DeserializeSeed<'de> for PeekSeed<'_> {
    type Value = Peek<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Peek<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PeekSeed<'_> {
    type Value = Peek<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Peek<'de>, A::Error> {
        let mut peek = Peek::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = if key == "iss" {
                peek.has_iss = true;
                Some(&mut peek.iss)
            } else if self.tenant_claim == Some(key.as_ref()) {
                Some(&mut peek.tenant)
            } else {
                None
            };
            match slot {
                Some(slot) => {
                    // A string, or anything else (which names no issuer).
                    let value = map.next_value::<StringOrOther<'de>>()?;
                    *slot = value.0;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(peek)
    }
}

/// A JSON string, or `None` for any other value.
struct StringOrOther<'de>(Option<Cow<'de, str>>);

impl<'de> serde::Deserialize<'de> for StringOrOther<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrOther<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StringOrOther(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StringOrOther(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(StringOrOther(Some(Cow::Owned(v))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(StringOrOther(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(StringOrOther(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(StringOrOther(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(StringOrOther(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(StringOrOther(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(StringOrOther(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(StringOrOther(None))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_iss_and_tenant_only() {
        let payload = br#"{"aud":["a"],"iss":"https://i\/x","tid":"t1","cnf":{"iss":"no"}}"#;
        let peek = Peek::read(payload, Some("tid")).unwrap();
        assert_eq!(peek.iss.as_deref(), Some("https://i/x"));
        assert_eq!(peek.tenant.as_deref(), Some("t1"));
        let peek = Peek::read(payload, None).unwrap();
        assert_eq!(peek.tenant, None);
        assert_eq!(Peek::read(br#"{"iss":["x"]}"#, None).unwrap().iss, None);
        assert!(Peek::read(b"[1]", None).is_none());
        assert!(Peek::read(br#"{"iss":"x"} 1"#, None).is_none());
    }

    #[test]
    fn templates_fill_from_allowed_tenants_only() {
        let m = IssuerMatch::Tenants {
            template: "https://login.example/{tenantid}/v2.0".to_owned(),
            tenants: vec!["t1".to_owned()],
        };
        assert!(m.matches("https://login.example/t1/v2.0", Some("t1")));
        assert!(!m.matches("https://login.example/t2/v2.0", Some("t2")));
        assert!(!m.matches("https://login.example/t1/v2.0", Some("t2")));
        assert!(!m.matches("https://login.example/t1/v2.0", None));
        assert!(!m.matches("https://login.example/t1/v2.0x", Some("t1")));
        assert!(!m.matches("https://login.example/t1t1/v2.0", Some("t1")));
        assert!(m.check(Some("tid")).is_ok());
        assert!(m.check(None).is_err());
        let no_tenants = IssuerMatch::Tenants {
            template: "https://login.example/{tenantid}/v2.0".to_owned(),
            tenants: vec![],
        };
        assert!(no_tenants.check(Some("tid")).is_err());
        let exact_template = IssuerMatch::Exact("https://login.example/{tenantid}/v2.0".to_owned());
        assert!(exact_template.check(Some("tid")).is_err());
    }
}
