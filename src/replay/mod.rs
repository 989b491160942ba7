//! Replay detection: has this proof been seen before?
//!
//! A DPoP proof (or a signed HTTP request) is accepted once. The server
//! checks it last, after every signature, so only proofs that would
//! otherwise be accepted reach the store, and garbage cannot fill it. The
//! check is one call, [`ReplayStore::insert_if_absent`]: remember this
//! [`ReplayKey`] until `expires_at`, and say whether it was new. That is
//! one round trip to a shared store (Redis' `SET key 1 NX PX ms`), so a
//! fleet of servers refuses a proof that any of them accepted.
//!
//! A store that cannot answer returns an error, and the request must then be
//! refused (fail closed): a replay is never let through because the store
//! was down or full.
//!
//! The layer also says whose proof it is: [`ReplayStore::insert_if_absent_for`]
//! takes a [`ReplayOwner`], a digest of the proof key's thumbprint (DPoP's
//! `jkt`, the `kid` of a signed HTTP request), so that a store can keep one
//! key from taking all of it. A store that does not use the owner (a
//! closure, a store of yours implementing only `insert_if_absent`) works as
//! before.
//!
//! - [`MemoryReplayStore`]: for one process; bounded, sharded, refuses new
//!   entries when full rather than forgetting unexpired ones, and holds each
//!   key to a share of it.
//! - `RedisReplayStore` (feature `redis`): shared by a fleet, one
//!   `SET key 1 NX PX ms` per proof, failing closed.
//! - [`BoxReplayStore`]: any store behind one type.
//! - Any closure `Fn(ReplayKey, SystemTime) -> impl Future<Output =
//!   Result<bool, ReplayError>>` is a store too.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use tower_token_binding::replay::{MemoryReplayStore, ReplayKey, ReplayStore};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryReplayStore::new();
//! let key = ReplayKey::from_parts("example", &[b"jkt", b"https://api.example/x", b"jti-1"]);
//! let expires_at = SystemTime::now() + Duration::from_secs(60);
//!
//! assert!(store.insert_if_absent(key, expires_at).await.unwrap()); // new: accept
//! assert!(!store.insert_if_absent(key, expires_at).await.unwrap()); // seen: a replay
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

mod memory;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisConnectError, RedisReplayFuture, RedisReplayStore};
pub use memory::MemoryReplayStore;

/// Remembers which proofs have been seen.
///
/// [`insert_if_absent`](Self::insert_if_absent) is the whole interface:
/// atomically, if `key` is not remembered (or its entry has expired),
/// remember it until `expires_at` and answer `true` (new: accept the
/// proof); if it is, answer `false` (a replay: refuse it). An error means
/// the store could not tell, and the proof must be refused.
///
/// An `expires_at` that is not in the future (by the store's clock) is
/// answered `false`: such a proof is past its lifetime, so it cannot be
/// remembered for any time at all, and accepting it unremembered would let
/// it be replayed. A store never answers `true` without remembering the key
/// until at least `expires_at`.
///
/// [`CnfValidationLayer`](crate::validation::CnfValidationLayer) calls
/// [`insert_if_absent_for`](Self::insert_if_absent_for), which also names
/// the proof's [`ReplayOwner`]; by default it is `insert_if_absent`, the
/// owner unused. A store that limits what one owner may hold overrides it
/// and refuses an owner over its part with
/// [`ReplayErrorKind::OwnerShareExceeded`].
///
/// The future owns what it needs (`'static`), so a store may make a network
/// round trip. Closures are stores:
///
/// ```
/// use std::time::SystemTime;
/// use tower_token_binding::replay::{ReplayError, ReplayKey, ReplayStore};
///
/// fn takes(_: impl ReplayStore) {}
///
/// // A store that never remembers anything: every proof is new. (Don't.)
/// takes(|_key: ReplayKey, _expires_at: SystemTime| async { Ok::<_, ReplayError>(true) });
/// ```
pub trait ReplayStore: Clone + Send + Sync + 'static {
    /// The future returned by [`insert_if_absent`](Self::insert_if_absent).
    type Future: Future<Output = Result<bool, ReplayError>> + Send + 'static;

    /// Remembers `key` until `expires_at` unless it is already remembered:
    /// `Ok(true)` when it was new, `Ok(false)` when it is a replay.
    ///
    /// An `expires_at` already past (or now) is refused: `Ok(false)`, and
    /// nothing is remembered.
    fn insert_if_absent(&self, key: ReplayKey, expires_at: SystemTime) -> Self::Future;

    /// [`insert_if_absent`](Self::insert_if_absent) for a proof made with
    /// `owner`'s key: a store may refuse it with
    /// [`ReplayErrorKind::OwnerShareExceeded`] when that owner holds more
    /// of the store than it may, so that one key cannot fill the store for
    /// everyone.
    ///
    /// Provided: `insert_if_absent`, the owner unused. A store that wraps
    /// another should forward this method too, or the owner is lost.
    fn insert_if_absent_for(
        &self,
        key: ReplayKey,
        _owner: ReplayOwner,
        expires_at: SystemTime,
    ) -> Self::Future {
        self.insert_if_absent(key, expires_at)
    }
}

