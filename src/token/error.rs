use std::fmt;
use std::sync::Arc;

use super::BoxError;

/// No token could be had for a request.
///
/// [`kind`](Self::kind) says why; for a failed fetch the source chain holds
/// the token source's own error. Cloning is cheap: every request waiting on
/// one failed fetch gets a clone of the same error.
#[derive(Clone)]
pub struct TokenUnavailable {
    kind: TokenUnavailableKind,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Why no token could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenUnavailableKind {
    /// The token source failed (and no earlier token is still valid).
    Fetch,
    /// The source failed recently, and the cache is backing off before it asks
    /// again; the source chain has that failure.
    BackingOff,
    /// The scheme needs a certificate-bound token and the source returned an
    /// unbound one (and falling back to unbound tokens was not allowed).
    Unbound,
    /// [`Scheme::Dpop`](crate::binding::Scheme::Dpop) needs a token bound
    /// to a DPoP key, and the source returned one that is not.
    NotDpopBound,
    /// [`Scheme::Pop`](crate::binding::Scheme::Pop) needs a token bound to
    /// a PoP key, and the source returned one that is not.
    NotPopBound,
}

impl TokenUnavailable {
    pub(crate) fn new(kind: TokenUnavailableKind, source: Option<BoxError>) -> Self {
        Self {
            kind,
            source: source.map(Arc::from),
        }
    }

    pub(crate) fn backing_off(&self) -> Self {
        Self {
            kind: TokenUnavailableKind::BackingOff,
            source: self.source.clone(),
        }
    }

    /// Why.
    pub fn kind(&self) -> TokenUnavailableKind {
        self.kind
    }
}

impl fmt::Display for TokenUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            TokenUnavailableKind::Fetch => "cannot get an access token",
            TokenUnavailableKind::BackingOff => {
                "cannot get an access token (the token source failed recently; backing off)"
            }
            TokenUnavailableKind::Unbound => {
                "the token source returned a token not bound to a certificate, and the scheme needs a bound one"
            }
            TokenUnavailableKind::NotDpopBound => {
                "the token source returned a token not bound to a DPoP key, and the DPoP scheme needs one"
            }
            TokenUnavailableKind::NotPopBound => {
                "the token source returned a token not bound to a PoP key, and the PoP scheme needs one"
            }
        })?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TokenUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TokenUnavailable");
        d.field("kind", &self.kind);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for TokenUnavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
