//! Rejections: why [`CnfValidationLayer`](super::CnfValidationLayer) refused
//! a request, and the RFC 6750 response it answers with.
//!
//! [`Rejection`] (here) carries the kind and the underlying error;
//! [`RejectionKind`] (in `kind.rs`) maps each kind to its status, `error`
//! code and description; `challenge.rs` renders the `WWW-Authenticate`
//! challenges.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Response, header};

use super::layer::Settings;
use super::{TokenError, TokenErrorKind};
use crate::proof::dpop::{DPOP_NONCE, DpopError};
use crate::proof::pop::PopError;
use crate::replay::ReplayError;

mod challenge;
pub(crate) mod grpc;
mod kind;
#[cfg(test)]
mod tests;

use challenge::{Offer, challenges};
pub use kind::RejectionKind;

/// The `Retry-After` of a `503` (no signing keys, no introspection answer,
/// or a replay store that could not answer) and of a `429` (a proof key
/// over its share of the replay store: its oldest entries expire one after
/// the other, so some room comes back within seconds), in seconds.
const RETRY_AFTER: &str = "5";

/// Why [`CnfValidationLayer`](super::CnfValidationLayer) refused a request.
///
/// The layer answers with the RFC 6750 response for it and puts a clone of
/// the `Rejection` into that response's extensions, for logging or metrics
/// further out. It is also logged with `tracing` at debug level (never with
/// the token).
#[derive(Clone)]
pub struct Rejection {
    inner: Arc<Inner>,
}

struct Inner {
    kind: RejectionKind,
    token_error: Option<TokenError>,
    dpop_error: Option<DpopError>,
    pop_error: Option<PopError>,
    replay_error: Option<ReplayError>,
    scheme: Scheme,
}

/// The scheme word of the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bearer,
    MtlsPop,
    Dpop,
    /// Microsoft's signed HTTP requests.
    Pop,
}

impl Scheme {
    fn word(self) -> &'static str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::MtlsPop => "mtls_pop",
            Scheme::Dpop => "DPoP",
            Scheme::Pop => "PoP",
        }
    }
}

impl Rejection {
    pub(crate) fn new(kind: RejectionKind, scheme: Scheme) -> Self {
        Self::from_inner(Inner {
            kind,
            token_error: None,
            dpop_error: None,
            pop_error: None,
            replay_error: None,
            scheme,
        })
    }

    fn from_inner(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    pub(crate) fn token(error: TokenError, scheme: Scheme) -> Self {
        let kind = match error.kind() {
            TokenErrorKind::KeysUnavailable => RejectionKind::KeysUnavailable,
            TokenErrorKind::IntrospectionUnavailable => RejectionKind::IntrospectionUnavailable,
            other => RejectionKind::InvalidToken(other),
        };
        Self::from_inner(Inner {
            kind,
            token_error: Some(error),
            dpop_error: None,
            pop_error: None,
            replay_error: None,
            scheme,
        })
    }

    pub(crate) fn dpop(error: DpopError, scheme: Scheme) -> Self {
        Self::from_inner(Inner {
            kind: RejectionKind::InvalidDpopProof(error.kind()),
            token_error: None,
            dpop_error: Some(error),
            pop_error: None,
            replay_error: None,
            scheme,
        })
    }

    pub(crate) fn pop(error: PopError) -> Self {
        Self::from_inner(Inner {
            kind: RejectionKind::InvalidSignedRequest(error.kind()),
            token_error: None,
            dpop_error: None,
            pop_error: Some(error),
            replay_error: None,
            scheme: Scheme::Pop,
        })
    }

    /// The replay store's refusal: `429` for a key over its share, `503`
    /// for anything else.
    pub(crate) fn replay_store(error: ReplayError, scheme: Scheme) -> Self {
        let kind = if error.is_owner_share_exceeded() {
            RejectionKind::ReplayShareExceeded
        } else {
            RejectionKind::ReplayStoreUnavailable
        };
        Self::from_inner(Inner {
            kind,
            token_error: None,
            dpop_error: None,
            pop_error: None,
            replay_error: Some(error),
            scheme,
        })
    }

    /// What the rejection was for.
    pub fn kind(&self) -> RejectionKind {
        self.inner.kind
    }

    /// The validator's error, for [`RejectionKind::InvalidToken`],
    /// [`RejectionKind::KeysUnavailable`] and
    /// [`RejectionKind::IntrospectionUnavailable`].
    pub fn token_error(&self) -> Option<&TokenError> {
        self.inner.token_error.as_ref()
    }

    /// The DPoP verifier's error, for [`RejectionKind::InvalidDpopProof`]
    /// (a replayed proof's too).
    pub fn dpop_error(&self) -> Option<&DpopError> {
        self.inner.dpop_error.as_ref()
    }

    /// The SHR verifier's error, for [`RejectionKind::InvalidSignedRequest`]
    /// (a replayed SHR's too).
    pub fn pop_error(&self) -> Option<&PopError> {
        self.inner.pop_error.as_ref()
    }

    /// Now [`pop_error`](Self::pop_error).
    #[deprecated(note = "renamed `pop_error`")]
    pub fn shr_error(&self) -> Option<&PopError> {
        self.pop_error()
    }

    /// The `error_description` sent unless the layer is terse: the
    /// validator's [description](TokenError::description) for an invalid
    /// token (naming a missing claim), the DPoP verifier's for a refused
    /// proof, the SHR verifier's for a refused signed HTTP request, the
    /// kind's otherwise.
    pub fn description(&self) -> Cow<'static, str> {
        let inner = &self.inner;
        match (&inner.token_error, &inner.dpop_error, &inner.pop_error) {
            (Some(e), _, _) => e.description(),
            (None, Some(e), _) => e.description(),
            (None, None, Some(e)) => e.description(),
            (None, None, None) => Cow::Borrowed(inner.kind.description()),
        }
    }

