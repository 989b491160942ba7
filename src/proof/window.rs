//! [`ReplayWindow`]: how long a verified proof is acceptable and how long
//! a replay store must remember it, the same for DPoP proofs and signed
//! HTTP requests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::replay::ReplayKey;

/// What a verified proof is remembered by, and for how long: acceptable
/// while `now - made <= max_age`, remembered a second longer (the time a
/// proof carries has whole seconds).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplayWindow {
    key: ReplayKey,
    acceptable_until: SystemTime,
    expires_at: SystemTime,
}

impl ReplayWindow {
    /// The window of a proof remembered by `key`, made `made` after the
    /// Unix epoch (its `iat` or `ts`), acceptable for `max_age`; `now` when
    /// the sum overflows.
    pub(crate) fn new(key: ReplayKey, made: Duration, max_age: Duration, now: SystemTime) -> Self {
        let acceptable_until = UNIX_EPOCH
            .checked_add(made.saturating_add(max_age))
            .unwrap_or(now);
        let expires_at = acceptable_until
            .checked_add(Duration::from_secs(1))
            .unwrap_or(acceptable_until);
        Self {
            key,
            acceptable_until,
            expires_at,
        }
    }

    /// What the proof is remembered by.
    pub(crate) fn key(&self) -> ReplayKey {
        self.key
    }

    /// Until when the proof must be remembered.
    pub(crate) fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// Whether the proof is still acceptable at `now`.
    pub(crate) fn is_acceptable_at(&self, now: SystemTime) -> bool {
        now <= self.acceptable_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceptable_for_max_age_and_remembered_a_second_longer() {
        let key = ReplayKey::from_parts("test", &[b"x"]);
        let made = Duration::from_secs(1_800_000_000);
        let now = UNIX_EPOCH + made;
        let window = ReplayWindow::new(key, made, Duration::from_secs(60), now);
        assert!(window.is_acceptable_at(now + Duration::from_secs(60)));
        assert!(!window.is_acceptable_at(now + Duration::from_secs(61)));
        assert_eq!(window.expires_at(), now + Duration::from_secs(61));
        assert_eq!(window.key(), key);
        // No overflow: the far future is `now`.
        let far = ReplayWindow::new(key, Duration::MAX, Duration::from_secs(60), now);
        assert!(far.is_acceptable_at(now));
        assert!(!far.is_acceptable_at(now + Duration::from_secs(1)));
    }
}
