//! What the client half records: one small function per event, called in
//! one line where it happens.

use std::sync::{Mutex, PoisonError};

use super::{
    CLIENT_RETRIES, POOL_CLIENTS, POOL_TLS_CONNECTIONS, TOKEN_CACHE_LOOKUPS, TOKEN_CACHE_WAITERS,
    TOKEN_FETCHES, TOKEN_REFRESHES_AHEAD, UNBOUND_FALLBACKS, increment,
};

/// A token fetch finished (the token cache's, in the foreground or ahead
/// of expiry), with its `outcome` label: `ok`, a token endpoint error's
/// kind, or `other`.
#[inline]
pub(crate) fn token_fetch(outcome: &'static str) {
    increment(TOKEN_FETCHES, &[("outcome", outcome)]);
}

/// A request was served a cached token without waiting.
#[inline]
pub(crate) fn token_cache_hit() {
    #[cfg(feature = "metrics")]
    {
        static LABELS: [::metrics::Label; 1] =
            [::metrics::Label::from_static_parts("result", "hit")];
        static HIT: ::metrics::Key =
            ::metrics::Key::from_static_parts(TOKEN_CACHE_LOOKUPS, &LABELS);
        super::increment_static(&HIT);
    }
}

/// A request found no usable token and waits for a fetch (or is refused
/// while the cache backs off).
#[inline]
pub(crate) fn token_cache_miss() {
    increment(TOKEN_CACHE_LOOKUPS, &[("result", "miss")]);
}

/// A request joined a fetch another request had started.
#[inline]
pub(crate) fn token_cache_waiter() {
    increment(TOKEN_CACHE_WAITERS, &[]);
}

/// A refresh ahead of expiry started in the background.
#[inline]
pub(crate) fn token_refresh_ahead() {
    increment(TOKEN_REFRESHES_AHEAD, &[]);
}

/// A request went out with an unbound token where a bound one was wanted.
#[inline]
pub(crate) fn unbound_fallback() {
    increment(UNBOUND_FALLBACKS, &[]);
}

/// Why the client's retry policy sends a request again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// `401 invalid_token`: with a new token.
    InvalidToken,
    /// `401 use_dpop_nonce`: with the server's DPoP nonce.
    DpopNonce,
    /// A `PoP` challenge with a nonce: with that nonce.
    PopNonce,
}

impl Retry {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Retry::InvalidToken => "invalid_token",
            Retry::DpopNonce => "use_dpop_nonce",
            Retry::PopNonce => "pop_nonce",
        }
    }
}

/// The retry policy sends a request again.
#[inline]
pub(crate) fn client_retry(reason: Retry) {
    increment(CLIENT_RETRIES, &[("reason", reason.label())]);
}

/// A pool opened a TLS connection (the handshake is done), presenting a
/// client certificate or not.
#[inline]
pub(crate) fn tls_connection(client_cert: bool) {
    let presented = if client_cert { "yes" } else { "no" };
    increment(POOL_TLS_CONNECTIONS, &[("client_cert", presented)]);
}

/// Counts one per-identity client in the pool-clients gauge while it lives:
/// kept in the pool's slot, so every way out of the pool (least recently
/// used, idle, retired identity, the pool dropped) counts it out.
#[derive(Debug)]
pub(crate) struct PoolClientGauge(());

/// The per-identity clients held by the process's pools. The gauge is set
/// to this count on each change, not moved by one: a recorder sees the
/// absolute count whenever it was installed, even when clients it never
/// saw counted in are counted out.
static POOL_CLIENTS_HELD: ClientsHeld = ClientsHeld::new();

impl PoolClientGauge {
    /// Counts a client in.
    pub(crate) fn held() -> Self {
        POOL_CLIENTS_HELD.change(1);
        Self(())
    }
}

impl Drop for PoolClientGauge {
    fn drop(&mut self) {
        POOL_CLIENTS_HELD.change(-1);
    }
}

/// A count of clients, set on the pool-clients gauge on each change.
#[derive(Debug)]
pub(super) struct ClientsHeld(Mutex<i64>);

impl ClientsHeld {
    pub(super) const fn new() -> Self {
        Self(Mutex::new(0))
    }

    /// Changes the count by `delta` and sets the gauge to it, under the
    /// lock, so that two changes on two threads cannot leave the gauge at
    /// the older count. Returns the new count.
    pub(super) fn change(&self, delta: i64) -> i64 {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *held = held.saturating_add(delta);
        gauge_set(POOL_CLIENTS, *held);
        *held
    }
}

/// Sets the gauge `name` to `value`.
#[inline]
fn gauge_set(name: &'static str, value: i64) {
    #[cfg(feature = "metrics")]
    ::metrics::gauge!(name).set(value as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, value);
}
