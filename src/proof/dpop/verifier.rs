use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, Uri};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::error::{DpopError, DpopErrorKind};
use super::stateless_nonces::StatelessNonces;
use super::{ATH_LEN, PROOF_TYPE, ath, htu};
use crate::proof::alg::{Algorithm, AlgorithmSet};
use crate::proof::jwk::PublicJwk;
use crate::proof::thumbprint::JwkThumbprint;
use crate::proof::verify::{self, ProofError, TimeWindow, verified_accessors};
use crate::proof::window::ReplayWindow;
use crate::replay::ReplayKey;

/// The algorithms a [`DpopVerifier`] allows by default.
const DEFAULT_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::Es256,
    Algorithm::Es384,
    Algorithm::Ps256,
    Algorithm::Rs256,
    Algorithm::EdDsa,
];

/// The longest `jti` accepted, in bytes.
const MAX_JTI_LEN: usize = 256;

/// Checks DPoP proofs (RFC 9449 section 4.3): a pure function of the proof,
/// the request and the time.
///
/// [`verify`](Self::verify) checks, in this order:
///
/// 1. the proof is at most [`max_size`](DpopVerifierBuilder::max_size)
///    bytes (4 KiB by default);
/// 2. it is a compact JWS whose header and claims are JSON objects naming no
///    member twice, with no `crit` header;
/// 3. `typ` is exactly `dpop+jwt`;
/// 4. `alg` is in the allow-list (default ES256, ES384, PS256, RS256,
///    EdDSA; `none` and HMAC cannot be allowed);
/// 5. `jwk` is a public key (no `d` or other private member) of a
///    supported type that fits `alg`;
/// 6. the signature verifies with that key;
/// 7. `jti` (a non-empty string of at most 256 bytes), `htm`, `htu` and
///    `iat` are present;
/// 8. `htm` is the request method, `htu` the request URI (query and
///    fragment ignored; scheme and host case, default ports, percent-encoding
///    and dot segments of `htu` normalised; the request's path must be in
///    normal form already, as a router matches it raw: `/x/../a`, `/./a`
///    or `/%61` is refused);
/// 9. `iat` is within the window (60 s back, 5 s ahead by default);
/// 10. with an access token, `ath` is its hash;
/// 11. with [`StatelessNonces`] configured, `nonce` is current
///     ([`DpopErrorKind::MissingNonce`] or [`DpopErrorKind::InvalidNonce`],
///     answered `use_dpop_nonce`).
///
/// Left to the caller, in this order: that the token's `cnf.jkt` names the
/// proof's key ([`VerifiedDpopProof::is_bound_to`]), then that the proof is
/// new ([`VerifiedDpopProof::replay_key`] through a
/// [`ReplayStore`](crate::replay::ReplayStore)): last, so that only proofs
/// that would be accepted reach the store.
///
/// ```
/// use std::time::Duration;
/// use tower_token_binding::proof::Algorithm;
/// use tower_token_binding::proof::dpop::{DpopVerifier, StatelessNonces};
///
/// let verifier = DpopVerifier::builder()
///     .algorithms([Algorithm::Es256, Algorithm::EdDsa])
///     .max_age(Duration::from_secs(30))
///     .leeway(Duration::from_secs(2))
///     .nonces(StatelessNonces::random().unwrap())
///     .build();
/// // For `WWW-Authenticate: DPoP algs="..."`.
/// assert_eq!(verifier.algs(), "ES256 EdDSA");
/// ```
#[derive(Clone, Debug)]
pub struct DpopVerifier {
    algorithms: Vec<Algorithm>,
    algs: String,
    window: TimeWindow,
    max_size: usize,
    nonces: Option<StatelessNonces>,
}

/// Builds a [`DpopVerifier`].
#[derive(Clone, Debug)]
pub struct DpopVerifierBuilder {
    algorithms: AlgorithmSet,
    max_age: Duration,
    max_ahead: Duration,
    max_size: usize,
    nonces: Option<StatelessNonces>,
}

