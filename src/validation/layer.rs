use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tower::Layer;

use super::CnfValidation;
use super::dpop::{InvalidPublicOrigin, PublicOrigin};
use crate::proof::dpop::DpopVerifier;
use crate::proof::pop::PopVerifier;
use crate::replay::{BoxReplayStore, MemoryReplayStore, ReplayStore};
use crate::warn_limit::WarnLimit;

/// Validates access tokens and their binding: to a client certificate
/// (RFC 8705 section 3) and, when enabled, to a DPoP key (RFC 9449) or to
/// the key of Microsoft's signed HTTP requests (`PoP`).
///
/// See the [module docs](super) for what it checks and how it answers.
///
/// Which tokens a route accepts:
///
/// | layer | `Bearer` / `mtls_pop` + certificate | `DPoP` + proof | `PoP` + signed request | unbound `Bearer` |
/// | --- | --- | --- | --- | --- |
/// | [`new`](Self::new) | yes | no | no | no |
/// | [`new`](Self::new) + [`accept_dpop`](Self::accept_dpop) | yes | yes | no | no |
/// | [`new`](Self::new) + [`dpop_only`](Self::dpop_only) | no | yes | no | no |
/// | any of these + [`accept_pop`](Self::accept_pop) | as above | as above | yes | no |
/// | any of these + [`allow_unbound`](Self::allow_unbound) | as above | as above | as above | yes |
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
    /// Certificate-bound tokens are refused (a DPoP-only route).
    pub(crate) no_certificates: bool,
    /// DPoP proofs are accepted, checked by this verifier.
    pub(crate) dpop: Option<DpopVerifier>,
    /// Signed HTTP requests (`Authorization: PoP`) are accepted, checked
    /// by this verifier.
    pub(crate) pop: Option<PopVerifier>,
    /// Where proofs and signed requests are remembered; set whenever
    /// `dpop` or `pop` is.
    pub(crate) replay_store: Option<BoxReplayStore>,
    pub(crate) public_origin: Option<PublicOrigin>,
    /// At most one `warn` event a second for a failing replay store.
    pub(crate) replay_warnings: Arc<WarnLimit>,
    /// Whether the missing public origin was logged (once per layer).
    pub(crate) origin_warned: Arc<AtomicBool>,
    /// At most one `warn` event a second for proof keys over their share
    /// of the replay store.
    pub(crate) replay_share_warnings: Arc<WarnLimit>,
}

impl Settings {
    /// Whether certificate-bound tokens are accepted.
    pub(crate) fn accepts_certificates(&self) -> bool {
        !self.no_certificates
    }

    /// Whether the route offers the `Bearer` scheme: for certificate-bound
    /// tokens or unbound ones.
    pub(crate) fn offers_bearer(&self) -> bool {
        self.accepts_certificates() || self.allow_unbound
    }
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

