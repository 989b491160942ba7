use std::collections::HashMap;
use std::future::{Ready, ready};
use std::hash::{BuildHasher, Hash, Hasher};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::{ReplayError, ReplayErrorKind, ReplayKey, ReplayOwner, ReplayStore};

const SHARDS: usize = 16;

/// A shard drops its expired entries at most this often (when it needs
/// room), so that a client refused again and again cannot make every one
/// of its requests scan a shard.
const SCAN_INTERVAL: Duration = Duration::from_secs(1);

/// A [`ReplayStore`] in this process's memory: bounded, sharded, expiring,
/// with a share per key.
///
/// Entries live in 16 shards, each a `Mutex<HashMap>` keyed by the 32-byte
/// [`ReplayKey`] digest, holding at most a sixteenth of the capacity. An
/// entry is forgotten once its expiry has passed (its proof could no longer
/// be accepted anyway: the verifiers give the end of the proof's own
/// window, `iat` or `ts` plus the allowed age, and a second). When a shard
/// is full of entries that have not expired, a new key is refused with a
/// [`ReplayErrorKind::Full`] error rather than forgetting one that could
/// then be replayed: fail closed. Size the capacity for the proofs accepted
/// within one expiry window (requests per second × the window: 61 s for
/// DPoP proofs, 301 s for signed HTTP requests by default, 5 s more for a
/// proof dated ahead), with room to spare.
///
/// # A share per key
///
/// One client with one valid token could otherwise fill the store by
/// itself (at the default capacity, about 3,300 signed HTTP requests a
/// second over their 5-minute lifetime), and every DPoP and `PoP` request
/// would then be refused until entries expire. So each entry is counted
/// against its [`ReplayOwner`], the proof's key, when the layer names it
/// ([`insert_if_absent_for`](ReplayStore::insert_if_absent_for)), and a
/// key's new proof is refused with [`ReplayErrorKind::OwnerShareExceeded`]
/// (`429` from the layer) while that key holds
///
/// - its share: [`owner_share`](Self::owner_share) percent of the store,
///   [`DEFAULT_OWNER_SHARE`](Self::DEFAULT_OWNER_SHARE) (25%) by default;
/// - or, whatever its share, at least as many entries as are still free.
///
/// The second rule is what keeps several flooding keys from filling the
/// store together: the fuller it gets, the less each key may hold, so the
/// keys holding the most are refused first, and a key holding few can
/// still be remembered until the store is full of such keys (which is
/// load, not one client). A key alone never holds more than half the
/// store. The counts are kept per shard (a key's proofs spread evenly over
/// the shards), in a map of the keys holding entries there, each insert
/// and each entry dropped costing one map operation.
///
/// Proofs inserted without an owner ([`insert_if_absent`](ReplayStore::insert_if_absent))
/// are not counted against anyone: they are refused only when their shard
/// is full.
///
/// For a fleet of servers, use a shared store instead: a proof accepted by
/// one process is unknown to the others.
///
/// The keys are SHA-256 digests, already uniform, so hashing takes 8 of
/// their bytes and mixes them with a per-store random key (a client that
/// grinds `jti` values cannot aim them at one bucket or one shard). Locks
/// are held for one map operation, never across an `.await`. Expired
/// entries are dropped by a scan of their shard when room is needed, at
/// most once a second per shard.
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
    /// The most entries one owner may hold in one shard.
    owner_limit: AtomicUsize,
    /// The share it was computed from, in percent.
    owner_share: AtomicUsize,
    hasher: KeyedMix,
}

struct Shard {
    entries: HashMap<Slot, Entry, KeyedMix>,
    /// How many entries each owner holds here (owners holding none are
    /// not in it, so it is never larger than `entries`).
    owners: HashMap<OwnerTag, usize, KeyedMix>,
    /// No entry expires before this (when there are entries).
    earliest: Option<Stamp>,
    /// When expired entries were last dropped.
    last_scan: Option<SystemTime>,
}

/// A remembered proof: until when, and whose.
#[derive(Clone, Copy)]
struct Entry {
    expires_at: Stamp,
    owner: Option<OwnerTag>,
}

