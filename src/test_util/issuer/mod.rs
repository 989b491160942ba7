use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::introspection::{IntrospectionConfig, IntrospectionState};
use super::signing_key::{Keys, SigningKey};
use super::{Error, TestPki};
use crate::Thumbprint;
use crate::proof::JwkThumbprint;
use crate::proof::dpop::{DpopVerifier, StatelessNonces};
use crate::server::{AnyClientCertVerifier, PeerCertificate};

mod server;

pub use server::JwksHold;
use server::route;
pub(super) use server::{HoldState, until_waiting, while_held};

/// An embedded OAuth 2.0 authorization server for tests and demos.
///
/// **Not for production**: it keeps its keys in memory and has no client
/// registry. Clients still authenticate the way real ones do, and it checks
/// what it can without one:
///
/// - a client names itself with its `client_id` (HTTP Basic, or the form
///   parameter); a request naming none gets `401 invalid_client`;
/// - a client [registered with a secret](TestIssuerBuilder::client_secret)
///   must send that secret (`client_secret_basic` or `client_secret_post`),
///   or gets `401 invalid_client`; any other `client_id` is accepted with
///   or without a secret;
/// - a client certificate presented in the TLS handshake is verified (its
///   handshake signature proves the client holds its key; CA-issued or
///   self-signed, it is not checked against a CA) and binds the token, but
///   is not matched against the `client_id`, as a registered
///   `tls_client_auth` or `self_signed_tls_client_auth` client's would be.
///
/// It is a real server all the same: HTTPS on `127.0.0.1` with a
/// certificate from a [`TestPki`], HTTP/1.1 and HTTP/2.
///
/// - `POST /token`, its RFC 8705 mTLS alias `POST /mtls/token` and Entra's
///   path shape `POST /<tenant>/oauth2/v2.0/token` (where the
///   IMDS emulator's token endpoint leads) serve the
///   `client_credentials` grant. The access token is an RFC 9068 `at+jwt`
///   signed with ES256, with `iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`,
///   `client_id`, `scope` and, when the client presented a certificate in the
///   handshake, `cnf.x5t#S256` of that certificate. The client is named by
///   HTTP Basic authentication or a `client_id` form parameter. The `resource`
///   parameter (RFC 8707) sets `aud`; `token_type=mtls_pop` (Microsoft Entra's
///   flavour) needs a certificate and answers `"token_type": "mtls_pop"`.
/// - DPoP (RFC 9449): a token request with a valid `DPoP` proof (checked by
///   [`DpopVerifier`]: signature, `htm`, `htu`, `iat`) gets a token bound
///   to the proof's key, `cnf.jkt`, and `"token_type": "DPoP"`; a client
///   certificate then only authenticates. A bad proof gets `400
///   invalid_dpop_proof`. With [`require_dpop_nonce`](TestIssuerBuilder::require_dpop_nonce),
///   a proof without a current nonce gets `400 use_dpop_nonce` and a
///   `DPoP-Nonce` header, and every answer carries the current nonce.
///   Proofs are not checked for replay.
/// - Microsoft's PoP: `token_type=pop` with a `req_cnf` (base64url of
///   `{"kid":"<KID>"}`) gets a token bound to that KID, `"cnf": {"kid":
///   "<KID>", "xms_ksl": "sw"}`, and `"token_type": "pop"`; a certificate
///   then only authenticates. Possession of the key is not proven at the
///   token endpoint (as with Entra); the resource checks it, in the SHR.
/// - `GET /jwks` publishes the signing keys (every key it has used, so tokens
///   signed before a [rotation](Self::rotate_signing_key) still verify).
///   [`hold_jwks`](Self::hold_jwks) keeps its answers back, for tests that
///   need a key fetch in flight.
/// - `GET /.well-known/oauth-authorization-server` (and
///   `/.well-known/openid-configuration`) publishes RFC 8414 metadata with
///   `tls_client_certificate_bound_access_tokens: true` and
///   `mtls_endpoint_aliases.token_endpoint`.
/// - `POST /introspect` and its mTLS alias `POST /mtls/introspect` answer
///   RFC 7662 token introspection for the opaque tokens it issued (with
///   [`opaque_tokens`](TestIssuerBuilder::opaque_tokens), or by hand with
///   [`issue_opaque`](Self::issue_opaque)); see
///   [`introspection_endpoint`](Self::introspection_endpoint). Tokens can be
///   [revoked](Self::revoke), calls are
///   [counted](Self::introspection_calls) and can be
///   [held](Self::hold_introspection), and the endpoint can be made to
///   [fail](Self::set_introspection_fault).
///
/// It counts token requests, tokens issued and JWKS fetches, for tests that
/// assert how often a client or a server came. Dropping it stops the server
/// and closes its connections.
///
/// ```
/// use tower_token_binding::test_util::{TestIssuer, TestPki};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_token_binding::test_util::Error> {
/// let pki = TestPki::new()?;
/// let issuer = TestIssuer::builder()
///     .audience("https://api.example")
///     .token_lifetime(std::time::Duration::from_secs(300))
///     .start(&pki)
///     .await?;
/// assert_eq!(issuer.tokens_issued(), 0);
///
/// // Tokens for hand-made test cases, signed with the issuer's key.
/// let claims = issuer.claims("client-1", None);
/// let token = issuer.sign(&claims)?;
/// assert_eq!(token.split('.').count(), 3);
/// # Ok(())
/// # }
/// ```
pub struct TestIssuer {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestIssuer")
            .field("issuer", &self.state.issuer)
            .field("tokens_issued", &self.tokens_issued())
            .finish_non_exhaustive()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        // Dropping the server future closes every connection.
        self.task.abort();
    }
}

