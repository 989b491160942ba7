use std::collections::HashMap;
use std::future::{Ready, ready};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use super::{ReplayError, ReplayErrorKind, ReplayKey, ReplayStore};

const SHARDS: usize = 16;

/// A [`ReplayStore`] in this process's memory: bounded, sharded, expiring.
///
/// Entries live in 16 shards, each a `Mutex<HashMap>` keyed by the 32-byte
/// [`ReplayKey`] digest, holding at most a sixteenth of the capacity. An
/// entry is forgotten once its expiry has passed. When a shard is full of
/// entries that have not expired, a new key is refused with a
/// [`ReplayErrorKind::Full`] error rather than forgetting one that could
/// then be replayed: fail closed. Size the capacity for the proofs accepted
/// within one expiry window (requests per second × the `iat` window, 65 s
/// by default), with room to spare.
///
/// For a fleet of servers, use a shared store instead: a proof accepted by
/// one process is unknown to the others.
///
/// The keys are SHA-256 digests, already uniform, so hashing takes 8 of
/// their bytes and mixes them with a per-store random key (a client that
/// grinds `jti` values cannot aim them at one bucket or one shard). Locks
/// are held for one map operation, never across an `.await`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_token_binding::replay::{MemoryReplayStore, ReplayKey};
///
/// let store = MemoryReplayStore::with_capacity(10_000);
/// let now = SystemTime::now();
/// let key = ReplayKey::from_parts("example", &[b"jti-1"]);
/// let expires_at = now + Duration::from_secs(65);
///
/// assert!(store.insert_at(key, expires_at, now).unwrap());
/// assert!(!store.insert_at(key, expires_at, now + Duration::from_secs(64)).unwrap());
/// // Expired: the key is new again.
/// assert!(store.insert_at(key, expires_at + Duration::from_secs(65), expires_at).unwrap());
/// ```
#[derive(Clone)]
pub struct MemoryReplayStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: [Mutex<Shard>; SHARDS],
    shard_capacity: usize,
    hasher: KeyedMix,
}

struct Shard {
    entries: HashMap<Slot, SystemTime, KeyedMix>,
    /// No entry expires before this (when there are entries).
    earliest: Option<SystemTime>,
}

impl MemoryReplayStore {
    /// The capacity of [`new`](Self::new): 1,000,000 proofs, about 15,000
    /// accepted proofs per second over the default 66-second window (more
    /// than two cores verify: an ES256 proof check costs about 45 µs), and
    /// about 100 MiB when full (a 32-byte digest and
    /// an expiry per proof, in hash tables). Past it, new proofs are refused
    /// (`503`), never accepted unchecked.
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    /// A store for [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY) proofs.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A store for about `capacity` proofs (rounded up to a multiple of 16;
    /// at least 16). Memory is taken as entries arrive, not up front.
    pub fn with_capacity(capacity: usize) -> Self {
        let hasher = KeyedMix::random();
        let shard_capacity = capacity.div_ceil(SHARDS).max(1);
        Self {
            inner: Arc::new(Inner {
                shards: std::array::from_fn(|_| {
                    Mutex::new(Shard {
                        entries: HashMap::with_hasher(hasher),
                        earliest: None,
                    })
                }),
                shard_capacity,
                hasher,
            }),
        }
    }

    /// How many proofs the store holds at most.
    pub fn capacity(&self) -> usize {
        self.inner.shard_capacity * SHARDS
    }

