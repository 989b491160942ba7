//! The token endpoint of the [`TestIssuer`](super::TestIssuer):
//! `client_credentials`, client authentication, RFC 8705 binding and DPoP.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::issuer::{Fault, Secret, State};
use crate::Thumbprint;
use crate::proof::JwkThumbprint;
use crate::proof::dpop::{DPOP, DPOP_NONCE, DpopErrorKind};

/// Largest token request body the issuer reads.
const MAX_BODY: usize = 64 * 1024;

pub(super) type Reply = Response<Full<Bytes>>;

/// `POST /token` and `POST /mtls/token`.
pub(super) async fn token(
    state: &State,
    peer: Option<Thumbprint>,
    request: Request<Incoming>,
) -> Reply {
    let mut reply = token_reply(state, peer, request).await;
    if let Some(nonce) = state.current_dpop_nonce() {
        if let Ok(value) = HeaderValue::try_from(nonce) {
            reply.headers_mut().insert(DPOP_NONCE, value);
        }
    }
    reply
}

async fn token_reply(state: &State, peer: Option<Thumbprint>, request: Request<Incoming>) -> Reply {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    if request.uri().path() == "/mtls/token" {
        state.mtls_token_requests.fetch_add(1, Ordering::SeqCst);
    }
    let fault = state
        .fault
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    match &fault {
        Some(Fault::Delay(delay)) => tokio::time::sleep(*delay).await,
        Some(Fault::Garbage) => {
            let mut reply = Response::new(Full::new(Bytes::from_static(b"<html>oops</html>")));
            reply
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            return reply;
        }
        Some(Fault::Oversized(size)) => {
            let filler = "x".repeat(*size);
            return json_reply(
                StatusCode::OK,
                &json!({ "access_token": filler, "token_type": "Bearer" }),
            );
        }
        _ => {}
    }
    if fault == Some(Fault::UseDpopNonce) && request.headers().contains_key(DPOP) {
        let n = state.dpop_nonce_challenges.fetch_add(1, Ordering::SeqCst);
        let mut reply =
            Refusal::bad_request("use_dpop_nonce", "another nonce, please").into_response();
        if let Ok(nonce) = HeaderValue::try_from(format!("nonce-{n}")) {
            reply.headers_mut().insert(DPOP_NONCE, nonce);
        }
        return reply;
    }
    let dpop = match dpop_key(state, &request) {
        Ok(dpop) => dpop,
        Err(refusal) => return refusal.into_response(),
    };
    let peer = match &fault {
        Some(Fault::BindTo(other)) => Some(*other),
        Some(Fault::Unbound) => None,
        _ => peer,
    };
    let binding = match (&fault, dpop) {
        (Some(Fault::Unbound), _) => Binding::None,
        (Some(Fault::BindToKey(other)), Some(_)) => Binding::Key(*other),
        (_, Some(jkt)) => Binding::Key(jkt),
        (_, None) => peer.map_or(Binding::None, Binding::Certificate),
    };
    match issue(
        state,
        peer,
        binding,
        dpop.is_some(),
        request,
        fault.as_ref(),
    )
    .await
    {
        Ok(reply) => {
            state.tokens_issued.fetch_add(1, Ordering::SeqCst);
            if matches!(binding, Binding::Key(_)) {
                state.dpop_tokens_issued.fetch_add(1, Ordering::SeqCst);
            }
            reply
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// What an issued token is bound to.
#[derive(Clone, Copy)]
enum Binding {
    None,
    Certificate(Thumbprint),
    Key(JwkThumbprint),
    /// A PoP key, `cnf.kid`.
    Kid(JwkThumbprint),
}

/// The key of the request's `DPoP` proof, checked, if there is one.
fn dpop_key(state: &State, request: &Request<Incoming>) -> Result<Option<JwkThumbprint>, Refusal> {
    let mut values = request.headers().get_all(DPOP).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |description: String| Refusal::bad_request("invalid_dpop_proof", description);
    if values.next().is_some() {
        return Err(invalid("more than one DPoP header".to_owned()));
    }
    let proof = value
        .to_str()
        .map_err(|_| invalid("the DPoP header is not text".to_owned()))?;
    let htu: Uri = format!("{}{}", state.issuer, request.uri().path())
        .parse()
        .map_err(|_| invalid("the request URI makes no htu".to_owned()))?;
    match state
        .dpop
        .verify(proof, request.method(), &htu, None, crate::clock::wall())
    {
        Ok(verified) => Ok(Some(verified.jkt())),
        Err(e)
            if matches!(
                e.kind(),
                DpopErrorKind::MissingNonce | DpopErrorKind::InvalidNonce
            ) =>
        {
            state.dpop_nonce_challenges.fetch_add(1, Ordering::SeqCst);
            // The current nonce goes out with every answer.
            Err(Refusal::bad_request(
                "use_dpop_nonce",
                "Authorization server requires nonce in DPoP proof",
            ))
        }
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// An RFC 6749 section 5.2 error response.
struct Refusal {
    status: StatusCode,
    error: &'static str,
    description: String,
    basic_challenge: bool,
}

impl Refusal {
    fn bad_request(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    fn invalid_client(description: impl Into<String>, basic_challenge: bool) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: description.into(),
            basic_challenge,
        }
    }

    fn into_response(self) -> Reply {
        let mut response = json_reply(
            self.status,
            &json!({ "error": self.error, "error_description": self.description }),
        );
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tower-token-binding test issuer\""),
            );
        }
        response
    }
}

async fn issue(
    state: &State,
    peer: Option<Thumbprint>,
    binding: Binding,
    dpop: bool,
    request: Request<Incoming>,
    fault: Option<&Fault>,
) -> Result<Reply, Refusal> {
    let basic = basic_credentials(request.headers())?;
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(Refusal::bad_request(
                "invalid_request",
                format!("the request body is unreadable or over {MAX_BODY} bytes"),
            ));
        }
    };
    let mut form: HashMap<String, String> = HashMap::new();
    for (name, value) in form_urlencoded::parse(&body) {
        if form.insert(name.to_string(), value.to_string()).is_some() {
            return Err(Refusal::bad_request(
                "invalid_request",
                format!("parameter {name:?} is repeated"),
            ));
        }
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(other) => {
            return Err(Refusal::bad_request(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported; use client_credentials"),
            ));
        }
        None => {
            return Err(Refusal::bad_request(
                "invalid_request",
                "grant_type is missing",
            ));
        }
    }

    let used_basic = basic.is_some();
    let (client_id, secret) = match (basic, form.get("client_id")) {
        (Some((id, _)), Some(form_id)) if &id != form_id => {
            return Err(Refusal::bad_request(
                "invalid_request",
                "client_id in the form differs from the one in the Authorization header",
            ));
        }
        (Some((id, secret)), _) => {
            if form.contains_key("client_secret") {
                return Err(Refusal::bad_request(
                    "invalid_request",
                    "more than one client authentication method used",
                ));
            }
            (id, Some(secret))
        }
        (None, Some(id)) => (id.clone(), form.get("client_secret").cloned()),
        (None, None) => {
            return Err(Refusal::invalid_client("no client_id given", false));
        }
    };
    if let Some(Secret(expected)) = state.secrets.get(&client_id) {
        let given = secret.as_deref().unwrap_or_default();
        let same: bool =
            subtle::ConstantTimeEq::ct_eq(given.as_bytes(), expected.as_bytes()).into();
        if !same {
            return Err(Refusal::invalid_client(
                "client authentication failed",
                used_basic,
            ));
        }
    }

    let (mtls_pop, pop) = match form.get("token_type").map(String::as_str) {
        None | Some("Bearer" | "bearer") => (false, false),
        Some("mtls_pop") => (true, false),
        Some(t) if t.eq_ignore_ascii_case("pop") => (false, true),
        Some(other) => {
            return Err(Refusal::bad_request(
                "invalid_request",
                format!("token_type {other:?} is not supported"),
            ));
        }
    };
    if mtls_pop && peer.is_none() && fault != Some(&Fault::Unbound) {
        return Err(Refusal::bad_request(
            "invalid_request",
            "token_type mtls_pop needs a client certificate",
        ));
    }
    if mtls_pop && dpop {
        return Err(Refusal::bad_request(
            "invalid_request",
            "token_type mtls_pop and a DPoP proof ask for two bindings",
        ));
    }
    if pop && dpop {
        return Err(Refusal::bad_request(
            "invalid_request",
            "token_type pop and a DPoP proof ask for two bindings",
        ));
    }
    let pop_kid = if pop {
        Some(req_cnf_kid(form.get("req_cnf"))?)
    } else if form.contains_key("req_cnf") {
        return Err(Refusal::bad_request(
            "invalid_request",
            "req_cnf is for token_type pop",
        ));
    } else {
        None
    };
    // A PoP token is bound to the key of req_cnf (or, by fault, to
    // another, or to nothing), not to the certificate.
    let binding = match (pop_kid, fault) {
        (None, _) => binding,
        (Some(_), Some(Fault::Unbound)) => Binding::None,
        (Some(_), Some(Fault::BindToKey(other))) => Binding::Kid(*other),
        (Some(kid), _) => Binding::Kid(kid),
    };

    let audience = form.get("resource").unwrap_or(&state.audience);
    let scope = form
        .get("scope")
        .map(String::as_str)
        .or(state.scope.as_deref());
    let certificate = match binding {
        Binding::Certificate(thumbprint) => Some(thumbprint),
        Binding::None | Binding::Key(_) | Binding::Kid(_) => None,
    };
    let mut claims = state.claims(&client_id, audience, scope, certificate);
    if let Binding::Key(jkt) = binding {
        claims["cnf"] = json!({ "jkt": jkt });
    }
    if let Binding::Kid(kid) = binding {
        // As Entra has it: the key's KID, and where the key is kept.
        claims["cnf"] = json!({ "kid": kid, "xms_ksl": "sw" });
    }
    let minted = if state.introspection.opaque {
        state.introspection.issue(claims)
    } else {
        state.sign(&claims)
    };
    let access_token = minted.map_err(|e| Refusal {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error: "server_error",
        description: e.to_string(),
        basic_challenge: false,
    })?;

    let mut answer = json!({
        "access_token": access_token,
        "token_type": match fault {
            Some(Fault::TokenType(t)) => t.as_str(),
            _ if mtls_pop => "mtls_pop",
            _ if pop => "pop",
            _ if dpop => "DPoP",
            _ => "Bearer",
        },
        "expires_in": state.lifetime.as_secs(),
    });
    if let Some(scope) = scope {
        answer["scope"] = json!(scope);
    }
    if let Some(Fault::ExpiresIn(raw)) = &fault {
        answer["expires_in"] = serde_json::from_str(raw).unwrap_or_else(|_| json!(raw));
    }
    let mut reply = json_reply(StatusCode::OK, &answer);
    reply
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(reply)
}

