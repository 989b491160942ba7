use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, Uri};
use serde::Serialize;

use super::error::{CreateDpopProofError, CreateDpopProofErrorKind};
use super::nonce_memory::NonceMemory;
use super::{ATH_LEN, PROOF_TYPE, ath};
use crate::proof::jws;
use crate::proof::key::ProofKey;
use crate::proof::thumbprint::JwkThumbprint;

/// Makes the DPoP proofs of one [`ProofKey`]: one fresh proof per request.
///
/// The proof's header (`typ`, `alg` and the public `jwk`) is the same for
/// every proof of the key, so it is encoded once, here. Each proof gets
/// a `jti` of 128 random bits, the request's method and URI (without query
/// and fragment), the time, the access token's hash when there is a token
/// (there is none on a token endpoint request) and the nonce last sent by
/// the request's origin, if any ([`nonces`](Self::nonces); the caller
/// [`remember`](NonceMemory::remember)s the `DPoP-Nonce` of each response).
///
/// Building a proof allocates one string, the proof itself. Cloning is cheap
/// and clones share the nonce memory.
///
/// ```
/// use http::{Method, Uri};
/// use tower_token_binding::proof::dpop::DpopProofs;
/// use tower_token_binding::proof::{Algorithm, ProofKey};
///
/// let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
/// let token_endpoint: Uri = "https://as.example/token".parse().unwrap();
///
/// // The authorization server asked for a nonce.
/// proofs.nonces().remember(&token_endpoint, "eyJ7S_zG.eyJH0-Z.HX4w-7v");
///
/// // A token request: no access token, so no `ath`; the nonce is sent.
/// let proof = proofs.proof(&Method::POST, &token_endpoint, None).unwrap();
/// assert_eq!(proof.split('.').count(), 3);
/// ```
#[derive(Clone)]
pub struct DpopProofs {
    inner: Arc<Inner>,
}

struct Inner {
    key: ProofKey,
    header_b64: Box<str>,
    nonces: NonceMemory,
}

/// The claims of a proof, serialized straight into the JWS being built.
#[derive(Serialize)]
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: Htu<'a>,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

/// `scheme://host[:port]/path`: the request URI without userinfo, query and
/// fragment.
struct Htu<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
    path: &'a str,
}

impl<'a> Htu<'a> {
    fn of(uri: &'a Uri) -> Option<Self> {
        let path = match uri.path() {
            "" => "/",
            path => path,
        };
        Some(Self {
            scheme: uri.scheme_str()?,
            host: uri.host()?,
            port: uri.port_u16(),
            path,
        })
    }

    fn len(&self) -> usize {
        self.scheme.len() + 3 + self.host.len() + 6 + self.path.len()
    }
}

impl fmt::Display for Htu<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        f.write_str(self.path)
    }
}

impl Serialize for Htu<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl DpopProofs {
    /// Proofs signed by `key`, with a fresh [`NonceMemory`].
    pub fn new(key: ProofKey) -> Self {
        // `jwk` is canonical JSON and `alg` a registered name: nothing to
        // escape.
        let header = format!(
            r#"{{"typ":"{PROOF_TYPE}","alg":"{}","jwk":{}}}"#,
            key.algorithm(),
            key.public_jwk().as_json()
        );
        Self {
            inner: Arc::new(Inner {
                header_b64: jws::encode_segment(header.as_bytes()).into_boxed_str(),
                key,
                nonces: NonceMemory::new(),
            }),
        }
    }

    /// The key proofs are signed with.
    pub fn key(&self) -> &ProofKey {
        &self.inner.key
    }

    /// The key's RFC 7638 thumbprint: the `jkt` its tokens are bound to, and
    /// the `dpop_jkt` of an authorization request.
    pub fn thumbprint(&self) -> JwkThumbprint {
        self.inner.key.thumbprint()
    }

    /// The last `DPoP-Nonce` of each origin, used by [`proof`](Self::proof).
    pub fn nonces(&self) -> &NonceMemory {
        &self.inner.nonces
    }

    /// A proof for a request with `method` to `uri` (absolute), now, with
    /// the nonce remembered for the URI's origin, if any.
    ///
    /// `access_token` is the token the request carries (its hash goes into
    /// `ath`); `None` for a request to the token endpoint.
    pub fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<String, CreateDpopProofError> {
        let nonce = self.inner.nonces.get(uri);
        self.proof_at(
            method,
            uri,
            access_token,
            nonce.as_deref(),
            crate::clock::wall(),
        )
    }

