//! The `cnf` (confirmation) claim of a bound token, and which binding a
//! request proved.
//!
//! [RFC 7800] defines `cnf` as a JSON object naming the key a token is bound
//! to; [RFC 8705 section 3.1] adds the member `x5t#S256`, the
//! [`Thumbprint`] of the client certificate, and [RFC 9449 section 6.1] the
//! member `jkt`, the [`JwkThumbprint`] of a DPoP key. Microsoft's signed
//! HTTP requests ("PoP" tokens) bind with the RFC 7800 member `kid`, which
//! they fill with the same RFC 7638 thumbprint of the client's key.
//! [`Confirmation`] reads that claim strictly: `cnf` must be an object,
//! `x5t#S256`, `jkt` and `kid` (when present) strings in the exact
//! thumbprint form, each at most once. Other members are kept as they are,
//! never read as a binding.
//!
//! [`Binding`] names what a token is bound to (none, a certificate, a DPoP
//! key, a PoP key), the one name of each binding on both sides: a client's
//! token, a client's scheme and a server's proven binding all answer with
//! it. [`ProvenBinding`] says which binding a request proved, with its
//! certificate's or key's thumbprint: what a resource server's handler
//! sees.
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
//! [RFC 9449 section 6.1]: https://www.rfc-editor.org/rfc/rfc9449#section-6.1

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use crate::proof::{JwkThumbprint, ParseJwkThumbprintError};
use crate::thumbprint::{ParseThumbprintError, Thumbprint};

/// The name of the certificate thumbprint member of `cnf`.
pub const X5T_S256: &str = "x5t#S256";

/// The name of the DPoP key thumbprint member of `cnf` (RFC 9449).
pub const JKT: &str = "jkt";

/// The name of the key id member of `cnf` (RFC 7800 section 3.4), which a
/// PoP token (Microsoft's signed HTTP requests) fills with the RFC 7638
/// thumbprint of the client's key.
pub const KID: &str = "kid";

/// The `cnf` claim: what a token is bound to.
///
/// Deserializing is strict (see the [module docs](self)); serializing writes
/// `x5t#S256`, then `jkt`, then `kid`, then the other members that were
/// kept.
///
/// ```
/// use tower_token_binding::Confirmation;
/// use tower_token_binding::proof::{Algorithm, ProofKey};
///
/// let key = ProofKey::generate(Algorithm::Es256).unwrap();
/// let cnf = Confirmation::bound_to_key(key.thumbprint());
/// let json = serde_json::to_value(&cnf).unwrap();
/// assert_eq!(json["jkt"], key.thumbprint().to_string());
/// assert_eq!(Confirmation::from_value(&json).unwrap().jkt(), Some(&key.thumbprint()));
///
/// // `jkt` must be a thumbprint: anything else is a malformed `cnf`.
/// assert!(Confirmation::from_value(&serde_json::json!({ "jkt": "abc" })).is_err());
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Confirmation {
    x5t_s256: Option<Thumbprint>,
    jkt: Option<JwkThumbprint>,
    kid: Option<JwkThumbprint>,
    other: Map<String, Value>,
}

impl Confirmation {
    /// A confirmation that binds a token to the certificate with `thumbprint`.
    pub fn bound_to(thumbprint: Thumbprint) -> Self {
        Self {
            x5t_s256: Some(thumbprint),
            ..Self::default()
        }
    }

    /// A confirmation that binds a token to the DPoP key with thumbprint
    /// `jkt` (RFC 9449 section 6.1).
    pub fn bound_to_key(jkt: JwkThumbprint) -> Self {
        Self {
            jkt: Some(jkt),
            ..Self::default()
        }
    }