impl<F, Fut> ReplayStore for F
where
    F: Fn(ReplayKey, SystemTime) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, ReplayError>> + Send + 'static,
{
    type Future = Fut;

    fn insert_if_absent(&self, key: ReplayKey, expires_at: SystemTime) -> Fut {
        self(key, expires_at)
    }
}

/// What a proof is remembered by: a SHA-256 digest, never the proof itself.
///
/// For DPoP it is the digest of the proof key's thumbprint, the `htu` and
/// the `jti` ([`VerifiedDpopProof::replay_key`](crate::proof::dpop::VerifiedDpopProof::replay_key)),
/// so one client's `jti` cannot collide with another's. Its text form
/// ([`Display`](fmt::Display)) is base64url, 43 characters, fit for a
/// Redis key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey([u8; 32]);

impl ReplayKey {
    /// The key of `parts` under `domain` (`"dpop"`, ...): SHA-256 over the
    /// domain and each part, each preceded by its length as 8 big-endian
    /// bytes, so no two different lists of parts give the same input.
    pub fn from_parts(domain: &str, parts: &[&[u8]]) -> Self {
        let mut context = digest::Context::new(&digest::SHA256);
        for part in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(context.finish().as_ref());
        Self(bytes)
    }

    /// A key from a 32-byte digest computed elsewhere.
    pub const fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The 32 bytes of the digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 43];
        let written = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..written]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey({self})")
    }
}

/// Whose proof an entry is: a SHA-256 digest of the proof key's RFC 7638
/// thumbprint ([`of_key`](Self::of_key)), the same for a key's DPoP proofs
/// (`jkt`) and its signed HTTP requests (`kid`).
///
/// A public value (the thumbprint is in the client's tokens), not a
/// secret; what a store counts entries by, so that one key cannot take all
/// of it. Its text form ([`Display`](fmt::Display)) is base64url, 43
/// characters.
///
/// ```
/// use tower_token_binding::proof::{Algorithm, ProofKey};
/// use tower_token_binding::replay::ReplayOwner;
///
/// let key = ProofKey::generate(Algorithm::Es256).unwrap();
/// let owner = ReplayOwner::of_key(key.public_jwk().thumbprint().as_bytes());
/// assert_eq!(owner, ReplayOwner::from_digest(*owner.as_bytes()));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayOwner([u8; 32]);

impl ReplayOwner {
    /// The owner of the proofs made with the key of `thumbprint` (the 32
    /// bytes of its RFC 7638 thumbprint, as
    /// [`JwkThumbprint::as_bytes`](crate::proof::JwkThumbprint::as_bytes)
    /// gives them): SHA-256 over the domain `"replay-owner"` and those
    /// bytes (as [`ReplayKey::from_parts`] does it).
    pub fn of_key(thumbprint: &[u8; 32]) -> Self {
        Self(*ReplayKey::from_parts("replay-owner", &[&thumbprint[..]]).as_bytes())
    }

    /// An owner from a 32-byte digest computed elsewhere.
    pub const fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The 32 bytes of the digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ReplayOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&ReplayKey(self.0), f)
    }
}

impl fmt::Debug for ReplayOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayOwner({self})")
    }
}