impl DpopVerifierBuilder {
    /// The algorithms allowed (in place of the default ES256, ES384, PS256,
    /// RS256, EdDSA). An empty list refuses every proof.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// How old a proof's `iat` may be. Default: 60 s. The same setting
    /// as [`PopVerifierBuilder::max_age`](crate::proof::pop::PopVerifierBuilder::max_age).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How far in the future a proof's `iat` may be, for clock skew.
    /// Default: 5 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.max_ahead = leeway;
        self
    }

    /// The longest proof accepted, in bytes. Default: 4096.
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// [`max_age`](Self::max_age) `back` and [`leeway`](Self::leeway)
    /// `ahead`.
    #[deprecated(note = "use `max_age` and `leeway`, as `PopVerifierBuilder` names them")]
    pub fn iat_window(self, back: Duration, ahead: Duration) -> Self {
        self.max_age(back).leeway(ahead)
    }

    /// [`max_size`](Self::max_size).
    #[deprecated(note = "use `max_size`, as `PopVerifierBuilder` names it")]
    pub fn max_proof_size(self, bytes: usize) -> Self {
        self.max_size(bytes)
    }

    /// Requires a current server nonce in every proof. Off by default.
    pub fn nonces(mut self, nonces: StatelessNonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// The verifier.
    pub fn build(self) -> DpopVerifier {
        let algorithms: Vec<Algorithm> = self.algorithms.iter().collect();
        let algs = algorithms
            .iter()
            .map(|alg| alg.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        DpopVerifier {
            algorithms,
            algs,
            window: TimeWindow {
                back: self.max_age,
                ahead: self.max_ahead,
            },
            max_size: self.max_size,
            nonces: self.nonces,
        }
    }
}

impl Default for DpopVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl DpopVerifier {
    /// A verifier with the defaults (see [`DpopVerifierBuilder`]).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, starting from the defaults.
    pub fn builder() -> DpopVerifierBuilder {
        DpopVerifierBuilder {
            algorithms: DEFAULT_ALGORITHMS.into_iter().collect(),
            max_age: Duration::from_secs(60),
            max_ahead: Duration::from_secs(5),
            max_size: 4096,
            nonces: None,
        }
    }

    /// The algorithms allowed.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The algorithms allowed, space-separated, for the `algs` parameter of
    /// a `DPoP` challenge.
    pub fn algs(&self) -> &str {
        &self.algs
    }

    /// The server nonces required, if any: mint the current one for
    /// `DPoP-Nonce` headers with [`StatelessNonces::current`].
    pub fn nonces(&self) -> Option<&StatelessNonces> {
        self.nonces.as_ref()
    }

    /// Verifies `proof` (the `DPoP` header's value) for a request with
    /// `method` to `htu`, at `now`.
    ///
    /// `htu` is the request's absolute URI as the client addressed it: the
    /// scheme and authority of the server's public origin (behind a proxy,
    /// the configured one) and the request's path; the query is ignored. A
    /// URI without scheme or authority matches no proof.
    ///
    /// `access_token` is the token of `Authorization: DPoP <token>`; with
    /// one, `ath` is required and checked. `None` at a token endpoint.
    pub fn verify(
        &self,
        proof: &str,
        method: &Method,
        htu: &Uri,
        access_token: Option<&str>,
        now: SystemTime,
    ) -> Result<VerifiedDpopProof, DpopError> {
        let jws = verify::parse::<DpopError>(
            proof,
            self.max_size,
            |typ| typ == PROOF_TYPE,
            &self.algorithms,
        )?;
        let alg = jws.algorithm();
        let jwk = match jws.header().get("jwk") {
            Some(jwk) => verify::public_key::<DpopError>(jwk)?,
            None => {
                return Err(DpopError::new(DpopErrorKind::InvalidKey).with_detail("no jwk header"));
            }
        };
        verify::verify_signature::<DpopError>(&jws, &jwk, &self.algorithms)?;

        let claims = jws.into_claims();
        let jti = verify::string_claim::<DpopError>(&claims, "jti")?;
        if jti.is_empty() || jti.len() > MAX_JTI_LEN {
            return Err(DpopError::missing_claim("jti"));
        }
        let htm = verify::string_claim::<DpopError>(&claims, "htm")?;
        let htu_claim = verify::string_claim::<DpopError>(&claims, "htu")?;
        let iat = iat_claim(&claims)?;

        if htm != method.as_str() {
            return Err(DpopError::new(DpopErrorKind::MethodMismatch));
        }
        htu::matches(htu_claim, htu)
            .map_err(|why| DpopError::new(DpopErrorKind::UriMismatch).with_detail(why))?;

        let iat_since_epoch = self.window.check::<DpopError>(iat, now)?;

        if let Some(token) = access_token {
            let presented = verify::string_claim::<DpopError>(&claims, "ath")?;
            let mut buf = [0u8; ATH_LEN];
            let expected = ath(token, &mut buf);
            if !bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
                return Err(DpopError::new(DpopErrorKind::AthMismatch));
            }
        }

        if let Some(nonces) = &self.nonces {
            match claims.get("nonce") {
                None => return Err(DpopError::new(DpopErrorKind::MissingNonce)),
                Some(Value::String(nonce)) if nonces.is_valid(nonce, now) => {}
                Some(_) => return Err(DpopError::new(DpopErrorKind::InvalidNonce)),
            }
        }

        let jkt = jwk.thumbprint();
        let window = ReplayWindow::new(
            ReplayKey::from_parts(
                "dpop",
                &[jkt.as_bytes(), htu_claim.as_bytes(), jti.as_bytes()],
            ),
            iat_since_epoch,
            self.window.back,
            now,
        );
        Ok(VerifiedDpopProof {
            jti: jti.to_owned(),
            iat: UNIX_EPOCH.checked_add(iat_since_epoch).unwrap_or(now),
            alg,
            jwk,
            window,
        })
    }
}

