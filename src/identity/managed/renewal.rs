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
/// The longest wait after failed renewals once the certificate has
/// expired: requests fail until a renewal succeeds.
const EXPIRED_MAX_BACKOFF: Duration = Duration::from_secs(15);

/// When a certificate valid from `not_before` to `not_after`, received at
/// `received`, is due for renewal: when less than 24 hours of it remain or
/// half of its lifetime has passed, whichever comes first. A certificate
/// that lives 24 hours or less (which the 24-hour rule would renew at once,
/// again and again) is renewed at half its lifetime.
///
/// The lifetime is counted from when the certificate was obtained: the
/// later of `not_before` and `received`. A certificate dated back (a
/// `not_before` an hour ago, as issuers do against clock skew), or a clock
/// behind the issuer's, would otherwise be due the moment it arrives.
pub(super) fn renewal_due(
    not_before: SystemTime,
    not_after: SystemTime,
    received: SystemTime,
) -> SystemTime {
    let obtained = not_before.max(received);
    let lifetime = not_after.duration_since(obtained).unwrap_or_default();
    let half = obtained + lifetime / 2;
    match not_after.checked_sub(MARGIN) {
        Some(margin) if margin > obtained => margin.min(half),
        _ => half,
    }
}

/// Whether a certificate just received is due already (by `due`, from
/// [`renewal_due`]): renewing it at once would give another like it, so
/// the task backs off as after a failure instead.
pub(super) fn due_on_arrival(due: SystemTime, now: SystemTime) -> bool {
    wait_until(due, now) <= MIN_WAIT
}

/// How long to wait, from `now`, for `due`.
pub(super) fn wait_until(due: SystemTime, now: SystemTime) -> Duration {
    due.duration_since(now).unwrap_or_default().max(MIN_WAIT)
}

/// How long to wait after `failures` failed renewals in a row, with
/// `remaining` validity left on the current certificate: the backoff, but
/// never more than a quarter of what is left, so a certificate about to
/// expire is tried for more often, and never more than 15 s once it has
/// expired, since requests fail until a renewal succeeds.
pub(super) fn retry_in(failures: u32, remaining: Duration) -> Duration {
    let backoff = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(MAX_BACKOFF);
    if remaining.is_zero() {
        backoff.min(EXPIRED_MAX_BACKOFF)
    } else {
        backoff.min(remaining / 4).max(MIN_WAIT * 2)
    }
}

/// Renews the identity of `shared` whenever it is due. `changes` sees
/// every new identity (a renewal asked for by hand moves the next one on)
/// and ends when the last handle is dropped, which ends the task.
pub(super) async fn run(shared: Weak<Shared>, mut changes: watch::Receiver<ClientIdentity>) {
    let mut failures = 0u32;
    // When the current identity arrived: it was issued just before the task
    // started.
    let mut received = crate::clock::wall();
    loop {
        // How long to wait, and for which identity: a renewal by hand while
        // the task waits or goes on to renew makes it due later.
        let (wait, seen) = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let current = shared.rotation.current();
            let now = crate::clock::wall();
            let wait = if failures == 0 {
                wait_until(
                    renewal_due(current.not_before(), current.not_after(), received),
                    now,
                )
            } else {
                let remaining = current.not_after().duration_since(now).unwrap_or_default();
                retry_in(failures, remaining)
            };
            (wait, current.thumbprint())
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
                received = crate::clock::wall();
                continue;
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // Only if the identity is still the one found due: one renewed by
        // hand since (before the select saw it, or while this one waited
        // for the renewal lock) is taken as is.
        match shared.renew(Some(seen)).await {
            Ok(identity) => {
                changes.borrow_and_update();
                let now = crate::clock::wall();
                received = now;
                let due = renewal_due(identity.not_before(), identity.not_after(), received);
                if due_on_arrival(due, now) {
                    // Renewing again at once would only bring another like
                    // it: back off as after a failure.
                    failures = failures.saturating_add(1);
                    tracing::warn!(
                        failures,
                        new = %identity.thumbprint(),
                        not_after = %crate::identity::validity::Date(identity.not_after()),
                        "the renewed managed identity certificate is due for renewal already; trying again later"
                    );
                } else {
                    failures = 0;
                }
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
        // Received when it became valid, or a little after (a clock behind
        // the issuer's receives it before).
        for received in [start - HOUR, start] {
            // Seven days: half the lifetime comes first.
            assert_eq!(
                renewal_due(start, start + HOUR * 24 * 7, received),
                start + HOUR * 84
            );
            // Thirty hours: a day before expiry comes first.
            assert_eq!(
                renewal_due(start, start + HOUR * 30, received),
                start + HOUR * 6
            );
            // A day or less: half the lifetime, not at once.
            assert_eq!(
                renewal_due(start, start + HOUR * 24, received),
                start + HOUR * 12
            );
            assert_eq!(
                renewal_due(start, start + Duration::from_secs(4), received),
                start + Duration::from_secs(2)
            );
        }
        // Backwards dates do not panic.
        assert_eq!(renewal_due(start + HOUR, start, start), start + HOUR);
        assert_eq!(renewal_due(start, start - HOUR, start + HOUR), start + HOUR);
    }

    #[test]
    fn a_backdated_certificate_is_not_due_on_arrival() {
        let now = SystemTime::UNIX_EPOCH + HOUR * 24 * 365 * 50;
        // Valid from an hour ago for two hours, received now: half of what
        // is left, not at once (half of its whole lifetime is now).
        let due = renewal_due(now - HOUR, now + HOUR, now);
        assert_eq!(due, now + HOUR / 2);
        assert!(!due_on_arrival(due, now));
        assert_eq!(wait_until(due, now), HOUR / 2);
        // Three days, backdated a day: a day before expiry.
        let due = renewal_due(now - HOUR * 24, now + HOUR * 48, now);
        assert_eq!(due, now + HOUR * 24);
        // A clock ahead of the issuer's: the same.
        let due = renewal_due(now - HOUR * 3, now + HOUR, now);
        assert_eq!(due, now + HOUR / 2);
    }

    #[test]
    fn a_certificate_that_arrives_due_is_backed_off_from() {
        let now = SystemTime::UNIX_EPOCH + HOUR * 24 * 365 * 50;
        // Expired by our clock, or about to: due on arrival.
        assert!(due_on_arrival(renewal_due(now - HOUR, now, now), now));
        assert!(due_on_arrival(
            renewal_due(now - HOUR, now + Duration::from_millis(50), now),
            now
        ));
        assert!(!due_on_arrival(
            renewal_due(now, now + Duration::from_secs(4), now),
            now
        ));
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

    #[test]
    fn after_expiry_retries_stay_frequent() {
        // Requests fail until a renewal succeeds: never minutes apart.
        for failures in [5, 6, 9, 20, u32::MAX] {
            assert_eq!(retry_in(failures, Duration::ZERO), EXPIRED_MAX_BACKOFF);
        }
        assert_eq!(EXPIRED_MAX_BACKOFF, Duration::from_secs(15));
        assert_eq!(retry_in(4, Duration::ZERO), FIRST_BACKOFF * 8);
        // Before expiry the longer backoff stays.
        assert_eq!(retry_in(20, HOUR * 100), MAX_BACKOFF);
    }
}
