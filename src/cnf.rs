//! The `cnf` (confirmation) claim of a certificate-bound token.
//!
//! [RFC 7800] defines `cnf` as a JSON object naming the key a token is bound
//! to; [RFC 8705 section 3.1] adds the member `x5t#S256`, the
//! [`Thumbprint`] of the client certificate. [`Confirmation`] reads that claim
//! strictly: `cnf` must be an object, `x5t#S256` (when present) a string in the
//! exact thumbprint form, and it may appear once. Other members (for example
//! DPoP's `jkt`) are kept as they are, never read as a certificate binding.
//!
//! ```
//! use tower_token_binding::{Confirmation, Thumbprint};
//!
//! let claims: serde_json::Value = serde_json::json!({
//!     "sub": "client-1",
//!     "cnf": { "x5t#S256": "Vzrq3apkZkKiGiwuO02jxmUBAplmWl_3UyG6Loi9KPc" },
//! });
//! let cnf = Confirmation::from_claims(&claims).unwrap().expect("the token is bound");
//! let expected: Thumbprint = "Vzrq3apkZkKiGiwuO02jxmUBAplmWl_3UyG6Loi9KPc".parse().unwrap();
//! assert!(cnf.is_bound_to(&expected));
//!
//! // A `cnf` that is not an object is an error, not an unbound token.
//! let bad = serde_json::json!({ "cnf": "Vzrq3apkZkKiGiwuO02jxmUBAplmWl_3UyG6Loi9KPc" });
//! assert!(Confirmation::from_claims(&bad).is_err());
//! ```
//!
//! [RFC 7800]: https://www.rfc-editor.org/rfc/rfc7800
//! [RFC 8705 section 3.1]: https://www.rfc-editor.org/rfc/rfc8705#section-3.1

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use crate::thumbprint::{ParseThumbprintError, Thumbprint};

/// The name of the certificate thumbprint member of `cnf`.
pub const X5T_S256: &str = "x5t#S256";

/// The `cnf` claim: what a token is bound to.
///
/// Deserializing is strict (see the [module docs](self)); serializing writes
/// `x5t#S256` followed by the other members that were kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Confirmation {
    x5t_s256: Option<Thumbprint>,
    other: Map<String, Value>,
}

impl Confirmation {
    /// A confirmation that binds a token to the certificate with `thumbprint`.
    pub fn bound_to(thumbprint: Thumbprint) -> Self {
        Self {
            x5t_s256: Some(thumbprint),
            other: Map::new(),
        }
    }

    /// Reads the `cnf` member of a token's claims.
    ///
    /// `Ok(None)` when the claims have no `cnf` at all; an error when `claims`
    /// is not an object or `cnf` is present but malformed (including `null`).
    pub fn from_claims(claims: &Value) -> Result<Option<Self>, InvalidConfirmation> {
        let Value::Object(claims) = claims else {
            return Err(InvalidConfirmation::new(Kind::ClaimsNotAnObject));
        };
        match claims.get("cnf") {
            None => Ok(None),
            Some(cnf) => Self::from_value(cnf).map(Some),
        }
    }

    /// Reads a `cnf` value.
    pub fn from_value(cnf: &Value) -> Result<Self, InvalidConfirmation> {
        let Value::Object(members) = cnf else {
            return Err(InvalidConfirmation::new(Kind::NotAnObject));
        };
        let mut confirmation = Self::default();
        for (name, value) in members {
            confirmation.insert(name.clone(), value.clone())?;
        }
        Ok(confirmation)
    }

    fn insert(&mut self, name: String, value: Value) -> Result<(), InvalidConfirmation> {
        if name == X5T_S256 {
            if self.x5t_s256.is_some() {
                return Err(InvalidConfirmation::new(Kind::DuplicateThumbprint));
            }
            let Value::String(text) = value else {
                return Err(InvalidConfirmation::new(Kind::ThumbprintNotAString));
            };
            let thumbprint = text
                .parse()
                .map_err(|e| InvalidConfirmation::new(Kind::MalformedThumbprint(e)))?;
            self.x5t_s256 = Some(thumbprint);
        } else {
            self.other.insert(name, value);
        }
        Ok(())
    }

    /// The certificate thumbprint, `x5t#S256`, if the token is bound to a
    /// certificate.
    pub fn thumbprint(&self) -> Option<&Thumbprint> {
        self.x5t_s256.as_ref()
    }

    /// Whether this confirmation binds to the certificate with `thumbprint`.
    ///
    /// Compares in constant time; `false` when there is no `x5t#S256`.
    pub fn is_bound_to(&self, thumbprint: &Thumbprint) -> bool {
        self.x5t_s256
            .as_ref()
            .is_some_and(|own| own.matches(thumbprint))
    }

    /// The other members of `cnf` (for example `jkt`), as they were.
    pub fn other_members(&self) -> &Map<String, Value> {
        &self.other
    }
}

