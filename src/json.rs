//! Strict JSON for security-relevant objects: a member named twice is an
//! error, not a detail.
//!
//! `serde_json` keeps the last of two members with the same name, silently;
//! other parsers keep the first. A token whose payload says `"cnf"` twice (or
//! `"alg"` twice in its header) can therefore mean one thing to the issuer
//! or a proxy and another to us. RFC 7515 section 5.2 and RFC 7519
//! section 4 let a JWS or JWT with duplicate member names be rejected; this
//! module is how the crate does it, at every depth, before anything else
//! reads the object.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a JSON text was refused by [`check_no_duplicate_members`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrictJsonError {
    /// Not JSON (or trailing garbage after it).
    Malformed(String),
    /// An object names this member more than once (shortened to 64 bytes;
    /// it comes from the input).
    DuplicateMember(String),
}

impl fmt::Display for StrictJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed JSON: {e}"),
            Self::DuplicateMember(name) => write!(f, "the member {name:?} appears twice"),
        }
    }
}

/// Checks that no object in `json`, at any depth, names a member twice.
/// Member names are compared after JSON unescaping, so `"a\u006cg"` and
/// `"alg"` are the same name.
pub(crate) fn check_no_duplicate_members(json: &[u8]) -> Result<(), StrictJsonError> {
    let mut duplicate = None;
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let outcome = deserializer
        .deserialize_any(Walk {
            duplicate: &mut duplicate,
        })
        .and_then(|()| deserializer.end());
    match (outcome, duplicate) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(name)) => Err(StrictJsonError::DuplicateMember(name)),
        (Err(e), None) => Err(StrictJsonError::Malformed(e.to_string())),
    }
}

/// Reads `json` into a [`Value`] in one pass, refusing, as
/// [`check_no_duplicate_members`] does, an object at any depth that names a
/// member twice: the objects being built are the memory of names seen.
pub(crate) fn strict_value(json: &[u8]) -> Result<Value, StrictJsonError> {
    let mut duplicate = None;
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let outcome = deserializer
        .deserialize_any(Build {
            duplicate: &mut duplicate,
        })
        .and_then(|value| deserializer.end().map(|()| value));
    match (outcome, duplicate) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some(name)) => Err(StrictJsonError::DuplicateMember(name)),
        (Err(e), None) => Err(StrictJsonError::Malformed(e.to_string())),
    }
}

/// Builds any JSON value as `serde_json` would, the first member name an
/// object repeats going to `duplicate`.
struct Build<'a> {
    duplicate: &'a mut Option<String>,
}

impl Build<'_> {
    fn nested(&mut self) -> Build<'_> {
        Build {
            duplicate: &mut *self.duplicate,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
        while let Some(value) = seq.next_element_seed(self.nested())? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(Name(name)) = access.next_key()? {
            if map.contains_key(name.as_ref()) {
                *self.duplicate = Some(shorten(&name));
                return Err(de::Error::custom("duplicate member"));
            }
            let value = access.next_value_seed(self.nested())?;
            map.insert(name.into_owned(), value);
        }
        Ok(Value::Object(map))
    }
}

fn shorten(name: &str) -> String {
    let mut end = name.len().min(64);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// Visits any JSON value, keeping nothing but the member names of the
/// objects being read; the first name seen twice goes to `duplicate`.
struct Walk<'a> {
    duplicate: &'a mut Option<String>,
}

impl Walk<'_> {
    fn nested(&mut self) -> Walk<'_> {
        Walk {
            duplicate: &mut *self.duplicate,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self.nested())?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(Name(name)) = map.next_key()? {
            if seen.contains(&name) {
                *self.duplicate = Some(shorten(&name));
                return Err(de::Error::custom("duplicate member"));
            }
            map.next_value_seed(self.nested())?;
            seen.insert(name);
        }
        Ok(())
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(name)))
            }
            fn visit_str<E>(self, name: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(name.to_owned())))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<(), StrictJsonError> {
        check_no_duplicate_members(json.as_bytes())
    }

    #[test]
    fn duplicates_at_any_depth() {
        assert_eq!(check(r#"{"a":1,"b":{"c":[{"d":1,"e":2}]}}"#), Ok(()));
        for (json, name) in [
            (r#"{"alg":"ES256","alg":"none"}"#, "alg"),
            (r#"{"cnf":{"x5t#S256":"a"},"cnf":{}}"#, "cnf"),
            (r#"{"cnf":{"x5t#S256":"a","x5t#S256":"b"}}"#, "x5t#S256"),
            (r#"{"aud":"a","sub":"s","aud":"b"}"#, "aud"),
            (r#"{"a":[1,{"k":1,"k":2}]}"#, "k"),
            (r#"{"a\u006cg":"ES256","alg":"none"}"#, "alg"),
        ] {
            assert_eq!(
                check(json),
                Err(StrictJsonError::DuplicateMember(name.into())),
                "{json}"
            );
        }
    }

    #[test]
    fn strict_value_reads_what_serde_json_reads_and_refuses_what_the_check_refuses() {
        for json in [
            r#"{"a":1,"b":{"c":[{"d":1,"e":2.5}]},"n":null,"t":true,"s":"x\u00e9"}"#,
            r#"[1,-2,18446744073709551615,1e308,"a",[],{}]"#,
            r#"{"a\u006cg":"ES256","x":{"alg":1}}"#,
            r#" "plain" "#,
        ] {
            let expected: Value = serde_json::from_str(json).unwrap();
            assert_eq!(strict_value(json.as_bytes()), Ok(expected), "{json}");
        }
        for json in [
            r#"{"alg":"ES256","alg":"none"}"#,
            r#"{"a":[1,{"k":1,"k":2}]}"#,
            r#"{"a\u006cg":"ES256","alg":"none"}"#,
            "",
            "{",
            r#"{"a":1}x"#,
        ] {
            assert_eq!(
                strict_value(json.as_bytes()).map(drop),
                check(json),
                "{json}"
            );
        }
        let deep = "[".repeat(10_000);
        assert!(matches!(
            strict_value(deep.as_bytes()),
            Err(StrictJsonError::Malformed(_))
        ));
    }

    #[test]
    fn the_same_name_in_different_objects_is_fine() {
        assert_eq!(check(r#"{"a":{"x":1},"b":{"x":1},"x":[{"x":1}]}"#), Ok(()));
    }

    #[test]
    fn malformed_is_not_a_duplicate() {
        for json in ["", "{", r#"{"a":1}x"#, r#"{"a" 1}"#, "\u{ff}"] {
            assert!(
                matches!(check(json), Err(StrictJsonError::Malformed(_))),
                "{json:?}"
            );
        }
        let deep = "[".repeat(10_000);
        assert!(matches!(check(&deep), Err(StrictJsonError::Malformed(_))));
    }

    #[test]
    fn long_names_are_shortened() {
        let name = "é".repeat(100);
        let json = format!(r#"{{"{name}":1,"{name}":2}}"#);
        let Err(StrictJsonError::DuplicateMember(shown)) = check(&json) else {
            panic!("not refused");
        };
        assert!(shown.len() <= 64 && name.starts_with(&shown));
    }
}