    /// How many entries the store holds now, expired ones not yet dropped
    /// included.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| lock(shard).entries.len())
            .sum()
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// [`insert_if_absent`](ReplayStore::insert_if_absent) with the current
    /// time given, synchronously: `Ok(true)` if `key` is new (and is now
    /// remembered until `expires_at`), `Ok(false)` if it is remembered and
    /// has not expired at `now`, or if `expires_at` is not after `now` (a
    /// proof past its lifetime is refused, never accepted unremembered).
    pub fn insert_at(
        &self,
        key: ReplayKey,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<bool, ReplayError> {
        if expires_at <= now {
            // Past its lifetime: it could not be remembered, so it is not
            // accepted (fail closed).
            return Ok(false);
        }
        let slot = Slot(*key.as_bytes());
        let shard = &self.inner.shards[self.inner.hasher.shard(&slot)];
        let mut shard = lock(shard);
        let shard = &mut *shard;
        if let Some(entry) = shard.entries.get_mut(&slot) {
            if *entry > now {
                return Ok(false);
            }
            *entry = expires_at;
            shard.note_expiry(expires_at);
            return Ok(true);
        }
        if shard.entries.len() >= self.inner.shard_capacity {
            shard.drop_expired(now);
            if shard.entries.len() >= self.inner.shard_capacity {
                return Err(ReplayError::new(ReplayErrorKind::Full));
            }
        }
        shard.entries.insert(slot, expires_at);
        shard.note_expiry(expires_at);
        Ok(true)
    }
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl ReplayStore for MemoryReplayStore {
    type Future = Ready<Result<bool, ReplayError>>;

    fn insert_if_absent(&self, key: ReplayKey, expires_at: SystemTime) -> Self::Future {
        ready(self.insert_at(key, expires_at, SystemTime::now()))
    }
}

impl Shard {
    fn note_expiry(&mut self, expires_at: SystemTime) {
        self.earliest = Some(self.earliest.map_or(expires_at, |e| e.min(expires_at)));
    }

    /// Drops the entries expired at `now`; a no-op (no scan) when none can
    /// have expired yet.
    fn drop_expired(&mut self, now: SystemTime) {
        if self.earliest.is_none_or(|earliest| earliest > now) {
            return;
        }
        self.entries.retain(|_, expires_at| *expires_at > now);
        self.earliest = self.entries.values().min().copied();
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a map half-updated in a
    // way that matters here: go on with it.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A replay key in a map.
#[derive(PartialEq, Eq)]
struct Slot([u8; 32]);

impl Hash for Slot {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(word(&self.0, 0));
    }
}

fn word(bytes: &[u8; 32], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Hashes a digest's bytes with a secret per-store key: a keyed multiply,
/// whose high half (rotated down to where hashbrown takes its bucket bits)
/// depends on every input bit and on the key.
#[derive(Clone, Copy)]
struct KeyedMix {
    k0: u64,
    k1: u64,
    k2: u64,
    k3: u64,
}

impl KeyedMix {
    fn random() -> Self {
        let mut seed = [0u8; 32];
        // If the system RNG fails, fixed keys still hash well; only the
        // resistance to ground `jti` values is lost.
        let _ = aws_lc_rs::rand::fill(&mut seed);
        Self {
            k0: word(&seed, 0),
            k1: word(&seed, 8) | 1,
            k2: word(&seed, 16),
            k3: word(&seed, 24) | 1,
        }
    }

    fn mix(value: u64, k: u64, m: u64) -> u64 {
        (value ^ k).wrapping_mul(m).rotate_left(32)
    }

    fn shard(&self, slot: &Slot) -> usize {
        // Other bytes than the bucket hash, so shard and bucket are
        // independent.
        (Self::mix(word(&slot.0, 8), self.k2, self.k3) % SHARDS as u64) as usize
    }
}

impl BuildHasher for KeyedMix {
    type Hasher = MixHasher;

    fn build_hasher(&self) -> MixHasher {
        MixHasher {
            keys: *self,
            state: 0,
        }
    }
}

struct MixHasher {
    keys: KeyedMix,
    state: u64,
}

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.state
    }

    fn write_u64(&mut self, value: u64) {
        self.state = KeyedMix::mix(value ^ self.state, self.keys.k0, self.keys.k1);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Slot`; this keeps any other input
        // hashed correctly all the same.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(n: u32) -> ReplayKey {
        ReplayKey::from_parts("test", &[&n.to_be_bytes()])
    }

    #[test]
    fn replays_are_detected_until_expiry() {
        let store = MemoryReplayStore::new();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let exp = now + Duration::from_secs(60);
        assert!(store.insert_at(key(1), exp, now).unwrap());
        assert!(store.insert_at(key(2), exp, now).unwrap());
        assert!(!store.insert_at(key(1), exp, now).unwrap());
        assert!(
            !store
                .insert_at(key(1), exp, exp - Duration::from_secs(1))
                .unwrap()
        );
        // Expired at `exp`: new again, remembered anew.
        let exp2 = exp + Duration::from_secs(60);
        assert!(store.insert_at(key(1), exp2, exp).unwrap());
        assert!(!store.insert_at(key(1), exp2, exp).unwrap());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn an_expiry_in_the_past_is_refused_and_not_remembered() {
        let store = MemoryReplayStore::new();
        let now = SystemTime::now();
        assert!(!store.insert_at(key(1), now, now).unwrap());
        assert!(
            !store
                .insert_at(key(1), now - Duration::from_secs(1), now)
                .unwrap()
        );
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn as_a_replay_store_a_past_expiry_is_not_accepted() {
        let store = MemoryReplayStore::new();
        let past = SystemTime::now() - Duration::from_secs(1);
        assert!(!store.insert_if_absent(key(9), past).await.unwrap());
        assert!(!store.insert_if_absent(key(9), past).await.unwrap());
        assert!(store.is_empty());
    }

    #[test]
    fn full_refuses_new_keys_until_entries_expire() {
        // One entry per shard.
        let store = MemoryReplayStore::with_capacity(1);
        assert_eq!(store.capacity(), 16);
        let now = SystemTime::now();
        let exp = now + Duration::from_secs(60);
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        // 17 keys into 16 shards of one: at least one is refused.
        for n in 0..17 {
            match store.insert_at(key(n), exp, now) {
                Ok(true) => accepted.push(n),
                Ok(false) => panic!("key {n} seen as a replay"),
                Err(e) => {
                    assert!(e.is_full(), "{e}");
                    refused.push(n);
                }
            }
        }
        assert!(!refused.is_empty());
        assert_eq!(store.len(), accepted.len());
        // Accepted keys are still replays, full or not.
        for n in &accepted {
            assert!(!store.insert_at(key(*n), exp, now).unwrap());
        }
        // Once the entries expire, room is made (each key inserted after the
        // one before has expired, as two may share a shard).
        for (i, n) in (1..).zip(refused) {
            let later = exp + Duration::from_secs(61 * i);
            assert!(
                store
                    .insert_at(key(n), later + Duration::from_secs(60), later)
                    .unwrap()
            );
        }
    }

    #[test]
    fn a_full_shard_drops_only_expired_entries() {
        let store = MemoryReplayStore::with_capacity(16 * 4);
        let now = SystemTime::now();
        let short = now + Duration::from_secs(10);
        let long = now + Duration::from_secs(100);
        // Fill past capacity: half short-lived, half long-lived.
        let mut n = 0;
        let mut stored = Vec::new();
        while n < 1000 {
            let exp = if n % 2 == 0 { short } else { long };
            if store.insert_at(key(n), exp, now).is_ok() {
                stored.push((n, exp));
            }
            n += 1;
        }
        assert_eq!(store.len(), store.capacity());
        let after_short = short + Duration::from_secs(1);
        for m in 1000..1100 {
            let _ = store.insert_at(key(m), long, after_short);
        }
        // Every long-lived entry is still a replay.
        for (n, exp) in stored {
            if exp == long {
                assert!(!store.insert_at(key(n), long, after_short).unwrap(), "{n}");
            }
        }
    }

    #[tokio::test]
    async fn as_a_replay_store() {
        let store = MemoryReplayStore::default();
        let exp = SystemTime::now() + Duration::from_secs(60);
        assert!(store.insert_if_absent(key(7), exp).await.unwrap());
        assert!(!store.clone().insert_if_absent(key(7), exp).await.unwrap());
        assert!(format!("{store:?}").contains("capacity: 100000"));
    }
}
