//! JWS algorithms (RFC 7518 section 3, RFC 8037): the asymmetric ones this
//! crate signs and verifies with. `none` and HMAC are not among them, so no
//! configuration can let them through.

use std::fmt;

use aws_lc_rs::signature::{self as sig, RsaEncoding, VerificationAlgorithm};

/// An asymmetric JWS algorithm (the `alg` header).
///
/// Only asymmetric algorithms exist here: there is no value for `none` nor
/// for HMAC (`HS256` and kin), so a JWS naming one is refused whatever the
/// configuration.
///
/// ```
/// use tower_token_binding::proof::Algorithm;
///
/// assert_eq!(Algorithm::from_name("ES256"), Some(Algorithm::Es256));
/// assert_eq!(Algorithm::Es256.to_string(), "ES256");
/// // Names are case-sensitive (RFC 7515 section 4.1.1), and never `none`.
/// assert_eq!(Algorithm::from_name("es256"), None);
/// assert_eq!(Algorithm::from_name("none"), None);
/// assert_eq!(Algorithm::from_name("HS256"), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// ECDSA with P-384 and SHA-384.
    Es384,
    /// ECDSA with P-521 and SHA-512.
    Es512,
    /// RSASSA-PSS with SHA-256 (MGF1 with SHA-256, salt of 32 bytes).
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// EdDSA with Ed25519 (RFC 8037).
    EdDsa,
}

/// Every algorithm, in the order they are listed (in `algs` challenges, for
/// example).
pub(crate) const ALL: [Algorithm; 10] = [
    Algorithm::Es256,
    Algorithm::Es384,
    Algorithm::Es512,
    Algorithm::Ps256,
    Algorithm::Ps384,
    Algorithm::Ps512,
    Algorithm::Rs256,
    Algorithm::Rs384,
    Algorithm::Rs512,
    Algorithm::EdDsa,
];

/// An elliptic curve of a JWK (`crv`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
    P521,
    Ed25519,
}

impl Curve {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
            Self::P521 => "P-521",
            Self::Ed25519 => "Ed25519",
        }
    }

    /// The length of a coordinate (EC) or of the public key (Ed25519).
    pub(crate) const fn coordinate_len(self) -> usize {
        match self {
            Self::P256 | Self::Ed25519 => 32,
            Self::P384 => 48,
            Self::P521 => 66,
        }
    }

    /// The one algorithm that signs with this curve.
    pub(crate) const fn algorithm(self) -> Algorithm {
        match self {
            Self::P256 => Algorithm::Es256,
            Self::P384 => Algorithm::Es384,
            Self::P521 => Algorithm::Es512,
            Self::Ed25519 => Algorithm::EdDsa,
        }
    }
}

/// The kind of key an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// An EC or OKP key on this curve.
    Curve(Curve),
    /// An RSA key.
    Rsa,
}

impl Algorithm {
    /// The registered name, as in the `alg` header: `"ES256"`, `"EdDSA"`...
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm with this registered name (case-sensitive), or `None`
    /// for any other name, including `none` and the HMAC algorithms.
    ///
    /// `Ed25519`, the fully-specified name of RFC 9864 that newer JOSE
    /// libraries (npm `dpop` 2, for one) write for Ed25519 signatures, is
    /// [`EdDsa`](Self::EdDsa) too: the same key type and signature.
    pub fn from_name(name: &str) -> Option<Self> {
        if name == "Ed25519" {
            return Some(Self::EdDsa);
        }
        ALL.into_iter().find(|alg| alg.as_str() == name)
    }

    pub(crate) const fn family(self) -> Family {
        match self {
            Self::Es256 => Family::Curve(Curve::P256),
            Self::Es384 => Family::Curve(Curve::P384),
            Self::Es512 => Family::Curve(Curve::P521),
            Self::EdDsa => Family::Curve(Curve::Ed25519),
            Self::Ps256 | Self::Ps384 | Self::Ps512 | Self::Rs256 | Self::Rs384 | Self::Rs512 => {
                Family::Rsa
            }
        }
    }