/// A way for the token endpoint to misbehave, for tests of clients
/// ([`TestIssuer::set_fault`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Answer only after this long.
    Delay(Duration),
    /// Answer `200` with a body that is not JSON.
    Garbage,
    /// Answer `200` with a JSON body of this many bytes.
    Oversized(usize),
    /// Answer with this `token_type`, whatever was asked.
    TokenType(String),
    /// Bind tokens to this certificate instead of the client's.
    BindTo(Thumbprint),
    /// Leave `cnf` out of tokens, certificate or not.
    Unbound,
    /// Bind DPoP tokens to this key thumbprint (`cnf.jkt`) instead of the
    /// proof's key, and PoP tokens (`cnf.kid`) instead of `req_cnf`'s.
    BindToKey(JwkThumbprint),
    /// Answer every token request that has a `DPoP` proof with `400
    /// use_dpop_nonce` and a new `DPoP-Nonce`, whatever nonce it carries.
    UseDpopNonce,
    /// Answer with this `expires_in`, given as JSON text (`"1e20"`,
    /// `"-5"`, `"\"soon\""`), whatever the token's lifetime.
    ExpiresIn(String),
}

/// Builds a [`TestIssuer`].
#[derive(Debug, Clone)]
pub struct TestIssuerBuilder {
    audience: String,
    scope: Option<String>,
    lifetime: Duration,
    secrets: HashMap<String, Secret>,
    require_dpop_nonce: bool,
    pub(super) introspection: IntrospectionConfig,
}