/// Why a [`ReplayStore`] could not tell whether a proof is new, or would
/// not remember it. The proof must be refused: a `503` (the client is not
/// at fault), or a `429` for [`ReplayErrorKind::OwnerShareExceeded`] (its
/// key holds more of the store than it may).
#[derive(Debug)]
pub struct ReplayError {
    kind: ReplayErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// What kept a [`ReplayStore`] from answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayErrorKind {
    /// The store is full of entries that have not expired, and forgetting
    /// one would let its proof be replayed.
    Full,
    /// The store could not be reached or did not answer in time.
    Unavailable,
    /// Some other failure.
    Other,
    /// The proof's key ([`ReplayOwner`]) holds as many unexpired entries as
    /// the store lets one key hold now: its share, or, in a store nearly
    /// full, as many as are still free
    /// ([`MemoryReplayStore`](MemoryReplayStore#a-share-per-key)). Its
    /// client sends more proofs than its part; other keys' proofs are
    /// still accepted. Answered `429` with `Retry-After` by the layer.
    OwnerShareExceeded,
}

impl ReplayError {
    /// An error of `kind`.
    pub fn new(kind: ReplayErrorKind) -> Self {
        Self { kind, source: None }
    }

    /// An error of `kind` caused by `source` (the client library's error).
    pub fn with_source(
        kind: ReplayErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ReplayErrorKind {
        self.kind
    }

    /// Whether the store is full.
    pub fn is_full(&self) -> bool {
        self.kind == ReplayErrorKind::Full
    }

    /// Whether the store could not be reached.
    pub fn is_unavailable(&self) -> bool {
        self.kind == ReplayErrorKind::Unavailable
    }

    /// Whether the proof's key holds more of the store than it may
    /// ([`ReplayErrorKind::OwnerShareExceeded`]).
    pub fn is_owner_share_exceeded(&self) -> bool {
        self.kind == ReplayErrorKind::OwnerShareExceeded
    }
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            ReplayErrorKind::Full => "the replay store is full",
            ReplayErrorKind::Unavailable => "the replay store is unavailable",
            ReplayErrorKind::Other => "the replay store failed",
            ReplayErrorKind::OwnerShareExceeded => {
                "the proof key holds its share of the replay store"
            }
        })
    }
}

impl std::error::Error for ReplayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Any [`ReplayStore`] behind one type, for configurations that choose the
/// store at run time (memory or Redis). Cloning is cheap.
///
/// ```
/// use tower_token_binding::replay::{BoxReplayStore, MemoryReplayStore};
///
/// let store = BoxReplayStore::new(MemoryReplayStore::new());
/// # let _ = store;
/// ```
#[derive(Clone)]
pub struct BoxReplayStore {
    inner: Arc<dyn Erased>,
}

trait Erased: Send + Sync + 'static {
    fn boxed_insert(&self, key: ReplayKey, expires_at: SystemTime) -> ReplayFuture;
    fn boxed_insert_for(
        &self,
        key: ReplayKey,
        owner: ReplayOwner,
        expires_at: SystemTime,
    ) -> ReplayFuture;
}

impl<S: ReplayStore> Erased for S {
    fn boxed_insert(&self, key: ReplayKey, expires_at: SystemTime) -> ReplayFuture {
        ReplayFuture {
            inner: Box::pin(ReplayStore::insert_if_absent(self, key, expires_at)),
        }
    }

    fn boxed_insert_for(
        &self,
        key: ReplayKey,
        owner: ReplayOwner,
        expires_at: SystemTime,
    ) -> ReplayFuture {
        ReplayFuture {
            inner: Box::pin(ReplayStore::insert_if_absent_for(
                self, key, owner, expires_at,
            )),
        }
    }
}

impl BoxReplayStore {
    /// Boxes `store`.
    pub fn new(store: impl ReplayStore) -> Self {
        Self {
            inner: Arc::new(store),
        }
    }
}

impl fmt::Debug for BoxReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxReplayStore").finish_non_exhaustive()
    }
}

impl ReplayStore for BoxReplayStore {
    type Future = ReplayFuture;

    fn insert_if_absent(&self, key: ReplayKey, expires_at: SystemTime) -> ReplayFuture {
        self.inner.boxed_insert(key, expires_at)
    }