    /// Also accepts DPoP-bound tokens (`cnf.jkt`, RFC 9449), sent as
    /// `Authorization: DPoP <token>` with one `DPoP` proof header, checked
    /// by `verifier` ([`DpopVerifier::new`] for the defaults; its
    /// [nonces](crate::proof::dpop::DpopVerifierBuilder::nonces) turn on
    /// server nonces). Certificate-bound tokens are still accepted with
    /// their certificate.
    ///
    /// Per request, after the token is validated (or served from the
    /// validator's cache): the proof is verified against the request's
    /// method and URI (see [`public_origin`](Self::public_origin)), the
    /// token's `cnf.jkt` must be the proof key's thumbprint, and last the
    /// proof must be new to the [replay store](Self::replay_store) (an
    /// in-memory one by default). Proofs are never cached.
    ///
    /// ```
    /// use tower_token_binding::CnfValidationLayer;
    /// use tower_token_binding::proof::dpop::{DpopVerifier, StatelessNonces};
    ///
    /// # fn validator() -> impl tower_token_binding::validation::ValidateToken {
    /// #     |_: &str| async { Err(tower_token_binding::validation::TokenError::new(
    /// #         tower_token_binding::validation::TokenErrorKind::Other)) }
    /// # }
    /// let nonces = StatelessNonces::random().unwrap();
    /// let layer = CnfValidationLayer::new(validator())
    ///     .accept_dpop(DpopVerifier::builder().nonces(nonces).build())
    ///     .public_origin("https://api.example.com");
    /// # let _ = layer;
    /// ```
    pub fn accept_dpop(mut self, verifier: DpopVerifier) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        settings.dpop = Some(verifier);
        settings
            .replay_store
            .get_or_insert_with(|| BoxReplayStore::new(MemoryReplayStore::new()));
        self
    }

    /// Also accepts PoP-bound tokens (`cnf.kid`, Microsoft's signed HTTP
    /// requests, as MSAL and Microsoft.IdentityModel do them), sent as
    /// `Authorization: PoP <SHR>`: a JWS signed by the client's key whose
    /// payload carries the access token (`at`) and the request it is for.
    /// Certificate-bound (and, where accepted, DPoP-bound) tokens are still
    /// accepted with their own proofs.
    ///
    /// Per request: the SHR is checked by `verifier` ([`PopVerifier::new`]
    /// for the defaults) against the request's method, host (see
    /// [`public_origin`](Self::public_origin)), path, query and headers,
    /// now; its `at` is validated like a bare token, by the layer's
    /// validator (issuer, audience, signature, lifetime, claims; a token
    /// seen before is served from its cache); the token's `cnf.kid` must be
    /// the RFC 7638 thumbprint of the SHR's `cnf.jwk` (compared in constant
    /// time); then the required scopes; and last the SHR (its key, `nonce`
    /// and `ts`) must be new to the [replay store](Self::replay_store), the
    /// same one as DPoP proofs'.
    ///
    /// A PoP-bound token sent any other way (as `Bearer`, `DPoP`, ...) is
    /// refused, and so is an SHR sent as if it were the token. This layer
    /// does not read request bodies: an SHR's body hash `b` is checked
    /// against the [`BufferedBody`](super::BufferedBody) that a
    /// [`BufferBodyLayer`](super::BufferBodyLayer) outside it put into the
    /// request, and without one an SHR with `b` (or a verifier that
    /// [requires it](PopVerifier::requires_body)) is refused
    /// ([`PopErrorKind::BodyMismatch`](crate::proof::pop::PopErrorKind::BodyMismatch)).
    /// Refusals are `401` with `WWW-Authenticate: PoP error="invalid_token"`
    /// and a description naming the failed check; challenges offer `PoP`.
    ///
    /// ```
    /// use tower_token_binding::CnfValidationLayer;
    /// use tower_token_binding::proof::pop::PopVerifier;
    ///
    /// # fn validator() -> impl tower_token_binding::validation::ValidateToken {
    /// #     |_: &str| async { Err(tower_token_binding::validation::TokenError::new(
    /// #         tower_token_binding::validation::TokenErrorKind::Other)) }
    /// # }
    /// let layer = CnfValidationLayer::new(validator())
    ///     .accept_pop(PopVerifier::new())
    ///     .public_origin("https://api.example.com");
    /// # let _ = layer;
    /// ```
    pub fn accept_pop(mut self, verifier: PopVerifier) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        settings.pop = Some(verifier);
        settings
            .replay_store
            .get_or_insert_with(|| BoxReplayStore::new(MemoryReplayStore::new()));
        self
    }

    /// Accepts DPoP-bound tokens only: [`accept_dpop`](Self::accept_dpop),
    /// and certificate-bound tokens are refused (`401 invalid_token`).
    /// Challenges offer `DPoP` alone (and `Bearer` with
    /// [`allow_unbound`](Self::allow_unbound)).
    pub fn dpop_only(self, verifier: DpopVerifier) -> Self {
        let mut layer = self.accept_dpop(verifier);
        Arc::make_mut(&mut layer.settings).no_certificates = true;
        layer
    }

    /// Where DPoP proofs and signed HTTP requests are remembered, to refuse
    /// a replayed one: any
    /// [`ReplayStore`], such as a store shared by every replica of the
    /// server. Default: a [`MemoryReplayStore`] of this layer (and its
    /// clones), which other processes do not see.
    ///
    /// A store that fails answers `503` with `Retry-After` and a `warn`
    /// event (at most one a second per layer, counting those left out):
    /// the proof is never let through (fail closed).
    pub fn replay_store(mut self, store: impl ReplayStore) -> Self {
        Arc::make_mut(&mut self.settings).replay_store = Some(BoxReplayStore::new(store));
        self
    }

    /// The origin clients address this server by, such as
    /// `https://api.example.com`: the scheme and authority of the URI a DPoP
    /// proof's `htu` must name (its path is the request's; query and
    /// fragment are ignored), and the host (and port) a signed HTTP
    /// request's `u` must name. Set it behind a proxy or load balancer.
    ///
    /// Without it, `htu` must name `https`, the request's authority (the
    /// HTTP/2 `:authority`, or the `Host` header, which the client chooses)
    /// and path. A server that is reached over plain `http`, or by another
    /// name than its `Host` header says, needs this setting.
    ///
    /// # Panics
    ///
    /// If `origin` is not an `http` or `https` origin (a host and an
    /// optional port; no user info, path, query or fragment): a
    /// misconfiguration. Use [`try_public_origin`](Self::try_public_origin)
    /// for origins that come from input.
    pub fn public_origin(self, origin: &str) -> Self {
        match self.try_public_origin(origin) {
            Ok(layer) => layer,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`public_origin`](Self::public_origin), with an error instead of
    /// a panic for a malformed origin.
    pub fn try_public_origin(mut self, origin: &str) -> Result<Self, InvalidPublicOrigin> {
        Arc::make_mut(&mut self.settings).public_origin = Some(PublicOrigin::parse(origin)?);
        Ok(self)
    }

    /// Also accepts tokens with no `cnf` at all, sent with the `Bearer`
    /// scheme (plain bearer tokens). Tokens that *are* bound are still
    /// checked against the client certificate or DPoP proof, and `mtls_pop`
    /// and `DPoP` tokens must always be bound.
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

    #[cfg(test)]
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Leaves `error_description` out of the `WWW-Authenticate` challenges,
    /// and the one-line body out of a `503` or `429` (which, outside terse
    /// mode, names the class of fault, such as "the token issuer's keys are
    /// unavailable", when the response body type can hold text:
    /// `axum::body::Body`, `http_body_util::Full<Bytes>`, `String`, `Bytes`
    /// or `Vec<u8>`).
    pub fn terse(mut self) -> Self {
        Arc::make_mut(&mut self.settings).terse = true;
        self
    }
}

