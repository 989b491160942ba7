use std::sync::Arc;

use tower::Layer;

use super::CnfValidation;

/// Validates access tokens and their certificate binding (RFC 8705 section 3).
///
/// See the [module docs](super) for what it checks and how it answers.
#[derive(Clone, Debug)]
pub struct CnfValidationLayer<V> {
    validator: V,
    settings: Arc<Settings>,
}

/// What the layer enforces besides the validator.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    pub(crate) allow_unbound: bool,
    pub(crate) required_scopes: Vec<String>,
    /// `required_scopes` joined, for the `scope` challenge parameter.
    pub(crate) scope_param: Option<String>,
    pub(crate) terse: bool,
}

impl<V> CnfValidationLayer<V> {
    /// Validates tokens with `validator` and requires every token to be bound
    /// to the request's client certificate.
    pub fn new(validator: V) -> Self {
        Self {
            validator,
            settings: Arc::new(Settings::default()),
        }
    }

    /// Also accepts tokens with no `cnf` at all, sent with the `Bearer`
    /// scheme (plain bearer tokens). Tokens that *are* bound are still
    /// checked against the client certificate, and `mtls_pop` tokens must
    /// always be bound.
    pub fn allow_unbound(mut self) -> Self {
        Arc::make_mut(&mut self.settings).allow_unbound = true;
        self
    }

    /// Requires every token to grant `scope` (`403 insufficient_scope`
    /// otherwise). May be called more than once.
    ///
    /// # Panics
    ///
    /// If `scope` is not an RFC 6749 scope token (one or more of the visible
    /// ASCII characters other than `"` and `\`): a misconfiguration. Use
    /// [`try_required_scope`](Self::try_required_scope) for scopes that come
    /// from input.
    pub fn required_scope(self, scope: impl Into<String>) -> Self {
        match self.try_required_scope(scope) {
            Ok(layer) => layer,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`required_scope`](Self::required_scope), with an error instead
    /// of a panic for a malformed scope.
    pub fn try_required_scope(mut self, scope: impl Into<String>) -> Result<Self, InvalidScope> {
        let scope = scope.into();
        let valid = !scope.is_empty()
            && scope
                .bytes()
                .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E));
        if !valid {
            return Err(InvalidScope { scope });
        }
        let settings = Arc::make_mut(&mut self.settings);
        settings.required_scopes.push(scope);
        settings.scope_param = Some(settings.required_scopes.join(" "));
        Ok(self)
    }

    /// Leaves `error_description` out of the `WWW-Authenticate` challenges.
    pub fn terse(mut self) -> Self {
        Arc::make_mut(&mut self.settings).terse = true;
        self
    }
}

impl<S, V: Clone> Layer<S> for CnfValidationLayer<V> {
    type Service = CnfValidation<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        CnfValidation::from_parts(inner, self.validator.clone(), self.settings.clone())
    }
}

/// A required scope that is not an RFC 6749 scope token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidScope {
    scope: String,
}

impl std::fmt::Display for InvalidScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} is not a scope token (RFC 6749 section 3.3: visible ASCII other than '\"' and '\\', no spaces)",
            self.scope
        )
    }
}

impl std::error::Error for InvalidScope {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked() {
        let layer = || CnfValidationLayer::new(());
        assert!(layer().try_required_scope("read:all").is_ok());
        for bad in ["", "a b", "é", "a\"b", "a\\b", "tab\t"] {
            assert!(layer().try_required_scope(bad).is_err(), "{bad:?}");
        }
    }
}
