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
use std::fmt;
use std::sync::LazyLock;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a JSON text was refused by [`strict_value`].
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

/// Reads `json` into a [`Value`] in one pass, refusing an object at any
/// depth that names a member twice (names compared after JSON unescaping,
/// so `"a\u006cg"` and `"alg"` are one name): the objects being built are
/// the memory of names seen.
pub(crate) fn strict_value(json: &[u8]) -> Result<Value, StrictJsonError> {
    let mut duplicate = None;
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let outcome = deserializer
        .deserialize_any(Build {
            duplicate: &mut duplicate,
            numbers_are_maps: numbers_are_maps(),
        })
        .and_then(|value| deserializer.end().map(|()| value));
    match (outcome, duplicate) {
        (Ok(value), _) => Ok(value),
        (Err(_), Some(name)) => Err(StrictJsonError::DuplicateMember(name)),
        (Err(e), None) => Err(StrictJsonError::Malformed(e.to_string())),
    }
}

/// The name of the one member of the map as which `serde_json`, built with
/// `arbitrary_precision`, hands a number to a visitor, its text as the
/// value.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Whether this build's `serde_json` hands numbers over as maps (see
/// [`NUMBER_TOKEN`]): `arbitrary_precision` is a feature any crate in the
/// build may turn on.
fn numbers_are_maps() -> bool {
    static NUMBERS_ARE_MAPS: LazyLock<bool> = LazyLock::new(|| {
        struct Probe;
        impl<'de> Visitor<'de> for Probe {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
                Ok(false)
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
                Ok(true)
            }
        }
        serde_json::Deserializer::from_slice(b"1")
            .deserialize_any(Probe)
            .unwrap_or(false)
    });
    *NUMBERS_ARE_MAPS
}

/// Builds any JSON value as `serde_json` would, the first member name an
/// object repeats going to `duplicate`.
struct Build<'a> {
    duplicate: &'a mut Option<String>,
    /// [`numbers_are_maps`].
    numbers_are_maps: bool,
}

