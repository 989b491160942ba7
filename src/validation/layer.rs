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
    pub fn required_scope(mut self, scope: impl Into<String>) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        settings.required_scopes.push(scope.into());
        settings.scope_param = Some(settings.required_scopes.join(" "));
        self
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
