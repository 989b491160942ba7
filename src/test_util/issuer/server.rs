//! The test issuer's HTTP side: the claims and nonces of its `State`, the
//! routing of requests to the endpoints, `GET /jwks`, and [`JwksHold`],
//! which keeps the JWKS answers back.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::test_util::Error;
use crate::test_util::introspection::introspect;
use crate::test_util::signing_key::Keys;
use crate::test_util::token_endpoint::{Reply, json_reply, method_not_allowed, token};
use crate::{Confirmation, Thumbprint, tls};

use super::State;
#[cfg(doc)]
use super::TestIssuer;

impl State {
    /// The nonce to hand out now, when nonces are required.
    pub(in crate::test_util) fn current_dpop_nonce(&self) -> Option<String> {
        self.dpop_nonces
            .as_ref()
            .map(|nonces| nonces.current(crate::clock::wall()))
    }

    /// Signs `claims` as an `at+jwt` with the current key.
    pub(in crate::test_util) fn sign(&self, claims: &Value) -> Result<String, Error> {
        let keys = self.read_keys();
        keys.current.sign_access_token(claims)
    }

    pub(super) fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn jwks(&self) -> Value {
        let keys = self.read_keys();
        let all: Vec<&Value> = std::iter::once(&keys.current.jwk)
            .chain(keys.retired.iter().map(|k| &k.jwk))
            .collect();
        json!({ "keys": all })
    }

    fn metadata(&self) -> Value {
        let iss = &self.issuer;
        json!({
            "issuer": iss,
            "token_endpoint": format!("{iss}/token"),
            "jwks_uri": format!("{iss}/jwks"),
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["token"],
            "token_endpoint_auth_methods_supported": [
                "tls_client_auth",
                "self_signed_tls_client_auth",
                "client_secret_basic",
                "client_secret_post",
                "none"
            ],
            "tls_client_certificate_bound_access_tokens": true,
            "introspection_endpoint": format!("{iss}/introspect"),
            "mtls_endpoint_aliases": {
                "token_endpoint": format!("{iss}/mtls/token"),
                "introspection_endpoint": format!("{iss}/mtls/introspect"),
            },
            "dpop_signing_alg_values_supported": self.dpop.algs().split(' ').collect::<Vec<_>>(),
        })
    }

    pub(in crate::test_util) fn claims(
        &self,
        client_id: &str,
        audience: &str,
        scope: Option<&str>,
        thumbprint: Option<Thumbprint>,
    ) -> Value {
        let now = crate::clock::wall()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime.as_secs(),
            "jti": jti(),
            "client_id": client_id,
        });
        if let Some(scope) = scope {
            claims["scope"] = json!(scope);
        }
        if let Some(thumbprint) = thumbprint {
            claims["cnf"] = json!(Confirmation::bound_to(thumbprint));
        }
        claims
    }
}

pub(super) fn jti() -> String {
    let mut bytes = [0u8; 16];
    // Without randomness the jti is still unique enough for a test server.
    let _ = tls::provider().secure_random.fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) async fn route(
    state: &State,
    peer: Option<Thumbprint>,
    request: Request<Incoming>,
) -> Reply {
    let path = request.uri().path();
    if state.down.load(Ordering::SeqCst) {
        return json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "error": "temporarily_unavailable" }),
        );
    }
    match (request.method(), path) {
        (&Method::POST, "/token" | "/mtls/token") => token(state, peer, request).await,
        (&Method::POST, path) if tenant_token_path(path) => token(state, peer, request).await,
        (_, "/token" | "/mtls/token") => method_not_allowed("POST"),
        (&Method::POST, "/introspect" | "/mtls/introspect") => {
            introspect(state, peer, request).await
        }
        (_, "/introspect" | "/mtls/introspect") => method_not_allowed("POST"),
        (_, path) if tenant_token_path(path) => method_not_allowed("POST"),
        (&Method::GET, "/jwks") => jwks(state).await,
        (
            &Method::GET,
            "/.well-known/oauth-authorization-server" | "/.well-known/openid-configuration",
        ) => {
            let requests = &state.introspection.metadata_requests;
            requests.fetch_add(1, Ordering::SeqCst);
            json_reply(StatusCode::OK, &state.metadata())
        }
        (&Method::GET, path) if tenant_metadata_path(path).is_some() => {
            // Entra's per-tenant metadata: the issuer names the tenant.
            let tenant = tenant_metadata_path(path).unwrap_or_default();
            let requests = &state.introspection.metadata_requests;
            requests.fetch_add(1, Ordering::SeqCst);
            let mut metadata = state.metadata();
            metadata["issuer"] = json!(format!("{}/{tenant}/v2.0", state.issuer));
            json_reply(StatusCode::OK, &metadata)
        }
        (
            &Method::GET,
            "/organizations/v2.0/.well-known/openid-configuration"
            | "/common/v2.0/.well-known/openid-configuration",
        ) => {
            // Entra's multi-tenant metadata: the issuer is a template.
            let requests = &state.introspection.metadata_requests;
            requests.fetch_add(1, Ordering::SeqCst);
            let mut metadata = state.metadata();
            metadata["issuer"] = json!(format!("{}/{{tenantid}}/v2.0", state.issuer));
            json_reply(StatusCode::OK, &metadata)
        }
        (
            _,
            "/jwks"
            | "/.well-known/oauth-authorization-server"
            | "/.well-known/openid-configuration",
        ) => method_not_allowed("GET"),
        _ => json_reply(StatusCode::NOT_FOUND, &json!({ "error": "not_found" })),
    }
}