    /// A confirmation that binds a PoP token (Microsoft's signed HTTP
    /// requests) to the key whose RFC 7638 thumbprint is `kid`.
    pub fn bound_to_kid(kid: JwkThumbprint) -> Self {
        Self {
            kid: Some(kid),
            ..Self::default()
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
        } else if name == JKT {
            if self.jkt.is_some() {
                return Err(InvalidConfirmation::new(Kind::DuplicateJkt));
            }
            let Value::String(text) = value else {
                return Err(InvalidConfirmation::new(Kind::JktNotAString));
            };
            let jkt = text
                .parse()
                .map_err(|e| InvalidConfirmation::new(Kind::MalformedJkt(e)))?;
            self.jkt = Some(jkt);
        } else if name == KID {
            if self.kid.is_some() {
                return Err(InvalidConfirmation::new(Kind::DuplicateKid));
            }
            let Value::String(text) = value else {
                return Err(InvalidConfirmation::new(Kind::KidNotAString));
            };
            let kid = text
                .parse()
                .map_err(|e| InvalidConfirmation::new(Kind::MalformedKid(e)))?;
            self.kid = Some(kid);
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

    /// The DPoP key thumbprint, `jkt`, if the token is bound to a DPoP key.
    pub fn jkt(&self) -> Option<&JwkThumbprint> {
        self.jkt.as_ref()
    }

    /// The PoP key thumbprint, `kid`, if the token is bound to the key of
    /// signed HTTP requests.
    pub fn kid(&self) -> Option<&JwkThumbprint> {
        self.kid.as_ref()
    }

    /// The other members of `cnf` (none of `x5t#S256`, `jkt` and `kid`), as
    /// they were.
    pub fn other_members(&self) -> &Map<String, Value> {
        &self.other
    }
}

impl serde::Serialize for Confirmation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let len = self.other.len()
            + usize::from(self.x5t_s256.is_some())
            + usize::from(self.jkt.is_some())
            + usize::from(self.kid.is_some());
        let mut map = serializer.serialize_map(Some(len))?;
        if let Some(thumbprint) = &self.x5t_s256 {
            map.serialize_entry(X5T_S256, thumbprint)?;
        }
        if let Some(jkt) = &self.jkt {
            map.serialize_entry(JKT, jkt)?;
        }
        if let Some(kid) = &self.kid {
            map.serialize_entry(KID, kid)?;
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
    /// `jkt` is not a string.
    JktNotAString,
    /// `jkt` is a string but not a JWK SHA-256 thumbprint.
    MalformedJkt(ParseJwkThumbprintError),
    /// `jkt` appears more than once.
    DuplicateJkt,
    /// `kid` is not a string.
    KidNotAString,
    /// `kid` is a string but not a JWK SHA-256 thumbprint.
    MalformedKid(ParseJwkThumbprintError),
    /// `kid` appears more than once.
    DuplicateKid,
}

impl fmt::Display for InvalidConfirmation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::ClaimsNotAnObject => f.write_str("the token claims are not a JSON object"),
            Kind::NotAnObject => f.write_str("the cnf claim is not a JSON object"),
            Kind::ThumbprintNotAString => write!(f, "cnf.{X5T_S256} is not a string"),
            Kind::MalformedThumbprint(e) => write!(f, "cnf.{X5T_S256} is malformed: {e}"),
            Kind::DuplicateThumbprint => write!(f, "cnf.{X5T_S256} appears more than once"),
            Kind::JktNotAString => write!(f, "cnf.{JKT} is not a string"),
            Kind::MalformedJkt(e) => write!(f, "cnf.{JKT} is malformed: {e}"),
            Kind::DuplicateJkt => write!(f, "cnf.{JKT} appears more than once"),
            Kind::KidNotAString => write!(f, "cnf.{KID} is not a string"),
            Kind::MalformedKid(e) => write!(f, "cnf.{KID} is malformed: {e}"),
            Kind::DuplicateKid => write!(f, "cnf.{KID} appears more than once"),
        }
    }
}

impl std::error::Error for InvalidConfirmation {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            Kind::MalformedThumbprint(e) => Some(e),
            Kind::MalformedJkt(e) => Some(e),
            Kind::MalformedKid(e) => Some(e),
            _ => None,
        }
    }
}

/// Which binding a request proved for its token: what a resource server's
/// handler learns from
/// [`VerifiedToken::binding`](crate::validation::VerifiedToken::binding).
///
/// ```
/// use tower_token_binding::{ProvenBinding, Thumbprint};
///
/// let proven = ProvenBinding::Certificate(Thumbprint::from_der(b"client certificate"));
/// match proven {
///     ProvenBinding::Certificate(x5t) => println!("mTLS with {x5t}"),
///     ProvenBinding::Dpop(jkt) => println!("DPoP with key {jkt}"),
///     ProvenBinding::Pop(kid) => println!("a signed HTTP request by key {kid}"),
///     ProvenBinding::None => println!("a bearer token"),
///     _ => println!("another binding"),
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProvenBinding {
    /// The token is bound to a certificate (`cnf.x5t#S256`, RFC 8705), and
    /// the request came over a TLS connection with that client certificate.
    Certificate(Thumbprint),
    /// The token is bound to a DPoP key (`cnf.jkt`, RFC 9449), and the
    /// request carried a valid, fresh proof signed by that key.
    Dpop(JwkThumbprint),
    /// The token is bound to a PoP key (`cnf.kid`, Microsoft's signed HTTP
    /// requests), and the request was a valid, fresh signed HTTP request
    /// (`Authorization: PoP`) by that key, whose thumbprint this is.
    Pop(JwkThumbprint),
    /// Nothing was proven: an unbound bearer token, where the server allows
    /// them.
    #[default]
    None,
}

impl ProvenBinding {
    /// Whether a binding was proven (the token is not a plain bearer token).
    pub fn is_bound(&self) -> bool {
        !matches!(self, Self::None)
    }

    /// What the token is bound to, without the key or certificate.
    pub fn binding(&self) -> Binding {
        match self {
            Self::Certificate(_) => Binding::Certificate,
            Self::Dpop(_) => Binding::Dpop,
            Self::Pop(_) => Binding::Pop,
            Self::None => Binding::None,
        }
    }
}

