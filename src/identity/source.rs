use std::fmt;
use std::sync::Arc;

use super::ClientIdentity;
use crate::Thumbprint;

/// Where the client identity to present comes from, request after request.
///
/// A fixed [`ClientIdentity`] is one; a [`ReloadingIdentity`](super::ReloadingIdentity)
/// (certificate and key files that a renewal agent rewrites) is another; so
/// is any closure `Fn() -> ClientIdentity`. Token sources and the
/// certificate-only binding ask for the [`current`](Self::current) identity
/// each time they need one, so that a renewed certificate is used from the
/// next token on.
///
/// `current` and [`thumbprint`](Self::thumbprint) are called on every
/// request: keep them cheap (a clone of an `Arc`), and never block in them.
///
/// A source that swaps its identity by hand should make the new one
/// [replace](ClientIdentity::replacing) the old one, as a
/// [`ReloadingIdentity`](super::ReloadingIdentity) does: pools then drop the
/// old identity's connections on their next request instead of keeping them
/// until they are idle.
///
/// ```
/// use std::sync::{Arc, RwLock};
/// use tower_token_binding::ClientIdentity;
/// use tower_token_binding::identity::IdentitySource;
/// # use tower_token_binding::test_util::TestPki;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// # let identity = TestPki::self_signed_client("svc.example")?.identity()?;
/// // A fixed identity:
/// let fixed: &dyn IdentitySource = &identity;
/// assert_eq!(fixed.current().thumbprint(), identity.thumbprint());
///
/// // One that something else swaps:
/// let slot = Arc::new(RwLock::new(identity.clone()));
/// let swapped = {
///     let slot = slot.clone();
///     move || slot.read().unwrap().clone()
/// };
/// assert_eq!(swapped.current().thumbprint(), identity.thumbprint());
///
/// // The swap: the new identity replaces the old one.
/// # let renewed = TestPki::self_signed_client("svc.example")?.identity()?;
/// let mut current = slot.write().unwrap();
/// *current = renewed.clone().replacing(&current);
/// # drop(current);
/// assert!(identity.is_retired());
/// assert_eq!(swapped.current().thumbprint(), renewed.thumbprint());
/// # Ok(())
/// # }
/// ```
pub trait IdentitySource: Send + Sync + 'static {
    /// The identity to present now.
    fn current(&self) -> ClientIdentity;

    /// The thumbprint of the identity to present now: what token sources
    /// key their tokens on, asked on every request. The default takes it
    /// from [`current`](Self::current); a source that can tell it without
    /// cloning an identity may say so.
    fn thumbprint(&self) -> Thumbprint {
        self.current().thumbprint()
    }
}

impl IdentitySource for ClientIdentity {
    fn current(&self) -> ClientIdentity {
        self.clone()
    }

    fn thumbprint(&self) -> Thumbprint {
        ClientIdentity::thumbprint(self)
    }
}

impl<F> IdentitySource for F
where
    F: Fn() -> ClientIdentity + Send + Sync + 'static,
{
    fn current(&self) -> ClientIdentity {
        self()
    }
}

/// A shared, type-erased [`IdentitySource`], whose `Debug` shows the current
/// thumbprint.
#[derive(Clone)]
pub(crate) struct SharedIdentity(Arc<dyn IdentitySource>);

impl SharedIdentity {
    pub(crate) fn new(source: impl IdentitySource) -> Self {
        Self(Arc::new(source))
    }

    pub(crate) fn current(&self) -> ClientIdentity {
        self.0.current()
    }
}

impl IdentitySource for SharedIdentity {
    fn current(&self) -> ClientIdentity {
        self.0.current()
    }

    fn thumbprint(&self) -> Thumbprint {
        self.0.thumbprint()
    }
}

impl fmt::Debug for SharedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdentitySource")
            .field(&self.current().thumbprint())
            .finish()
    }
}
