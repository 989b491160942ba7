//! The RFC 8705 certificate thumbprint, `x5t#S256`.
//!
//! A certificate-bound access token carries the SHA-256 digest of the client
//! certificate it is bound to, in its `cnf` claim, base64url-encoded without
//! padding ([RFC 8705 section 3.1]). [`Thumbprint`] is that value: computed over
//! the DER bytes of the leaf certificate only (never the chain, never the public
//! key, so a re-issued certificate for the same key has a different thumbprint),
//! displayed as the 43-character string, and parsed strictly.
//!
//! ```
//! use tower_token_binding::Thumbprint;
//!
//! // Any DER certificate; a real one comes from a PEM file or a TLS handshake.
//! # let der = rustls_pki_types::CertificateDer::from(b"not really a certificate".to_vec());
//! let thumbprint = Thumbprint::from_certificate(&der);
//! let text = thumbprint.to_string();
//! assert_eq!(text.len(), 43);
//!
//! // Parsing is strict: only the exact RFC 8705 form round-trips.
//! assert_eq!(text.parse::<Thumbprint>().unwrap(), thumbprint);
//! assert!(format!("{text}=").parse::<Thumbprint>().is_err());
//! ```
//!
//! [RFC 8705 section 3.1]: https://www.rfc-editor.org/rfc/rfc8705#section-3.1

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of the base64url form of a SHA-256 digest without padding.
const ENCODED_LEN: usize = 43;

/// The `x5t#S256` thumbprint of an X.509 certificate (RFC 8705 section 3.1).
///
/// It is the SHA-256 digest of the DER encoding of the leaf certificate. Its
/// text form ([`Display`](fmt::Display), [`FromStr`], serde) is base64url
/// without padding, 43 characters.
///
/// Equality is checked in constant time, so comparing the thumbprint of a
/// connection's certificate with the one in a token does not leak how many
/// leading bytes matched.
#[derive(Clone, Copy)]
pub struct Thumbprint([u8; 32]);

impl Thumbprint {
    /// Computes the thumbprint of a DER-encoded certificate.
    ///
    /// Pass the leaf (end-entity) certificate: the first certificate of a chain.
    pub fn from_certificate(certificate: &CertificateDer<'_>) -> Self {
        Self::from_der(certificate.as_ref())
    }

    /// Computes the thumbprint of DER bytes.
    pub fn from_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
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
    ///
    /// This is what `==` does; the name makes the intent visible where a
    /// security decision is taken.
    pub fn matches(&self, other: &Thumbprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl PartialEq for Thumbprint {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other)
    }
}

impl Eq for Thumbprint {}

impl std::hash::Hash for Thumbprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with `eq`: equal thumbprints have equal digests.
        self.0.hash(state);
    }
}

impl From<&CertificateDer<'_>> for Thumbprint {
    fn from(certificate: &CertificateDer<'_>) -> Self {
        Self::from_certificate(certificate)
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ENCODED_LEN];
        let written = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        // base64url output is ASCII.
        let text = std::str::from_utf8(&buf[..written]).map_err(|_| fmt::Error)?;
        f.write_str(text)
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thumbprint({self})")
    }
}

impl FromStr for Thumbprint {
    type Err = ParseThumbprintError;

    /// Parses the exact RFC 8705 form: 43 characters of base64url, no padding,
    /// no whitespace, canonical (unused trailing bits zero).
    ///
    /// Canonical matters: a lenient decoder would take several strings for one
    /// digest. (The example value printed in RFC 8705 section 3.1 is not
    /// canonical, and is refused.)
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use ParseThumbprintErrorKind as K;
        let err = |kind| Err(ParseThumbprintError { kind });

        if s.is_empty() {
            return err(K::Empty);
        }
        if s.chars().any(char::is_whitespace) {
            return err(K::Whitespace);
        }
        if s.contains('=') {
            return err(K::Padding);
        }
        let all_hex = s.bytes().all(|b| b.is_ascii_hexdigit());
        if all_hex && s.len() == 64 {
            return err(K::Hex);
        }
        // SHA-1 `x5t`: 40 hex digits, or 27 characters of base64(url).
        if (all_hex && s.len() == 40) || s.len() == 27 {
            return err(K::Sha1);
        }
        if s.contains(['+', '/']) {
            return err(K::StandardBase64);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return err(K::InvalidCharacter);
        }
        if s.len() != ENCODED_LEN {
            return err(K::Length);
        }
        let mut digest = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(s, &mut digest) {
            Ok(32) => Ok(Self(digest)),
            // The alphabet and length are right, so the only way left to fail
            // is a last character with non-zero unused bits.
            _ => err(K::NonCanonical),
        }
    }
}

impl serde::Serialize for Thumbprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Thumbprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Thumbprint;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an x5t#S256 thumbprint string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Thumbprint, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// The error returned when a string is not an RFC 8705 `x5t#S256` thumbprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseThumbprintError {
    kind: ParseThumbprintErrorKind,
}

impl ParseThumbprintError {
    /// What was wrong with the string.
    pub fn kind(&self) -> ParseThumbprintErrorKind {
        self.kind
    }
}

