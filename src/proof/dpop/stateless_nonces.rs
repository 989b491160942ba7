use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// Server nonces (RFC 9449 section 8) without server state: the nonce of a
/// time step is an HMAC-SHA256 of the step's number under a secret.
///
/// A nonce is valid during its step and the next one, so a client that got
/// one just before a step ended still has a full step to use it; steps are
/// 60 seconds by default. Servers that share the secret share the nonces,
/// so a fleet needs no coordination. Nonces are 43 characters of
/// base64url, and say nothing about the secret; checking one is constant
/// time.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_token_binding::proof::dpop::StatelessNonces;
///
/// let nonces = StatelessNonces::new(&[7u8; 32]).unwrap();
/// let now = SystemTime::now();
/// let nonce = nonces.current(now);
/// assert!(nonces.is_valid(&nonce, now));
/// assert!(nonces.is_valid(&nonce, now + Duration::from_secs(60)));
/// assert!(!nonces.is_valid(&nonce, now + Duration::from_secs(120)));
/// assert!(!nonces.is_valid("forged", now));
/// ```
#[derive(Clone)]
pub struct StatelessNonces {
    key: hmac::Key,
    step: u64,
}

/// The nonce length: base64url of 32 bytes.
const NONCE_LEN: usize = 43;

impl StatelessNonces {
    /// The length of a step by default.
    pub const DEFAULT_STEP: Duration = Duration::from_secs(60);

    /// Nonces under `secret`, which must be at least 32 bytes (random, and
    /// the same on every server that should accept the others' nonces).
    pub fn new(secret: &[u8]) -> Result<Self, NonceSecretError> {
        if secret.len() < 32 {
            return Err(NonceSecretError(
                "a DPoP nonce secret must be at least 32 bytes",
            ));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            step: Self::DEFAULT_STEP.as_secs(),
        })
    }

    /// Nonces under a random secret: for one process, whose nonces no other
    /// server accepts.
    pub fn random() -> Result<Self, NonceSecretError> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| NonceSecretError("the system random generator failed"))?;
        Self::new(&secret)
    }

    /// Steps of `step` (whole seconds, at least one).
    pub fn with_step(mut self, step: Duration) -> Self {
        self.step = step.as_secs().max(1);
        self
    }

    /// The length of a step.
    pub fn step(&self) -> Duration {
        Duration::from_secs(self.step)
    }

    /// The nonce to hand out at `now` (in a `DPoP-Nonce` header).
    pub fn current(&self, now: SystemTime) -> String {
        let mut buf = [0u8; NONCE_LEN];
        self.nonce(self.step_at(now), &mut buf).to_owned()
    }

    /// Whether `nonce` is the nonce of the step of `now` or of the one
    /// before.
    pub fn is_valid(&self, nonce: &str, now: SystemTime) -> bool {
        if nonce.len() != NONCE_LEN {
            return false;
        }
        let step = self.step_at(now);
        let mut buf = [0u8; NONCE_LEN];
        let current: bool = self
            .nonce(step, &mut buf)
            .as_bytes()
            .ct_eq(nonce.as_bytes())
            .into();
        let previous: bool = self
            .nonce(step.wrapping_sub(1), &mut buf)
            .as_bytes()
            .ct_eq(nonce.as_bytes())
            .into();
        current | previous
    }

    fn step_at(&self, now: SystemTime) -> u64 {
        now.duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs())
            / self.step
    }

    fn nonce<'b>(&self, step: u64, buf: &'b mut [u8; NONCE_LEN]) -> &'b str {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(b"dpop-nonce:");
        context.update(&step.to_be_bytes());
        let tag = context.sign();
        match URL_SAFE_NO_PAD.encode_slice(tag.as_ref(), buf) {
            // base64url is ASCII.
            Ok(NONCE_LEN) => std::str::from_utf8(buf).unwrap_or_default(),
            _ => "",
        }
    }
}

impl fmt::Debug for StatelessNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatelessNonces")
            .field("step", &self.step())
            .finish_non_exhaustive()
    }
}

/// The secret for [`StatelessNonces`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceSecretError(&'static str);

impl fmt::Display for NonceSecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NonceSecretError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_and_previous_step_only() {
        let nonces = StatelessNonces::new(&[1; 32])
            .unwrap()
            .with_step(Duration::from_secs(10));
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let nonce = nonces.current(start);
        assert_eq!(nonce.len(), NONCE_LEN);
        assert_eq!(nonces.current(start + Duration::from_secs(9)), nonce);
        assert_ne!(nonces.current(start + Duration::from_secs(10)), nonce);
        assert!(nonces.is_valid(&nonce, start + Duration::from_secs(19)));
        assert!(!nonces.is_valid(&nonce, start + Duration::from_secs(20)));
        // Not valid before its step either.
        assert!(!nonces.is_valid(&nonce, start - Duration::from_secs(1)));
    }

    #[test]
    fn another_secret_makes_other_nonces() {
        let now = SystemTime::now();
        let a = StatelessNonces::new(&[1; 32]).unwrap();
        let b = StatelessNonces::new(&[2; 32]).unwrap();
        let shared = StatelessNonces::new(&[1; 32]).unwrap();
        assert!(!b.is_valid(&a.current(now), now));
        assert!(shared.is_valid(&a.current(now), now));
        let random = StatelessNonces::random().unwrap();
        assert!(!random.is_valid(&a.current(now), now));
        assert!(random.is_valid(&random.current(now), now));
    }

    #[test]
    fn short_secrets_are_refused_and_debug_hides_the_secret() {
        assert!(StatelessNonces::new(&[1; 31]).is_err());
        let nonces = StatelessNonces::new(&[1; 32])
            .unwrap()
            .with_step(Duration::ZERO);
        assert_eq!(nonces.step(), Duration::from_secs(1));
        assert_eq!(format!("{nonces:?}"), "StatelessNonces { step: 1s, .. }");
    }
}
