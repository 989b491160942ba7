//! [`ProofKey`]: the private key a client proves possession of.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

use super::alg::{Algorithm, Curve, Family};
use super::jwk::PublicJwk;
use super::thumbprint::JwkThumbprint;

/// A private signing key for proofs of possession: DPoP proofs now,
/// Microsoft's signed HTTP requests later.
///
/// ES256 (P-256) is the default; ES384 and ES512, EdDSA (Ed25519), and RSA
/// with PS256 (what SHR defaults to) or RS256 (and their SHA-384/512 kin)
/// are supported. A key is generated in memory or loaded from PEM; it is
/// parsed once, and its public [`PublicJwk`] and RFC 7638
/// [`thumbprint`](Self::thumbprint) are computed once. Signing uses
/// aws-lc-rs directly, the crate's one crypto provider.
///
/// Cloning is cheap (a reference count). `Debug` shows the algorithm and the
/// thumbprint, never key material; the key cannot be exported.
///
/// ```
/// use tower_token_binding::proof::{Algorithm, ProofKey};
///
/// let key = ProofKey::generate(Algorithm::Es256).unwrap();
/// assert_eq!(key.algorithm(), Algorithm::Es256);
/// assert_eq!(key.public_jwk().key_type(), "EC");
/// assert_eq!(key.thumbprint().to_string().len(), 43);
///
/// // `Debug` shows no private material.
/// let shown = format!("{key:?}");
/// assert!(shown.starts_with("ProofKey { alg: Es256, jkt: "), "{shown}");
///
/// let signature = key.sign(b"message").unwrap();
/// assert_eq!(signature.as_ref().len(), 64); // JOSE's fixed r || s
/// ```
#[derive(Clone)]
pub struct ProofKey {
    inner: Arc<Inner>,
    alg: Algorithm,
}

struct Inner {
    pair: Pair,
    jwk: PublicJwk,
}

enum Pair {
    /// With its algorithm (which says the curve).
    Ecdsa(EcdsaKeyPair, Algorithm),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A signature made by a [`ProofKey`]: ECDSA in the fixed `r || s` form of
/// JOSE, Ed25519's 64 bytes, or RSA's modulus-long signature.
pub struct ProofSignature(Buffer);

enum Buffer {
    /// ECDSA (up to 132 bytes for P-521) and Ed25519.
    Inline([u8; 132], usize),
    /// RSA.
    Heap(Box<[u8]>),
}

impl AsRef<[u8]> for ProofSignature {
    fn as_ref(&self) -> &[u8] {
        match &self.0 {
            Buffer::Inline(bytes, len) => &bytes[..*len],
            Buffer::Heap(bytes) => bytes,
        }
    }
}

impl fmt::Debug for ProofSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProofSignature({} bytes)", self.as_ref().len())
    }
}

fn inline(signature: &[u8]) -> Result<ProofSignature, KeyError> {
    let mut bytes = [0u8; 132];
    let target = bytes
        .get_mut(..signature.len())
        .ok_or_else(|| KeyError::new(KeyErrorKind::Crypto))?;
    target.copy_from_slice(signature);
    Ok(ProofSignature(Buffer::Inline(bytes, signature.len())))
}

