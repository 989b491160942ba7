//! Rate-limited `warn` events: at most one per interval for one source (a
//! layer, a cache), each counting the events left out since the previous,
//! so a flood of requests cannot flood the logs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one warning per interval (one second by default); each warning
/// that goes out learns how many were left out since the previous one.
/// Lock-free: two atomics, shared by every clone of the owner.
pub(crate) struct WarnLimit {
    start: Instant,
    interval_ms: u64,
    /// Milliseconds after `start` from which the next warning may go out.
    next: AtomicU64,
    /// Warnings left out since the last one that went out.
    suppressed: AtomicU64,
}

impl WarnLimit {
    /// At most one warning a second.
    pub(crate) fn new() -> Self {
        Self::every(Duration::from_secs(1))
    }

    /// At most one warning per `interval`.
    pub(crate) fn every(interval: Duration) -> Self {
        Self {
            start: crate::clock::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            next: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(count left out since the last warning)` when a warning may go
    /// out now; `None` (and the event counted) when it must be left out.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = u64::try_from(
            crate::clock::now()
                .saturating_duration_since(self.start)
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        let next = self.next.load(Ordering::Relaxed);
        if now >= next
            && self
                .next
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Lets the next warning go out at once, as if the interval had passed.
    #[cfg(test)]
    pub(crate) fn expire(&self) {
        self.next.store(0, Ordering::Relaxed);
    }
}

impl Default for WarnLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for WarnLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarnLimit")
            .field("interval_ms", &self.interval_ms)
            .field("suppressed", &self.suppressed.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_limited_and_count_the_ones_left_out() {
        let limit = WarnLimit::new();
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        limit.expire();
        assert_eq!(limit.allow(), Some(2));
        assert_eq!(limit.allow(), None);

        let hourly = WarnLimit::every(Duration::from_secs(3600));
        assert_eq!(hourly.allow(), Some(0));
        for _ in 0..1000 {
            assert_eq!(hourly.allow(), None);
        }
        hourly.expire();
        assert_eq!(hourly.allow(), Some(1000));
    }
}