/// What was wrong with a string that is not a thumbprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseThumbprintErrorKind {
    /// The string is empty.
    Empty,
    /// The string contains whitespace.
    Whitespace,
    /// The string has base64 padding (`=`).
    Padding,
    /// The string is a hex-encoded SHA-256 digest.
    Hex,
    /// The string has the length of a SHA-1 `x5t` thumbprint, not `x5t#S256`.
    Sha1,
    /// The string uses the standard base64 alphabet (`+` or `/`).
    StandardBase64,
    /// The string has a character outside the base64url alphabet.
    InvalidCharacter,
    /// The string is not 43 characters long.
    Length,
    /// The last character has unused bits set, so it is not the canonical
    /// encoding of any digest.
    NonCanonical,
}

impl fmt::Display for ParseThumbprintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ParseThumbprintErrorKind as K;
        let why = match self.kind {
            K::Empty => "it is empty",
            K::Whitespace => "it contains whitespace",
            K::Padding => "it has base64 padding ('=')",
            K::Hex => "it is hex; x5t#S256 is base64url",
            K::Sha1 => "it has the length of a SHA-1 x5t, not a SHA-256 x5t#S256",
            K::StandardBase64 => "it uses the standard base64 alphabet ('+' or '/'), not base64url",
            K::InvalidCharacter => "it has a character outside the base64url alphabet",
            K::Length => "it is not 43 characters long",
            K::NonCanonical => "its last character is not a canonical base64url encoding",
        };
        write!(f, "not an x5t#S256 certificate thumbprint: {why}")
    }
}

impl std::error::Error for ParseThumbprintError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(s: &str) -> ParseThumbprintErrorKind {
        s.parse::<Thumbprint>().unwrap_err().kind()
    }

    #[test]
    fn empty_input_digest_vector() {
        // SHA-256("") = e3b0c442...b855, a published vector.
        let t = Thumbprint::from_der(b"");
        assert_eq!(t.to_string(), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
        assert_eq!(format!("{t:?}"), format!("Thumbprint({t})"));
    }

    #[test]
    fn round_trip_and_serde() {
        let t = Thumbprint::from_der(b"abc");
        let s = t.to_string();
        assert_eq!(s.len(), ENCODED_LEN);
        assert_eq!(s.parse::<Thumbprint>().unwrap(), t);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{s}\""));
        assert_eq!(serde_json::from_str::<Thumbprint>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Thumbprint>("42").is_err());
        assert!(serde_json::from_str::<Thumbprint>(&format!("\"{s}=\"")).is_err());
    }

    #[test]
    fn malformed_forms_are_rejected() {
        use ParseThumbprintErrorKind as K;
        let good = Thumbprint::from_der(b"abc").to_string();
        assert_eq!(kind(""), K::Empty);
        assert_eq!(kind(&format!(" {good}")), K::Whitespace);
        assert_eq!(kind(&format!("{good}\n")), K::Whitespace);
        assert_eq!(kind(&format!("{good}=")), K::Padding);
        assert_eq!(kind(&"ab".repeat(32)), K::Hex);
        assert_eq!(kind(&"AB".repeat(32)), K::Hex);
        assert_eq!(kind(&"ab".repeat(20)), K::Sha1);
        assert_eq!(kind("a3l0WVRqvvQim6zxXWVziPmMD6s"), K::Sha1);
        assert_eq!(kind(&good.replace(['-', '_'], "+")), K::StandardBase64);
        assert_eq!(kind(&format!("{}+", &good[..42])), K::StandardBase64);
        assert_eq!(kind(&format!("{}.", &good[..42])), K::InvalidCharacter);
        assert_eq!(kind(&format!("{}é", &good[..41])), K::InvalidCharacter);
        assert_eq!(kind(&good[..42]), K::Length);
        assert_eq!(kind(&format!("{good}A")), K::Length);
        // 43 characters carry 258 bits: the last 2 must be zero, and 'B' is 0b000001.
        assert_eq!(kind(&format!("{}B", &good[..42])), K::NonCanonical);
        assert!(format!("{}A", &good[..42]).parse::<Thumbprint>().is_ok());
    }

    #[test]
    fn the_rfc_8705_example_value_is_not_canonical() {
        // RFC 8705 section 3.1 shows "bwcK...-dg2"; its last character carries
        // non-zero unused bits, so no SHA-256 encoder produces it. The
        // canonical form of the same digest ends in "dg0".
        assert_eq!(
            kind("bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"),
            ParseThumbprintErrorKind::NonCanonical
        );
        assert!(
            "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg0"
                .parse::<Thumbprint>()
                .is_ok()
        );
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let msg = "ab"
            .repeat(32)
            .parse::<Thumbprint>()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("hex"), "{msg}");
        let msg = "x=".parse::<Thumbprint>().unwrap_err().to_string();
        assert!(msg.contains("padding"), "{msg}");
    }

    #[test]
    fn equality_is_by_digest() {
        let a = Thumbprint::from_der(b"a");
        let b = Thumbprint::from_der(b"b");
        assert!(a.matches(&a));
        assert!(!a.matches(&b));
        assert_ne!(a, b);
        assert_eq!(Thumbprint::from_digest(*a.as_bytes()), a);
    }
}