impl MemoryReplayStore {
    /// The capacity of [`new`](Self::new): 1,000,000 proofs, about 15,000
    /// accepted DPoP proofs per second over their default 61-second window
    /// (more than two cores verify: an ES256 proof check costs about
    /// 45 µs), or about 3,300 signed HTTP requests per second over their
    /// 301 seconds, and about 70 MiB when full (16 bytes of the key's
    /// digest, an expiry and an owner per proof, in hash tables: 72 bytes
    /// a proof measured by `benches/scaling`), more when every proof is by
    /// a different key (a count per key). Past it, new proofs are refused
    /// (`503`), never accepted unchecked.
    pub const DEFAULT_CAPACITY: usize = 1_000_000;

    /// The part of the store one key may hold by default, in percent: 25,
    /// so that one flooding key leaves three quarters of the store to the
    /// others, while one busy client may still use a quarter of it (at
    /// the default capacity, about 4,000 DPoP proofs or 800 signed HTTP
    /// requests a second).
    pub const DEFAULT_OWNER_SHARE: u8 = 25;

    /// A store for [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY) proofs.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A store for about `capacity` proofs (rounded up to a multiple of 16;
    /// at least 16), [`DEFAULT_OWNER_SHARE`](Self::DEFAULT_OWNER_SHARE)
    /// percent of it per key. Memory is taken as entries arrive, not up
    /// front.
    pub fn with_capacity(capacity: usize) -> Self {
        let hasher = KeyedMix::random();
        let shard_capacity = capacity.div_ceil(SHARDS).max(1);
        let share = Self::DEFAULT_OWNER_SHARE;
        Self {
            inner: Arc::new(Inner {
                shards: std::array::from_fn(|_| {
                    Mutex::new(Shard {
                        entries: HashMap::with_hasher(hasher),
                        owners: HashMap::with_hasher(hasher),
                        earliest: None,
                        last_scan: None,
                    })
                }),
                shard_capacity,
                owner_limit: AtomicUsize::new(owner_limit(shard_capacity, share)),
                owner_share: AtomicUsize::new(usize::from(share)),
                hasher,
            }),
        }
    }

    /// Lets one key hold at most `percent` of the store (of each shard),
    /// at least one entry per shard: 1 to 100, a value out of that range
    /// taken as the nearest. Applies to this store and its clones from
    /// now on; entries already held are kept.
    ///
    /// ```
    /// use tower_token_binding::replay::MemoryReplayStore;
    ///
    /// let store = MemoryReplayStore::with_capacity(100_000).owner_share(10);
    /// assert_eq!(store.max_per_owner(), 10_000);
    /// ```
    pub fn owner_share(self, percent: u8) -> Self {
        let percent = percent.clamp(1, 100);
        let inner = &self.inner;
        inner
            .owner_share
            .store(usize::from(percent), Ordering::Relaxed);
        inner.owner_limit.store(
            owner_limit(inner.shard_capacity, percent),
            Ordering::Relaxed,
        );
        self
    }

    /// How many proofs the store holds at most.
    pub fn capacity(&self) -> usize {
        self.inner.shard_capacity * SHARDS
    }

