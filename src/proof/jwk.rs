//! Public JWKs (RFC 7517, RFC 7518 section 6, RFC 8037) and their RFC 7638
//! SHA-256 thumbprints.
//!
//! A [`PublicJwk`] is either ours (the public half of a
//! [`ProofKey`](super::ProofKey)) or a peer's, read strictly from a JWS
//! header or a `cnf` claim: public members only, known key types and curves,
//! exact lengths, canonical base64url. Its [`JwkThumbprint`] (the DPoP
//! `jkt`, the SHR `kid`) is computed once, when the JWK is built.

use std::fmt;

use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use super::alg::{Algorithm, Curve, Family};
use super::thumbprint::JwkThumbprint;
use crate::json::{StrictJsonError, strict_value};

/// The members that only a private (or symmetric) JWK has: RFC 7518
/// sections 6.2.2, 6.3.2 and 6.4, RFC 8037 section 2.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// RSA moduli accepted from peers, in bits (as aws-lc-rs verifies them).
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 8192;

/// A public JSON Web Key, with its RFC 7638 thumbprint.
///
/// Its JSON form ([`as_json`](Self::as_json), [`serde::Serialize`]) holds the
/// required members only, in lexicographic order, without whitespace: the
/// RFC 7638 canonical form, which is also what goes into a DPoP header's
/// `jwk`. EC: `{"crv","kty","x","y"}`; OKP: `{"crv","kty","x"}`; RSA:
/// `{"e","kty","n"}`.
///
/// ```
/// use tower_token_binding::proof::PublicJwk;
///
/// // The RSA key of RFC 7638 section 3.1.
/// let jwk = PublicJwk::parse(r#"{
///     "kty": "RSA",
///     "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
///     "e": "AQAB",
///     "alg": "RS256",
///     "kid": "2011-04-29"
/// }"#).unwrap();
/// assert_eq!(jwk.thumbprint().to_string(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
///
/// // Private members are refused.
/// assert!(PublicJwk::parse(r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#).is_err());
/// ```
#[derive(Clone)]
pub struct PublicJwk {
    key: VerifyingKey,
    /// The required members, in lexicographic order, values base64url.
    members: Vec<(&'static str, String)>,
    /// The canonical JSON of `members`.
    json: Box<str>,
    thumbprint: JwkThumbprint,
}

/// The key as aws-lc-rs verifies with it.
#[derive(Clone)]
enum VerifyingKey {
    /// EC or OKP: one algorithm per curve, so the key is parsed once.
    Curve(Curve, ParsedPublicKey),
    /// RSA: the algorithm (padding, digest) is chosen per signature.
    Rsa { n: Box<[u8]>, e: Box<[u8]> },
}

/// Why a signature did not verify with a [`PublicJwk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerifyFailure {
    /// The key cannot be used with the algorithm (an RSA key for `ES256`...).
    KeyMismatch,
    /// The signature is wrong.
    BadSignature,
}

impl PublicJwk {
    /// Reads a peer's public JWK from JSON text, refusing duplicate member
    /// names, then as [`from_map`](Self::from_map).
    pub fn parse(json: &str) -> Result<Self, JwkError> {
        let value = strict_value(json.as_bytes()).map_err(|e| match e {
            StrictJsonError::DuplicateMember(_) => JwkError::new(JwkErrorKind::DuplicateMember),
            StrictJsonError::Malformed(_) => JwkError::new(JwkErrorKind::NotAnObject),
        })?;
        Self::from_value(&value)
    }

    /// Reads a peer's public JWK from a JSON value, which must be an object;
    /// see [`from_map`](Self::from_map).
    pub fn from_value(jwk: &Value) -> Result<Self, JwkError> {
        match jwk {
            Value::Object(members) => Self::from_map(members),
            _ => Err(JwkError::new(JwkErrorKind::NotAnObject)),
        }
    }