    fn insert_if_absent_for(
        &self,
        key: ReplayKey,
        owner: ReplayOwner,
        expires_at: SystemTime,
    ) -> ReplayFuture {
        self.inner.boxed_insert_for(key, owner, expires_at)
    }
}

/// Response future for [`BoxReplayStore`].
pub struct ReplayFuture {
    inner: Pin<Box<dyn Future<Output = Result<bool, ReplayError>> + Send>>,
}

impl Future for ReplayFuture {
    type Output = Result<bool, ReplayError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for ReplayFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[test]
    fn keys_separate_their_parts() {
        let a = ReplayKey::from_parts("dpop", &[b"ab", b"c"]);
        let b = ReplayKey::from_parts("dpop", &[b"a", b"bc"]);
        let c = ReplayKey::from_parts("shr", &[b"ab", b"c"]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, ReplayKey::from_parts("dpop", &[b"ab", b"c"]));
        assert_eq!(a.to_string().len(), 43);
        assert_eq!(ReplayKey::from_digest(*a.as_bytes()), a);
        assert!(format!("{a:?}").starts_with("ReplayKey("));
    }

    #[tokio::test]
    async fn closures_and_boxes_are_stores() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let closure = move |_key: ReplayKey, _expires_at: SystemTime| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Ok(true)
                } else {
                    Err(ReplayError::with_source(
                        ReplayErrorKind::Unavailable,
                        "down",
                    ))
                }
            }
        };
        let store = BoxReplayStore::new(closure);
        let key = ReplayKey::from_parts("t", &[]);
        let later = SystemTime::now() + Duration::from_secs(1);
        assert!(store.insert_if_absent(key, later).await.unwrap());
        let err = store.insert_if_absent(key, later).await.unwrap_err();
        assert!(err.is_unavailable() && !err.is_full());
        assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "down");
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        let memory = BoxReplayStore::new(MemoryReplayStore::new());
        assert!(memory.clone().insert_if_absent(key, later).await.unwrap());
        assert!(!memory.insert_if_absent(key, later).await.unwrap());
    }

    #[test]
    fn owners_are_digests_of_thumbprints() {
        let thumbprint = [3; 32];
        let owner = ReplayOwner::of_key(&thumbprint);
        assert_ne!(owner.as_bytes(), &thumbprint);
        assert_eq!(owner, ReplayOwner::of_key(&[3; 32]));
        assert_ne!(owner, ReplayOwner::of_key(&[4; 32]));
        assert_eq!(ReplayOwner::from_digest(*owner.as_bytes()), owner);
        assert_eq!(owner.to_string().len(), 43);
        assert_eq!(format!("{owner:?}"), format!("ReplayOwner({owner})"));
    }

    #[tokio::test]
    async fn the_owner_reaches_the_store_through_a_box_and_closures_ignore_it() {
        let later = SystemTime::now() + Duration::from_secs(60);
        let owner = ReplayOwner::from_digest([1; 32]);
        let key = |n: u32| ReplayKey::from_parts("t", &[&n.to_be_bytes()]);

        // A closure: the provided method, the owner unused.
        let seen = Arc::new(AtomicUsize::new(0));
        let counted = seen.clone();
        let closure = move |_key: ReplayKey, _expires_at: SystemTime| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, ReplayError>(true) }
        };
        assert!(
            closure
                .insert_if_absent_for(key(0), owner, later)
                .await
                .unwrap()
        );
        let boxed = BoxReplayStore::new(closure);
        assert!(
            boxed
                .insert_if_absent_for(key(0), owner, later)
                .await
                .unwrap()
        );
        assert_eq!(seen.load(Ordering::SeqCst), 2);

        // A boxed memory store of one entry a shard: the owner gets one
        // entry per shard, then is refused; another owner is not.
        let store = MemoryReplayStore::with_capacity(16);
        let boxed = BoxReplayStore::new(store.clone());
        let mut refused = None;
        for n in 0..17 {
            if let Err(e) = boxed.insert_if_absent_for(key(n), owner, later).await {
                refused = Some(n);
                assert!(e.is_owner_share_exceeded(), "{e}");
                break;
            }
        }
        let refused = refused.expect("17 keys in 16 shards of one");
        assert_eq!(store.held_by(owner), refused as usize);
    }
}