impl Build<'_> {
    fn nested(&mut self) -> Build<'_> {
        Build {
            duplicate: &mut *self.duplicate,
            numbers_are_maps: self.numbers_are_maps,
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
            if self.numbers_are_maps && map.is_empty() && name == NUMBER_TOKEN {
                // A number, as `Value` reads it: by the first name only.
                // (`raw_value`'s token is not followed: a `Value` would read
                // the string as a second JSON text, unchecked.)
                let text: String = access.next_value()?;
                return text.parse().map(Value::Number).map_err(de::Error::custom);
            }
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

/// The check the crate once made before `serde_json` read a text: kept as
/// what the tests hold `strict_value`'s one pass to.
#[cfg(test)]
mod two_pass {
    use std::borrow::Cow;
    use std::collections::HashSet;
    use std::fmt;

    use serde::Deserializer as _;
    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

    use super::{Name, StrictJsonError, shorten};

    /// Checks that no object in `json`, at any depth, names a member twice.
    /// Member names are compared after JSON unescaping, so `"a\u006cg"` and
    /// `"alg"` are the same name. The crate reads with `strict_value`, in one
    /// pass; this check, followed by `serde_json`'s own reading, is what the
    /// tests hold that one pass to.
    pub(super) fn check_no_duplicate_members(json: &[u8]) -> Result<(), StrictJsonError> {
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
}

#[cfg(test)]
use two_pass::check_no_duplicate_members;

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

    /// With `arbitrary_precision` (which any crate in a build can turn on),
    /// `serde_json` hands every number to a visitor as a map of one member,
    /// its private token, whose value is the number's text: a `Value`
    /// holds a number there, and so must what `strict_value` builds, or
    /// every `exp`, `iat` and `nbf` reads as an object.
    #[test]
    fn a_number_handed_over_as_a_map_is_a_number() {
        use serde::de::value::{Error, MapDeserializer};
        let number = |text: &'static str| {
            let mut duplicate = None;
            let precise = MapDeserializer::<_, Error>::new(std::iter::once((NUMBER_TOKEN, text)));
            Build {
                duplicate: &mut duplicate,
                numbers_are_maps: true,
            }
            .deserialize(precise)
            .map_err(|e| e.to_string())
        };
        assert_eq!(number("1700000000"), Ok(Value::from(1_700_000_000_u64)));
        assert_eq!(number("-7"), Ok(Value::from(-7)));
        assert_eq!(number("2.5"), Ok(Value::from(2.5)));
        assert!(number("soon").is_err());
        // This build's `serde_json` hands numbers over as numbers, and a
        // member of that name in the input stays a member.
        assert!(!numbers_are_maps());
        let json = format!(r#"{{"exp":{{"{NUMBER_TOKEN}":"1"}}}}"#);
        assert_eq!(
            strict_value(json.as_bytes()),
            Ok(serde_json::from_str(&json).unwrap())
        );
    }

    /// `serde_json`'s `raw_value` (turned on here by axum's `json`) makes a
    /// `Value` read a lone member named its private token as the JSON text
    /// of its string: a second object, never checked for repeated names.
    /// `strict_value` keeps it a member.
    #[test]
    fn a_raw_value_member_is_only_a_member() {
        let json = r#"{"$serde_json::private::RawValue":"{\"alg\":\"ES256\",\"alg\":\"none\"}"}"#;
        let value = strict_value(json.as_bytes()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "$serde_json::private::RawValue": r#"{"alg":"ES256","alg":"none"}"#
            })
        );
        assert!(value.get("alg").is_none());
    }

    /// What `strict_value` replaced: the check, then `serde_json`.
    fn two_passes(json: &[u8]) -> Result<Value, StrictJsonError> {
        check_no_duplicate_members(json)?;
        serde_json::from_slice(json).map_err(|e| StrictJsonError::Malformed(e.to_string()))
    }

    fn same_as_two_passes(json: &[u8]) {
        match (strict_value(json), two_passes(json)) {
            (Ok(one), Ok(two)) => {
                // `Value`'s `==` calls -0 and 0 equal; their text does not.
                assert_eq!(one.to_string(), two.to_string(), "{json:?}");
                assert_eq!(one, two, "{json:?}");
            }
            (
                Err(StrictJsonError::DuplicateMember(one)),
                Err(StrictJsonError::DuplicateMember(two)),
            ) => {
                assert_eq!(one, two, "{json:?}");
            }
            (Err(StrictJsonError::Malformed(_)), Err(StrictJsonError::Malformed(_))) => {}
            (one, two) => panic!(
                "{:?}: one pass {one:?}, two passes {two:?}",
                String::from_utf8_lossy(json)
            ),
        }
    }

    #[test]
    fn strict_value_is_the_two_passes_on_numbers_strings_and_structure() {
        for json in [
            "-0",
            "[-0,-0.0,0e0,-0e-0]",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e308",
            "1e400",
            "-1e400",
            "1e-400",
            "0.1e1",
            "01",
            "1.",
            ".5",
            "+1",
            "NaN",
            "123456789012345678901234567890",
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud83d\ude00""#,
            r#""\ud83d\u0041""#,
            r#"{"\ud800":1}"#,
            r#"{"\ud83d\ude00":1,"😀":2}"#,
            r#"{"":1,"":2}"#,
            r#"{"":1,"\u0000":2}"#,
            r#"{"\u0000":1,"\u0000":2}"#,
            r#"{"a":1,"A":2}"#,
            r#"{"\/":1,"/":2}"#,
            r#"{"é":1,"\u00e9":2}"#,
            r#"{"é":1,"e\u0301":2}"#,
            r#"{"a":{"b":1,"b":2},"a":3}"#,
            r#"{"a":1,"a":}"#,
            r#"{"a":,"a":1}"#,
            r#"{"a":1,"b":2,}"#,
            r#"[1,]"#,
            r#"{"a":1} {"a":1}"#,
            "{\"a\":1}\n\t ",
            "\u{feff}{}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\\x\"}",
            "tru",
            "nul",
            "[]]",
            "{}}",
        ] {
            same_as_two_passes(json.as_bytes());
        }
        for bytes in [&b"\"\xff\""[..], b"{\"\xc3\":1}", b"\"\xed\xa0\x80\""] {
            same_as_two_passes(bytes);
        }
        // The depth limit is `serde_json`'s, the same either way.
        for depth in [126, 127, 128, 129] {
            for (open, close) in [("[", "]"), (r#"{"a":"#, "}")] {
                let json = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                same_as_two_passes(json.as_bytes());
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Any text made of JSON's pieces (valid or not, names repeated or
        /// escaped): one pass says what the two passes said.
        #[test]
        fn strict_value_agrees_with_the_two_passes(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "{", "}", "[", "]", ",", ":", " ", "\"a\"", "\"\\u0061\"", "\"b\"", "\"\"",
                "\"\\ud800\"", "\"\\ud83d\\ude00\"", "\"\\\"\"", "1", "-0", "1e400", "2.5",
                "18446744073709551616", "-9223372036854775809", "true", "null", "x",
            ]), 0..40)
        ) {
            same_as_two_passes(pieces.concat().as_bytes());
        }
    }

    /// The worst a 16 KiB token holds (12 KiB of JSON once decoded) is read
    /// quickly: many members, long names alike but for their last bytes,
    /// objects nested to the limit, names escaped.
    #[test]
    fn worst_cases_within_a_token_are_read() {
        let many = format!(
            "{{{}}}",
            (0..1400)
                .map(|i| format!(r#""{i}":0"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let prefix = "p".repeat(300);
        let long = format!(
            "{{{}}}",
            (0..38)
                .map(|i| format!(r#""{prefix}{i:02}":0"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let nested = format!(
            "{}{}",
            r#"{"a":"#.repeat(127),
            "1".to_owned() + &"}".repeat(127)
        );
        let escaped = format!(
            "{{{}}}",
            (0..500)
                .map(|i| format!(r#""\u0061{i}":0"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let last_repeats = format!(r#"{},"1399":1}}"#, &many[..many.len() - 1]);
        for json in [&many, &long, &nested, &escaped, &last_repeats] {
            assert!(json.len() <= 12 * 1024, "{}", json.len());
            let start = std::time::Instant::now();
            same_as_two_passes(json.as_bytes());
            // Generous: a debug build on a loaded machine, 2 passes each.
            assert!(start.elapsed() < std::time::Duration::from_secs(2));
        }
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
