//! When a certificate from IMDS is renewed, and the task that does it.

use std::sync::Weak;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::Shared;
use crate::ClientIdentity;

/// Renew once less than this is left (unless half the lifetime passes
/// first).
const MARGIN: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest wait before a renewal, so that clocks that disagree cannot
/// make it spin.
const MIN_WAIT: Duration = Duration::from_millis(100);
/// The first wait after a failed renewal, doubled after each further one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait after failed renewals.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// When a certificate valid from `not_before` to `not_after` is due for
/// renewal: when less than 24 hours of it remain or half of its lifetime
/// has passed, whichever comes first. A certificate that lives 24 hours or
/// less (which the 24-hour rule would renew at once, again and again) is
/// renewed at half its lifetime.
pub(super) fn renewal_due(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let half = not_before + lifetime / 2;
    match not_after.checked_sub(MARGIN) {
        Some(margin) if margin > not_before => margin.min(half),
        _ => half,
    }
}

/// How long to wait, from `now`, for `due`.
pub(super) fn wait_until(due: SystemTime, now: SystemTime) -> Duration {
    due.duration_since(now).unwrap_or_default().max(MIN_WAIT)
}

/// How long to wait after `failures` failed renewals in a row, with
/// `remaining` validity left on the current certificate: the backoff, but
/// never more than a quarter of what is left, so a certificate about to
/// expire is tried for more often.
pub(super) fn retry_in(failures: u32, remaining: Duration) -> Duration {
    let backoff = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(MAX_BACKOFF);
    if remaining.is_zero() {
        backoff
    } else {
        backoff.min(remaining / 4).max(MIN_WAIT * 2)
    }
}

/// Renews the identity of `shared` whenever it is due. `changes` sees
/// every new identity (a renewal asked for by hand moves the next one on)
/// and ends when the last handle is dropped, which ends the task.
pub(super) async fn run(shared: Weak<Shared>, mut changes: watch::Receiver<ClientIdentity>) {
    let mut failures = 0u32;
    loop {
        let wait = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let current = shared.rotation.current();
            let now = SystemTime::now();
            if failures == 0 {
                wait_until(renewal_due(current.not_before(), current.not_after()), now)
            } else {
                let remaining = current.not_after().duration_since(now).unwrap_or_default();
                retry_in(failures, remaining)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = changes.changed() => {
                if changed.is_err() {
                    // The identity is gone.
                    return;
                }
                // Renewed elsewhere: due later.
                failures = 0;
                continue;
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match shared.renew().await {
            Ok(_) => {
                failures = 0;
                changes.borrow_and_update();
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let current = shared.rotation.current();
                tracing::warn!(
                    error = %e,
                    failures,
                    current = %current.thumbprint(),
                    not_after = %crate::identity::validity::Date(current.not_after()),
                    "managed identity certificate not renewed; keeping the current one and trying again"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn renewal_is_due_at_half_life_or_a_day_before_expiry() {
        let start = SystemTime::UNIX_EPOCH + HOUR * 24 * 365 * 50;
        // Seven days: half the lifetime comes first.
        assert_eq!(renewal_due(start, start + HOUR * 24 * 7), start + HOUR * 84);
        // Thirty hours: a day before expiry comes first.
        assert_eq!(renewal_due(start, start + HOUR * 30), start + HOUR * 6);
        // A day or less: half the lifetime, not at once.
        assert_eq!(renewal_due(start, start + HOUR * 24), start + HOUR * 12);
        assert_eq!(
            renewal_due(start, start + Duration::from_secs(4)),
            start + Duration::from_secs(2)
        );
        // Backwards dates do not panic.
        assert_eq!(renewal_due(start + HOUR, start), start + HOUR);
    }

    #[test]
    fn waits_are_never_zero_and_backoff_is_bounded() {
        let now = SystemTime::UNIX_EPOCH + HOUR;
        assert_eq!(wait_until(now - HOUR, now), MIN_WAIT);
        assert_eq!(wait_until(now + HOUR, now), HOUR);
        assert_eq!(retry_in(1, HOUR * 100), FIRST_BACKOFF);
        assert_eq!(retry_in(2, HOUR * 100), FIRST_BACKOFF * 2);
        assert_eq!(retry_in(u32::MAX, HOUR * 100), MAX_BACKOFF);
        assert_eq!(retry_in(20, Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(retry_in(1, Duration::from_millis(1)), MIN_WAIT * 2);
        assert_eq!(retry_in(3, Duration::ZERO), FIRST_BACKOFF * 4);
    }
}