/// `iat`: a NumericDate, whole seconds or not, not negative.
fn iat_claim(claims: &Map<String, Value>) -> Result<u64, DpopError> {
    let Some(Value::Number(iat)) = claims.get("iat") else {
        return Err(DpopError::missing_claim("iat"));
    };
    if let Some(seconds) = iat.as_u64() {
        return Ok(seconds);
    }
    match iat.as_f64() {
        // Saturates above u64::MAX, which the window then refuses.
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => Ok(seconds as u64),
        _ => Err(DpopError::missing_claim("iat")),
    }
}

/// A DPoP proof that passed [`DpopVerifier::verify`].
///
/// Two checks remain for the caller: the access token's `cnf.jkt` must name
/// this proof's key ([`is_bound_to`](Self::is_bound_to)), and the proof
/// must be new: [`replay_key`](Self::replay_key) inserted into a
/// [`ReplayStore`](crate::replay::ReplayStore) until
/// [`replay_expires_at`](Self::replay_expires_at), last.
#[derive(Clone, Debug)]
pub struct VerifiedDpopProof {
    jwk: PublicJwk,
    alg: Algorithm,
    jti: String,
    iat: SystemTime,
    /// What it is remembered by, and how long it is acceptable.
    window: ReplayWindow,
}

impl VerifiedDpopProof {
    /// The RFC 7638 thumbprint of the proof's key.
    pub fn jkt(&self) -> JwkThumbprint {
        self.jwk.thumbprint()
    }

    /// Whether `cnf_jkt` (the `jkt` member of the access token's `cnf`) is
    /// the thumbprint of the proof's key: parsed strictly, compared in
    /// constant time.
    pub fn is_bound_to(&self, cnf_jkt: &str) -> bool {
        self.jwk.thumbprint().matches_str(cnf_jkt)
    }

    verified_accessors!(
        "proof",
        "iat",
        "DpopVerifier::verify",
        "the key's thumbprint, the `htu` and the `jti`"
    );

    /// The proof's `jti`.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The proof's `iat`, in whole seconds.
    pub fn iat(&self) -> SystemTime {
        self.iat
    }
}
