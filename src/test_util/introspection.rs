//! The introspection endpoint of the [`TestIssuer`](super::TestIssuer)
//! (RFC 7662), and the opaque tokens it answers for.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::issuer::{
    HoldState, Secret, State, TestIssuer, TestIssuerBuilder, until_waiting, while_held,
};
use super::token_endpoint::{Reply, json_reply};
use super::{Error, basic_credentials};
use crate::{Thumbprint, tls};

/// Largest introspection request body read.
const MAX_BODY: usize = 64 * 1024;

/// A way for the introspection endpoint to misbehave
/// ([`TestIssuer::set_introspection_fault`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntrospectionFault {
    /// Answer `503 Service Unavailable`.
    Unavailable,
    /// Answer only after this long.
    Delay(Duration),
    /// Answer `200` with a body that is not JSON.
    Garbage,
    /// Answer `200` with exactly this body (a member named twice,
    /// `"active": "true"`, ...), whatever the token.
    Answer(String),
}

/// The introspection settings of a [`TestIssuerBuilder`].
#[derive(Debug, Clone, Default)]
pub(super) struct IntrospectionConfig {
    opaque: bool,
    certificates: HashMap<String, Thumbprint>,
}

impl TestIssuerBuilder {
    /// Makes the token endpoint issue opaque access tokens (random strings,
    /// their claims kept by the issuer and told by the introspection
    /// endpoint) instead of JWTs. Off by default.
    pub fn opaque_tokens(mut self) -> Self {
        self.introspection.opaque = true;
        self
    }

    /// Lets the resource server `client_id` call the introspection endpoint
    /// with `tls_client_auth`: the certificate with `thumbprint` in the
    /// handshake and `client_id` in the form. Resource servers with a
    /// [client secret](Self::client_secret) use it instead.
    pub fn introspection_certificate(
        mut self,
        client_id: impl Into<String>,
        thumbprint: Thumbprint,
    ) -> Self {
        self.introspection
            .certificates
            .insert(client_id.into(), thumbprint);
        self
    }
}

/// What the issuer keeps for introspection.
#[derive(Debug)]
pub(super) struct IntrospectionState {
    pub(super) opaque: bool,
    certificates: HashMap<String, Thumbprint>,
    /// Opaque tokens by the SHA-256 of the token.
    tokens: Mutex<HashMap<[u8; 32], Value>>,
    calls: AtomicUsize,
    fault: Mutex<Option<IntrospectionFault>>,
    /// The [`IntrospectionHold`]s alive, and the calls they hold.
    hold: tokio::sync::watch::Sender<HoldState>,
    /// Metadata requests (kept here, with the other counts the
    /// introspection tests read).
    pub(super) metadata_requests: AtomicUsize,
}