    /// Reads a peer's public JWK from its members.
    ///
    /// Refuses: any private or symmetric member (`d`, `p`, `q`, `dp`, `dq`,
    /// `qi`, `oth`, `k`); a `kty` other than `EC`, `OKP` or `RSA`; a curve
    /// other than `P-256`, `P-384`, `P-521` (EC) or `Ed25519` (OKP);
    /// coordinates of the wrong length or not on the curve; an RSA modulus
    /// under 2048 or over 8192 bits; a modulus or exponent with a leading
    /// zero byte or an even exponent; base64url that is padded or not
    /// canonical. Other members (`kid`, `use`, `alg`...) are ignored: they
    /// are not part of the key nor of its thumbprint.
    ///
    /// Duplicate member names cannot be seen in a parsed map: check the JSON
    /// text first (as [`parse`](Self::parse) and [`jws`](super::jws) do).
    pub fn from_map(jwk: &Map<String, Value>) -> Result<Self, JwkError> {
        if let Some(member) = PRIVATE_MEMBERS.into_iter().find(|m| jwk.contains_key(*m)) {
            return Err(JwkError::at(JwkErrorKind::PrivateMember, member));
        }
        match string_member(jwk, "kty")? {
            "EC" => {
                let curve = match string_member(jwk, "crv")? {
                    "P-256" => Curve::P256,
                    "P-384" => Curve::P384,
                    "P-521" => Curve::P521,
                    _ => return Err(JwkError::at(JwkErrorKind::UnsupportedCurve, "crv")),
                };
                let len = curve.coordinate_len();
                let x = bytes_member(jwk, "x")?;
                let y = bytes_member(jwk, "y")?;
                if x.len() != len {
                    return Err(JwkError::at(JwkErrorKind::InvalidMember, "x"));
                }
                if y.len() != len {
                    return Err(JwkError::at(JwkErrorKind::InvalidMember, "y"));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Self::from_ec_point(curve, &point)
            }
            "OKP" => {
                if string_member(jwk, "crv")? != "Ed25519" {
                    return Err(JwkError::at(JwkErrorKind::UnsupportedCurve, "crv"));
                }
                let x = bytes_member(jwk, "x")?;
                if x.len() != Curve::Ed25519.coordinate_len() {
                    return Err(JwkError::at(JwkErrorKind::InvalidMember, "x"));
                }
                Self::from_ed25519(&x)
            }
            "RSA" => {
                let n = bytes_member(jwk, "n")?;
                let e = bytes_member(jwk, "e")?;
                Self::from_rsa(&n, &e)
            }
            _ => Err(JwkError::at(JwkErrorKind::UnsupportedKeyType, "kty")),
        }
    }

    /// Reads a key an issuer publishes in its JWKS to sign access tokens:
    /// as [`from_map`](Self::from_map), except that an RSA modulus or
    /// exponent may carry leading zero bytes (some issuers write the
    /// modulus as a signed integer). A proof's key stays strict: its
    /// thumbprint depends on one text form, a published key's does not.
    #[cfg(feature = "server")]
    pub(crate) fn from_published(jwk: &Map<String, Value>) -> Result<Self, JwkError> {
        if jwk.get("kty").and_then(Value::as_str) != Some("RSA")
            || PRIVATE_MEMBERS.into_iter().any(|m| jwk.contains_key(m))
        {
            return Self::from_map(jwk);
        }
        let n = bytes_member(jwk, "n")?;
        let e = bytes_member(jwk, "e")?;
        let unpadded = |bytes: &[u8]| -> Box<[u8]> {
            let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
            bytes[start..].into()
        };
        Self::from_rsa(&unpadded(&n), &unpadded(&e))
    }

    /// An EC key from its uncompressed point (`04 || x || y`).
    pub(crate) fn from_ec_point(curve: Curve, point: &[u8]) -> Result<Self, JwkError> {
        let len = curve.coordinate_len();
        if point.len() != 1 + 2 * len || point.first() != Some(&0x04) {
            return Err(JwkError::new(JwkErrorKind::InvalidKey));
        }
        let parsed = ParsedPublicKey::new(curve.algorithm().verification(), point)
            .map_err(|_| JwkError::new(JwkErrorKind::InvalidKey))?;
        let (x, y) = point[1..].split_at(len);
        Ok(Self::build(
            VerifyingKey::Curve(curve, parsed),
            vec![
                ("crv", curve.name().to_owned()),
                ("kty", "EC".to_owned()),
                ("x", URL_SAFE_NO_PAD.encode(x)),
                ("y", URL_SAFE_NO_PAD.encode(y)),
            ],
        ))
    }

    /// An Ed25519 key from its 32 bytes; never a point of small order nor a
    /// non-canonical encoding, with which any signature would verify.
    pub(crate) fn from_ed25519(x: &[u8]) -> Result<Self, JwkError> {
        if ed25519_is_weak(x) {
            return Err(JwkError::new(JwkErrorKind::InvalidKey));
        }
        let parsed = ParsedPublicKey::new(Curve::Ed25519.algorithm().verification(), x)
            .map_err(|_| JwkError::new(JwkErrorKind::InvalidKey))?;
        Ok(Self::build(
            VerifyingKey::Curve(Curve::Ed25519, parsed),
            vec![
                ("crv", Curve::Ed25519.name().to_owned()),
                ("kty", "OKP".to_owned()),
                ("x", URL_SAFE_NO_PAD.encode(x)),
            ],
        ))
    }

    /// An RSA key from its modulus and exponent (big-endian, no leading zero).
    pub(crate) fn from_rsa(n: &[u8], e: &[u8]) -> Result<Self, JwkError> {
        let bits = match n.first() {
            Some(&top) if top != 0 => n.len() * 8 - top.leading_zeros() as usize,
            _ => return Err(JwkError::at(JwkErrorKind::InvalidMember, "n")),
        };
        if bits < RSA_MIN_BITS {
            return Err(JwkError::at(JwkErrorKind::KeyTooSmall, "n"));
        }
        if bits > RSA_MAX_BITS {
            return Err(JwkError::at(JwkErrorKind::InvalidKey, "n"));
        }
        // 3 <= e < 2^32, odd, no leading zero.
        let e_ok = matches!(e.first(), Some(&top) if top != 0)
            && e.len() <= 4
            && e.last().is_some_and(|last| last & 1 == 1)
            && e.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)) >= 3;
        if !e_ok {
            return Err(JwkError::at(JwkErrorKind::InvalidMember, "e"));
        }
        Ok(Self::build(
            VerifyingKey::Rsa {
                n: n.into(),
                e: e.into(),
            },
            vec![
                ("e", URL_SAFE_NO_PAD.encode(e)),
                ("kty", "RSA".to_owned()),
                ("n", URL_SAFE_NO_PAD.encode(n)),
            ],
        ))
    }

    fn build(key: VerifyingKey, members: Vec<(&'static str, String)>) -> Self {
        // Names and values are base64url or fixed ASCII names: nothing to
        // escape.
        let mut json = String::with_capacity(
            2 + members
                .iter()
                .map(|(name, value)| name.len() + value.len() + 6)
                .sum::<usize>(),
        );
        json.push('{');
        for (i, (name, value)) in members.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push('"');
            json.push_str(name);
            json.push_str("\":\"");
            json.push_str(value);
            json.push('"');
        }
        json.push('}');
        let thumbprint = JwkThumbprint::of_canonical_json(&json);
        Self {
            key,
            members,
            json: json.into_boxed_str(),
            thumbprint,
        }
    }

    /// The RFC 7638 SHA-256 thumbprint (DPoP's `jkt`).
    pub fn thumbprint(&self) -> JwkThumbprint {
        self.thumbprint
    }

    /// The canonical JSON: required members only, in lexicographic order,
    /// no whitespace (RFC 7638 section 3).
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// The key type: `"EC"`, `"OKP"` or `"RSA"`.
    pub fn key_type(&self) -> &'static str {
        match &self.key {
            VerifyingKey::Curve(Curve::Ed25519, _) => "OKP",
            VerifyingKey::Curve(..) => "EC",
            VerifyingKey::Rsa { .. } => "RSA",
        }
    }

    /// Whether signatures with `alg` can be made by this key.
    pub fn supports(&self, alg: Algorithm) -> bool {
        match (&self.key, alg.family()) {
            (VerifyingKey::Curve(curve, _), Family::Curve(wanted)) => *curve == wanted,
            (VerifyingKey::Rsa { .. }, Family::Rsa) => true,
            _ => false,
        }
    }

    /// Verifies `signature` over `message` with `alg`.
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyFailure> {
        if !self.supports(alg) {
            return Err(VerifyFailure::KeyMismatch);
        }
        let verified = match &self.key {
            VerifyingKey::Curve(_, key) => key.verify_sig(message, signature),
            VerifyingKey::Rsa { n, e } => {
                let params = alg.rsa_parameters().ok_or(VerifyFailure::KeyMismatch)?;
                RsaPublicKeyComponents { n, e }.verify(params, message, signature)
            }
        };
        verified.map_err(|_| VerifyFailure::BadSignature)
    }
}

