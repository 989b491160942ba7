//! The [`TestIssuer`](super::TestIssuer)'s ES256 signing keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::{Value, json};

use super::Error;

/// The key new tokens are signed with, and those used before (still
/// published).
pub(super) struct Keys {
    pub(super) current: SigningKey,
    pub(super) retired: Vec<SigningKey>,
}

pub(super) struct SigningKey {
    pub(super) kid: String,
    pub(super) encoding: EncodingKey,
    pub(super) jwk: Value,
}

impl SigningKey {
    pub(super) fn generate(serial: usize) -> Result<Self, Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::new("cannot generate a signing key", e))?;
        // An uncompressed P-256 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = key.public_key_raw();
        if point.len() != 65 {
            return Err(Error::new(
                "unexpected public key encoding",
                format!("{} bytes", point.len()),
            ));
        }
        let kid = format!("test-key-{serial}");
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            "kid": kid,
            "use": "sig",
            "alg": "ES256",
        });
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ec_der(&key.serialize_der()),
            jwk,
        })
    }

    pub(super) fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(self.kid.clone());
        header
    }

    pub(super) fn sign(&self, header: &Header, claims: &Value) -> Result<String, Error> {
        jsonwebtoken::encode(header, claims, &self.encoding)
            .map_err(|e| Error::new("cannot sign the token", e))
    }
}
