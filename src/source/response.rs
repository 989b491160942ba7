use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde_json::Value;

use super::client_credentials::Inner;
use super::{TokenEndpointError, TokenEndpointErrorKind as Kind};
use crate::proof::dpop::DpopProofs;
use crate::proof::pop::{POP_TYPE, PopProofs};
use crate::token::Token;
use crate::{ClientIdentity, Confirmation};

/// Reads a token response (RFC 6749 section 5.1) and checks it against
/// what was asked: the type, the lifetime, and what the token is bound to.
pub(super) fn read_token(
    inner: &Inner,
    status: StatusCode,
    body: &[u8],
    identity: Option<ClientIdentity>,
) -> Result<Token, TokenEndpointError> {
    let invalid = |message: String| {
        TokenEndpointError::new(Kind::InvalidResponse)
            .status(status)
            .message(message)
    };
    let answer: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("the answer is not JSON: {e}")))?;
    let access_token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("no access_token string".to_owned()))?;
    let token_type = answer
        .get("token_type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("no token_type string".to_owned()))?;
    let expected = match (&inner.dpop, &inner.pop, inner.entra) {
        (Some(_), _, _) => "DPoP",
        (None, Some(_), _) => POP_TYPE,
        (None, None, true) => "mtls_pop",
        (None, None, false) => "Bearer",
    };
    if !token_type.eq_ignore_ascii_case(expected) {
        return Err(TokenEndpointError::new(Kind::TokenType)
            .status(status)
            .message(format!("expected {expected}, got {token_type:?}")));
    }
    let lifetime = match answer.get("expires_in") {
        None | Some(Value::Null) => inner.default_lifetime,
        Some(value) => expires_in(value, inner.max_lifetime).map_err(invalid)?,
    };
    let token = Token::new(access_token)
        .with_token_type(token_type)
        .expires_in(lifetime);
    if let Some(shrs) = &inner.pop {
        return pop_bound(token, access_token, shrs, identity, status);
    }
    let claims = jwt_confirmation(access_token);
    match (&inner.dpop, identity) {
        (Some(proofs), identity) => dpop_bound(token, claims, proofs, identity, status),
        (None, Some(identity)) => {
            let opaque_bound = inner.entra || inner.opaque_certificate_bound;
            certificate_bound(token, claims, identity, opaque_bound, status)
        }
        // The builder refuses a source with neither.
        (None, None) => Err(invalid(
            "neither a certificate nor a DPoP key to bind to".to_owned(),
        )),
    }
}

/// The lifetime an `expires_in` says: a number of seconds (JSON number,
/// or a string of decimal digits as some servers send), at least 1 (`0`,
/// or a fraction of a second, is a token expired on arrival: refused, so
/// the cache backs off rather than fetching for every request) and at most
/// `max`, so that the expiry is always a representable instant and the
/// token is refreshed.
fn expires_in(value: &Value, max: Duration) -> Result<Duration, String> {
    let seconds = match value {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| "expires_in is not a positive number".to_owned())?,
        // Digits only: no sign, no space, no exponent.
        Value::String(s)
            if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            s.parse::<u64>()
                .map_err(|_| "expires_in is out of range".to_owned())? as f64
        }
        Value::String(_) => return Err("expires_in is not a string of digits".to_owned()),
        _ => return Err("expires_in is not a number".to_owned()),
    };
    if seconds < 1.0 {
        return Err(format!(
            "expires_in is {seconds}: the token is expired on arrival"
        ));
    }
    match Duration::try_from_secs_f64(seconds) {
        Ok(lifetime) if lifetime <= max => Ok(lifetime),
        _ => Err(format!(
            "expires_in is {seconds} s, more than the {} s allowed (max_expires_in)",
            max.as_secs()
        )),
    }
}