impl fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicJwk")
            .field("kty", &self.key_type())
            .field("jkt", &self.thumbprint)
            .finish()
    }
}

impl serde::Serialize for PublicJwk {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.members.len()))?;
        for (name, value) in &self.members {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Whether `point`, an encoded Ed25519 point, has small order (the
/// identity among them: with it, `R` = identity and `S` = 0 verify any
/// message) or encodes `y` as `p` or more (RFC 8032 section 5.1.3). The
/// list is libsodium's; the sign bit is ignored.
fn ed25519_is_weak(point: &[u8]) -> bool {
    const SMALL_ORDER: [[u8; 32]; 5] = [
        // 0 (order 4)
        [0; 32],
        // 1 (order 1)
        [
            1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0,
        ],
        // order 8
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ],
        // order 8
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ],
        // p - 1 (order 2)
        [
            0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0x7f,
        ],
    ];
    let Ok(point) = <[u8; 32]>::try_from(point) else {
        return true;
    };
    let mut y = point;
    y[31] &= 0x7f;
    if SMALL_ORDER.contains(&y) {
        return true;
    }
    // y >= p = 2^255 - 19: the top byte 0x7f, the middle all 0xff, the
    // lowest at least 0xed.
    y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff) && y[0] >= 0xed
}

fn string_member<'a>(jwk: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, JwkError> {
    match jwk.get(name) {
        None => Err(JwkError::at(JwkErrorKind::MissingMember, name)),
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(JwkError::at(JwkErrorKind::InvalidMember, name)),
    }
}

