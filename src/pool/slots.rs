//! One client per certificate thumbprint, whatever the client: bounded
//! (least recently used out), swept when idle, and rid of the clients of
//! replaced identities. [`MtlsClientPool`](super::MtlsClientPool) keeps
//! hyper-util clients in it; the `reqwest` feature's pool keeps reqwest's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::PoolStats;
use super::error::PoolError;
use crate::{ClientIdentity, Thumbprint};

/// Whether a client keeps idle connections for reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepIdle {
    Yes,
    /// Each connection closes once its requests are done: for a retired
    /// identity's last requests.
    No,
}

/// The clients of identities, one per thumbprint, and their counters.
pub(crate) struct IdentitySlots<C> {
    max_identities: usize,
    idle_timeout: Duration,
    slots: Mutex<Slots<C>>,
    built: AtomicU64,
    evicted: AtomicU64,
    retired: AtomicU64,
}

struct Slots<C> {
    map: HashMap<Thumbprint, Slot<C>>,
    last_sweep: Instant,
    /// The count of identity replacements when the slots were last searched
    /// for clients of retired identities.
    replacements_seen: u64,
}

struct Slot<C> {
    /// Cheap to clone (an `Arc`, or a client that is one): each request
    /// takes its own handle and keeps it while in flight.
    client: C,
    /// The identity the client presents.
    identity: ClientIdentity,
    last_used: Instant,
    /// When its certificate comes within a day of expiring, to be logged
    /// (once per identity).
    expiry_warning_at: Option<Instant>,
    /// Counts the client in the pool-clients gauge while the slot lives.
    _gauge: crate::metrics::PoolClientGauge,
}

impl<C: Clone> IdentitySlots<C> {
    /// At most `max_identities` clients, each dropped after `idle_timeout`
    /// unused.
    pub(crate) fn new(max_identities: usize, idle_timeout: Duration) -> Self {
        Self {
            max_identities,
            idle_timeout,
            slots: Mutex::new(Slots {
                map: HashMap::new(),
                last_sweep: crate::clock::now(),
                replacements_seen: crate::identity::replacements(),
            }),
            built: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            retired: AtomicU64::new(0),
        }
    }

    /// The counters and the number of identities held.
    pub(crate) fn stats(&self) -> PoolStats {
        PoolStats {
            identities: self.lock().map.len(),
            clients_built: self.built.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            retired: self.retired.load(Ordering::Relaxed),
        }
    }

    /// Whether a client for `thumbprint` is held.
    pub(crate) fn holds(&self, thumbprint: &Thumbprint) -> bool {
        self.lock().map.contains_key(thumbprint)
    }

    fn lock(&self) -> MutexGuard<'_, Slots<C>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client for `identity`, made by `build` (once) on first use.
    ///
    /// Before that: idle clients are swept now and then, and when an
    /// identity was replaced since the last call, the clients of replaced
    /// identities are dropped. A request that still carries a replaced
    /// identity (its token was fetched before the renewal) gets the client
    /// just dropped, or a one-off client that keeps no connection.
    pub(crate) fn client_for(
        &self,
        identity: &ClientIdentity,
        build: impl FnOnce(KeepIdle) -> Result<C, PoolError>,
    ) -> Result<C, PoolError> {
        let thumbprint = identity.thumbprint();
        let now = crate::clock::now();
        let mut slots = self.lock();
        if now.duration_since(slots.last_sweep) >= self.idle_timeout / 2 {
            self.sweep(&mut slots, now);
        }
        // One atomic load, unless an identity was replaced since last time.
        let replacements = crate::identity::replacements();
        let mut retired_client = None;
        if replacements != slots.replacements_seen {
            slots.replacements_seen = replacements;
            retired_client = self.drop_retired(&mut slots, &thumbprint);
        }
        if let Some(slot) = slots.map.get_mut(&thumbprint) {
            slot.last_used = now;
            if slot.expiry_warning_at.is_some_and(|at| now >= at) {
                slot.expiry_warning_at = None;
                slot.identity.warn_if_expiring(crate::clock::wall(), None);
            }
            return Ok(slot.client.clone());
        }
        if identity.is_retired() {
            // It goes out with the identity it is bound to, and no
            // connection is kept for it.
            drop(slots);
            return match retired_client {
                Some(client) => Ok(client),
                None => build(KeepIdle::No),
            };
        }
        while slots.map.len() >= self.max_identities {
            let Some(oldest) = slots
                .map
                .iter()
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(t, _)| *t)
            else {
                break;
            };
            slots.map.remove(&oldest);
            self.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(thumbprint = %oldest, "client identity evicted (least recently used)");
        }
        // Built under the lock: once per thumbprint, however many race.
        let client = build(KeepIdle::Yes)?;
        self.built.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(thumbprint = %thumbprint, "client for a new identity");
        slots.map.insert(
            thumbprint,
            Slot {
                client: client.clone(),
                identity: identity.clone(),
                last_used: now,
                expiry_warning_at: now
                    .checked_add(identity.expiry_warning_in(crate::clock::wall())),
                _gauge: crate::metrics::PoolClientGauge::held(),
            },
        );
        Ok(client)
    }

    /// Drops the clients of retired identities; returns the one for
    /// `thumbprint`, if it was among them, for the request at hand.
    fn drop_retired(&self, slots: &mut Slots<C>, thumbprint: &Thumbprint) -> Option<C> {
        let retired: Vec<Thumbprint> = slots
            .map
            .iter()
            .filter(|(_, slot)| slot.identity.is_retired())
            .map(|(t, _)| *t)
            .collect();
        let mut kept_for_request = None;
        for t in retired {
            let Some(slot) = slots.map.remove(&t) else {
                continue;
            };
            self.evicted.fetch_add(1, Ordering::Relaxed);
            self.retired.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(thumbprint = %t, "client of a replaced identity dropped");
            if t == *thumbprint {
                kept_for_request = Some(slot.client);
            }
        }
        kept_for_request
    }

    /// Drops identities idle for longer than the idle timeout.
    fn sweep(&self, slots: &mut Slots<C>, now: Instant) {
        let before = slots.map.len();
        slots
            .map
            .retain(|_, slot| now.duration_since(slot.last_used) < self.idle_timeout);
        let dropped = before - slots.map.len();
        if dropped > 0 {
            self.evicted.fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::debug!(dropped, "idle client identities dropped");
        }
        slots.last_sweep = now;
    }
}