    /// How many proofs one key may hold at most (its share of each shard,
    /// times the shards); fewer when the store is nearly full.
    pub fn max_per_owner(&self) -> usize {
        self.inner.owner_limit.load(Ordering::Relaxed) * SHARDS
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

    /// How many entries `owner` holds now, expired ones not yet dropped
    /// included.
    pub fn held_by(&self, owner: ReplayOwner) -> usize {
        let tag = OwnerTag::of(&owner);
        self.inner
            .shards
            .iter()
            .map(|shard| lock(shard).owners.get(&tag).copied().unwrap_or(0))
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
    /// Counted against no owner.
    pub fn insert_at(
        &self,
        key: ReplayKey,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<bool, ReplayError> {
        self.insert(key, None, expires_at, now)
    }

    /// [`insert_if_absent_for`](ReplayStore::insert_if_absent_for) with the
    /// current time given, synchronously: [`insert_at`](Self::insert_at),
    /// counted against `owner`, and refused with
    /// [`ReplayErrorKind::OwnerShareExceeded`] when `owner` holds its share
    /// of the key's shard, or at least as many entries there as are free
    /// (see [A share per key](Self#a-share-per-key)). A replay is
    /// answered `Ok(false)` whatever the owner holds.
    pub fn insert_for_at(
        &self,
        key: ReplayKey,
        owner: ReplayOwner,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<bool, ReplayError> {
        self.insert(key, Some(OwnerTag::of(&owner)), expires_at, now)
    }

    fn insert(
        &self,
        key: ReplayKey,
        owner: Option<OwnerTag>,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<bool, ReplayError> {
        if expires_at <= now {
            // Past its lifetime: it could not be remembered, so it is not
            // accepted (fail closed).
            return Ok(false);
        }
        let slot = Slot::of(&key);
        let (expires_at, now_stamp) = (stamp(expires_at), stamp(now));
        let capacity = self.inner.shard_capacity;
        let owner_limit = self.inner.owner_limit.load(Ordering::Relaxed);
        let shard = &self.inner.shards[self.inner.hasher.shard(&slot)];
        let mut shard = lock(shard);
        let shard = &mut *shard;
        if let Some(entry) = shard.entries.get(&slot) {
            if entry.expires_at > now_stamp {
                return Ok(false);
            }
            // Expired: forgotten, and the key is new again.
            let owner = entry.owner;
            shard.entries.remove(&slot);
            shard.release(owner);
        }
        if let Some(owner) = owner {
            if !shard.admits(owner, capacity, owner_limit) {
                shard.drop_expired(now);
                if !shard.admits(owner, capacity, owner_limit) {
                    return Err(ReplayError::new(ReplayErrorKind::OwnerShareExceeded));
                }
            }
        }
        if shard.entries.len() >= capacity {
            shard.drop_expired(now);
            if shard.entries.len() >= capacity {
                return Err(ReplayError::new(ReplayErrorKind::Full));
            }
        }
        shard.entries.insert(slot, Entry { expires_at, owner });
        if let Some(owner) = owner {
            *shard.owners.entry(owner).or_insert(0) += 1;
        }
        shard.note_expiry(expires_at);
        Ok(true)
    }
}

/// The most entries one owner may hold in a shard of `shard_capacity`:
/// `percent` of it, rounded up, at least one.
fn owner_limit(shard_capacity: usize, percent: u8) -> usize {
    let percent = usize::from(percent.clamp(1, 100));
    // `shard_capacity × percent / 100`, rounded up, without overflow.
    let whole = shard_capacity / 100 * percent;
    let rest = (shard_capacity % 100 * percent).div_ceil(100);
    (whole + rest).clamp(1, shard_capacity.max(1))
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
            .field(
                "owner_share",
                &self.inner.owner_share.load(Ordering::Relaxed),
            )
            .field("len", &self.len())
            .finish()
    }
}

impl ReplayStore for MemoryReplayStore {
    type Future = Ready<Result<bool, ReplayError>>;

    fn insert_if_absent(&self, key: ReplayKey, expires_at: SystemTime) -> Self::Future {
        ready(self.insert_at(key, expires_at, crate::clock::wall()))
    }

    fn insert_if_absent_for(
        &self,
        key: ReplayKey,
        owner: ReplayOwner,
        expires_at: SystemTime,
    ) -> Self::Future {
        ready(self.insert_for_at(key, owner, expires_at, crate::clock::wall()))
    }
}

impl Shard {
    fn note_expiry(&mut self, expires_at: Stamp) {
        self.earliest = Some(self.earliest.map_or(expires_at, |e| e.min(expires_at)));
    }

    /// Whether `owner` may add an entry here: it holds fewer than
    /// `owner_limit`, and (unless it holds none) fewer than are free. An
    /// owner holding none is refused only by a full shard, as `Full`.
    fn admits(&self, owner: OwnerTag, capacity: usize, owner_limit: usize) -> bool {
        let held = self.owners.get(&owner).copied().unwrap_or(0);
        let free = capacity.saturating_sub(self.entries.len());
        held < owner_limit && (held == 0 || held < free)
    }

    /// One entry of `owner` is gone.
    fn release(&mut self, owner: Option<OwnerTag>) {
        release(&mut self.owners, owner);
    }

    /// Drops the entries expired at `now`; a no-op (no scan) when none can
    /// have expired yet, or when the last scan was less than
    /// [`SCAN_INTERVAL`] ago (a clock gone back allows one).
    fn drop_expired(&mut self, now: SystemTime) {
        let now_stamp = stamp(now);
        if self.earliest.is_none_or(|earliest| earliest > now_stamp) {
            return;
        }
        let recent = self.last_scan.is_some_and(|last| {
            now.duration_since(last)
                .is_ok_and(|since| since < SCAN_INTERVAL)
        });
        if recent {
            return;
        }
        self.last_scan = Some(now);
        let owners = &mut self.owners;
        self.entries.retain(|_, entry| {
            let keep = entry.expires_at > now_stamp;
            if !keep {
                release(owners, entry.owner);
            }
            keep
        });
        self.earliest = self.entries.values().map(|entry| entry.expires_at).min();
    }
}

/// One entry of `owner` (if any) is gone from a shard whose counts are
/// `owners`: one less, and an owner holding none is forgotten.
fn release(owners: &mut HashMap<OwnerTag, usize, KeyedMix>, owner: Option<OwnerTag>) {
    let Some(owner) = owner else { return };
    if let Some(held) = owners.get_mut(&owner) {
        *held = held.saturating_sub(1);
        if *held == 0 {
            owners.remove(&owner);
        }
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic while holding the lock cannot leave a map half-updated in a
    // way that matters here: go on with it.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A replay key in a map: the first 16 bytes of its SHA-256 digest. Two
/// proofs whose keys share them (one chance in 2^128 for a pair; some
/// 2^64 proofs of one's own making to find a pair) would be taken for one:
/// the second refused as a replay, never a replay accepted. Half the key
/// is a third less memory per entry.
#[derive(PartialEq, Eq)]
struct Slot([u8; 16]);

impl Slot {
    fn of(key: &ReplayKey) -> Self {
        let mut slot = [0u8; 16];
        slot.copy_from_slice(&key.as_bytes()[..16]);
        Self(slot)
    }
}

/// A time in a map: nanoseconds since the Unix epoch (0 for any time
/// before it), 8 bytes where a `SystemTime` takes 16.
type Stamp = u64;

fn stamp(time: SystemTime) -> Stamp {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// An owner in a map: 8 bytes of its SHA-256 digest (two keys whose
/// owners share them, one chance in 2^64 for a pair, would share one
/// count), never zero.
#[derive(Clone, Copy, PartialEq, Eq)]
struct OwnerTag(NonZeroU64);

impl OwnerTag {
    fn of(owner: &ReplayOwner) -> Self {
        let word = word(owner.as_bytes(), 0);
        Self(NonZeroU64::new(word).unwrap_or(NonZeroU64::MIN))
    }
}

impl Hash for OwnerTag {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.get());
    }
}

impl Hash for Slot {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(word(&self.0, 0));
    }
}

fn word(bytes: &[u8], at: usize) -> u64 {
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
        let owner = owner(1);
        assert!(
            store
                .insert_if_absent_for(key(8), owner, exp)
                .await
                .unwrap()
        );
        assert!(
            !store
                .insert_if_absent_for(key(8), owner, exp)
                .await
                .unwrap()
        );
        assert_eq!(store.held_by(owner), 1);
        let text = format!("{store:?}");
        assert!(text.contains("capacity: 100000"), "{text}");
        assert!(text.contains("owner_share: 25"), "{text}");
    }

    fn owner(n: u32) -> ReplayOwner {
        ReplayOwner::from_digest(*key(1_000_000 + n).as_bytes())
    }

    /// `n` keys that fall in `shard` of `store`, none of them `key(_)`.
    fn keys_in(store: &MemoryReplayStore, shard: usize, n: usize) -> Vec<ReplayKey> {
        (0u32..)
            .map(|i| ReplayKey::from_parts("shard", &[&i.to_be_bytes()]))
            .filter(|k| store.inner.hasher.shard(&Slot::of(k)) == shard)
            .take(n)
            .collect()
    }

    /// The counts agree with the entries, and no owner holding none is
    /// kept.
    fn check_counts(store: &MemoryReplayStore) {
        for shard in &store.inner.shards {
            let shard = lock(shard);
            let mut counted: HashMap<u64, usize> = HashMap::new();
            for entry in shard.entries.values() {
                if let Some(owner) = entry.owner {
                    *counted.entry(owner.0.get()).or_default() += 1;
                }
            }
            let kept: HashMap<u64, usize> = shard
                .owners
                .iter()
                .map(|(owner, held)| (owner.0.get(), *held))
                .collect();
            assert_eq!(counted, kept);
        }
    }

    fn refused_as(result: Result<bool, ReplayError>) -> ReplayErrorKind {
        match result {
            Err(e) => e.kind(),
            Ok(fresh) => panic!("not refused: {fresh}"),
        }
    }

    #[test]
    fn one_owner_is_held_to_its_share_of_each_shard() {
        // 16 entries a shard, 25% of it (4) per owner.
        let store = MemoryReplayStore::with_capacity(16 * 16);
        assert_eq!(store.max_per_owner(), 64);
        let now = SystemTime::now();
        let exp = now + Duration::from_secs(60);
        let keys = keys_in(&store, 3, 16);
        let (flooder, other) = (owner(1), owner(2));
        for k in &keys[..4] {
            assert!(store.insert_for_at(*k, flooder, exp, now).unwrap());
        }
        for k in &keys[4..8] {
            let refused = refused_as(store.insert_for_at(*k, flooder, exp, now));
            assert_eq!(refused, ReplayErrorKind::OwnerShareExceeded);
        }
        // Its proofs already seen are replays, whatever it holds.
        assert!(!store.insert_for_at(keys[0], flooder, exp, now).unwrap());
        // Another owner, and proofs of no owner, still get in.
        for k in &keys[4..8] {
            assert!(store.insert_for_at(*k, other, exp, now).unwrap());
        }
        assert!(store.insert_at(keys[8], exp, now).unwrap());
        assert_eq!(store.held_by(flooder), 4);
        assert_eq!(store.held_by(other), 4);
        assert_eq!(store.len(), 9);
        check_counts(&store);
        let e = store.insert_for_at(keys[9], flooder, exp, now).unwrap_err();
        assert!(e.is_owner_share_exceeded() && !e.is_full(), "{e}");
        assert_eq!(
            e.to_string(),
            "the proof key holds its share of the replay store"
        );
    }

    #[test]
    fn the_fuller_a_shard_the_less_each_owner_may_hold() {
        // No share to speak of: only the free room limits an owner.
        let store = MemoryReplayStore::with_capacity(16 * 16).owner_share(100);
        assert_eq!(store.max_per_owner(), 256);
        let now = SystemTime::now();
        let exp = now + Duration::from_secs(60);
        let mut keys = keys_in(&store, 0, 64).into_iter();
        let mut flood = |owner: ReplayOwner| {
            let mut accepted = 0;
            loop {
                match store.insert_for_at(keys.next().unwrap(), owner, exp, now) {
                    Ok(true) => accepted += 1,
                    Ok(false) => panic!("a new key seen as a replay"),
                    Err(e) => return (accepted, e.kind()),
                }
            }
        };
        use ReplayErrorKind::{Full, OwnerShareExceeded as Share};
        // Each floods in turn: alone, one gets half; the next half of what
        // is left, and so on; the keys holding most are refused first.
        assert_eq!(flood(owner(1)), (8, Share));
        assert_eq!(flood(owner(2)), (4, Share));
        assert_eq!(flood(owner(3)), (2, Share));
        assert_eq!(flood(owner(4)), (1, Share));
        assert_eq!(flood(owner(5)), (1, Share));
        // Full: an owner with nothing here is told so; the others, that
        // they hold more than their part.
        assert_eq!(flood(owner(6)), (0, Full));
        assert_eq!(flood(owner(1)), (0, Share));
        check_counts(&store);
    }

    #[test]
    fn expired_entries_give_an_owner_room_again_at_most_one_scan_a_second() {
        let store = MemoryReplayStore::with_capacity(16 * 16);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let keys = keys_in(&store, 5, 12);
        let flooder = owner(1);
        let soon = now + Duration::from_secs(10);
        let later = soon + Duration::from_millis(500);
        let far = now + Duration::from_secs(100);
        for (k, exp) in keys[..4].iter().zip([soon, soon, later, later]) {
            assert!(store.insert_for_at(*k, flooder, exp, now).unwrap());
        }
        let at = |ms: u64| now + Duration::from_millis(ms);
        let share = ReplayErrorKind::OwnerShareExceeded;
        assert_eq!(
            refused_as(store.insert_for_at(keys[4], flooder, far, at(9_999))),
            share
        );
        // Two expired: dropped by a scan, room for two.
        assert!(
            store
                .insert_for_at(keys[4], flooder, far, at(10_200))
                .unwrap()
        );
        assert!(
            store
                .insert_for_at(keys[5], flooder, far, at(10_200))
                .unwrap()
        );
        assert_eq!(
            refused_as(store.insert_for_at(keys[6], flooder, far, at(10_200))),
            share
        );
        // Two more expired, but the last scan was under a second ago.
        assert_eq!(
            refused_as(store.insert_for_at(keys[6], flooder, far, at(10_600))),
            share
        );
        assert_eq!(store.held_by(flooder), 4);
        assert!(
            store
                .insert_for_at(keys[6], flooder, far, at(11_200))
                .unwrap()
        );
        assert_eq!(store.held_by(flooder), 3);
        check_counts(&store);
    }

    #[test]
    fn a_clock_gone_back_does_not_stop_scans() {
        let store = MemoryReplayStore::with_capacity(16 * 16);
        let keys = keys_in(&store, 7, 9);
        let flooder = owner(1);
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        for k in &keys[..4] {
            assert!(
                store
                    .insert_for_at(*k, flooder, at(1_010), at(1_000))
                    .unwrap()
            );
        }
        // A scan at 1,011.
        assert!(
            store
                .insert_for_at(keys[4], flooder, at(2_000), at(1_011))
                .unwrap()
        );
        // The clock goes back before it.
        for k in &keys[5..8] {
            assert!(store.insert_for_at(*k, flooder, at(905), at(900)).unwrap());
        }
        assert_eq!(store.held_by(flooder), 4);
        assert!(
            store
                .insert_for_at(keys[8], flooder, at(2_000), at(906))
                .unwrap()
        );
        assert_eq!(store.held_by(flooder), 2);
        check_counts(&store);
    }

    #[test]
    fn an_expired_key_inserted_again_moves_to_its_new_owner() {
        let store = MemoryReplayStore::with_capacity(16 * 16);
        let now = SystemTime::now();
        let exp = now + Duration::from_secs(60);
        assert!(store.insert_for_at(key(1), owner(1), exp, now).unwrap());
        let after = exp + Duration::from_secs(1);
        let exp2 = after + Duration::from_secs(60);
        assert!(store.insert_for_at(key(1), owner(2), exp2, after).unwrap());
        assert_eq!(store.held_by(owner(1)), 0);
        assert_eq!(store.held_by(owner(2)), 1);
        // And to no owner.
        let after2 = exp2 + Duration::from_secs(1);
        assert!(
            store
                .insert_at(key(1), after2 + Duration::from_secs(60), after2)
                .unwrap()
        );
        assert_eq!(store.held_by(owner(2)), 0);
        assert_eq!(store.len(), 1);
        check_counts(&store);
    }

    #[test]
    fn counts_are_dropped_with_their_entries() {
        let store = MemoryReplayStore::with_capacity(16);
        let now = SystemTime::now();
        let exp = now + Duration::from_secs(60);
        let mut held = 0;
        for n in 0..200 {
            if store.insert_for_at(key(n), owner(n), exp, now).is_ok() {
                held += 1;
            }
        }
        assert_eq!(store.len(), held);
        check_counts(&store);
        // Once every entry has expired, a full shard's scan drops them and
        // their owners' counts.
        let after = exp + Duration::from_secs(1);
        for n in 200..400 {
            let _ = store.insert_for_at(key(n), owner(n), after + Duration::from_secs(60), after);
        }
        for n in 0..200 {
            assert_eq!(store.held_by(owner(n)), 0);
        }
        check_counts(&store);
        let owners: usize = store
            .inner
            .shards
            .iter()
            .map(|s| lock(s).owners.len())
            .sum();
        assert!(owners <= store.len());
    }

    #[test]
    fn the_owner_share_is_clamped() {
        let store = MemoryReplayStore::with_capacity(1_000);
        // 63 a shard (1,008 in all).
        assert_eq!(store.max_per_owner(), 16 * 16);
        assert_eq!(store.clone().owner_share(0).max_per_owner(), 16);
        assert_eq!(store.clone().owner_share(200).max_per_owner(), 16 * 63);
        // Clones share it.
        assert_eq!(store.max_per_owner(), 16 * 63);
        assert_eq!(owner_limit(1, 1), 1);
        assert_eq!(owner_limit(1, 100), 1);
        assert_eq!(owner_limit(usize::MAX, 100), usize::MAX);
        assert_eq!(owner_limit(62_500, 25), 15_625);
        assert_eq!(owner_limit(101, 50), 51);
        assert_eq!(owner_limit(3, 1), 1);
    }
}