    /// How aws-lc-rs verifies this algorithm (fixed-size `r || s` for ECDSA,
    /// as JOSE encodes it; RSA moduli of 2048 to 8192 bits).
    pub(crate) fn verification(self) -> &'static dyn VerificationAlgorithm {
        if let Some(rsa) = self.rsa_parameters() {
            return rsa;
        }
        match self {
            Self::Es256 => &sig::ECDSA_P256_SHA256_FIXED,
            Self::Es384 => &sig::ECDSA_P384_SHA384_FIXED,
            Self::Es512 => &sig::ECDSA_P521_SHA512_FIXED,
            Self::EdDsa => &sig::ED25519,
            Self::Ps256 | Self::Ps384 | Self::Ps512 | Self::Rs256 | Self::Rs384 | Self::Rs512 => {
                unreachable!("an RSA algorithm has RSA parameters")
            }
        }
    }

    /// The RSA verification parameters, for RSA algorithms.
    pub(crate) fn rsa_parameters(self) -> Option<&'static sig::RsaParameters> {
        Some(match self {
            Self::Ps256 => &sig::RSA_PSS_2048_8192_SHA256,
            Self::Ps384 => &sig::RSA_PSS_2048_8192_SHA384,
            Self::Ps512 => &sig::RSA_PSS_2048_8192_SHA512,
            Self::Rs256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Self::Rs384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Self::Rs512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            _ => return None,
        })
    }

    /// The RSA signing padding, for RSA algorithms.
    pub(crate) fn rsa_encoding(self) -> Option<&'static dyn RsaEncoding> {
        Some(match self {
            Self::Ps256 => &sig::RSA_PSS_SHA256,
            Self::Ps384 => &sig::RSA_PSS_SHA384,
            Self::Ps512 => &sig::RSA_PSS_SHA512,
            Self::Rs256 => &sig::RSA_PKCS1_SHA256,
            Self::Rs384 => &sig::RSA_PKCS1_SHA384,
            Self::Rs512 => &sig::RSA_PKCS1_SHA512,
            _ => return None,
        })
    }

    /// The ECDSA signing algorithm, for ECDSA algorithms.
    pub(crate) fn ecdsa_signing(self) -> Option<&'static sig::EcdsaSigningAlgorithm> {
        Some(match self {
            Self::Es256 => &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            Self::Es384 => &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            Self::Es512 => &sig::ECDSA_P521_SHA512_FIXED_SIGNING,
            _ => return None,
        })
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of algorithms, as a bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AlgorithmSet(u16);

impl AlgorithmSet {
    pub(crate) fn contains(self, alg: Algorithm) -> bool {
        self.0 & alg.bit() != 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Algorithm> {
        ALL.into_iter().filter(move |alg| self.contains(*alg))
    }
}

impl FromIterator<Algorithm> for AlgorithmSet {
    fn from_iter<I: IntoIterator<Item = Algorithm>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |set, alg| set | alg.bit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in ALL {
            assert_eq!(Algorithm::from_name(alg.as_str()), Some(alg));
        }
        assert_eq!(Algorithm::from_name("Ed25519"), Some(Algorithm::EdDsa));
        for name in [
            "none", "None", "HS256", "HS384", "HS512", "es256", "ES256 ", "", "EdDSA\0", "Ed448",
            "ed25519",
        ] {
            assert_eq!(Algorithm::from_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn sets() {
        let set: AlgorithmSet = [Algorithm::EdDsa, Algorithm::Es256, Algorithm::Es256]
            .into_iter()
            .collect();
        assert!(set.contains(Algorithm::Es256) && set.contains(Algorithm::EdDsa));
        assert!(!set.contains(Algorithm::Rs256));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Algorithm::Es256, Algorithm::EdDsa]
        );
    }
}