impl<S, V: Clone> Layer<S> for CnfValidationLayer<V> {
    type Service = CnfValidation<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        let settings = &self.settings;
        if (settings.dpop.is_some() || settings.pop.is_some())
            && settings.public_origin.is_none()
            && !settings.origin_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "DPoP or PoP is accepted without a public origin: the host of each proof's htu \
                 (DPoP) or u (PoP) is checked against the Host or :authority the client sent, so \
                 it binds the proof to no particular server; set public_origin to bind it"
            );
        }
        CnfValidation::from_parts(inner, self.validator.clone(), settings.clone())
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
    fn settings_in_any_order() {
        let layer = CnfValidationLayer::new(())
            .replay_store(MemoryReplayStore::with_capacity(16))
            .dpop_only(DpopVerifier::new())
            .allow_unbound();
        assert!(layer.settings.dpop.is_some() && layer.settings.replay_store.is_some());
        assert!(!layer.settings.accepts_certificates());
        assert!(layer.settings.offers_bearer());
        let layer = CnfValidationLayer::new(());
        assert!(layer.settings.offers_bearer() && layer.settings.dpop.is_none());
        assert!(layer.settings.pop.is_none() && layer.settings.replay_store.is_none());
        let layer = CnfValidationLayer::new(()).accept_pop(PopVerifier::new());
        assert!(layer.settings.pop.is_some() && layer.settings.replay_store.is_some());
        assert!(layer.settings.accepts_certificates() && layer.settings.dpop.is_none());
        assert!(
            CnfValidationLayer::new(())
                .try_public_origin("https://a.example/x")
                .is_err()
        );
    }

    #[test]
    #[should_panic(expected = "not a public origin")]
    fn a_malformed_origin_is_a_misconfiguration() {
        let _ = CnfValidationLayer::new(()).public_origin("api.example.com");
    }

    #[test]
    fn scopes_are_checked() {
        let layer = || CnfValidationLayer::new(());
        assert!(layer().try_required_scope("read:all").is_ok());
        for bad in ["", "a b", "é", "a\"b", "a\\b", "tab\t"] {
            assert!(layer().try_required_scope(bad).is_err(), "{bad:?}");
        }
    }
}