/// Checks that a token asked for with a certificate is bound to it.
///
/// An opaque token says nothing about its binding, and neither does the
/// token response (RFC 8705 adds no field to it): an authorization server
/// may use the certificate only to authenticate the client and issue a
/// bearer token. So an opaque token counts as bound to the certificate
/// only when `opaque_bound` (the source asked for `mtls_pop` tokens, whose
/// type says so, or was told that this server binds its tokens); otherwise
/// it is sent over the certificate's connection but counts as a bearer
/// token ([`Binding::None`](crate::cnf::Binding::None)).
fn certificate_bound(
    token: Token,
    claims: JwtCnf,
    identity: ClientIdentity,
    opaque_bound: bool,
    status: StatusCode,
) -> Result<Token, TokenEndpointError> {
    match claims {
        JwtCnf::NotJwt if opaque_bound => Ok(token.bound_to(identity)),
        // Opaque, and nothing says the server bound it.
        JwtCnf::NotJwt => Ok(token.with_identity(identity)),
        JwtCnf::Unbound => {
            tracing::warn!("the token endpoint returned a JWT without cnf: an unbound token");
            Ok(token)
        }
        JwtCnf::Bound(cnf) if cnf.is_bound_to(&identity.thumbprint()) => {
            Ok(token.bound_to(identity))
        }
        JwtCnf::Bound(cnf) => Err(TokenEndpointError::new(Kind::CertificateMismatch)
            .status(status)
            .message(format!(
                "cnf.x5t#S256 is {}, our certificate's is {}",
                cnf.thumbprint()
                    .map_or("absent".to_owned(), |t| t.to_string()),
                identity.thumbprint()
            ))),
        JwtCnf::Malformed(e) => Err(TokenEndpointError::new(Kind::InvalidResponse)
            .status(status)
            .message(format!("the token's cnf claim is malformed: {e}"))),
    }
}

/// Checks that a token asked for with a DPoP proof is bound to its key
/// (`cnf.jkt`) and, when it is bound to a certificate as well, to ours.
/// The identity that authenticated goes with the token, for transport
/// only: a JWT without `cnf` stays unbound
/// ([`Binding::None`](crate::cnf::Binding::None)).
fn dpop_bound(
    token: Token,
    claims: JwtCnf,
    proofs: &DpopProofs,
    identity: Option<ClientIdentity>,
    status: StatusCode,
) -> Result<Token, TokenEndpointError> {
    let token = match identity.clone() {
        Some(identity) => token.with_identity(identity),
        None => token,
    };
    let cnf = match claims {
        // Not a JWT: opaque to us; `token_type: DPoP` says the server
        // bound it to the proof's key.
        JwtCnf::NotJwt => return Ok(token.dpop_bound(proofs.clone())),
        JwtCnf::Unbound => {
            tracing::warn!(
                "the token endpoint returned a JWT without cnf: not bound to our DPoP key"
            );
            return Ok(token);
        }
        JwtCnf::Bound(cnf) => cnf,
        JwtCnf::Malformed(e) => {
            return Err(TokenEndpointError::new(Kind::InvalidResponse)
                .status(status)
                .message(format!("the token's cnf claim is malformed: {e}")));
        }
    };
    let ours = proofs.thumbprint();
    // `Confirmation` read `jkt` strictly (a thumbprint string, once).
    match cnf.jkt() {
        Some(jkt) if ours.matches(jkt) => {}
        other => {
            let theirs = other.map_or_else(|| "absent".to_owned(), ToString::to_string);
            return Err(TokenEndpointError::new(Kind::KeyMismatch)
                .status(status)
                .message(format!("cnf.jkt is {theirs}, our DPoP key's is {ours}")));
        }
    }
    if let Some(x5t) = cnf.thumbprint() {
        let matches = identity
            .as_ref()
            .is_some_and(|identity| cnf.is_bound_to(&identity.thumbprint()));
        if !matches {
            return Err(TokenEndpointError::new(Kind::CertificateMismatch)
                .status(status)
                .message(format!(
                    "cnf.x5t#S256 is {x5t}, and we presented {}",
                    identity.map_or("no certificate".to_owned(), |i| i.thumbprint().to_string())
                )));
        }
    }
    Ok(token.dpop_bound(proofs.clone()))
}