impl ProofKey {
    /// Generates a new key for `alg` in memory: a key on the algorithm's
    /// curve, or a 2048-bit RSA key for the RSA algorithms.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        match alg.family() {
            Family::Rsa => Self::generate_rsa(alg, 2048),
            Family::Curve(Curve::Ed25519) => {
                let pair = Ed25519KeyPair::generate().map_err(crypto)?;
                Self::new(Pair::Ed25519(pair), alg)
            }
            Family::Curve(_) => {
                let signing = alg
                    .ecdsa_signing()
                    .ok_or_else(|| KeyError::new(KeyErrorKind::Unsupported))?;
                let pair = EcdsaKeyPair::generate(signing).map_err(crypto)?;
                Self::new(Pair::Ecdsa(pair, alg), alg)
            }
        }
    }

    /// Generates a new RSA key of `bits` (2048, 3072, 4096 or 8192) for an
    /// RSA algorithm (`PS256`, `RS256`...).
    pub fn generate_rsa(alg: Algorithm, bits: usize) -> Result<Self, KeyError> {
        if alg.family() != Family::Rsa {
            return Err(KeyError::new(KeyErrorKind::IncompatibleAlgorithm));
        }
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            8192 => KeySize::Rsa8192,
            _ => return Err(KeyError::new(KeyErrorKind::Unsupported)),
        };
        let pair = RsaKeyPair::generate(size).map_err(crypto)?;
        Self::new(Pair::Rsa(pair), alg)
    }

    /// Loads the first private key of a PEM document: PKCS#8 `PRIVATE KEY`
    /// (P-256, P-384, P-521, Ed25519 or RSA), SEC1 `EC PRIVATE KEY`, or
    /// PKCS#1 `RSA PRIVATE KEY`. Other sections (certificates...) are
    /// skipped.
    ///
    /// The algorithm follows from the key: ES256, ES384 or ES512 by curve,
    /// EdDSA for Ed25519, PS256 for RSA (choose another with
    /// [`with_algorithm`](Self::with_algorithm)). RSA keys under 2048 bits
    /// are refused.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_ref())
            .map_err(|e| KeyError::new(KeyErrorKind::Malformed).with_source(e))?;
        Self::from_der(&der)
    }

    /// Loads a key from a PEM file; see [`from_pem`](Self::from_pem).
    ///
    /// The file is read synchronously: load keys at start-up, or in
    /// `spawn_blocking`.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|e| {
            KeyError::new(KeyErrorKind::Io)
                .with_detail(format!("cannot read {}", path.display()))
                .with_source(e)
        })?;
        Self::from_pem(pem)
    }

    /// Loads a key from DER; see [`from_pem`](Self::from_pem) for the
    /// formats and the algorithm chosen.
    pub fn from_der(der: &PrivateKeyDer<'_>) -> Result<Self, KeyError> {
        let malformed = || KeyError::new(KeyErrorKind::Malformed);
        let pair = match der {
            PrivateKeyDer::Pkcs8(pkcs8) => {
                let bytes = pkcs8.secret_pkcs8_der();
                ec_pair(bytes, EcdsaKeyPair::from_pkcs8)
                    .or_else(|| {
                        Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes)
                            .ok()
                            .map(Pair::Ed25519)
                    })
                    .map_or_else(|| RsaKeyPair::from_pkcs8(bytes).map(Pair::Rsa), Ok)
                    .map_err(rejected)?
            }
            PrivateKeyDer::Sec1(sec1) => {
                ec_pair(sec1.secret_sec1_der(), EcdsaKeyPair::from_private_key_der)
                    .ok_or_else(malformed)?
            }
            PrivateKeyDer::Pkcs1(pkcs1) => RsaKeyPair::from_der(pkcs1.secret_pkcs1_der())
                .map(Pair::Rsa)
                .map_err(rejected)?,
            _ => return Err(KeyError::new(KeyErrorKind::Unsupported)),
        };
        let alg = match &pair {
            Pair::Ecdsa(_, alg) => *alg,
            Pair::Ed25519(_) => Algorithm::EdDsa,
            Pair::Rsa(_) => Algorithm::Ps256,
        };
        Self::new(pair, alg)
    }

    /// This key, signing with `alg` instead: for an RSA key, another RSA
    /// algorithm (`RS256` instead of `PS256`, say). An EC or Ed25519 key has
    /// exactly one algorithm, and any other is refused.
    pub fn with_algorithm(self, alg: Algorithm) -> Result<Self, KeyError> {
        if !self.inner.jwk.supports(alg) {
            return Err(KeyError::new(KeyErrorKind::IncompatibleAlgorithm));
        }
        Ok(Self { alg, ..self })
    }

    fn new(pair: Pair, alg: Algorithm) -> Result<Self, KeyError> {
        let jwk = match &pair {
            Pair::Ecdsa(ec, alg) => {
                let curve = match alg {
                    Algorithm::Es384 => Curve::P384,
                    Algorithm::Es512 => Curve::P521,
                    _ => Curve::P256,
                };
                PublicJwk::from_ec_point(curve, ec.public_key().as_ref())
            }
            Pair::Ed25519(ed) => PublicJwk::from_ed25519(ed.public_key().as_ref()),
            Pair::Rsa(rsa) => {
                let public = rsa.public_key();
                PublicJwk::from_rsa(
                    public.modulus().big_endian_without_leading_zero(),
                    public.exponent().big_endian_without_leading_zero(),
                )
            }
        }
        .map_err(|e| KeyError::new(KeyErrorKind::Unsupported).with_source(e))?;
        if !jwk.supports(alg) {
            return Err(KeyError::new(KeyErrorKind::IncompatibleAlgorithm));
        }
        Ok(Self {
            inner: Arc::new(Inner { pair, jwk }),
            alg,
        })
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The public key as a JWK.
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.inner.jwk
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key (DPoP's `jkt`),
    /// computed when the key was made.
    pub fn thumbprint(&self) -> JwkThumbprint {
        self.inner.jwk.thumbprint()
    }

    /// Signs `message` with [`algorithm`](Self::algorithm).
    pub fn sign(&self, message: &[u8]) -> Result<ProofSignature, KeyError> {
        match &self.inner.pair {
            Pair::Ecdsa(pair, _) => {
                let signature = pair.sign(&SystemRandom::new(), message).map_err(crypto)?;
                inline(signature.as_ref())
            }
            Pair::Ed25519(pair) => inline(pair.try_sign(message).map_err(crypto)?.as_ref()),
            Pair::Rsa(pair) => {
                let encoding = self
                    .alg
                    .rsa_encoding()
                    .ok_or_else(|| KeyError::new(KeyErrorKind::IncompatibleAlgorithm))?;
                let mut signature = vec![0u8; pair.public_modulus_len()].into_boxed_slice();
                pair.sign(encoding, &SystemRandom::new(), message, &mut signature)
                    .map_err(crypto)?;
                Ok(ProofSignature(Buffer::Heap(signature)))
            }
        }
    }

    /// The length of a signature, in bytes.
    pub(crate) fn signature_len(&self) -> usize {
        match &self.inner.pair {
            Pair::Ecdsa(_, alg) => match alg {
                Algorithm::Es384 => 96,
                Algorithm::Es512 => 132,
                _ => 64,
            },
            Pair::Ed25519(_) => 64,
            Pair::Rsa(pair) => pair.public_modulus_len(),
        }
    }
}

/// The key pair of an EC private key on whichever supported curve it is.
fn ec_pair<E>(
    der: &[u8],
    parse: impl Fn(
        &'static aws_lc_rs::signature::EcdsaSigningAlgorithm,
        &[u8],
    ) -> Result<EcdsaKeyPair, E>,
) -> Option<Pair> {
    [Algorithm::Es256, Algorithm::Es384, Algorithm::Es512]
        .into_iter()
        .find_map(|alg| {
            let pair = parse(alg.ecdsa_signing()?, der).ok()?;
            Some(Pair::Ecdsa(pair, alg))
        })
}

/// The error for a key the last parser tried refused: an RSA key under 2048
/// bits is unsupported, anything else unreadable.
fn rejected(e: KeyRejected) -> KeyError {
    let kind = if e.description_() == "TooSmall" {
        KeyErrorKind::Unsupported
    } else {
        KeyErrorKind::Malformed
    };
    KeyError::new(kind).with_source(e)
}

fn crypto(e: impl std::error::Error + Send + Sync + 'static) -> KeyError {
    KeyError::new(KeyErrorKind::Crypto).with_source(e)
}

impl fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProofKey")
            .field("alg", &self.alg)
            .field("jkt", &format_args!("{}", self.thumbprint()))
            .finish()
    }
}

