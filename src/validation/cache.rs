//! The verified-token cache: the same token again costs a hash and a lookup.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::VerifiedToken;

/// A digest of the whole token: the key under which its verification is
/// remembered. Tokens are never stored.
pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Hashes a [`TokenDigest`] by taking eight of its bytes: it is already a
/// SHA-256 output, so hashing it again (SipHash) would only cost time. Only
/// tokens that verified are inserted, so nobody can choose keys to crowd a
/// bucket.
#[derive(Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        match bytes.first_chunk::<8>() {
            Some(head) => self.0 ^= u64::from_le_bytes(*head),
            None => {
                for &b in bytes {
                    self.0 = self.0.rotate_left(8) ^ u64::from(b);
                }
            }
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type DigestMap<V> = HashMap<TokenDigest, V, BuildHasherDefault<DigestHasher>>;

/// Bounded map from token digest to verified claims.
///
/// An entry is served only until its token expires (plus leeway) and only
/// under the key-set generation it was verified with. When full, expired
/// entries go first, then an eighth of the rest; never everything at once.
pub(crate) struct VerifiedCache {
    entries: Mutex<DigestMap<Entry>>,
    capacity: usize,
}

struct Entry {
    token: VerifiedToken,
    valid_until: u64,
    generation: u64,
}

impl VerifiedCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(DigestMap::default()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DigestMap<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(
        &self,
        key: &TokenDigest,
        now: u64,
        generation: u64,
    ) -> Option<VerifiedToken> {
        if self.capacity == 0 {
            return None;
        }
        let mut entries = self.lock();
        let entry = entries.get(key)?;
        if entry.valid_until > now && entry.generation == generation {
            return Some(entry.token.clone());
        }
        entries.remove(key);
        None
    }

    pub(crate) fn insert(
        &self,
        key: TokenDigest,
        token: VerifiedToken,
        valid_until: u64,
        generation: u64,
        now: u64,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, e| e.valid_until > now && e.generation == generation);
            if entries.len() >= self.capacity {
                let drop = (self.capacity / 8).max(1);
                let victims: Vec<TokenDigest> = entries.keys().take(drop).copied().collect();
                for victim in victims {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                token,
                valid_until,
                generation,
            },
        );
    }

    /// Drops every entry: the key set changed.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> VerifiedToken {
        VerifiedToken::from_claims(serde_json::Map::new()).unwrap()
    }

    #[test]
    fn expiry_and_generation() {
        let cache = VerifiedCache::new(10);
        let key = digest("a");
        cache.insert(key, token(), 100, 1, 50);
        assert!(cache.get(&key, 99, 1).is_some());
        assert!(cache.get(&key, 99, 2).is_none(), "another key set");
        cache.insert(key, token(), 100, 1, 50);
        assert!(cache.get(&key, 100, 1).is_none(), "expired");
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn bounded_without_clearing_everything() {
        let cache = VerifiedCache::new(16);
        for i in 0..100 {
            cache.insert(digest(&i.to_string()), token(), 1000, 0, 0);
            assert!(cache.len() <= 16);
        }
        assert!(cache.len() >= 14);
        // Expired entries make room first.
        let cache = VerifiedCache::new(2);
        cache.insert(digest("old"), token(), 10, 0, 0);
        cache.insert(digest("live"), token(), 1000, 0, 0);
        cache.insert(digest("new"), token(), 1000, 0, 20);
        assert!(cache.get(&digest("live"), 20, 0).is_some());
        assert!(cache.get(&digest("new"), 20, 0).is_some());
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = VerifiedCache::new(0);
        cache.insert(digest("a"), token(), 1000, 0, 0);
        assert!(cache.get(&digest("a"), 0, 0).is_none());
    }
}
