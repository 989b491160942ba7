//! [`JwkThumbprint`]: the RFC 7638 SHA-256 thumbprint of a JWK.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest;
use subtle::ConstantTimeEq;

use crate::Thumbprint;

/// The RFC 7638 SHA-256 thumbprint of a JWK: DPoP's `jkt` (RFC 9449
/// section 6), the `kid` of Microsoft's signed HTTP requests.
///
/// Text form ([`Display`](fmt::Display), [`FromStr`], serde): base64url
/// without padding, 43 characters, parsed strictly. Equality is constant
/// time, so comparing the thumbprint of a proof key with a token's
/// `cnf.jkt` leaks nothing of where they differ.
#[derive(Clone, Copy)]
pub struct JwkThumbprint([u8; 32]);

impl JwkThumbprint {
    /// The thumbprint of the canonical JSON of a JWK.
    pub(crate) fn of_canonical_json(json: &str) -> Self {
        let digest = digest::digest(&digest::SHA256, json.as_bytes());
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    /// A thumbprint from its raw 32-byte SHA-256 digest.
    pub const fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The raw 32-byte SHA-256 digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `self` and `other` are the same thumbprint, in constant time.
    pub fn matches(&self, other: &JwkThumbprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Whether `text` (a token's `cnf.jkt`, say) is this thumbprint in its
    /// exact text form. The digests are compared in constant time; text
    /// that is not a thumbprint never matches.
    pub fn matches_str(&self, text: &str) -> bool {
        text.parse::<JwkThumbprint>()
            .is_ok_and(|other| self.matches(&other))
    }
}

impl PartialEq for JwkThumbprint {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other)
    }
}

impl Eq for JwkThumbprint {}

impl std::hash::Hash for JwkThumbprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for JwkThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The same text form as a certificate's x5t#S256.
        fmt::Display::fmt(&Thumbprint::from_digest(self.0), f)
    }
}

impl fmt::Debug for JwkThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JwkThumbprint({self})")
    }
}

impl FromStr for JwkThumbprint {
    type Err = ParseJwkThumbprintError;

    /// Parses exactly 43 characters of canonical base64url (no padding),
    /// as strictly as a certificate's [`Thumbprint`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<Thumbprint>()
            .map(|t| Self(*t.as_bytes()))
            .map_err(|_| ParseJwkThumbprintError(()))
    }
}

impl serde::Serialize for JwkThumbprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for JwkThumbprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = JwkThumbprint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JWK SHA-256 thumbprint string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JwkThumbprint, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The error returned when a string is not a JWK SHA-256 thumbprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseJwkThumbprintError(());

impl fmt::Display for ParseJwkThumbprintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a JWK SHA-256 thumbprint (43 characters of canonical base64url)")
    }
}

impl std::error::Error for ParseJwkThumbprintError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_text_form() {
        let t = JwkThumbprint::from_digest([7; 32]);
        let s = t.to_string();
        assert_eq!(s.len(), 43);
        assert_eq!(s.parse::<JwkThumbprint>().unwrap(), t);
        assert!(t.matches_str(&s));
        assert!(!t.matches_str(&format!("{s}=")));
        assert!(!t.matches_str(""));
        assert!(!JwkThumbprint::from_digest([8; 32]).matches_str(&s));
        // Unused bits set: not canonical.
        let mut bad = s[..42].to_owned();
        bad.push('x');
        assert!(bad.parse::<JwkThumbprint>().is_err());
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<JwkThumbprint>(&json).unwrap(), t);
        assert_eq!(format!("{t:?}"), format!("JwkThumbprint({s})"));
    }
}