    /// The response: status, `WWW-Authenticate` challenges (see
    /// [`challenges`]), `Cache-Control: no-store`, `Retry-After` for a
    /// `503` (no signing keys, no introspection answer, or a replay store
    /// that failed) and for a `429` (a key over its share of the replay
    /// store; no challenge either: the credentials are fine), `DPoP-Nonce` for a `DPoP` request when
    /// nonces are on, and this rejection in the extensions.
    ///
    /// The body is empty, except for a `503` or a `429` outside terse mode:
    /// there, with no challenge to carry a description, a one-line
    /// `text/plain` body names the class of fault (the kind's
    /// [description](RejectionKind::description), such as "the token
    /// issuer's keys are unavailable"; never a URL or the cause's details,
    /// which go to the log), when the body type can hold text (see
    /// [`text_body`]).
    pub(crate) fn into_response<B: Default + 'static>(self, settings: &Settings) -> Response<B> {
        let kind = self.inner.kind;
        crate::metrics::rejected(
            super::labels::rejection_outcome(kind),
            super::labels::rejection_scheme(kind, self.inner.scheme),
        );
        let retry_later = matches!(
            kind,
            RejectionKind::KeysUnavailable
                | RejectionKind::IntrospectionUnavailable
                | RejectionKind::ReplayStoreUnavailable
                | RejectionKind::ReplayShareExceeded
        );
        let body = if retry_later && !settings.terse {
            text_body::<B>(format!("{}\n", kind.description()))
        } else {
            None
        };
        let has_body = body.is_some();
        let mut response = Response::new(body.unwrap_or_default());
        *response.status_mut() = kind.status();
        let headers = response.headers_mut();
        if has_body {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        match kind {
            _ if retry_later => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
            }
            _ => {
                let description = (!settings.terse).then(|| self.description());
                let offer = Offer {
                    bearer: settings.offers_bearer(),
                    dpop_algs: settings.dpop.as_ref().map(|v| v.algs()),
                    pop: settings.pop.is_some(),
                };
                let value = challenges(
                    self.inner.scheme,
                    kind,
                    description.as_deref(),
                    settings.scope_param.as_deref(),
                    &offer,
                );
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if let Some(nonce) = super::dpop::nonce_header(settings, self.inner.scheme) {
            headers.insert(DPOP_NONCE, nonce);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response.extensions_mut().insert(self);
        response
    }
}

/// `text` as a body of type `B`, when `B` is one of the body types that
/// hold bytes given up front: `http_body_util::Full<Bytes>`, `String`,
/// `Bytes`, `Vec<u8>` and (with the `axum` feature) `axum::body::Body`.
/// `None` for any other (`Empty`, a boxed body, ...), whose rejections keep
/// an empty body: the layer asks only `B: Default` of the bodies it wraps.
fn text_body<B: 'static>(text: String) -> Option<B> {
    use std::any::Any;
    let mut slot: Option<B> = None;
    let any = &mut slot as &mut dyn Any;
    if let Some(slot) = any.downcast_mut::<Option<http_body_util::Full<bytes::Bytes>>>() {
        *slot = Some(http_body_util::Full::new(bytes::Bytes::from(text)));
    } else if let Some(slot) = any.downcast_mut::<Option<String>>() {
        *slot = Some(text);
    } else if let Some(slot) = any.downcast_mut::<Option<bytes::Bytes>>() {
        *slot = Some(bytes::Bytes::from(text));
    } else if let Some(slot) = any.downcast_mut::<Option<Vec<u8>>>() {
        *slot = Some(text.into_bytes());
    } else {
        #[cfg(feature = "axum")]
        if let Some(slot) = any.downcast_mut::<Option<axum::body::Body>>() {
            *slot = Some(axum::body::Body::from(text));
        }
    }
    slot
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Rejection");
        d.field("kind", &self.inner.kind);
        if let Some(e) = &self.inner.token_error {
            d.field("token_error", e);
        }
        if let Some(e) = &self.inner.dpop_error {
            d.field("dpop_error", e);
        }
        if let Some(e) = &self.inner.pop_error {
            d.field("pop_error", e);
        }
        if let Some(e) = &self.inner.replay_error {
            d.field("replay_error", e);
        }
        d.finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // (`description` adds nothing here: the errors' `Display` already
        // names the claim.)
        let inner = &self.inner;
        if let Some(e) = &inner.token_error {
            return write!(f, "{e}");
        }
        if let Some(e) = &inner.dpop_error {
            return write!(f, "{e}");
        }
        if let Some(e) = &inner.pop_error {
            return write!(f, "{e}");
        }
        match &inner.replay_error {
            Some(e) => write!(f, "{}: {e}", inner.kind.description()),
            None => f.write_str(inner.kind.description()),
        }
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        if let Some(e) = &self.inner.token_error {
            return Some(e);
        }
        if let Some(e) = &self.inner.dpop_error {
            return Some(e);
        }
        if let Some(e) = &self.inner.pop_error {
            return Some(e);
        }
        self.inner
            .replay_error
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