/// The KID of a PoP token request's `req_cnf`: base64url of
/// `{"kid":"<KID>"}`.
fn req_cnf_kid(req_cnf: Option<&String>) -> Result<JwkThumbprint, Refusal> {
    let invalid = |description: &str| Refusal::bad_request("invalid_request", description);
    let req_cnf = req_cnf.ok_or_else(|| invalid("token_type pop needs a req_cnf"))?;
    let json = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        req_cnf.as_bytes(),
    )
    .map_err(|_| invalid("req_cnf is not base64url"))?;
    let value: serde_json::Value =
        serde_json::from_slice(&json).map_err(|_| invalid("req_cnf is not JSON"))?;
    value
        .get("kid")
        .and_then(serde_json::Value::as_str)
        .and_then(|kid| kid.parse().ok())
        .ok_or_else(|| invalid("req_cnf has no kid that is a JWK SHA-256 thumbprint"))
}

/// [`basic_credentials`] for the other endpoints: `Err(())` when malformed.
pub(super) fn basic_auth(headers: &http::HeaderMap) -> Result<Option<(String, String)>, ()> {
    basic_credentials(headers).map_err(|_| ())
}

/// Reads RFC 6749 section 2.3.1 Basic client credentials, if sent.
fn basic_credentials(headers: &http::HeaderMap) -> Result<Option<(String, String)>, Refusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = || Refusal::invalid_client("malformed Basic credentials", true);
    if values.next().is_some() {
        return Err(bad());
    }
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Refusal::invalid_client(
            "only Basic client authentication is supported in the Authorization header",
            true,
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| -> Result<String, Refusal> {
        // application/x-www-form-urlencoded: '+' is a space.
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| bad())
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

pub(super) fn json_reply(status: StatusCode, body: &Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) fn method_not_allowed(allow: &'static str) -> Reply {
    let mut response = json_reply(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({ "error": "method_not_allowed" }),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
