//! Compact JWS (RFC 7515) with JSON header and payload: signing with a
//! [`ProofKey`], verifying with a [`PublicJwk`].
//!
//! Signing takes the header already encoded (a proof's header is the same
//! for every proof of a key, so it is encoded once) and the payload JSON.
//! Verifying is strict: three segments of canonical base64url without
//! padding, header and payload JSON objects that name no member twice at any
//! depth, an `alg` that is asymmetric and in the caller's allow-list (there
//! is no way to allow `none` or HMAC), no `crit` header (no extension is
//! understood), and a signature made with that algorithm by that key.
//!
//! ```
//! use tower_token_binding::proof::jws::{self, CompactJws};
//! use tower_token_binding::proof::{Algorithm, ProofKey};
//!
//! let key = ProofKey::generate(Algorithm::Es256).unwrap();
//! let header = jws::encode_segment(br#"{"alg":"ES256","typ":"example"}"#);
//! let compact = jws::sign(&key, &header, br#"{"hello":"world"}"#).unwrap();
//!
//! let parsed = CompactJws::parse(&compact).unwrap();
//! assert_eq!(parsed.algorithm(), Algorithm::Es256);
//! assert_eq!(parsed.claims()["hello"], "world");
//! parsed.verify(key.public_jwk(), &[Algorithm::Es256]).unwrap();
//! // Not in the allow-list: refused even though the signature is good.
//! assert!(parsed.verify(key.public_jwk(), &[Algorithm::EdDsa]).is_err());
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::write::EncoderStringWriter;
use serde_json::{Map, Value};

use super::alg::Algorithm;
use super::jwk::{PublicJwk, VerifyFailure};
use super::key::{KeyError, ProofKey};
use crate::json::{StrictJsonError, strict_value};

/// Encodes bytes (a JSON header, say) as a base64url segment without padding.
pub fn encode_segment(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `payload` (JSON) under an encoded header: returns
/// `header.payload.signature`. The header must name the key's algorithm in
/// its `alg`; it is not read here.
pub fn sign(key: &ProofKey, header_b64: &str, payload: &[u8]) -> Result<String, KeyError> {
    sign_streamed(key, header_b64, payload.len(), |out| {
        std::io::Write::write_all(out, payload)
    })
}

/// Where [`sign_streamed`] writes the payload: base64url-encoded straight
/// into the JWS being built.
pub(crate) type PayloadWriter<'a> = EncoderStringWriter<'a, base64::engine::GeneralPurpose, String>;

/// Signs a payload written by `write_payload` (serialized JSON, typically)
/// under an encoded header, building the JWS in one string sized up front:
/// the payload goes through a base64 encoder into it, the signing input is
/// signed in place, and the signature is appended.
pub(crate) fn sign_streamed(
    key: &ProofKey,
    header_b64: &str,
    payload_len_hint: usize,
    write_payload: impl FnOnce(&mut PayloadWriter<'_>) -> std::io::Result<()>,
) -> Result<String, KeyError> {
    let encoded = |len: usize| len.div_ceil(3) * 4;
    let capacity =
        header_b64.len() + 1 + encoded(payload_len_hint) + 1 + encoded(key.signature_len());
    let mut out = String::with_capacity(capacity);
    out.push_str(header_b64);
    out.push('.');
    let mut writer = EncoderStringWriter::from_consumer(out, &URL_SAFE_NO_PAD);
    // Writing to a String does not fail; serializing may (it cannot for the
    // payloads this crate writes), and then the JWS is not made.
    let written = write_payload(&mut writer);
    let mut out = writer.into_inner();
    written.map_err(KeyError::payload)?;
    let signature = key.sign(out.as_bytes())?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut out);
    Ok(out)
}

/// The three segments of a compact JWS (`header.payload.signature`), still
/// encoded; `None` unless there are exactly three.
pub(crate) fn segments(compact: &str) -> Option<[&str; 3]> {
    let mut segments = compact.split('.');
    match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some(header), Some(payload), Some(signature), None) => Some([header, payload, signature]),
        _ => None,
    }
}