    /// A proof as [`proof`](Self::proof) makes, with the nonce (or none)
    /// and the time given.
    pub fn proof_at(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> Result<String, CreateDpopProofError> {
        let htu = Htu::of(uri).ok_or(CreateDpopProofError::new(
            CreateDpopProofErrorKind::RelativeUri,
        ))?;
        let mut random = [0u8; 16];
        aws_lc_rs::rand::fill(&mut random)
            .map_err(|_| CreateDpopProofError::new(CreateDpopProofErrorKind::Random))?;
        let mut jti = [0u8; 22];
        let jti = encode_jti(&random, &mut jti);
        let mut ath_buf = [0u8; ATH_LEN];
        let claims = Claims {
            jti,
            htm: method.as_str(),
            iat: now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            ath: access_token.map(|token| ath(token, &mut ath_buf)),
            nonce,
            htu,
        };
        // Member names, quotes and punctuation: 70 bytes; `iat`: 10 digits
        // for centuries yet.
        let hint = 80
            + jti.len()
            + claims.htm.len()
            + claims.htu.len()
            + claims.ath.map_or(0, |_| 10 + ATH_LEN)
            + claims.nonce.map_or(0, |nonce| 12 + nonce.len());
        jws::sign_streamed(&self.inner.key, &self.inner.header_b64, hint, |out| {
            serde_json::to_writer(out, &claims).map_err(std::io::Error::other)
        })
        .map_err(CreateDpopProofError::signing)
    }
}

fn encode_jti<'b>(random: &[u8; 16], buf: &'b mut [u8; 22]) -> &'b str {
    match URL_SAFE_NO_PAD.encode_slice(random, buf) {
        // base64url is ASCII.
        Ok(22) => std::str::from_utf8(buf).unwrap_or_default(),
        _ => "",
    }
}

impl fmt::Debug for DpopProofs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopProofs")
            .field("key", &self.inner.key)
            .field("nonces", &self.inner.nonces)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::proof::Algorithm;
    use crate::proof::jws::CompactJws;

    fn claims(proof: &str) -> serde_json::Map<String, Value> {
        CompactJws::parse(proof).unwrap().into_claims()
    }

    #[test]
    fn header_and_claims() {
        let key = ProofKey::generate(Algorithm::Es256).unwrap();
        let proofs = DpopProofs::new(key.clone());
        let uri: Uri = "https://User@API.example:8443/a/b%20c?q=1#frag"
            .parse()
            .unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let proof = proofs
            .proof_at(&Method::PATCH, &uri, Some("tok"), Some("n\"1"), now)
            .unwrap();
        let parsed = CompactJws::parse(&proof).unwrap();
        let jwk: Value = serde_json::from_str(key.public_jwk().as_json()).unwrap();
        assert_eq!(
            Value::Object(parsed.header().clone()),
            json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk })
        );
        parsed
            .verify(key.public_jwk(), &[Algorithm::Es256])
            .unwrap();
        let claims = parsed.into_claims();
        assert_eq!(claims["htm"], "PATCH");
        assert_eq!(claims["htu"], "https://API.example:8443/a/b%20c");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["ath"], super::super::access_token_hash("tok"));
        assert_eq!(claims["nonce"], "n\"1");
        assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
        assert_eq!(claims.len(), 6);
    }

    #[test]
    fn token_endpoint_proofs_have_no_ath_nor_nonce_unless_asked() {
        let proofs = DpopProofs::new(ProofKey::generate(Algorithm::EdDsa).unwrap());
        let uri: Uri = "https://as.example".parse().unwrap();
        let claims = claims(&proofs.proof(&Method::POST, &uri, None).unwrap());
        assert_eq!(claims["htu"], "https://as.example/");
        assert!(!claims.contains_key("ath") && !claims.contains_key("nonce"));

        proofs.nonces().remember(&uri, "server-nonce");
        let claims = super::tests::claims(&proofs.proof(&Method::POST, &uri, None).unwrap());
        assert_eq!(claims["nonce"], "server-nonce");
        // Another origin has no nonce.
        let other: Uri = "https://as.example:444/".parse().unwrap();
        let claims = super::tests::claims(&proofs.proof(&Method::POST, &other, None).unwrap());
        assert!(!claims.contains_key("nonce"));
    }

    #[test]
    fn the_proof_string_is_sized_once() {
        // A string that had to grow would have doubled its capacity.
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Ps256] {
            let proofs = DpopProofs::new(ProofKey::generate(alg).unwrap());
            let uri: Uri = "https://api.example.com/v1/orders/12345?x=1"
                .parse()
                .unwrap();
            let token = "t".repeat(900);
            for (token, nonce) in [(None, None), (Some(token.as_str()), Some("n".repeat(200)))] {
                let proof = proofs
                    .proof_at(
                        &Method::GET,
                        &uri,
                        token,
                        nonce.as_deref(),
                        SystemTime::now(),
                    )
                    .unwrap();
                assert!(
                    proof.capacity() >= proof.len() && proof.capacity() <= proof.len() + 128,
                    "{alg}: {} bytes in {}",
                    proof.len(),
                    proof.capacity()
                );
            }
        }
    }

    #[test]
    fn every_jti_is_new() {
        let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
        let uri: Uri = "https://api.example/".parse().unwrap();
        let jtis: HashSet<String> = (0..200)
            .map(|_| {
                let proof = proofs.proof(&Method::GET, &uri, Some("t")).unwrap();
                claims(&proof)["jti"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(jtis.len(), 200);
    }

    #[test]
    fn a_relative_uri_is_refused() {
        let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
        let err = proofs
            .proof(&Method::GET, &"/relative".parse().unwrap(), None)
            .unwrap_err();
        assert_eq!(err.kind(), CreateDpopProofErrorKind::RelativeUri);
        assert!(format!("{proofs:?}").starts_with("DpopProofs { key: ProofKey"));
    }
}
