//! The crate's clock: every reading of the time goes through here, and
//! through tokio's clock, so that a test that pauses tokio's time
//! (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`) and
//! advances it sees caches expire, backoffs end and proofs age without
//! sleeping.
//!
//! Outside a paused runtime both readings are the system's own: tokio's
//! `Instant::now()` is `std::time::Instant::now()`, and the wall clock is
//! `SystemTime::now()` moved by the (then zero) distance between tokio's
//! clock and the monotonic one.
//!
//! A test of your own can do the same: pause tokio's clock (with tokio's
//! `test-util` feature) and advance it, and token caches refresh, backoffs
//! end, proofs age and replay entries expire. Where your code hands the
//! crate a time itself, as [`DpopVerifier::verify`] and
//! [`PopVerifier::verify`] take one, pass [`wall()`] so that it agrees.
//!
//! ```
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! tokio::time::pause();
//! let before = tower_token_binding::clock::wall();
//! tokio::time::advance(Duration::from_secs(120)).await;
//! let after = tower_token_binding::clock::wall();
//! let moved = after.duration_since(before).unwrap();
//! assert!(moved >= Duration::from_secs(119) && moved <= Duration::from_secs(121));
//! # }
//! ```
//!
//! Tokio moves a paused clock on by itself, to the next timer, whenever the
//! runtime has nothing to do but wait, for a socket too: a test that runs
//! real I/O (a test issuer, a TLS server) with time paused throughout sees
//! timeouts fire at once. Pause after the I/O that sets the test up, or
//! around the jump only (`pause`, `advance`, `resume` on a current-thread
//! runtime): time then runs on from where it was moved.
//!
//! [`DpopVerifier::verify`]: crate::proof::dpop::DpopVerifier::verify
//! [`PopVerifier::verify`]: crate::proof::pop::PopVerifier::verify

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

/// The monotonic time, as tokio's clock reads it.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The wall-clock time, moved by as much as tokio's clock is ahead of (or
/// behind) the monotonic one: the system's time in a running runtime, a
/// time that stands still and jumps with `tokio::time::advance` in a paused
/// one.
///
/// One clock reading: each thread keeps the wall-clock time it read at a
/// moment of tokio's clock, and counts on from there by tokio's clock for
/// up to a second, when it reads the wall clock again. (A step of the
/// system clock, as NTP may make, shows within that second.)
pub fn wall() -> SystemTime {
    let now = now();
    ANCHOR
        .try_with(|anchor| {
            if let Some((at, wall_at)) = anchor.get() {
                let since = now.saturating_duration_since(at);
                if since < REREAD && now >= at {
                    if let Some(wall) = wall_at.checked_add(since) {
                        return wall;
                    }
                }
            }
            let wall = read_wall(now);
            anchor.set(Some((now, wall)));
            wall
        })
        .unwrap_or_else(|_| read_wall(now))
}

/// How long a thread counts on from its last reading of the wall clock.
const REREAD: Duration = Duration::from_secs(1);

thread_local! {
    /// A moment of tokio's clock and the wall-clock time [`wall`] gave
    /// for it.
    static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
}

/// The system's wall-clock time, moved by the distance between tokio's
/// clock (`tokio_now`) and the monotonic one.
fn read_wall(tokio_now: Instant) -> SystemTime {
    let real_now = Instant::now();
    let system_now = SystemTime::now();
    let moved = if tokio_now >= real_now {
        system_now.checked_add(tokio_now - real_now)
    } else {
        system_now.checked_sub(real_now - tokio_now)
    };
    moved.unwrap_or(system_now)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn outside_a_runtime_the_clocks_are_the_systems() {
        let before = SystemTime::now();
        let wall = wall();
        let after = SystemTime::now();
        assert!(before <= wall + Duration::from_millis(5));
        assert!(wall <= after + Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn within_a_second_the_wall_clock_counts_on_by_tokios() {
        let first = wall();
        for step in 1..=9 {
            tokio::time::advance(Duration::from_millis(100)).await;
            let moved = wall().duration_since(first).expect("later");
            assert_eq!(moved, Duration::from_millis(100 * step));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_stands_still_and_jumps_when_advanced() {
        let first = wall();
        let monotonic = now();
        std::thread::sleep(Duration::from_millis(20));
        let still = wall();
        assert!(
            still.duration_since(first).unwrap_or_default() < Duration::from_millis(5),
            "a paused clock stands still"
        );
        tokio::time::advance(Duration::from_secs(90)).await;
        let later = wall();
        let moved = later.duration_since(first).expect("later");
        // The three readings behind each wall time are not simultaneous:
        // a few microseconds either way.
        let off = moved.abs_diff(Duration::from_secs(90));
        assert!(off < Duration::from_millis(5), "moved {moved:?}");
        assert!(now() - monotonic >= Duration::from_secs(90));
        assert!(later.duration_since(UNIX_EPOCH).is_ok());
    }
}