/// A compact JWS whose header and payload are JSON objects (a JWT), parsed
/// but not yet verified.
///
/// [`parse`](Self::parse) checks the form; [`verify`](Self::verify) checks
/// the signature with a key the caller chose (from the header itself for
/// DPoP, from the payload's `cnf` for SHR). Read nothing from the claims
/// before `verify` succeeded that a decision depends on.
#[derive(Debug)]
pub struct CompactJws<'a> {
    signing_input: &'a str,
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signature: Vec<u8>,
    alg: Algorithm,
}

impl<'a> CompactJws<'a> {
    /// Parses `compact`: three base64url segments, JSON object header and
    /// payload without duplicate member names, a known asymmetric `alg`, no
    /// `crit`.
    pub fn parse(compact: &'a str) -> Result<Self, JwsError> {
        let malformed = |detail| JwsError::new(JwsErrorKind::Malformed, detail);
        let Some([header_b64, payload_b64, signature_b64]) = segments(compact) else {
            return Err(malformed("not three segments"));
        };
        let header = object(header_b64, &HEADER)?;
        let claims = object(payload_b64, &PAYLOAD)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| malformed("the signature is not base64url"))?;
        if header.contains_key("crit") {
            return Err(JwsError::new(
                JwsErrorKind::CriticalHeader,
                "a crit header names extensions that are not understood",
            ));
        }
        let alg = match header.get("alg") {
            Some(Value::String(name)) => Algorithm::from_name(name).ok_or_else(|| {
                JwsError::new(
                    JwsErrorKind::DisallowedAlgorithm,
                    "an unknown or symmetric alg",
                )
            })?,
            _ => return Err(malformed("alg is missing or not a string")),
        };
        Ok(Self {
            signing_input: &compact[..header_b64.len() + 1 + payload_b64.len()],
            header,
            claims,
            signature,
            alg,
        })
    }

    /// The header's `alg`.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The header.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The header's `typ`, when it is a string.
    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }

    /// The payload's claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// Takes the claims out (after [`verify`](Self::verify)).
    pub fn into_claims(self) -> Map<String, Value> {
        self.claims
    }

    /// Verifies the signature with `key`, if the JWS's `alg` is in
    /// `allowed` and fits the key.
    pub fn verify(&self, key: &PublicJwk, allowed: &[Algorithm]) -> Result<(), JwsError> {
        if !allowed.contains(&self.alg) {
            return Err(JwsError::new(
                JwsErrorKind::DisallowedAlgorithm,
                "the alg is not allowed here",
            ));
        }
        key.verify(self.alg, self.signing_input.as_bytes(), &self.signature)
            .map_err(|failure| match failure {
                VerifyFailure::KeyMismatch => {
                    JwsError::new(JwsErrorKind::KeyMismatch, "the key does not fit the alg")
                }
                VerifyFailure::BadSignature => {
                    JwsError::new(JwsErrorKind::BadSignature, "the signature does not verify")
                }
            })
    }
}

/// The details given for a faulty header or payload.
struct Part {
    not_base64url: &'static str,
    not_object: &'static str,
    duplicate: &'static str,
}

const HEADER: Part = Part {
    not_base64url: "the header is not base64url",
    not_object: "the header is not a JSON object",
    duplicate: "the header names a member twice",
};

const PAYLOAD: Part = Part {
    not_base64url: "the payload is not base64url",
    not_object: "the payload is not a JSON object",
    duplicate: "the payload names a member twice",
};

/// Decodes a segment holding a JSON object without duplicate members.
fn object(segment: &str, part: &Part) -> Result<Map<String, Value>, JwsError> {
    let json = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwsError::new(JwsErrorKind::Malformed, part.not_base64url))?;
    // One pass: the objects being built are the memory of names seen.
    match strict_value(&json) {
        Ok(Value::Object(map)) => Ok(map),
        Err(StrictJsonError::DuplicateMember(_)) => {
            Err(JwsError::new(JwsErrorKind::DuplicateMember, part.duplicate))
        }
        _ => Err(JwsError::new(JwsErrorKind::Malformed, part.not_object)),
    }
}

/// Why a JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwsError {
    kind: JwsErrorKind,
    detail: &'static str,
}