/// What a token is bound to: what a thief would need besides the token.
/// The one name of each binding, on both sides: a client's
/// [`Token::binding`](crate::token::Token::binding), a scheme's
/// [`binding`](crate::binding::Scheme::binding) and, on the server,
/// [`ProvenBinding::binding`].
///
/// ```
/// use tower_token_binding::cnf::{Binding, ProvenBinding};
/// use tower_token_binding::Thumbprint;
///
/// let proven = ProvenBinding::Certificate(Thumbprint::from_der(b"certificate"));
/// assert_eq!(proven.binding(), Binding::Certificate);
/// assert!(Binding::Certificate.is_bound() && !Binding::None.is_bound());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Binding {
    /// Not bound: a bearer token, usable by whoever holds it (even when it
    /// travels over a connection with a client certificate).
    #[default]
    None,
    /// Bound to a client certificate (RFC 8705, `cnf.x5t#S256`).
    Certificate,
    /// Bound to a DPoP key (RFC 9449, `cnf.jkt`).
    Dpop,
    /// Bound to a PoP key (Microsoft's signed HTTP requests, `cnf.kid`).
    Pop,
}

impl Binding {
    /// Whether it is bound to anything.
    pub fn is_bound(self) -> bool {
        self != Self::None
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
        let cnf = json!({ "x5t#S256": t.to_string(), "xms_ksl": "sw" });
        let parsed = Confirmation::from_value(&cnf).unwrap();
        assert!(parsed.is_bound_to(&t));
        assert!(!parsed.is_bound_to(&Thumbprint::from_der(b"other")));
        assert_eq!(parsed.other_members().get("xms_ksl"), Some(&json!("sw")));
        assert_eq!(parsed.kid(), None);
        assert_eq!(parsed.jkt(), None);
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
        let jkt = JwkThumbprint::from_digest([3; 32]);
        let only_jkt = Confirmation::from_value(&json!({ "jkt": jkt.to_string() })).unwrap();
        assert_eq!(only_jkt.thumbprint(), None);
        assert_eq!(only_jkt.jkt(), Some(&jkt));
        assert!(!only_jkt.is_bound_to(&good()));
        assert!(only_jkt.other_members().is_empty());
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
        assert_eq!(kind_of(json!({ "jkt": 42 })), K::JktNotAString);
        assert_eq!(kind_of(json!({ "jkt": null })), K::JktNotAString);
        assert_eq!(kind_of(json!({ "jkt": { "kty": "EC" } })), K::JktNotAString);
        for bad in ["abc", "", &format!("{t}="), &"ab".repeat(32)] {
            assert!(
                matches!(kind_of(json!({ "jkt": bad })), K::MalformedJkt(_)),
                "{bad:?}"
            );
            assert!(
                matches!(kind_of(json!({ "kid": bad })), K::MalformedKid(_)),
                "{bad:?}"
            );
        }
        assert_eq!(kind_of(json!({ "kid": 42 })), K::KidNotAString);
        assert_eq!(kind_of(json!({ "kid": null })), K::KidNotAString);
        assert_eq!(
            kind_of(json!({ "kid": { "kty": "RSA" } })),
            K::KidNotAString
        );
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
    fn a_pop_kid_is_read_strictly_and_round_trips() {
        let kid = JwkThumbprint::from_digest([5; 32]);
        // As Entra issues it: the thumbprint, and a member we keep as is.
        let cnf = json!({ "kid": kid.to_string(), "xms_ksl": "sw" });
        let parsed: Confirmation = serde_json::from_value(cnf.clone()).unwrap();
        assert_eq!(parsed.kid(), Some(&kid));
        assert_eq!(parsed.jkt(), None);
        assert_eq!(parsed.thumbprint(), None);
        assert_eq!(parsed.other_members().len(), 1);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), cnf);
        assert_eq!(
            serde_json::to_value(Confirmation::bound_to_kid(kid)).unwrap(),
            json!({ "kid": kid.to_string() })
        );
        let text = format!(r#"{{"kid":"{kid}","kid":"{kid}"}}"#);
        let err = serde_json::from_str::<Confirmation>(&text).unwrap_err();
        assert!(
            err.to_string().contains("cnf.kid appears more than once"),
            "{err}"
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
        let a = JwkThumbprint::from_digest([1; 32]);
        let b = JwkThumbprint::from_digest([2; 32]);
        let text = format!(r#"{{"jkt":"{a}","jkt":"{b}"}}"#);
        let err = serde_json::from_str::<Confirmation>(&text).unwrap_err();
        assert!(
            err.to_string().contains("cnf.jkt appears more than once"),
            "{err}"
        );
    }

    #[test]
    fn both_bindings_round_trip() {
        let jkt = JwkThumbprint::from_digest([9; 32]);
        let cnf = json!({ "x5t#S256": good().to_string(), "jkt": jkt.to_string() });
        let parsed: Confirmation = serde_json::from_value(cnf.clone()).unwrap();
        assert_eq!(parsed.jkt(), Some(&jkt));
        assert_eq!(parsed.thumbprint(), Some(&good()));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), cnf);
        assert_eq!(
            serde_json::to_value(Confirmation::bound_to_key(jkt)).unwrap(),
            json!({ "jkt": jkt.to_string() })
        );
    }

    #[test]
    fn messages_name_the_problem() {
        let err = Confirmation::from_value(&json!({ "x5t#S256": "ab".repeat(32) })).unwrap_err();
        assert!(err.to_string().contains("hex"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
