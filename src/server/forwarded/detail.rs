//! What the error of a forwarded-certificate format holds besides its
//! kind: a fixed message and the error behind it, set and shown the same
//! way for each format.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// A fixed message and the error behind, both optional.
#[derive(Debug, Clone, Default)]
pub(super) struct Detail {
    pub(super) message: Option<&'static str>,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

impl Detail {
    /// Writes `": {source}"` when there is an error behind.
    pub(super) fn fmt_source(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, ": {source}"),
            None => Ok(()),
        }
    }

    /// The error behind, for [`Error::source`].
    pub(super) fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// The setters of an error with a [`Detail`].
pub(super) trait WithDetail: Sized {
    /// The error's detail.
    fn detail_mut(&mut self) -> &mut Detail;

    /// This error with a fixed message.
    fn with_message(mut self, message: &'static str) -> Self {
        self.detail_mut().message = Some(message);
        self
    }

    /// This error with the error behind it.
    fn with_source(mut self, source: impl Error + Send + Sync + 'static) -> Self {
        self.detail_mut().source = Some(Arc::new(source));
        self
    }
}