/// What was wrong with a JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwsErrorKind {
    /// Not three base64url segments with JSON object header and payload,
    /// or no string `alg`.
    Malformed,
    /// The header or the payload names a member twice, at some depth.
    DuplicateMember,
    /// The `alg` is unknown, symmetric, `none`, or not allowed here.
    DisallowedAlgorithm,
    /// A `crit` header is present.
    CriticalHeader,
    /// The key cannot make signatures with the `alg`.
    KeyMismatch,
    /// The signature does not verify.
    BadSignature,
}

impl JwsError {
    fn new(kind: JwsErrorKind, detail: &'static str) -> Self {
        Self { kind, detail }
    }

    /// What was wrong.
    pub fn kind(&self) -> JwsErrorKind {
        self.kind
    }
}

impl fmt::Display for JwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail)
    }
}

impl std::error::Error for JwsError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        encode_segment(s.as_bytes())
    }

    #[test]
    fn round_trip_for_every_algorithm() {
        for alg in super::super::alg::ALL {
            let key = ProofKey::generate(alg).unwrap();
            let header = b64(&format!(r#"{{"alg":"{alg}"}}"#));
            let compact = sign(&key, &header, br#"{"n":1}"#).unwrap();
            let parsed = CompactJws::parse(&compact).unwrap();
            assert_eq!(parsed.algorithm(), alg);
            assert_eq!(parsed.verify(key.public_jwk(), &[alg]), Ok(()), "{alg}");
            let other = ProofKey::generate(alg).unwrap();
            assert_eq!(
                parsed
                    .verify(other.public_jwk(), &[alg])
                    .unwrap_err()
                    .kind(),
                JwsErrorKind::BadSignature
            );
        }
    }

    #[test]
    fn a_key_of_another_type_is_a_mismatch() {
        let key = ProofKey::generate(Algorithm::Es256).unwrap();
        let ed = ProofKey::generate(Algorithm::EdDsa).unwrap();
        let compact = sign(&key, &b64(r#"{"alg":"ES256"}"#), b"{}").unwrap();
        let parsed = CompactJws::parse(&compact).unwrap();
        assert_eq!(
            parsed
                .verify(ed.public_jwk(), &[Algorithm::Es256])
                .unwrap_err()
                .kind(),
            JwsErrorKind::KeyMismatch
        );
    }

    #[test]
    fn malformed_input_is_refused() {
        use JwsErrorKind as K;
        let ok_header = b64(r#"{"alg":"ES256"}"#);
        let ok_payload = b64("{}");
        for (compact, want) in [
            (String::new(), K::Malformed),
            ("a.b".to_owned(), K::Malformed),
            (format!("{ok_header}.{ok_payload}.AA.AA"), K::Malformed),
            (format!("{ok_header}=.{ok_payload}.AA"), K::Malformed),
            (format!("{ok_header}.{ok_payload}.A"), K::Malformed),
            (format!("{}.{ok_payload}.AA", b64("[]")), K::Malformed),
            (format!("{ok_header}.{}.AA", b64("\"x\"")), K::Malformed),
            (
                format!("{}.{ok_payload}.AA", b64(r#"{"alg":1}"#)),
                K::Malformed,
            ),
            (
                format!("{}.{ok_payload}.AA", b64(r#"{"typ":"x"}"#)),
                K::Malformed,
            ),
            (
                format!("{}.{ok_payload}.AA", b64(r#"{"alg":"none"}"#)),
                K::DisallowedAlgorithm,
            ),
            (
                format!("{}.{ok_payload}.AA", b64(r#"{"alg":"HS256"}"#)),
                K::DisallowedAlgorithm,
            ),
            (
                format!("{}.{ok_payload}.", b64(r#"{"alg":"none"}"#)),
                K::DisallowedAlgorithm,
            ),
            (
                format!("{}.{ok_payload}.AA", b64(r#"{"alg":"ES256","alg":"none"}"#)),
                K::DuplicateMember,
            ),
            (
                format!("{ok_header}.{}.AA", b64(r#"{"a":{"b":1,"b":2}}"#)),
                K::DuplicateMember,
            ),
            (
                format!(
                    "{}.{ok_payload}.AA",
                    b64(r#"{"alg":"ES256","crit":["b64"],"b64":false}"#)
                ),
                K::CriticalHeader,
            ),
        ] {
            assert_eq!(
                CompactJws::parse(&compact).unwrap_err().kind(),
                want,
                "{compact}"
            );
        }
    }
}