/// Checks that a PoP token is bound to our key: a JWT's `cnf.kid` must be
/// our KID (a JWT without `cnf` is returned unbound, with a warning; an
/// opaque token is taken as bound, as `token_type: pop` says). The identity
/// that authenticated goes with the token, for transport only: it does not
/// make the token bound.
fn pop_bound(
    token: Token,
    access_token: &str,
    shrs: &PopProofs,
    identity: Option<ClientIdentity>,
    status: StatusCode,
) -> Result<Token, TokenEndpointError> {
    let token = match identity {
        Some(identity) => token.with_identity(identity),
        None => token,
    };
    let Some(claims) = jwt_payload(access_token) else {
        return Ok(token.pop_bound(shrs.clone()));
    };
    let mismatch = |theirs: String| {
        TokenEndpointError::new(Kind::KeyMismatch)
            .status(status)
            .message(format!(
                "cnf.kid is {theirs}, our PoP key's is {}",
                shrs.kid()
            ))
    };
    match claims.get("cnf") {
        None => {
            tracing::warn!(
                "the token endpoint returned a JWT without cnf: not bound to our PoP key"
            );
            Ok(token)
        }
        Some(Value::Object(cnf)) => match cnf.get("kid") {
            Some(Value::String(kid)) if shrs.kid().matches_str(kid) => {
                Ok(token.pop_bound(shrs.clone()))
            }
            Some(Value::String(kid)) => Err(mismatch(format!("{kid:?}"))),
            Some(_) => Err(mismatch("not a string".to_owned())),
            None => Err(mismatch("absent".to_owned())),
        },
        Some(_) => Err(TokenEndpointError::new(Kind::InvalidResponse)
            .status(status)
            .message("the token's cnf claim is not an object")),
    }
}

enum JwtCnf {
    NotJwt,
    Unbound,
    Bound(Confirmation),
    Malformed(crate::InvalidConfirmation),
}

/// Reads `cnf` from a JWT's payload, unverified: only to check that the
/// server bound the token to our certificate.
fn jwt_confirmation(token: &str) -> JwtCnf {
    let Some(claims) = jwt_payload(token) else {
        return JwtCnf::NotJwt;
    };
    match Confirmation::from_claims(&claims) {
        Ok(None) => JwtCnf::Unbound,
        Ok(Some(cnf)) => JwtCnf::Bound(cnf),
        Err(e) => JwtCnf::Malformed(e),
    }
}

/// The payload of a JWT, unverified; `None` when the token is not one.
fn jwt_payload(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()
}

/// RFC 6749 section 5.2 error, or a plain status error.
pub(super) fn oauth_error(status: StatusCode, body: &[u8]) -> TokenEndpointError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str);
    match error {
        Some(error) => {
            let description = parsed
                .as_ref()
                .and_then(|v| v.get("error_description"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            TokenEndpointError::new(Kind::OAuth)
                .status(status)
                .oauth(error.to_owned(), description)
        }
        None => TokenEndpointError::new(Kind::Status).status(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_cnf() {
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        assert!(matches!(jwt_confirmation("opaque"), JwtCnf::NotJwt));
        assert!(matches!(
            jwt_confirmation(&format!("h.{}.s", enc(serde_json::json!({"sub": "x"})))),
            JwtCnf::Unbound
        ));
        assert!(matches!(
            jwt_confirmation(&format!("h.{}.s", enc(serde_json::json!({"cnf": "x"})))),
            JwtCnf::Malformed(_)
        ));
        assert!(matches!(jwt_confirmation("a.!!!.c"), JwtCnf::NotJwt));
    }

    #[cfg(feature = "test-util")]
    #[test]
    fn opaque_tokens_count_as_certificate_bound_only_when_the_source_says_so() {
        use crate::cnf::Binding;
        let identity = crate::test_util::svc_identity();
        let read = |opaque_bound| {
            let token = Token::new("opaque");
            certificate_bound(
                token,
                jwt_confirmation("opaque"),
                identity.clone(),
                opaque_bound,
                StatusCode::OK,
            )
            .unwrap()
        };
        let bearer = read(false);
        // Sent over the certificate's connection, bound to nothing.
        assert!(bearer.identity().is_some());
        assert_eq!(bearer.binding(), Binding::None);
        assert_eq!(read(true).binding(), Binding::Certificate);
    }

    #[test]
    fn oauth_errors_keep_code_and_description() {
        let e = oauth_error(
            StatusCode::UNAUTHORIZED,
            br#"{"error":"invalid_client","error_description":"no such client"}"#,
        );
        assert_eq!(e.kind(), Kind::OAuth);
        assert_eq!(e.oauth_error(), Some("invalid_client"));
        assert_eq!(e.oauth_description(), Some("no such client"));
        assert!(e.to_string().contains("invalid_client"));
        let e = oauth_error(StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(
            (e.kind(), e.http_status()),
            (Kind::Status, Some(StatusCode::BAD_GATEWAY))
        );
    }
}