fn bytes_member(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    let text = string_member(jwk, name)?;
    // Strict: no padding, no other alphabet, unused bits zero, so one key
    // has one text form and one thumbprint.
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwkError::at(JwkErrorKind::InvalidMember, name))
}

/// Why a JWK was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwkError {
    kind: JwkErrorKind,
    member: Option<&'static str>,
}

/// What was wrong with a JWK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwkErrorKind {
    /// Not a JSON object.
    NotAnObject,
    /// A member is named twice.
    DuplicateMember,
    /// A private or symmetric key member is present ([`JwkError::member`]
    /// names it): only public keys are accepted.
    PrivateMember,
    /// A required member is missing.
    MissingMember,
    /// A member has the wrong type, encoding or length.
    InvalidMember,
    /// `kty` is not `EC`, `OKP` or `RSA`.
    UnsupportedKeyType,
    /// `crv` is not a supported curve.
    UnsupportedCurve,
    /// The RSA modulus is under 2048 bits.
    KeyTooSmall,
    /// The members do not make a valid key (a point not on the curve...).
    InvalidKey,
}

impl JwkError {
    pub(crate) fn new(kind: JwkErrorKind) -> Self {
        Self { kind, member: None }
    }

    fn at(kind: JwkErrorKind, member: &'static str) -> Self {
        Self {
            kind,
            member: Some(member),
        }
    }

    /// What was wrong.
    pub fn kind(&self) -> JwkErrorKind {
        self.kind
    }

    /// The member at fault, when there is one.
    pub fn member(&self) -> Option<&'static str> {
        self.member
    }
}

impl fmt::Display for JwkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use JwkErrorKind as K;
        let what = match self.kind {
            K::NotAnObject => "the JWK is not a JSON object",
            K::DuplicateMember => "the JWK names a member twice",
            K::PrivateMember => "the JWK holds private key material",
            K::MissingMember => "the JWK lacks a required member",
            K::InvalidMember => "the JWK has a malformed member",
            K::UnsupportedKeyType => "the JWK key type is not supported",
            K::UnsupportedCurve => "the JWK curve is not supported",
            K::KeyTooSmall => "the JWK RSA key is under 2048 bits",
            K::InvalidKey => "the JWK is not a valid public key",
        };
        f.write_str(what)?;
        if let Some(member) = self.member {
            write!(f, " ({member})")?;
        }
        Ok(())
    }
}

