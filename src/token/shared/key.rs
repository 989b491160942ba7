//! The names in a shared cache: the key of a token and the owner of a lock.

use std::fmt;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::token::CacheKey;

/// The key of a token in a shared cache: SHA-256 over its
/// [`CacheKey`]. Its text form
/// ([`Display`](fmt::Display)) is base64url, 43 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedKey([u8; 32]);

impl SharedKey {
    /// The key of tokens cached under `key`.
    pub fn of(key: &CacheKey) -> Self {
        Self(key.digest())
    }

    /// A key from a digest made elsewhere (the introspection validator's
    /// answers, under the SHA-256 of their token).
    #[cfg(feature = "server")]
    pub(crate) const fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The 32 bytes of the digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedKey({self})")
    }
}

/// Who holds a lock: 128 random bits, new for each attempt to fetch.
#[derive(Clone, PartialEq, Eq)]
pub struct LockOwner(String);

impl LockOwner {
    /// A new random owner.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        // Without randomness, a clock-based owner still differs between
        // attempts and processes well enough for a lock that only saves
        // fetches.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            bytes = (nanos ^ u128::from(std::process::id())).to_be_bytes();
        }
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Its text, stored as the lock's value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LockOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockOwner({})", self.0)
    }
}
