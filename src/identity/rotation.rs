//! One identity at a time, each new one replacing the one before: what a
//! [`ReloadingIdentity`](super::ReloadingIdentity) and a managed identity
//! share.

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::{ClientIdentity, Inner};
use crate::Thumbprint;

/// The identity now, read without a lock on every request, and the
/// subscribers that want to see each new one.
pub(crate) struct Rotation {
    current: ArcSwap<Inner>,
    identity: watch::Sender<ClientIdentity>,
}

impl Rotation {
    pub(crate) fn new(identity: ClientIdentity) -> Self {
        Self {
            current: ArcSwap::new(identity.inner.clone()),
            identity: watch::Sender::new(identity),
        }
    }

    /// The identity now.
    pub(crate) fn current(&self) -> ClientIdentity {
        ClientIdentity {
            inner: self.current.load_full(),
        }
    }

    /// The thumbprint of the identity now, without cloning it.
    pub(crate) fn thumbprint(&self) -> Thumbprint {
        self.current.load().thumbprint
    }

    /// A receiver that sees every new identity.
    pub(crate) fn subscribe(&self) -> watch::Receiver<ClientIdentity> {
        self.identity.subscribe()
    }

    /// Makes `identity` the current one, in the line of the one it replaces,
    /// and returns it with the one it replaced. It is published first and
    /// the old one retired after, so no request finds the current identity
    /// retired. Callers replace one at a time.
    pub(crate) fn replace(&self, identity: ClientIdentity) -> (ClientIdentity, ClientIdentity) {
        let previous = self.current();
        let identity = identity.next_in_line(&previous);
        self.current.store(identity.inner.clone());
        self.identity.send_replace(identity.clone());
        identity.take_over();
        (identity, previous)
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use super::*;
    use crate::test_util::TestPki;

    #[test]
    fn replaces_and_retires() {
        let pki = TestPki::new().unwrap();
        let a = pki.client_cert("a.example").unwrap().identity().unwrap();
        let b = pki.client_cert("b.example").unwrap().identity().unwrap();
        let rotation = Rotation::new(a.clone());
        let mut seen = rotation.subscribe();
        assert_eq!(rotation.thumbprint(), a.thumbprint());
        let (new, old) = rotation.replace(b.clone());
        assert_eq!(old.thumbprint(), a.thumbprint());
        assert_eq!(new.thumbprint(), b.thumbprint());
        assert_eq!(rotation.current().thumbprint(), b.thumbprint());
        assert!(a.is_retired());
        assert!(!rotation.current().is_retired());
        assert!(seen.has_changed().unwrap());
        assert_eq!(seen.borrow_and_update().thumbprint(), b.thumbprint());
    }
}
