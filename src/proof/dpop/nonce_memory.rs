use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use http::{HeaderMap, Uri};

use super::DPOP_NONCE;

/// The last `DPoP-Nonce` each origin sent, for the client's next proofs.
///
/// An origin is a scheme, host and port (`https://as.example` and
/// `https://as.example:443` are one origin; host case does not matter). The
/// memory is bounded (100 origins by default, like oauth4webapi), and the
/// origin used least recently is forgotten first. Thread-safe: a lookup or
/// an update takes a lock for a scan of at most that many entries and never
/// holds it across an `.await`. Cloning is cheap and clones share the
/// memory.
///
/// ```
/// use http::{HeaderMap, HeaderValue, Uri};
/// use tower_token_binding::proof::dpop::NonceMemory;
///
/// let nonces = NonceMemory::new();
/// let api: Uri = "https://API.example/orders".parse().unwrap();
///
/// let mut response_headers = HeaderMap::new();
/// response_headers.insert("dpop-nonce", HeaderValue::from_static("eyJ7S_zG.eyJH0"));
/// assert!(nonces.remember_from_headers(&api, &response_headers));
///
/// let same_origin: Uri = "https://api.example:443/other".parse().unwrap();
/// assert_eq!(nonces.get(&same_origin).as_deref(), Some("eyJ7S_zG.eyJH0"));
/// ```
#[derive(Clone)]
pub struct NonceMemory {
    inner: Arc<Mutex<Entries>>,
}

struct Entries {
    list: Vec<Entry>,
    capacity: usize,
    /// Incremented on every use; an entry's `used` is the tick of its last use.
    tick: u64,
}

struct Entry {
    origin: Origin<Box<str>>,
    hash: u64,
    nonce: Arc<str>,
    used: u64,
}

/// Scheme and host in lower case; the port made explicit.
#[derive(PartialEq, Eq)]
struct Origin<S> {
    scheme: S,
    host: S,
    port: u16,
}

impl<'a> Origin<&'a str> {
    fn of(uri: &'a Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?;
        let port = uri
            .port_u16()
            .or_else(|| crate::proof::default_port(scheme))
            .unwrap_or(0);
        Some(Self {
            scheme,
            host: uri.host()?,
            port,
        })
    }

    /// FNV-1a over the lower-cased scheme and host, and the port.
    fn hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let bytes = self
            .scheme
            .bytes()
            .chain([b'/'])
            .chain(self.host.bytes())
            .chain(self.port.to_be_bytes());
        for byte in bytes {
            hash ^= u64::from(byte.to_ascii_lowercase());
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash
    }

    fn matches(&self, hash: u64, entry: &Entry) -> bool {
        entry.hash == hash
            && entry.origin.port == self.port
            && entry.origin.scheme.eq_ignore_ascii_case(self.scheme)
            && entry.origin.host.eq_ignore_ascii_case(self.host)
    }

    fn to_owned(&self) -> Origin<Box<str>> {
        Origin {
            scheme: self.scheme.to_ascii_lowercase().into_boxed_str(),
            host: self.host.to_ascii_lowercase().into_boxed_str(),
            port: self.port,
        }
    }
}