impl serde::Serialize for Confirmation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = self.other.len() + usize::from(self.x5t_s256.is_some());
        let mut map = serializer.serialize_map(Some(len))?;
        if let Some(thumbprint) = &self.x5t_s256 {
            map.serialize_entry(X5T_S256, thumbprint)?;
        }
        for (name, value) in &self.other {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Confirmation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CnfVisitor;
        impl<'de> Visitor<'de> for CnfVisitor {
            type Value = Confirmation;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a cnf object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Confirmation, A::Error> {
                let mut confirmation = Confirmation::default();
                while let Some(name) = access.next_key::<String>()? {
                    let value = access.next_value::<Value>()?;
                    confirmation
                        .insert(name, value)
                        .map_err(de::Error::custom)?;
                }
                Ok(confirmation)
            }
        }
        // `deserialize_map` makes self-describing formats refuse anything but
        // an object, where a derived struct impl would also take an array.
        deserializer.deserialize_map(CnfVisitor)
    }
}

/// The error returned for a `cnf` claim that cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfirmation {
    kind: Kind,
}

impl InvalidConfirmation {
    fn new(kind: Kind) -> Self {
        Self { kind }
    }

    /// What was wrong with the claim.
    pub fn kind(&self) -> &InvalidConfirmationKind {
        &self.kind
    }
}

type Kind = InvalidConfirmationKind;

/// What was wrong with a `cnf` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidConfirmationKind {
    /// The token's claims are not a JSON object.
    ClaimsNotAnObject,
    /// `cnf` is not a JSON object.
    NotAnObject,
    /// `x5t#S256` is not a string.
    ThumbprintNotAString,
    /// `x5t#S256` is a string but not a thumbprint.
    MalformedThumbprint(ParseThumbprintError),
    /// `x5t#S256` appears more than once.
    DuplicateThumbprint,
}

impl fmt::Display for InvalidConfirmation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::ClaimsNotAnObject => f.write_str("the token claims are not a JSON object"),
            Kind::NotAnObject => f.write_str("the cnf claim is not a JSON object"),
            Kind::ThumbprintNotAString => write!(f, "cnf.{X5T_S256} is not a string"),
            Kind::MalformedThumbprint(e) => write!(f, "cnf.{X5T_S256} is malformed: {e}"),
            Kind::DuplicateThumbprint => write!(f, "cnf.{X5T_S256} appears more than once"),
        }
    }
}

impl std::error::Error for InvalidConfirmation {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::MalformedThumbprint(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Thumbprint {
        Thumbprint::from_der(b"certificate")
    }

    fn kind_of(cnf: Value) -> InvalidConfirmationKind {
        let from_value = Confirmation::from_value(&cnf).unwrap_err().kind().clone();
        // serde agrees with `from_value`.
        assert!(serde_json::from_value::<Confirmation>(cnf).is_err());
        from_value
    }

    #[test]
    fn reads_a_bound_confirmation_and_keeps_other_members() {
        let t = good();
        let cnf = json!({ "x5t#S256": t.to_string(), "jkt": "abc" });
        let parsed = Confirmation::from_value(&cnf).unwrap();
        assert!(parsed.is_bound_to(&t));
        assert!(!parsed.is_bound_to(&Thumbprint::from_der(b"other")));
        assert_eq!(parsed.other_members().get("jkt"), Some(&json!("abc")));
        assert_eq!(
            serde_json::from_value::<Confirmation>(cnf.clone()).unwrap(),
            parsed
        );
        assert_eq!(serde_json::to_value(&parsed).unwrap(), cnf);
    }

    #[test]
    fn absent_cnf_is_none_and_no_thumbprint_is_unbound() {
        assert_eq!(
            Confirmation::from_claims(&json!({ "sub": "x" })).unwrap(),
            None
        );
        let only_jkt = Confirmation::from_value(&json!({ "jkt": "abc" })).unwrap();
        assert_eq!(only_jkt.thumbprint(), None);
        assert!(!only_jkt.is_bound_to(&good()));
    }

    #[test]
    fn malformed_confirmations_are_errors() {
        use InvalidConfirmationKind as K;
        let t = good().to_string();
        assert_eq!(kind_of(json!(t)), K::NotAnObject);
        assert_eq!(kind_of(json!([t])), K::NotAnObject);
        assert_eq!(kind_of(Value::Null), K::NotAnObject);
        assert_eq!(kind_of(json!({ "x5t#S256": 42 })), K::ThumbprintNotAString);
        assert_eq!(kind_of(json!({ "x5t#S256": [t] })), K::ThumbprintNotAString);
        assert_eq!(
            kind_of(json!({ "x5t#S256": null })),
            K::ThumbprintNotAString
        );
        assert!(matches!(
            kind_of(json!({ "x5t#S256": format!("{t}=") })),
            K::MalformedThumbprint(_)
        ));
        assert_eq!(
            Confirmation::from_claims(&json!({ "cnf": null }))
                .unwrap_err()
                .kind(),
            &K::NotAnObject
        );
        assert_eq!(
            Confirmation::from_claims(&json!("claims"))
                .unwrap_err()
                .kind(),
            &K::ClaimsNotAnObject
        );
    }

    #[test]
    fn a_duplicate_thumbprint_is_refused() {
        // serde_json::Value would keep only the last; the visitor sees both.
        let a = good().to_string();
        let b = Thumbprint::from_der(b"other").to_string();
        let text = format!(r#"{{"x5t#S256":"{a}","x5t#S256":"{b}"}}"#);
        let err = serde_json::from_str::<Confirmation>(&text).unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");
    }

    #[test]
    fn messages_name_the_problem() {
        let err = Confirmation::from_value(&json!({ "x5t#S256": "ab".repeat(32) })).unwrap_err();
        assert!(err.to_string().contains("hex"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