/// Why a [`ProofKey`] could not be made, or could not sign.
#[derive(Debug)]
pub struct KeyError {
    kind: KeyErrorKind,
    detail: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What went wrong with a [`ProofKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyErrorKind {
    /// The key file could not be read.
    Io,
    /// No private key of a supported type could be read from the PEM or
    /// DER given: not a key, a damaged one, or one of a type or curve this
    /// crate does not sign with (secp256k1, Ed448...).
    Malformed,
    /// A key that was read but is not supported: RSA under 2048 bits.
    Unsupported,
    /// The algorithm cannot be used with this key.
    IncompatibleAlgorithm,
    /// The crypto library failed to generate a key or to sign.
    Crypto,
}

impl KeyError {
    fn new(kind: KeyErrorKind) -> Self {
        Self {
            kind,
            detail: None,
            source: None,
        }
    }

    /// The payload of a JWS could not be written.
    pub(crate) fn payload(e: std::io::Error) -> Self {
        Self::new(KeyErrorKind::Crypto)
            .with_detail("the payload could not be serialized".to_owned())
            .with_source(e)
    }

    fn with_detail(mut self, detail: String) -> Self {
        self.detail = Some(detail);
        self
    }

    fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> KeyErrorKind {
        self.kind
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            KeyErrorKind::Io => "the proof key could not be read",
            KeyErrorKind::Malformed => "no private key could be read",
            KeyErrorKind::Unsupported => "the key type, curve or size is not supported",
            KeyErrorKind::IncompatibleAlgorithm => "the algorithm does not fit the key",
            KeyErrorKind::Crypto => "the crypto library failed",
        })?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING};
    use base64::Engine as _;

    /// A PEM document of `label` around `der`.
    pub(crate) fn pem(label: &str, der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in body.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    #[test]
    fn generated_keys_sign_and_verify() {
        for alg in super::super::alg::ALL {
            let key = ProofKey::generate(alg).unwrap();
            assert_eq!(key.algorithm(), alg);
            let signature = key.sign(b"hello").unwrap();
            assert_eq!(signature.as_ref().len(), key.signature_len(), "{alg}");
            let jwk = key.public_jwk();
            assert_eq!(
                jwk.verify(alg, b"hello", signature.as_ref()),
                Ok(()),
                "{alg}"
            );
            assert!(
                jwk.verify(alg, b"hellO", signature.as_ref()).is_err(),
                "{alg}"
            );
            // The JWK of our own key reads back as the same key.
            let again = PublicJwk::parse(jwk.as_json()).unwrap();
            assert_eq!(again.thumbprint(), key.thumbprint());
            assert_eq!(again.verify(alg, b"hello", signature.as_ref()), Ok(()));
        }
    }

    #[test]
    fn pem_formats() {
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = ec.to_pkcs8v1().unwrap();
        let key = ProofKey::from_pem(pem("PRIVATE KEY", pkcs8.as_ref())).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Es256);
        let expected = PublicJwk::from_ec_point(Curve::P256, ec.public_key().as_ref()).unwrap();
        assert_eq!(key.thumbprint(), expected.thumbprint());

        let sec1 = ec.private_key().as_der().unwrap();
        let key = ProofKey::from_pem(pem("EC PRIVATE KEY", sec1.as_ref())).unwrap();
        assert_eq!(key.thumbprint(), expected.thumbprint());

        let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let sec1 = p384.private_key().as_der().unwrap();
        let key = ProofKey::from_pem(pem("EC PRIVATE KEY", sec1.as_ref())).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Es384);

        let ed = Ed25519KeyPair::generate().unwrap().to_pkcs8().unwrap();
        let key = ProofKey::from_pem(pem("PRIVATE KEY", ed.as_ref())).unwrap();
        assert_eq!(key.algorithm(), Algorithm::EdDsa);

        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = rsa.as_der().unwrap();
        let key = ProofKey::from_pem(pem("PRIVATE KEY", pkcs8.as_ref())).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Ps256);
        assert_eq!(key.signature_len(), 256);
        let key = key.with_algorithm(Algorithm::Rs256).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Rs256);
        let signature = key.sign(b"m").unwrap();
        assert_eq!(
            key.public_jwk()
                .verify(Algorithm::Rs256, b"m", signature.as_ref()),
            Ok(())
        );
        assert!(
            key.public_jwk()
                .verify(Algorithm::Ps256, b"m", signature.as_ref())
                .is_err()
        );
        assert_eq!(
            key.with_algorithm(Algorithm::Es256).unwrap_err().kind(),
            KeyErrorKind::IncompatibleAlgorithm
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        for input in [
            &b""[..],
            b"garbage",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let err = ProofKey::from_pem(input).unwrap_err();
            assert_eq!(err.kind(), KeyErrorKind::Malformed, "{input:?}");
        }
        let err = ProofKey::from_pem_file("/nonexistent/dpop.key").unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::Io);
        assert!(err.to_string().contains("/nonexistent/dpop.key"));
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(
            ProofKey::generate_rsa(Algorithm::Ps256, 1024)
                .unwrap_err()
                .kind(),
            KeyErrorKind::Unsupported
        );
        assert_eq!(
            ProofKey::generate_rsa(Algorithm::Es256, 2048)
                .unwrap_err()
                .kind(),
            KeyErrorKind::IncompatibleAlgorithm
        );
    }

    /// Keys made with `openssl genpkey` (RSA 1024 bits, Ed448) and `openssl
    /// ecparam -name secp256k1 -genkey`, for these tests only.
    const RSA_1024: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAM3Jmf7h1yXsoKH7\n\
5PuEgkBb4gXVWT8Hj/9cYrjSd6z5QvgDyfsbDGaeBw7Av1lJHv0Os8TDHAW7F/G0\n\
6Um9FjvOsE5OS8UUqDLAsxfu2hB9JJzVTz1Phk0nM1h+oacpBu7UN5Xm2sXbudi1\n\
yFdsjffof3lFdhZvMWX7nmX63pvrAgMBAAECgYEAv9rww3xyRV0y9VIOzZ9gf/gp\n\
5R5fMjAuw/ix4XX3NUC+etOtf3pcOV+jXNG+k9NkHLGUUCFHAuDHFgWAacrr6fJr\n\
WkSv2qgenuLQdt/JO6yuWAumlWuOtZg5HJG7PY+bRFabM9PEd1NgX2AckXMbPOQk\n\
KKMXJg0QNlrSKlzwyiECQQDoL8aCq3fCp6OMXsDMKJFcjIrfIyxRpIqdmFNTtf1E\n\
RulVnnAFMxHV+B8ZOzy84C6mnvIa0hwQYWqra6mHH0JfAkEA4uSy1VrA04fDAHHu\n\
L+Hu/QWoKvhTWZsHxm5NgZFIedadBnf814xFmGtrV9IyXmBGHhdg10e2cY6FmWav\n\
c1lJ9QJAWGshIE+lypXGPUU0DEsCmAjZNYISdYDAXKVOThmGugJ7BuTP6dr51s6n\n\
IRei2JZSjZcHwVjz4PUIBwF3zIIF5wJAR1mFx0QXuS1LLBunvFT/M4AQ5xpaE6aF\n\
5mePZfxK302W6Y7X6uyIgirdgatu/XCm/BV79Zbuj30zFA9PgyWD9QJAQo8sOsN9\n\
7CUgV0y4nkpgAq7I2zStGAP6wO/UDgZRsJNPMNKrWKM7IozkImgYsMmwX/n6ErEO\n\
ZZslYB+bCb6AJQ==\n\
-----END PRIVATE KEY-----\n\
";
    const SECP256K1: &str = "\
-----BEGIN EC PRIVATE KEY-----\n\
MHQCAQEEIHBJISMf5qVQo4zenm/hNuDWCyUa5OP5rO5yrGBFtWxwoAcGBSuBBAAK\n\
oUQDQgAESSWlJFtjWZsB4e406ZFHvk2X8u+YjwOhKf8jq+mP5MxOt/CWrKk60r5n\n\
00GrFQYNNJNOxvarXONKIZdFn/HtAQ==\n\
-----END EC PRIVATE KEY-----\n\
";
    const ED448: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MEcCAQAwBQYDK2VxBDsEOf1qOc3hoD5IEqdpnczK0sOStfNGQTz0tKpJpJNUkGn2\n\
PJhdLm4K0hoKda73qT6zYo0DTd9LU7Ev4A==\n\
-----END PRIVATE KEY-----\n\
";

    #[test]
    fn unsupported_keys_are_refused() {
        assert_eq!(
            ProofKey::from_pem(RSA_1024).unwrap_err().kind(),
            KeyErrorKind::Unsupported
        );
        assert_eq!(
            ProofKey::from_pem(SECP256K1).unwrap_err().kind(),
            KeyErrorKind::Malformed
        );
        assert_eq!(
            ProofKey::from_pem(ED448).unwrap_err().kind(),
            KeyErrorKind::Malformed
        );
    }

    #[test]
    fn pkcs1_rsa_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpop.key");
        std::fs::write(&path, RSA_2048_PKCS1).unwrap();
        let key = ProofKey::from_pem_file(&path).unwrap();
        assert_eq!(key.algorithm(), Algorithm::Ps256);
        assert_eq!(key.public_jwk().key_type(), "RSA");
    }