/// Whether `nonce` has the syntax of RFC 9449 section 8.1: `1*NQCHAR`
/// (printable ASCII but `"` and `\`), and a sane length.
fn is_nonce(nonce: &str) -> bool {
    (1..=1024).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

impl NonceMemory {
    /// How many origins [`new`](Self::new) remembers.
    pub const DEFAULT_CAPACITY: usize = 100;

    /// A memory of [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY) origins.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A memory of `capacity` origins (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Entries {
                list: Vec::new(),
                capacity: capacity.max(1),
                tick: 0,
            })),
        }
    }

    /// The nonce last remembered for `uri`'s origin.
    pub fn get(&self, uri: &Uri) -> Option<Arc<str>> {
        let origin = Origin::of(uri)?;
        let hash = origin.hash();
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        let entry = entries
            .list
            .iter_mut()
            .find(|entry| origin.matches(hash, entry))?;
        entry.used = tick;
        Some(entry.nonce.clone())
    }

    /// Remembers `nonce` for `uri`'s origin, in place of the one before.
    /// Returns `false`, remembering nothing, when the URI is not absolute or
    /// the nonce is not `1*NQCHAR` (at most 1 KiB).
    pub fn remember(&self, uri: &Uri, nonce: &str) -> bool {
        is_nonce(nonce) && self.remember_unchecked(uri, nonce)
    }

    /// Remembers `nonce`, whose syntax the caller has checked, for `uri`'s
    /// origin.
    pub(crate) fn remember_unchecked(&self, uri: &Uri, nonce: &str) -> bool {
        let Some(origin) = Origin::of(uri) else {
            return false;
        };
        let hash = origin.hash();
        let mut entries = self.lock();
        entries.tick += 1;
        let tick = entries.tick;
        if let Some(entry) = entries
            .list
            .iter_mut()
            .find(|entry| origin.matches(hash, entry))
        {
            if *entry.nonce != *nonce {
                entry.nonce = nonce.into();
            }
            entry.used = tick;
            return true;
        }
        let entry = Entry {
            origin: origin.to_owned(),
            hash,
            nonce: nonce.into(),
            used: tick,
        };
        if entries.list.len() < entries.capacity {
            entries.list.push(entry);
        } else if let Some(oldest) = entries.list.iter_mut().min_by_key(|entry| entry.used) {
            *oldest = entry;
        }
        true
    }

    /// Remembers the `DPoP-Nonce` of a response from `uri`, if it has
    /// exactly one valid one; returns whether it did.
    pub fn remember_from_headers(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(DPOP_NONCE).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().is_ok_and(|nonce| self.remember(uri, nonce)),
            _ => false,
        }
    }

    /// The nonce remembered for `uri`'s origin, forgetting it: a nonce to
    /// be used once (the next request to the origin consumes it).
    pub fn take(&self, uri: &Uri) -> Option<Arc<str>> {
        let origin = Origin::of(uri)?;
        let hash = origin.hash();
        let mut entries = self.lock();
        let at = entries
            .list
            .iter()
            .position(|entry| origin.matches(hash, entry))?;
        Some(entries.list.swap_remove(at).nonce)
    }

    /// Forgets the nonce of `uri`'s origin.
    pub fn forget(&self, uri: &Uri) {
        let Some(origin) = Origin::of(uri) else {
            return;
        };
        let hash = origin.hash();
        self.lock()
            .list
            .retain(|entry| !origin.matches(hash, entry));
    }

    /// How many origins have a nonce remembered.
    pub fn len(&self) -> usize {
        self.lock().list.len()
    }

    /// Whether no origin has a nonce remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Every update leaves the list consistent: go on after a panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for NonceMemory {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for NonceMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.lock();
        f.debug_struct("NonceMemory")
            .field("origins", &entries.list.len())
            .field("capacity", &entries.capacity)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn origins_are_normalised() {
        let nonces = NonceMemory::new();
        assert!(nonces.remember(&uri("HTTPS://Api.Example/a?b"), "n1"));
        for same in [
            "https://api.example",
            "https://API.EXAMPLE:443/x",
            "https://u@api.example/",
        ] {
            assert_eq!(nonces.get(&uri(same)).as_deref(), Some("n1"), "{same}");
        }
        for other in [
            "http://api.example",
            "https://api.example:8443",
            "https://api2.example",
        ] {
            assert_eq!(nonces.get(&uri(other)), None, "{other}");
        }
        assert!(nonces.remember(&uri("https://api.example"), "n2"));
        assert_eq!(
            nonces.get(&uri("https://api.example")).as_deref(),
            Some("n2")
        );
        assert_eq!(nonces.len(), 1);
        nonces.forget(&uri("https://API.example:443"));
        assert!(nonces.is_empty());
    }

    #[test]
    fn a_taken_nonce_is_used_once() {
        let nonces = NonceMemory::new();
        assert!(nonces.remember(&uri("https://api.example/a"), "n1"));
        assert!(nonces.remember(&uri("https://other.example"), "o1"));
        assert_eq!(
            nonces.take(&uri("https://API.example:443/b")).as_deref(),
            Some("n1")
        );
        assert_eq!(nonces.take(&uri("https://api.example")), None);
        assert_eq!(
            nonces.get(&uri("https://other.example")).as_deref(),
            Some("o1")
        );
        assert_eq!(nonces.take(&uri("/relative")), None);
    }

    #[test]
    fn invalid_nonces_and_uris_are_not_remembered() {
        let nonces = NonceMemory::new();
        for bad in ["", "a b", "a\"b", "a\\b", "é", &"a".repeat(1025)] {
            assert!(!nonces.remember(&uri("https://a.example"), bad), "{bad:?}");
        }
        assert!(!nonces.remember(&uri("/relative"), "n"));
        assert!(nonces.is_empty());

        let mut headers = HeaderMap::new();
        assert!(!nonces.remember_from_headers(&uri("https://a.example"), &headers));
        headers.append(DPOP_NONCE, HeaderValue::from_static("one"));
        headers.append(DPOP_NONCE, HeaderValue::from_static("two"));
        assert!(!nonces.remember_from_headers(&uri("https://a.example"), &headers));
        assert!(nonces.is_empty());
    }

    #[test]
    fn the_least_recently_used_origin_goes_first() {
        let nonces = NonceMemory::with_capacity(3);
        for host in ["a", "b", "c"] {
            assert!(nonces.remember(&uri(&format!("https://{host}.example")), host));
        }
        // `a` is used, so `b` is the least recently used.
        assert!(nonces.get(&uri("https://a.example")).is_some());
        assert!(nonces.remember(&uri("https://d.example"), "d"));
        assert_eq!(nonces.len(), 3);
        assert!(nonces.get(&uri("https://b.example")).is_none());
        for host in ["a", "c", "d"] {
            assert_eq!(
                nonces
                    .get(&uri(&format!("https://{host}.example")))
                    .as_deref(),
                Some(host)
            );
        }
        assert_eq!(
            format!("{nonces:?}"),
            "NonceMemory { origins: 3, capacity: 3 }"
        );
    }

    #[test]
    fn bounded_at_one_hundred_by_default() {
        let nonces = NonceMemory::default();
        for n in 0..250 {
            assert!(nonces.remember(&uri(&format!("https://h{n}.example")), "n"));
        }
        assert_eq!(nonces.len(), NonceMemory::DEFAULT_CAPACITY);
        assert!(nonces.get(&uri("https://h249.example")).is_some());
        assert!(nonces.get(&uri("https://h0.example")).is_none());
    }
}