#[derive(Clone)]
pub(super) struct Secret(pub(super) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for TestIssuerBuilder {
    fn default() -> Self {
        Self {
            audience: "https://api.test".to_owned(),
            scope: None,
            lifetime: Duration::from_secs(3600),
            secrets: HashMap::new(),
            require_dpop_nonce: false,
            introspection: IntrospectionConfig::default(),
        }
    }
}

impl TestIssuerBuilder {
    /// The `aud` of tokens issued without a `resource` parameter.
    /// Default `https://api.test`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// The `scope` of tokens requested without one. Default: none.
    pub fn default_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// How long issued tokens live (`expires_in`). Default one hour.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Makes `client_id` a confidential client: its token requests must carry
    /// `secret` (`client_secret_basic` or `client_secret_post`), or get
    /// `invalid_client`. Clients not registered this way need no secret.
    pub fn client_secret(
        mut self,
        client_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.secrets.insert(client_id.into(), Secret(secret.into()));
        self
    }

    /// Requires DPoP proofs to carry a server nonce (RFC 9449 section 8):
    /// a proof without a current one gets `400` with `error=use_dpop_nonce`
    /// and a `DPoP-Nonce` header, and every token answer carries the
    /// current nonce. Nonces change every minute. Off by default.
    pub fn require_dpop_nonce(mut self) -> Self {
        self.require_dpop_nonce = true;
        self
    }

    /// Starts the issuer on `127.0.0.1` with a new server certificate from
    /// `pki`. Clients may present any certificate (CA-issued or self-signed;
    /// the handshake signature is verified) or none.
    pub async fn start(self, pki: &TestPki) -> Result<TestIssuer, Error> {
        let config = pki.server_config(Arc::new(AnyClientCertVerifier::optional()))?;
        let (listener, addr) = crate::test_util::listen().await?;
        let nonces = if self.require_dpop_nonce {
            Some(
                StatelessNonces::random()
                    .map_err(|e| Error::new("cannot make a DPoP nonce secret", e))?,
            )
        } else {
            None
        };
        let mut dpop = DpopVerifier::builder();
        if let Some(nonces) = &nonces {
            dpop = dpop.nonces(nonces.clone());
        }
        let state = Arc::new(State {
            issuer: format!("https://{addr}"),
            dpop: dpop.build(),
            dpop_nonces: nonces,
            dpop_nonce_challenges: AtomicUsize::new(0),
            dpop_tokens_issued: AtomicUsize::new(0),
            audience: self.audience,
            scope: self.scope,
            lifetime: self.lifetime,
            secrets: self.secrets,
            keys: RwLock::new(Keys {
                current: SigningKey::generate(1)?,
                retired: Vec::new(),
            }),
            token_requests: AtomicUsize::new(0),
            tokens_issued: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
            jwks_hold: tokio::sync::watch::Sender::new(HoldState::default()),
            down: AtomicBool::new(false),
            mtls_token_requests: AtomicUsize::new(0),
            fault: std::sync::Mutex::new(None),
            introspection: IntrospectionState::new(self.introspection),
        });
        let service = {
            let state = state.clone();
            tower::service_fn(move |request: Request<Incoming>| {
                let state = state.clone();
                async move {
                    let peer = request
                        .extensions()
                        .get::<PeerCertificate>()
                        .map(PeerCertificate::thumbprint);
                    Ok::<_, Infallible>(route(&state, peer, request).await)
                }
            })
        };
        let server = crate::server::serve(listener, Arc::new(config), service);
        let task = tokio::spawn(async move {
            // It runs until the issuer is dropped; it returns no error.
            let _ = server.await;
        });
        Ok(TestIssuer { addr, state, task })
    }
}

impl TestIssuer {
    /// A builder, to set the audience, lifetime or client secrets.
    pub fn builder() -> TestIssuerBuilder {
        TestIssuerBuilder::default()
    }

    /// Starts an issuer with the default settings.
    pub async fn start(pki: &TestPki) -> Result<Self, Error> {
        Self::builder().start(pki).await
    }

    pub(super) fn state(&self) -> &State {
        &self.state
    }

    pub(super) fn shared_state(&self) -> Arc<State> {
        self.state.clone()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The issuer identifier (`iss`), `https://127.0.0.1:PORT`, which is also
    /// the base of its URLs.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// The audience of tokens issued without a `resource` parameter.
    pub fn audience(&self) -> &str {
        &self.state.audience
    }

    /// The plain token endpoint, `…/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.state.issuer)
    }

    /// The token endpoint in Entra's shape for `tenant`,
    /// `…/<tenant>/oauth2/v2.0/token` (the same endpoint as
    /// [`token_endpoint`](Self::token_endpoint)).
    pub fn tenant_token_endpoint(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.state.issuer)
    }

    /// A Microsoft Entra multi-tenant endpoint in this issuer's shape,
    /// `…/organizations/v2.0`: its OpenID Connect metadata names the issuer
    /// template `…/{tenantid}/v2.0` and this issuer's JWKS, as Entra's
    /// does. Tokens for a tenant carry [`tenant_issuer`](Self::tenant_issuer)
    /// as `iss`.
    pub fn multi_tenant_endpoint(&self) -> String {
        format!("{}/organizations/v2.0", self.state.issuer)
    }

    /// The `iss` of a tenant's tokens, `…/<tenant>/v2.0`, as Entra's v2
    /// issuer for one tenant: its OpenID Connect metadata is served (naming
    /// this issuer and this issuer's JWKS), so it can be given to
    /// [`ResourceServerBuilder::issuer`](crate::server::ResourceServerBuilder::issuer)
    /// as a single-tenant issuer; it is also what the
    /// [multi-tenant endpoint](Self::multi_tenant_endpoint)'s template gives
    /// for `tenant`.
    pub fn tenant_issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2.0", self.state.issuer)
    }

    /// The RFC 8705 mTLS alias of the token endpoint, `…/mtls/token`.
    pub fn mtls_token_endpoint(&self) -> String {
        format!("{}/mtls/token", self.state.issuer)
    }

    /// The JWKS URL, `…/jwks`.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.state.issuer)
    }

    /// The RFC 8414 metadata URL.
    pub fn metadata_url(&self) -> String {
        format!(
            "{}/.well-known/oauth-authorization-server",
            self.state.issuer
        )
    }

    /// Token requests received, answered or refused.
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// Access tokens issued.
    pub fn tokens_issued(&self) -> usize {
        self.state.tokens_issued.load(Ordering::SeqCst)
    }

    /// Times the JWKS was fetched: `GET /jwks` requests received, including
    /// those [held](Self::hold_jwks) and not answered yet.
    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Holds the answers to `GET /jwks` until the returned guard is dropped
    /// (or [released](JwksHold::release)): requests that arrive meanwhile are
    /// counted by [`jwks_fetches`](Self::jwks_fetches) and then wait, and are
    /// answered with the key set as it is when they are let go.
    ///
    /// For tests that need a key fetch to be truly in flight, for instance
    /// to drop the request that started it, without racing the fetch.
    ///
    /// ```
    /// use tower_token_binding::test_util::{TestIssuer, TestPki};
    /// use tower_token_binding::validation::{JwksSource, JwtValidator, ValidateToken};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let pki = TestPki::new()?;
    /// let issuer = TestIssuer::start(&pki).await?;
    /// let validator = JwtValidator::builder()
    ///     .issuer(issuer.issuer())
    ///     .audience(issuer.audience())
    ///     .jwks(JwksSource::remote(&issuer.jwks_uri())?.root_store(pki.root_store()))
    ///     .build()?;
    /// let token = issuer.sign(&issuer.claims("svc", None))?;
    ///
    /// let hold = issuer.hold_jwks();
    /// let validating = tokio::spawn(validator.validate(&token));
    /// hold.until_waiting(1).await; // the key fetch has arrived, and waits
    /// assert!(!validating.is_finished());
    /// hold.release();
    /// assert!(validating.await?.is_ok());
    /// assert_eq!(issuer.jwks_fetches(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn hold_jwks(&self) -> JwksHold {
        self.state.jwks_hold.send_modify(|hold| hold.holds += 1);
        JwksHold {
            state: self.state.clone(),
        }
    }

    /// The published key set, as `GET /jwks` serves it.
    pub fn jwks(&self) -> Value {
        self.state.jwks()
    }

    /// The `kid` of the key new tokens are signed with.
    pub fn current_kid(&self) -> String {
        self.state.read_keys().current.kid.clone()
    }

    /// Stops publishing every key but the current one, as an authorization
    /// server does some time after a rotation. Tokens signed with the old keys
    /// no longer verify for anyone who fetches the JWKS again.
    pub fn retire_old_keys(&self) {
        self.state
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retired
            .clear();
    }

    /// Makes the token endpoint misbehave (`Some`) or behave (`None`).
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self
            .state
            .fault
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fault;
    }

    /// Token requests refused with `use_dpop_nonce` (see
    /// [`require_dpop_nonce`](TestIssuerBuilder::require_dpop_nonce)).
    pub fn dpop_nonce_challenges(&self) -> usize {
        self.state.dpop_nonce_challenges.load(Ordering::SeqCst)
    }

    /// DPoP-bound access tokens issued (also counted by
    /// [`tokens_issued`](Self::tokens_issued)).
    pub fn dpop_tokens_issued(&self) -> usize {
        self.state.dpop_tokens_issued.load(Ordering::SeqCst)
    }

    /// The `DPoP-Nonce` the issuer hands out now, when it
    /// [requires nonces](TestIssuerBuilder::require_dpop_nonce).
    pub fn dpop_nonce(&self) -> Option<String> {
        self.state.current_dpop_nonce()
    }

    /// Token requests received at the mTLS alias, `…/mtls/token`.
    pub fn mtls_token_requests(&self) -> usize {
        self.state.mtls_token_requests.load(Ordering::SeqCst)
    }

    /// Makes every endpoint answer `503 Service Unavailable` (`true`) or work
    /// again (`false`): an authorization server that is down.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Switches to a new signing key (a new `kid`) and returns its `kid`.
    /// The old keys stay published.
    pub fn rotate_signing_key(&self) -> Result<String, Error> {
        let mut keys = self
            .state
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let next = SigningKey::generate(keys.retired.len() + 2)?;
        let kid = next.kid.clone();
        let old = std::mem::replace(&mut keys.current, next);
        keys.retired.push(old);
        Ok(kid)
    }

    /// The claims the issuer would put in a token for `client_id` (bound to
    /// `thumbprint` when given), with `iat` now; a starting point for
    /// hand-made tokens.
    pub fn claims(&self, client_id: &str, thumbprint: Option<Thumbprint>) -> Value {
        self.state.claims(
            client_id,
            &self.state.audience,
            self.state.scope.as_deref(),
            thumbprint,
        )
    }

    /// Signs `claims` as an `at+jwt` with the current key (ES256, with `kid`).
    pub fn sign(&self, claims: &Value) -> Result<String, Error> {
        let keys = self.state.read_keys();
        keys.current.sign_access_token(claims)
    }

    /// Signs `claims` as [`sign`](Self::sign) does (ES256, the current key
    /// and its `kid`), with the header `typ` given: `Some("JWT")` as Entra,
    /// Keycloak and Auth0 send it, `None` for none as Okta sends it, or any
    /// other value to see it refused.
    ///
    /// ```
    /// use tower_token_binding::test_util::{TestIssuer, TestPki};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_token_binding::test_util::Error> {
    /// let pki = TestPki::new()?;
    /// let issuer = TestIssuer::start(&pki).await?;
    /// let claims = serde_json::json!({ "iss": issuer.issuer(), "cid": "app", "scp": ["orders.read"] });
    /// let okta_shaped = issuer.sign_with_typ(None, &claims)?;
    /// # let _ = okta_shaped;
    /// # Ok(())
    /// # }
    /// ```
    pub fn sign_with_typ(&self, typ: Option<&str>, claims: &Value) -> Result<String, Error> {
        let keys = self.state.read_keys();
        keys.current.sign(typ, Some(&keys.current.kid), claims)
    }

    /// Signs `claims` with the current key (ES256) under a header whose
    /// `typ` and `kid` are as given (`None`: no such member): another key's
    /// `kid`, one no key has, or none, for tokens whose header is wrong on
    /// purpose; [`current_kid`](Self::current_kid) for the token to find its
    /// key. For another `typ` alone, [`sign_with_typ`](Self::sign_with_typ)
    /// keeps the right `kid`.
    ///
    /// ```
    /// use tower_token_binding::test_util::{TestIssuer, TestPki};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), tower_token_binding::test_util::Error> {
    /// let pki = TestPki::new()?;
    /// let issuer = TestIssuer::start(&pki).await?;
    /// let claims = issuer.claims("svc", None);
    /// let unknown_key = issuer.sign_with_typ_and_kid(Some("at+jwt"), Some("no-such-key"), &claims)?;
    /// # let _ = unknown_key;
    /// # Ok(())
    /// # }
    /// ```
    pub fn sign_with_typ_and_kid(
        &self,
        typ: Option<&str>,
        kid: Option<&str>,
        claims: &Value,
    ) -> Result<String, Error> {
        self.state.read_keys().current.sign(typ, kid, claims)
    }

    /// Signs the JSON texts `header` and `payload` exactly as given (ES256,
    /// current key), for tokens no serializer would write: a member named
    /// twice, escapes, odd spacing. `header` should name `"alg":"ES256"` and
    /// the [current kid](Self::current_kid) for the signature to verify.
    pub fn sign_raw(&self, header: &str, payload: &str) -> Result<String, Error> {
        self.state
            .read_keys()
            .current
            .sign_raw(header.as_bytes(), payload.as_bytes())
    }
}

pub(super) struct State {
    pub(super) issuer: String,
    pub(super) audience: String,
    pub(super) scope: Option<String>,
    pub(super) lifetime: Duration,
    pub(super) secrets: HashMap<String, Secret>,
    keys: RwLock<Keys>,
    pub(super) token_requests: AtomicUsize,
    pub(super) tokens_issued: AtomicUsize,
    jwks_fetches: AtomicUsize,
    jwks_hold: tokio::sync::watch::Sender<HoldState>,
    down: AtomicBool,
    pub(super) mtls_token_requests: AtomicUsize,
    pub(super) fault: std::sync::Mutex<Option<Fault>>,
    pub(super) dpop: DpopVerifier,
    pub(super) dpop_nonces: Option<StatelessNonces>,
    pub(super) dpop_nonce_challenges: AtomicUsize,
    pub(super) dpop_tokens_issued: AtomicUsize,
    pub(super) introspection: IntrospectionState,
}
