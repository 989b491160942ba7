//! The verified-token cache: the same token again costs a hash and a lookup.
//!
//! `JwtValidator` keys it by the token itself: only the token's last bytes
//! are hashed (with a random key), and a hit compares the whole token, which
//! costs far less than a digest of it. The tokens stay in this process's
//! memory, as the requests that carried them did; nothing here is shared.
//! The introspection answers, which may be shared through Redis, are keyed
//! by a SHA-256 digest instead.

use std::hash::{BuildHasher as _, RandomState};
use std::sync::Mutex;

use hashbrown::HashTable;

use super::VerifiedToken;

/// A digest of the whole token: the key under which an introspection
/// answer is remembered, where the token itself must not be kept (it may
/// be shared, through Redis).
pub(crate) type TokenDigest = [u8; 32];

#[cfg(any(test, feature = "client"))]
pub(crate) fn digest(token: &str) -> TokenDigest {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

/// What a [`VerifiedCache`] is keyed by: the token itself (`str`), or a
/// digest of it ([`TokenDigest`]) where the token must not be kept.
pub(crate) trait CacheKey {
    /// The key as an entry holds it.
    type Owned;
    /// The key's hash, from the cache's random hasher.
    fn hash(&self, hasher: &RandomState) -> u64;
    /// Whether an entry's key is this one.
    fn is(&self, owned: &Self::Owned) -> bool;
    /// The key to keep in an entry.
    fn to_owned_key(&self) -> Self::Owned;
}

/// How much of a token's end is hashed: its signature's last bytes, which
/// differ from one token to the next. Equality is then checked on the
/// whole token, so a token that shares the tail of a cached one is a miss,
/// and only verified tokens are ever inserted, so nobody can crowd a
/// bucket on purpose.
const HASHED_TAIL: usize = 32;

impl CacheKey for str {
    type Owned = Box<str>;

    fn hash(&self, hasher: &RandomState) -> u64 {
        let bytes = self.as_bytes();
        hasher.hash_one(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..])
    }

    fn is(&self, owned: &Box<str>) -> bool {
        **owned == *self
    }

    fn to_owned_key(&self) -> Box<str> {
        self.into()
    }
}

impl CacheKey for TokenDigest {
    type Owned = TokenDigest;

    /// Eight bytes of the digest: it is a SHA-256 output already.
    fn hash(&self, _: &RandomState) -> u64 {
        let (head, _) = self.split_at(8);
        u64::from_le_bytes(head.try_into().unwrap_or_default())
    }

    fn is(&self, owned: &TokenDigest) -> bool {
        owned == self
    }

    fn to_owned_key(&self) -> TokenDigest {
        *self
    }
}

/// Bounded map from a token (or its digest) to its verified claims.
///
/// An entry is served only until its token expires (plus leeway) and only
/// under the key-set generation it was verified with. When full, expired
/// entries go first, then an eighth of the rest; never everything at once.
pub(crate) struct VerifiedCache<K: CacheKey + ?Sized> {
    entries: Mutex<HashTable<Entry<K::Owned>>>,
    hasher: RandomState,
    capacity: usize,
}

struct Entry<O> {
    key: O,
    hash: u64,
    token: VerifiedToken,
    valid_until: u64,
    generation: u64,
}

impl<K: CacheKey + ?Sized> VerifiedCache<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashTable::new()),
            hasher: RandomState::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashTable<Entry<K::Owned>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self, key: &K, now: u64, generation: u64) -> Option<VerifiedToken> {
        if self.capacity == 0 {
            return None;
        }
        let hash = key.hash(&self.hasher);
        let mut entries = self.lock();
        let entry = entries.find_entry(hash, |e| key.is(&e.key)).ok()?;
        let cached = entry.get();
        if cached.valid_until > now && cached.generation == generation {
            return Some(cached.token.clone());
        }
        entry.remove();
        None
    }

    pub(crate) fn insert(
        &self,
        key: &K,
        token: VerifiedToken,
        valid_until: u64,
        generation: u64,
        now: u64,
    ) {
        if self.capacity == 0 {
            return;
        }
        let hash = key.hash(&self.hasher);
        let mut entries = self.lock();
        if let Ok(existing) = entries.find_entry(hash, |e| key.is(&e.key)) {
            existing.remove();
        }
        if entries.len() >= self.capacity {
            entries.retain(|e| e.valid_until > now && e.generation == generation);
            let mut drop = if entries.len() >= self.capacity {
                (self.capacity / 8).max(1)
            } else {
                0
            };
            if drop > 0 {
                entries.retain(|_| {
                    let keep = drop == 0;
                    drop = drop.saturating_sub(1);
                    keep
                });
            }
        }
        entries.insert_unique(
            hash,
            Entry {
                key: key.to_owned_key(),
                hash,
                token,
                valid_until,
                generation,
            },
            |e| e.hash,
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
        cache.insert(&key, token(), 100, 1, 50);
        assert!(cache.get(&key, 99, 1).is_some());
        assert!(cache.get(&key, 99, 2).is_none(), "another key set");
        cache.insert(&key, token(), 100, 1, 50);
        assert!(cache.get(&key, 100, 1).is_none(), "expired");
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn bounded_without_clearing_everything() {
        let cache = VerifiedCache::new(16);
        for i in 0..100 {
            cache.insert(&digest(&i.to_string()), token(), 1000, 0, 0);
            assert!(cache.len() <= 16);
        }
        assert!(cache.len() >= 14);
        // Expired entries make room first.
        let cache = VerifiedCache::new(2);
        cache.insert(&digest("old"), token(), 10, 0, 0);
        cache.insert(&digest("live"), token(), 1000, 0, 0);
        cache.insert(&digest("new"), token(), 1000, 0, 20);
        assert!(cache.get(&digest("live"), 20, 0).is_some());
        assert!(cache.get(&digest("new"), 20, 0).is_some());
    }

    #[test]
    fn a_token_is_a_hit_only_when_whole() {
        let cache: VerifiedCache<str> = VerifiedCache::new(10);
        let signature = "x".repeat(HASHED_TAIL * 2);
        let verified = format!("header.payload.{signature}");
        cache.insert(&verified, token(), 100, 0, 0);
        assert!(cache.get(&verified, 0, 0).is_some());
        // The same tail, hashed alike, after another header or payload.
        let forged = format!("header.forged.{signature}");
        assert!(cache.get(&forged, 0, 0).is_none());
        assert!(cache.get("", 0, 0).is_none());
        assert!(cache.get(&verified, 0, 0).is_some());
        // Inserting again replaces, never duplicates.
        cache.insert(&verified, token(), 200, 0, 0);
        assert_eq!(cache.len(), 1);
        assert!(cache.get(&verified, 150, 0).is_some());
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = VerifiedCache::new(0);
        cache.insert(&digest("a"), token(), 1000, 0, 0);
        assert!(cache.get(&digest("a"), 0, 0).is_none());
    }
}