impl IntrospectionState {
    pub(super) fn new(config: IntrospectionConfig) -> Self {
        Self {
            opaque: config.opaque,
            certificates: config.certificates,
            tokens: Mutex::new(HashMap::new()),
            calls: AtomicUsize::new(0),
            fault: Mutex::new(None),
            hold: tokio::sync::watch::Sender::new(HoldState::default()),
            metadata_requests: AtomicUsize::new(0),
        }
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Value>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `claims` under a new random token and returns the token.
    pub(super) fn issue(&self, claims: Value) -> Result<String, Error> {
        let mut bytes = [0u8; 32];
        tls::provider()
            .secure_random
            .fill(&mut bytes)
            .map_err(|_| Error::new("cannot make an opaque token", "no randomness"))?;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        self.tokens().insert(digest(&token), claims);
        Ok(token)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn now() -> u64 {
    crate::clock::wall()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Opaque tokens and the introspection endpoint.
///
/// `POST /introspect` and its RFC 8705 alias `POST /mtls/introspect`
/// (advertised as `introspection_endpoint` and
/// `mtls_endpoint_aliases.introspection_endpoint`) answer RFC 7662: for an
/// opaque token it issued and did not revoke, before its `exp`, `"active":
/// true` with the token's claims (`cnf` included) and `token_type` (`DPoP`
/// for a token with `cnf.jkt`, else `Bearer`); for anything else
/// `{"active": false}`. The caller must authenticate as a resource server:
/// with a [client secret](TestIssuerBuilder::client_secret) (Basic or in the
/// form), or with the certificate registered by
/// [`introspection_certificate`](TestIssuerBuilder::introspection_certificate);
/// otherwise `401 invalid_client`.
///
/// ```
/// use tower_token_binding::test_util::{TestIssuer, TestPki};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_token_binding::test_util::Error> {
/// let pki = TestPki::new()?;
/// let issuer = TestIssuer::builder()
///     .client_secret("api", "s3cret")
///     .start(&pki)
///     .await?;
/// let token = issuer.issue_opaque(&issuer.claims("svc", None))?;
/// assert_eq!(token.split('.').count(), 1);
/// assert!(issuer.revoke(&token));
/// assert_eq!(issuer.introspection_calls(), 0);
/// # Ok(())
/// # }
/// ```
impl TestIssuer {
    /// The introspection endpoint, `…/introspect`.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/introspect", self.issuer())
    }

    /// Its RFC 8705 mTLS alias, `…/mtls/introspect`.
    pub fn mtls_introspection_endpoint(&self) -> String {
        format!("{}/mtls/introspect", self.issuer())
    }

    /// Issues an opaque access token with `claims` (as from
    /// [`claims`](Self::claims), with `cnf` as wished), for the
    /// introspection endpoint to tell.
    pub fn issue_opaque(&self, claims: &Value) -> Result<String, Error> {
        self.state().introspection.issue(claims.clone())
    }

    /// Revokes an opaque token: introspection says `"active": false` from
    /// now on. Whether it was known.
    pub fn revoke(&self, token: &str) -> bool {
        self.state()
            .introspection
            .tokens()
            .remove(&digest(token))
            .is_some()
    }

    /// Introspection requests received, answered or refused.
    pub fn introspection_calls(&self) -> usize {
        self.state().introspection.calls.load(Ordering::SeqCst)
    }

    /// Metadata requests received (RFC 8414 and OpenID Connect discovery
    /// alike), from anyone: JWKS sources, token sources and introspection
    /// validators that discover endpoints.
    pub fn metadata_requests(&self) -> usize {
        self.state()
            .introspection
            .metadata_requests
            .load(Ordering::SeqCst)
    }

    /// Holds the answers of the introspection endpoint until the returned
    /// guard is dropped (or [released](IntrospectionHold::release)): calls
    /// that arrive meanwhile are counted by
    /// [`introspection_calls`](Self::introspection_calls) and then wait,
    /// and are answered as the token (and the
    /// [fault](Self::set_introspection_fault)) stands when they are let go.
    ///
    /// For tests that need introspection calls truly in flight, for
    /// instance to fill a validator's call slots, without racing them.
    ///
    /// ```
    /// use tower_token_binding::test_util::{TestIssuer, TestPki};
    /// use tower_token_binding::validation::{IntrospectionValidator, ValidateToken};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let pki = TestPki::new()?;
    /// let issuer = TestIssuer::builder()
    ///     .client_secret("api", "s3cret")
    ///     .start(&pki)
    ///     .await?;
    /// let validator = IntrospectionValidator::builder()
    ///     .endpoint(issuer.introspection_endpoint())
    ///     .client_id("api")
    ///     .client_secret_basic("s3cret")
    ///     .issuer(issuer.issuer())
    ///     .audience(issuer.audience())
    ///     .root_store(pki.root_store())
    ///     .build()?;
    /// let token = issuer.issue_opaque(&issuer.claims("svc", None))?;
    ///
    /// let hold = issuer.hold_introspection();
    /// let validating = tokio::spawn(validator.validate(&token));
    /// hold.until_waiting(1).await; // the call has arrived, and waits
    /// assert!(!validating.is_finished());
    /// hold.release();
    /// assert!(validating.await?.is_ok());
    /// assert_eq!(issuer.introspection_calls(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn hold_introspection(&self) -> IntrospectionHold {
        let state = self.shared_state();
        state.introspection.hold.send_modify(|hold| hold.holds += 1);
        IntrospectionHold { state }
    }

    /// Makes the introspection endpoint misbehave (`Some`) or behave
    /// (`None`).
    pub fn set_introspection_fault(&self, fault: Option<IntrospectionFault>) {
        *self
            .state()
            .introspection
            .fault
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = fault;
    }
}

/// Holds the answers of the introspection endpoint while it lives; from
/// [`TestIssuer::hold_introspection`].
#[must_use = "introspection answers are held only while the guard lives"]
pub struct IntrospectionHold {
    state: Arc<State>,
}

impl fmt::Debug for IntrospectionHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionHold")
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl IntrospectionHold {
    /// Introspection calls waiting now.
    pub fn waiting(&self) -> usize {
        self.state.introspection.hold.borrow().waiting
    }

    /// Waits until at least `n` introspection calls are waiting.
    pub async fn until_waiting(&self, n: usize) {
        until_waiting(&self.state.introspection.hold, n).await;
    }

    /// Lets the held calls be answered (when no other hold is left); the
    /// same as dropping the guard.
    pub fn release(self) {}
}

impl Drop for IntrospectionHold {
    fn drop(&mut self) {
        self.state
            .introspection
            .hold
            .send_modify(|hold| hold.holds -= 1);
    }
}

/// `POST /introspect` and `POST /mtls/introspect`.
pub(super) async fn introspect(
    state: &State,
    peer: Option<Thumbprint>,
    request: Request<Incoming>,
) -> Reply {
    let this = &state.introspection;
    this.calls.fetch_add(1, Ordering::SeqCst);
    while_held(&this.hold).await;
    let fault = this.fault.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match fault {
        Some(IntrospectionFault::Unavailable) => {
            return json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({ "error": "temporarily_unavailable" }),
            );
        }
        Some(IntrospectionFault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(IntrospectionFault::Garbage) => return raw(StatusCode::OK, "<html>oops</html>"),
        Some(IntrospectionFault::Answer(body)) => return raw(StatusCode::OK, &body),
        None => {}
    }
    let basic = match basic_credentials(request.headers()) {
        Ok(basic) => basic,
        Err(()) => return invalid_client("malformed Basic credentials"),
    };
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return bad_request("the request body is unreadable or too large"),
    };
    let mut form: HashMap<String, String> = HashMap::new();
    for (name, value) in form_urlencoded::parse(&body) {
        if form.insert(name.to_string(), value.to_string()).is_some() {
            return bad_request("a parameter is repeated");
        }
    }
    if !authenticated(state, peer, basic, &form) {
        return invalid_client("resource server authentication failed");
    }
    let Some(token) = form.get("token") else {
        return bad_request("token is missing");
    };
    let claims = this.tokens().get(&digest(token)).cloned();
    let answer = match claims {
        Some(Value::Object(mut claims))
            if claims
                .get("exp")
                .and_then(Value::as_u64)
                .is_none_or(|exp| exp > now()) =>
        {
            let dpop = claims.get("cnf").and_then(|cnf| cnf.get("jkt")).is_some();
            claims.insert("active".into(), Value::Bool(true));
            claims
                .entry("token_type")
                .or_insert_with(|| json!(if dpop { "DPoP" } else { "Bearer" }));
            Value::Object(claims)
        }
        _ => json!({ "active": false }),
    };
    let mut reply = json_reply(StatusCode::OK, &answer);
    reply
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

/// Whether the caller is a resource server: a client secret (Basic or in
/// the form) that matches, or the registered certificate for `client_id`.
fn authenticated(
    state: &State,
    peer: Option<Thumbprint>,
    basic: Option<(String, String)>,
    form: &HashMap<String, String>,
) -> bool {
    let secret_ok = |id: &str, given: &str| match state.secrets.get(id) {
        Some(Secret(expected)) => {
            subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes()).into()
        }
        None => false,
    };
    match (basic, form.get("client_id"), form.get("client_secret")) {
        (Some(_), _, Some(_)) => false,
        (Some((id, secret)), form_id, None) => {
            form_id.is_none_or(|f| *f == id) && secret_ok(&id, &secret)
        }
        (None, Some(id), Some(secret)) => secret_ok(id, secret),
        (None, Some(id), None) => match (state.introspection.certificates.get(id), peer) {
            (Some(expected), Some(peer)) => *expected == peer,
            _ => false,
        },
        (None, None, _) => false,
    }
}

fn raw(status: StatusCode, body: &str) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_request(description: &str) -> Reply {
    json_reply(
        StatusCode::BAD_REQUEST,
        &json!({ "error": "invalid_request", "error_description": description }),
    )
}

fn invalid_client(description: &str) -> Reply {
    let mut reply = json_reply(
        StatusCode::UNAUTHORIZED,
        &json!({ "error": "invalid_client", "error_description": description }),
    );
    reply.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"introspection\""),
    );
    reply
}