    /// `openssl genrsa 2048` (PKCS#1), for these tests only.
    const RSA_2048_PKCS1: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEpAIBAAKCAQEA2NqUVOkOJF7y7b1OmKaoNGyRDjI5D9RMyWdFIfoZ1NSwfUSD\n\
0d2EDXODKL3RerJicRl97c6xDYTvyIjJGRwbiugkC7Jy8I5iTey+/QPyuX2F4qPX\n\
TgX+dCzkeHwFfr8x0Ics3mVrD2ejyZ/KJOo42/+GCpfQdtMiWn5GAocWhihjDo3p\n\
1cUZOgUzz2djYWL45i5VABwuR+Hz50FnFB0aQrxys3PeqeIJ6gFFddT6ggWW5UwZ\n\
tc5AKbtdK0VQ7cezAJvLAiaxOi/kRSrtKWalqA+MadFc6XKw/m0Tj0nSvOfQf5Cg\n\
/rudUxTJRXEnsN6F6DUVPopOY29PSeELnfdl1QIDAQABAoIBAGIdz/R1OFlbfpXz\n\
y/6ElWGW57DhJ3FSkOWlrKF5bDugejRLjksj6448gBEshX36/VCIBLLXDMP9rJJy\n\
1W5fidS5QSnrtVbDTZZNcoK/SREFStEnaZDbZGyDLWKYVtIoxuy/ZJ1BjQW80l41\n\
RryaH1znCep8Ey3YTNhd/uZA4f+Tq5UjOP7MMJBGOE8W9zQvZSkSjpSt7W+OncTi\n\
rwUGhxXtTPTGeZbxqvqpQwsxrrYgR3W1fug0+UAVFSRzO/qx+ILiHLG7+IFn8MQ6\n\
a3P/68bo6zwFn4d90SD4vLaPE1OSN69nS1QyodL6ft5ZxzirEqf/mg1Vn8eZH/ln\n\
QrkrvEcCgYEA/rzpEcDGHpBN7H3Zdg+E5W0xeFqIkMYe34bH/NxMLlKz+AU7AVdq\n\
cQETFH5lypJmBEAXiMw0h2OHMwSLVQHcVIvwsjC/62cfUEmb7ClWQ2LO5TAcplh8\n\
kM3K33x6Td4a88Li1/ItadqqBsnrU52b2KsWc/BAKAn0ixe9i6EGBisCgYEA2e2e\n\
qVUTSk9jH9pY5OwtyxYwtl+HrKMOWLWub/dNlyH8kPQzQiN8lW6fy2QzD6qQuzwt\n\
R02MtRd1NejbVLhotu+MxHIZ1+Ul0r3BWP8IjRFCywUNa5SWuNZ7LMERVPnB6J2O\n\
TC0xsvDNRHM4dcy3BWSkDbX6k0qrfghRF20OQ/8CgYBlyYBr2paPoeOxKrxZA2x7\n\
7DzHNY26I6A0evuwWyqJm/xTj2t7Zr2ed+py1uq/ne3rptyAifA3ZRqh1SADkKHE\n\
msJLwVT+sA8AGtmV7RKODI5VX/sisNrdVY3J7UhFkwk7+9R+q0NgN8KWwdopaCHc\n\
2sg2/Xn1Rb0UUyEnCOmKTwKBgQDNA0pweDVmgdp5e7qG2VyXIi//UU1cbiSv9XK9\n\
qEPY+sMURnb2MFYiaehvubqDcW0ohwr9egn1zrSYW5ACWl1AQ4kEwWZogQyc/aAn\n\
rfyIYQWZ4g3m9+j2x+cmihZY/4CY6aeVKCsJ8JjaXR5vS3+d1jizIVAyQlukfAR1\n\
akWyVwKBgQCO+0j7rz8Of6aB8PhQS8O+IAJ+7Ghgv3Hp84Ude5k7fGV8YzABT+SX\n\
m7NkYWLXeHvMOjJwLPxBiO4RF/WORh6SFBogjWT+Eo0PcsuYlKg6Gnq2bUl4j0wx\n\
jGAQEkDWXtw9lV2lEM/mNb2Yq1472IzpRIxaBrdMMHEzCYyOX/3EEg==\n\
-----END RSA PRIVATE KEY-----\n\
";

    #[test]
    fn debug_shows_no_key_material() {
        let key = ProofKey::generate(Algorithm::EdDsa).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(
            shown,
            format!("ProofKey {{ alg: EdDsa, jkt: {} }}", key.thumbprint())
        );
    }
}
