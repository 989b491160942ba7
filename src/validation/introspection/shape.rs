//! What is refused before any call: tokens that cannot be the issuer's.
//!
//! Every token this validator has no answer for costs the authorization
//! server a call, and anyone can send tokens. Two checks come first, and a
//! token that fails either is `401 invalid_token`
//! ([`TokenErrorKind::UnexpectedShape`]) without a call, without a slot and
//! without a remembered refusal:
//!
//! - its length: at most
//!   [`max_token_length`](super::IntrospectionValidatorBuilder::max_token_length)
//!   bytes (4 KiB by default);
//! - the issuer's own shape, when given with
//!   [`token_shape`](super::IntrospectionValidatorBuilder::token_shape).
//!
//! The alphabet is not checked here: [`CnfValidationLayer`](crate::CnfValidationLayer)
//! takes only a token in RFC 6750's `b64token` syntax from the
//! `Authorization` header (`400 invalid_request` otherwise), before any
//! validator sees it.

use std::fmt;
use std::sync::Arc;

use crate::validation::{TokenError, TokenErrorKind};

/// The default of
/// [`max_token_length`](super::IntrospectionValidatorBuilder::max_token_length).
pub(super) const DEFAULT_MAX_TOKEN_LENGTH: usize = 4096;

/// Whether a token has the shape of the authorization server's access
/// tokens, checked before it is sent to the introspection endpoint (see
/// [`IntrospectionValidatorBuilder::token_shape`](super::IntrospectionValidatorBuilder::token_shape)).
///
/// Any `Fn(&str) -> bool + Send + Sync + 'static` is one:
///
/// ```
/// use tower_token_binding::validation::TokenShape;
///
/// let shape = |token: &str| token.len() == 43 && token.starts_with("at_");
/// assert!(shape.accepts("at_0123456789abcdefghijklmnopqrstuvwxyzABCD"));
/// assert!(!shape.accepts("junk"));
/// ```
pub trait TokenShape: Send + Sync + 'static {
    /// Whether `token` may be one of the issuer's access tokens. `false`
    /// refuses it with `401 invalid_token`, without asking the
    /// authorization server. It must not panic, and should be quick: it
    /// runs for every token with no remembered answer. `token` is a
    /// secret: do not log it.
    fn accepts(&self, token: &str) -> bool;
}

impl<F> TokenShape for F
where
    F: Fn(&str) -> bool + Send + Sync + 'static,
{
    fn accepts(&self, token: &str) -> bool {
        self(token)
    }
}

/// The checks of a validator: its length cap and the issuer's shape.
#[derive(Clone)]
pub(super) struct ShapeCheck {
    pub(super) max_length: usize,
    pub(super) shape: Option<Arc<dyn TokenShape>>,
}

impl fmt::Debug for ShapeCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShapeCheck")
            .field("max_length", &self.max_length)
            .field("shape", &self.shape.as_ref().map(|_| "set"))
            .finish()
    }
}

impl ShapeCheck {
    /// `Err` when `token` cannot be one of the issuer's: too long, or not
    /// of its shape. The error never holds the token.
    pub(super) fn check(&self, token: &str) -> Result<(), TokenError> {
        if token.len() > self.max_length {
            return Err(TokenError::with_detail(
                TokenErrorKind::UnexpectedShape,
                format!(
                    "{} bytes, longer than max_token_length ({}); not introspected",
                    token.len(),
                    self.max_length
                ),
            ));
        }
        if let Some(shape) = &self.shape {
            if !shape.accepts(token) {
                return Err(TokenError::with_detail(
                    TokenErrorKind::UnexpectedShape,
                    "refused by token_shape; not introspected",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(max_length: usize, shape: Option<Arc<dyn TokenShape>>) -> ShapeCheck {
        ShapeCheck { max_length, shape }
    }

    #[test]
    fn the_cap_and_the_shape() {
        let capped = check(8, None);
        assert!(capped.check("12345678").is_ok());
        let error = capped.check("123456789").unwrap_err();
        assert_eq!(error.kind(), TokenErrorKind::UnexpectedShape);
        assert!(!error.to_string().contains("123456789"), "{error}");

        let prefixed = check(64, Some(Arc::new(|t: &str| t.starts_with("at_"))));
        assert!(prefixed.check("at_abc").is_ok());
        let error = prefixed.check("rt_secret-token").unwrap_err();
        assert_eq!(error.kind(), TokenErrorKind::UnexpectedShape);
        assert!(!error.to_string().contains("secret-token"), "{error}");
        // The cap comes first, whatever the shape says.
        assert!(prefixed.check(&format!("at_{}", "a".repeat(64))).is_err());
        assert!(!format!("{prefixed:?}").contains("at_"));
    }
}