/// The tenant of Entra's per-tenant metadata path,
/// `/<tenant>/v2.0/.well-known/openid-configuration` (not `organizations`
/// or `common`, whose metadata names the template).
fn tenant_metadata_path(path: &str) -> Option<&str> {
    path.strip_prefix('/')
        .and_then(|rest| rest.strip_suffix("/v2.0/.well-known/openid-configuration"))
        .filter(|tenant| {
            !tenant.is_empty()
                && *tenant != "organizations"
                && *tenant != "common"
                && tenant
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
}

/// Whether `path` is Entra's `/<tenant>/oauth2/v2.0/token`.
fn tenant_token_path(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|rest| rest.strip_suffix("/oauth2/v2.0/token"))
        .is_some_and(|tenant| {
            !tenant.is_empty()
                && tenant
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
}

/// Holds the answers to `GET /jwks` while it lives; from
/// [`TestIssuer::hold_jwks`].
#[must_use = "JWKS answers are held only while the guard lives"]
pub struct JwksHold {
    pub(super) state: Arc<State>,
}

impl fmt::Debug for JwksHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksHold")
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl JwksHold {
    /// `GET /jwks` requests waiting now.
    pub fn waiting(&self) -> usize {
        self.state.jwks_hold.borrow().waiting
    }

    /// Waits until at least `n` `GET /jwks` requests are waiting.
    pub async fn until_waiting(&self, n: usize) {
        until_waiting(&self.state.jwks_hold, n).await;
    }

    /// Lets the held requests be answered (when no other hold is left);
    /// the same as dropping the guard.
    pub fn release(self) {}
}

impl Drop for JwksHold {
    fn drop(&mut self) {
        self.state.jwks_hold.send_modify(|hold| hold.holds -= 1);
    }
}

/// The holds alive on one endpoint ([`JwksHold`], and the introspection
/// endpoint's), and the requests they hold.
#[derive(Debug, Default)]
pub(in crate::test_util) struct HoldState {
    pub(in crate::test_util) holds: usize,
    pub(in crate::test_util) waiting: usize,
}

/// Waits until at least `n` requests are held at the endpoint of `hold`.
pub(in crate::test_util) async fn until_waiting(
    hold: &tokio::sync::watch::Sender<HoldState>,
    n: usize,
) {
    let mut hold = hold.subscribe();
    // The sender outlives this borrow: this cannot fail.
    let _ = hold.wait_for(|hold| hold.waiting >= n).await;
}

/// Returns at once when no hold is alive on the endpoint of `hold`, else
/// when the last one goes; counted as waiting meanwhile (until answered,
/// or until the client goes away and the request future is dropped).
pub(in crate::test_util) async fn while_held(hold: &tokio::sync::watch::Sender<HoldState>) {
    let mut held = hold.subscribe();
    if held.borrow_and_update().holds == 0 {
        return;
    }
    struct Waiting<'a>(&'a tokio::sync::watch::Sender<HoldState>);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.send_modify(|hold| hold.waiting -= 1);
        }
    }
    hold.send_modify(|hold| hold.waiting += 1);
    let _waiting = Waiting(hold);
    // The sender lives as long as the issuer's state, so this ends only
    // when released.
    let _ = held.wait_for(|hold| hold.holds == 0).await;
}

/// `GET /jwks`, once no [`JwksHold`] is left.
async fn jwks(state: &State) -> Reply {
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    while_held(&state.jwks_hold).await;
    json_reply(StatusCode::OK, &state.jwks())
}