impl std::error::Error for JwkError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 section 3.1.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    /// RFC 8037 appendix A.2 (public key) and A.3 (its thumbprint).
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn kind(json: &str) -> JwkErrorKind {
        PublicJwk::parse(json).unwrap_err().kind()
    }

    #[test]
    fn weak_ed25519_points_are_refused() {
        let mut weak: Vec<[u8; 32]> = Vec::new();
        let mut one = [0u8; 32];
        one[0] = 1;
        weak.push(one);
        weak.push([0u8; 32]);
        let mut p_minus_1 = [0xffu8; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        weak.push(p_minus_1);
        // p and p + 1: y not reduced.
        for low in [0xed, 0xee, 0xff] {
            let mut y = p_minus_1;
            y[0] = low;
            weak.push(y);
        }
        for point in weak {
            assert!(ed25519_is_weak(&point), "{point:?}");
            let mut signed = point;
            signed[31] |= 0x80;
            assert!(ed25519_is_weak(&signed), "{signed:?}");
            let x = URL_SAFE_NO_PAD.encode(point);
            let json = format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}"#);
            assert_eq!(kind(&json), JwkErrorKind::InvalidKey);
        }
        let good = URL_SAFE_NO_PAD.decode(RFC8037_X).unwrap();
        assert!(!ed25519_is_weak(&good));
        assert!(ed25519_is_weak(&good[..31]));
    }

    #[test]
    fn rfc7638_thumbprint() {
        let json = format!(
            r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAB","alg":"RS256","kid":"2011-04-29"}}"#
        );
        let jwk = PublicJwk::parse(&json).unwrap();
        assert_eq!(
            jwk.thumbprint().to_string(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(
            jwk.as_json(),
            format!(r#"{{"e":"AQAB","kty":"RSA","n":"{RFC7638_N}"}}"#)
        );
        assert_eq!(serde_json::to_string(&jwk).unwrap(), jwk.as_json());
        assert_eq!(jwk.key_type(), "RSA");
        assert!(jwk.supports(Algorithm::Ps256) && jwk.supports(Algorithm::Rs256));
        assert!(!jwk.supports(Algorithm::Es256));
    }

    #[test]
    fn rfc8037_thumbprint() {
        let jwk = PublicJwk::parse(&format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}"}}"#
        ))
        .unwrap();
        assert_eq!(
            jwk.thumbprint().to_string(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        assert!(jwk.supports(Algorithm::EdDsa) && !jwk.supports(Algorithm::Es256));
    }

    #[test]
    fn private_and_symmetric_members_are_refused() {
        for member in PRIVATE_MEMBERS {
            let json =
                format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{RFC8037_X}","{member}":"AQAB"}}"#);
            let err = PublicJwk::parse(&json).unwrap_err();
            assert_eq!(err.kind(), JwkErrorKind::PrivateMember, "{member}");
            assert_eq!(err.member(), Some(member));
        }
        assert_eq!(
            kind(r#"{"kty":"oct","k":"AAAA"}"#),
            JwkErrorKind::PrivateMember
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        use JwkErrorKind as K;
        let x = RFC8037_X;
        for (json, want) in [
            ("[]".to_owned(), K::NotAnObject),
            ("{".to_owned(), K::NotAnObject),
            (
                format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}","x":"{x}"}}"#),
                K::DuplicateMember,
            ),
            (
                format!(r#"{{"crv":"Ed25519","x":"{x}"}}"#),
                K::MissingMember,
            ),
            (
                format!(r#"{{"kty":1,"crv":"Ed25519","x":"{x}"}}"#),
                K::InvalidMember,
            ),
            (
                format!(r#"{{"kty":"oct","crv":"Ed25519","x":"{x}"}}"#),
                K::UnsupportedKeyType,
            ),
            (
                format!(r#"{{"kty":"okp","crv":"Ed25519","x":"{x}"}}"#),
                K::UnsupportedKeyType,
            ),
            (
                format!(r#"{{"kty":"OKP","crv":"Ed448","x":"{x}"}}"#),
                K::UnsupportedCurve,
            ),
            (
                format!(r#"{{"kty":"OKP","crv":"X25519","x":"{x}"}}"#),
                K::UnsupportedCurve,
            ),
            (
                format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{x}="}}"#),
                K::InvalidMember,
            ),
            (
                format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#, &x[..42]),
                K::InvalidMember,
            ),
            (
                r#"{"kty":"OKP","crv":"Ed25519","x":"AQAB"}"#.to_owned(),
                K::InvalidMember,
            ),
            (
                r#"{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}"#.to_owned(),
                K::UnsupportedCurve,
            ),
            (
                format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}"}}"#),
                K::MissingMember,
            ),
            // 32 bytes each, but (x, x) is not a point on P-256.
            (
                format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{x}"}}"#),
                K::InvalidKey,
            ),
            (
                format!(r#"{{"kty":"EC","crv":"P-384","x":"{x}","y":"{x}"}}"#),
                K::InvalidMember,
            ),
            (
                format!(r#"{{"kty":"RSA","n":"{RFC7638_N}"}}"#),
                K::MissingMember,
            ),
            (
                format!(r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AAEAAQ"}}"#),
                K::InvalidMember,
            ),
            (
                format!(r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQ"}}"#),
                K::InvalidMember,
            ),
            (
                format!(r#"{{"kty":"RSA","n":"{RFC7638_N}","e":"AQAA"}}"#),
                K::InvalidMember,
            ),
            (
                format!(r#"{{"kty":"RSA","n":"AA{RFC7638_N}","e":"AQAB"}}"#),
                K::InvalidMember,
            ),
            (
                format!(r#"{{"kty":"RSA","n":"{}","e":"AQAB"}}"#, &RFC7638_N[..168]),
                K::KeyTooSmall,
            ),
        ] {
            assert_eq!(kind(&json), want, "{json}");
        }
    }
}
