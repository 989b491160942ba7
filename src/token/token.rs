use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use crate::ClientIdentity;
use crate::cnf::Binding;
use crate::proof::dpop::DpopProofs;
use crate::proof::pop::PopProofs;

/// An access token string: a secret.
///
/// `Debug` never shows it and there is no `Display`; read it with
/// [`secret`](Self::secret) where it is sent. Cloning is cheap. Equality is
/// checked in constant time.
#[derive(Clone)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// Wraps a token string.
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the request it authorizes.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

impl PartialEq for AccessToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for AccessToken {}

/// A token as a [`TokenSource`](super::TokenSource) yields it: the access
/// token, its type as the server named it, when it expires, and what it is
/// bound to ([`binding`](Self::binding): a certificate (RFC 8705), a DPoP
/// key (RFC 9449), a PoP key, or nothing), apart from the client identity
/// whose TLS connection carries it ([`identity`](Self::identity)).
///
/// ```
/// use std::time::Duration;
/// use tower_token_binding::token::Token;
///
/// let token = Token::new("eyJ...").expires_in(Duration::from_secs(3600));
/// assert_eq!(token.token_type(), "Bearer");
/// assert!(token.identity().is_none());
/// assert!(!format!("{token:?}").contains("eyJ"));
/// ```
#[derive(Clone, Debug)]
pub struct Token {
    access_token: AccessToken,
    token_type: Arc<str>,
    expires_at: Option<Instant>,
    identity: Option<ClientIdentity>,
    dpop: Option<DpopProofs>,
    pop: Option<PopProofs>,
    binding: Binding,
}

impl Token {
    /// A token of type `Bearer` that does not expire and is bound to nothing.
    pub fn new(access_token: impl Into<Arc<str>>) -> Self {
        Self {
            access_token: AccessToken::new(access_token),
            token_type: Arc::from("Bearer"),
            expires_at: None,
            identity: None,
            dpop: None,
            pop: None,
            binding: Binding::None,
        }
    }

    /// Sets the lifetime, from now (`expires_in` of a token response).
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_at = crate::clock::now().checked_add(lifetime);
        self
    }

    /// Sets the moment it expires.
    pub fn expires_at(mut self, at: Instant) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Sets the `token_type` the server answered (`Bearer`, `mtls_pop`, ...).
    pub fn with_token_type(mut self, token_type: impl Into<Arc<str>>) -> Self {
        self.token_type = token_type.into();
        self
    }

    /// Marks the token as bound to `identity`'s certificate: requests that
    /// carry it must go out over a TLS connection presenting that identity.
    /// ([`binding`](Self::binding) becomes
    /// [`Certificate`](Binding::Certificate), unless the token is
    /// already bound to a DPoP or PoP key.)
    pub fn bound_to(mut self, identity: ClientIdentity) -> Self {
        self.identity = Some(identity);
        if self.binding == Binding::None {
            self.binding = Binding::Certificate;
        }
        self
    }

    /// Sends the token over a TLS connection presenting `identity`, without
    /// saying it is bound to it (a token asked for with a certificate used
    /// only to authenticate the client). [`binding`](Self::binding) does
    /// not change.
    pub fn with_identity(mut self, identity: ClientIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Marks the token as bound to the DPoP key of `proofs` (its `cnf.jkt`):
    /// every request that carries it needs a fresh proof signed by that key
    /// ([`Scheme::Dpop`](crate::binding::Scheme::Dpop) makes them). The
    /// proofs' nonce memory goes with the token.
    ///
    /// ```
    /// use tower_token_binding::proof::dpop::DpopProofs;
    /// use tower_token_binding::proof::{Algorithm, ProofKey};
    /// use tower_token_binding::token::Token;
    ///
    /// let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    /// let token = Token::new("eyJ...").with_token_type("DPoP").dpop_bound(proofs.clone());
    /// assert_eq!(token.dpop_proofs().map(DpopProofs::thumbprint), Some(proofs.thumbprint()));
    /// ```
    pub fn dpop_bound(mut self, proofs: DpopProofs) -> Self {
        self.dpop = Some(proofs);
        self.binding = Binding::Dpop;
        self
    }

    /// Marks the token as bound to the key of `shrs` (its `cnf.kid`, a
    /// Microsoft PoP token): every request that carries it needs a fresh
    /// signed HTTP request made with that key
    /// ([`Scheme::Pop`](crate::binding::Scheme::Pop) makes them).
    ///
    /// ```
    /// use tower_token_binding::proof::pop::PopProofs;
    /// use tower_token_binding::proof::{Algorithm, ProofKey};
    /// use tower_token_binding::token::Token;
    ///
    /// let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    /// let token = Token::new("eyJ...").with_token_type("pop").pop_bound(shrs.clone());
    /// assert_eq!(token.pop_proofs().map(PopProofs::kid), Some(shrs.kid()));
    /// ```
    pub fn pop_bound(mut self, shrs: PopProofs) -> Self {
        self.pop = Some(shrs);
        self.binding = Binding::Pop;
        self
    }

    /// The access token.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// The `token_type` the server answered.
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When it expires; `None` if unknown.
    pub fn expiry(&self) -> Option<Instant> {
        self.expires_at
    }

    /// The identity whose TLS connection carries it: the certificate it is
    /// bound to, or the one that authenticated the client when it was
    /// asked for (a DPoP- or PoP-bound token, or one not bound at all);
    /// `None` without a certificate.
    pub fn identity(&self) -> Option<&ClientIdentity> {
        self.identity.as_ref()
    }

    /// How it is bound: set by [`bound_to`](Self::bound_to),
    /// [`dpop_bound`](Self::dpop_bound) and [`pop_bound`](Self::pop_bound),
    /// never by [`with_identity`](Self::with_identity). A shared cache
    /// stores a token only when it is bound (or bearer tokens are
    /// explicitly allowed there).
    pub fn binding(&self) -> Binding {
        self.binding
    }

    /// The proofs of the DPoP key it is bound to; `None` for a token not
    /// bound to a DPoP key.
    pub fn dpop_proofs(&self) -> Option<&DpopProofs> {
        self.dpop.as_ref()
    }

    /// The signed HTTP requests of the PoP key it is bound to; `None` for
    /// a token not bound to a PoP key.
    pub fn pop_proofs(&self) -> Option<&PopProofs> {
        self.pop.as_ref()
    }

    /// Now [`pop_proofs`](Self::pop_proofs).
    #[deprecated(note = "renamed `pop_proofs`")]
    pub fn pop_requests(&self) -> Option<&PopProofs> {
        self.pop_proofs()
    }
}
