//! The [`TestIssuer`](super::TestIssuer)'s ES256 signing keys.

use serde_json::{Map, Value};

use super::Error;
use crate::proof::jws;
use crate::proof::{Algorithm, ProofKey};

/// The key new tokens are signed with, and those used before (still
/// published).
pub(super) struct Keys {
    pub(super) current: SigningKey,
    pub(super) retired: Vec<SigningKey>,
}

pub(super) struct SigningKey {
    pub(super) kid: String,
    key: ProofKey,
    /// The public key as published in the JWKS, with `kid`, `use`, `alg`.
    pub(super) jwk: Value,
}

impl SigningKey {
    pub(super) fn generate(serial: usize) -> Result<Self, Error> {
        let key = ProofKey::generate(Algorithm::Es256)
            .map_err(|e| Error::new("cannot generate a signing key", e))?;
        let kid = format!("test-key-{serial}");
        let mut jwk: Map<String, Value> = serde_json::from_str(key.public_jwk().as_json())
            .map_err(|e| Error::new("cannot read the public key", e))?;
        jwk.insert("kid".into(), kid.clone().into());
        jwk.insert("use".into(), "sig".into());
        jwk.insert("alg".into(), "ES256".into());
        Ok(Self {
            kid,
            key,
            jwk: Value::Object(jwk),
        })
    }

    /// Signs `claims` (ES256) under a header with `typ` and `kid` when
    /// given.
    pub(super) fn sign(
        &self,
        typ: Option<&str>,
        kid: Option<&str>,
        claims: &Value,
    ) -> Result<String, Error> {
        let mut header = Map::new();
        header.insert("alg".into(), "ES256".into());
        if let Some(typ) = typ {
            header.insert("typ".into(), typ.into());
        }
        if let Some(kid) = kid {
            header.insert("kid".into(), kid.into());
        }
        let header =
            serde_json::to_vec(&header).map_err(|e| Error::new("cannot sign the token", e))?;
        let payload =
            serde_json::to_vec(claims).map_err(|e| Error::new("cannot sign the token", e))?;
        self.sign_raw(&header, &payload)
    }

    /// Signs `header` and `payload`, JSON texts, exactly as given.
    pub(super) fn sign_raw(&self, header: &[u8], payload: &[u8]) -> Result<String, Error> {
        jws::sign(&self.key, &jws::encode_segment(header), payload)
            .map_err(|e| Error::new("cannot sign the token", e))
    }

    /// Signs `claims` as an `at+jwt` with this key's `kid`.
    pub(super) fn sign_access_token(&self, claims: &Value) -> Result<String, Error> {
        self.sign(Some("at+jwt"), Some(&self.kid), claims)
    }
}
