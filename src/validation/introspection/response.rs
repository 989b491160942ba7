//! Reading an RFC 7662 introspection answer, as strictly as a JWT.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::json::{StrictJsonError, strict_value};
use crate::validation::{TokenError, TokenErrorKind, TokenProfile, VerifiedToken};

/// What the answer is checked against.
#[derive(Debug, Clone)]
pub(super) struct Expectations {
    /// The exact `iss`, required.
    pub(super) issuer: String,
    /// Accepted `aud` values (never empty): an `aud` that is present must
    /// name one of them.
    pub(super) audiences: Vec<String>,
    /// Whether `aud` is required (else checked when present).
    pub(super) require_aud: bool,
    /// Whether `exp` is required.
    pub(super) require_exp: bool,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    pub(super) leeway: u64,
    /// How the answer's claims are read (client, permissions).
    pub(super) profile: Arc<TokenProfile>,
}

/// How an answer was refused.
#[derive(Debug)]
pub(super) enum Refused {
    /// A definitive answer about the token (inactive, expired, not ours):
    /// `401`, remembered for a short while.
    Token(TokenError),
    /// Not a usable RFC 7662 answer: `503`, never remembered.
    Garbage(String),
}

impl Refused {
    fn garbage(message: impl Into<String>) -> Self {
        Refused::Garbage(message.into())
    }
}

/// Checks the body of a `200` answer and returns the verified token.
///
/// 1. a JSON object naming no member twice, at any depth;
/// 2. `active` a boolean, and `true`;
/// 3. `exp`, `nbf` numbers, `iss` a string, `aud` a string or an array of
///    strings, `token_type` a string, when present (otherwise the answer
///    is garbage);
/// 4. `exp` not passed and `nbf` not ahead (beyond the leeway), `iss`
///    present and exact, `aud` present (unless `require_aud` is off) and
///    ours, `exp` required when configured;
/// 5. `cnf` well-formed, and `token_type` consistent with it: `DPoP` needs
///    `cnf.jkt`, a `cnf.jkt` needs `DPoP` (RFC 9449 section 6.2).
pub(super) fn check_answer(
    body: &[u8],
    expect: &Expectations,
    now: u64,
) -> Result<VerifiedToken, Refused> {
    use TokenErrorKind as K;
    let value = strict_value(body).map_err(|e| match e {
        StrictJsonError::DuplicateMember(name) => {
            Refused::garbage(format!("the answer names the member {name:?} twice"))
        }
        StrictJsonError::Malformed(e) => Refused::garbage(format!("the answer is not JSON: {e}")),
    })?;
    let Value::Object(claims) = value else {
        return Err(Refused::garbage("the answer is not a JSON object"));
    };
    match claims.get("active") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Err(Refused::Token(TokenError::new(K::Inactive))),
        Some(_) => return Err(Refused::garbage("active is not a boolean")),
        None => return Err(Refused::garbage("the answer has no active member")),
    }

    let exp = number(&claims, "exp")?;
    let nbf = number(&claims, "nbf")?;
    let iss = string(&claims, "iss")?;
    let token_type = string(&claims, "token_type")?;
    let aud: Option<Vec<&str>> = match claims.get("aud") {
        None => None,
        Some(Value::String(one)) => Some(vec![one.as_str()]),
        Some(Value::Array(many)) => Some(
            many.iter()
                .map(Value::as_str)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Refused::garbage("aud is not a string or an array of strings"))?,
        ),
        Some(_) => {
            return Err(Refused::garbage(
                "aud is not a string or an array of strings",
            ));
        }
    };

    let leeway = expect.leeway as f64;
    let now_f = now as f64;
    match exp {
        Some(exp) if exp + leeway <= now_f => {
            return Err(Refused::Token(TokenError::new(K::Expired)));
        }
        None if expect.require_exp => {
            return Err(Refused::Token(TokenError::missing_claim("exp")));
        }
        _ => {}
    }
    if nbf.is_some_and(|nbf| nbf > now_f + leeway) {
        return Err(Refused::Token(TokenError::new(K::NotYetValid)));
    }
    match iss {
        None => return Err(Refused::Token(TokenError::missing_claim("iss"))),
        Some(iss) if iss != expect.issuer => {
            return Err(Refused::Token(TokenError::new(K::WrongIssuer)));
        }
        Some(_) => {}
    }
    match &aud {
        None if expect.require_aud => {
            return Err(Refused::Token(TokenError::missing_claim("aud")));
        }
        None => {}
        Some(aud) if !aud.iter().any(|a| expect.audiences.iter().any(|e| e == a)) => {
            return Err(Refused::Token(TokenError::new(K::WrongAudience)));
        }
        Some(_) => {}
    }

    let dpop_type = token_type.is_some_and(|t| t.eq_ignore_ascii_case("DPoP"));
    let verified = VerifiedToken::from_claims_with_profile(claims.clone(), expect.profile.clone())
        .map_err(|e| {
            Refused::Token(TokenError::with_detail(
                K::InvalidConfirmation,
                e.to_string(),
            ))
        })?;
    let jkt = verified.confirmation().and_then(|cnf| cnf.jkt()).is_some();
    if token_type.is_some() && dpop_type != jkt {
        return Err(Refused::Token(TokenError::with_detail(
            K::TokenTypeMismatch,
            if jkt {
                "cnf.jkt in a token whose token_type is not DPoP"
            } else {
                "token_type DPoP without cnf.jkt"
            },
        )));
    }
    Ok(verified)
}

/// A number member, if present; another type is garbage.
fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Refused> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|n| n.is_finite())
            .map(Some)
            .ok_or_else(|| Refused::garbage(format!("{name} is not a number"))),
    }
}

/// A string member, if present; another type is garbage.
fn string<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Refused> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Refused::garbage(format!("{name} is not a string"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProvenBinding;
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn expect() -> Expectations {
        Expectations {
            issuer: "https://as.example".into(),
            audiences: vec!["https://api.example".into()],
            require_aud: true,
            require_exp: true,
            leeway: 30,
            profile: Arc::new(TokenProfile::rfc9068()),
        }
    }

    fn good() -> Value {
        json!({
            "active": true,
            "iss": "https://as.example",
            "aud": ["other", "https://api.example"],
            "exp": NOW + 60,
            "sub": "svc",
            "client_id": "svc",
            "token_type": "Bearer",
        })
    }

    fn check(value: &Value) -> Result<VerifiedToken, Refused> {
        check_answer(value.to_string().as_bytes(), &expect(), NOW)
    }

    #[test]
    fn answers_are_read_with_the_profile() {
        let mut answer = good();
        answer["cid"] = json!("0oa1");
        answer["scp"] = json!(["orders.read"]);
        let okta = Expectations {
            profile: Arc::new(TokenProfile::okta()),
            ..expect()
        };
        let Ok(token) = check_answer(answer.to_string().as_bytes(), &okta, NOW) else {
            panic!("refused");
        };
        assert_eq!(token.client_id(), Some("0oa1"));
        assert!(token.has_scope("orders.read"));
        // The default reads RFC 7662's names.
        let Ok(token) = check(&answer) else {
            panic!("refused");
        };
        assert_ne!(token.client_id(), Some("0oa1"));
        assert!(!token.has_scope("orders.read"));
    }

    fn kind(value: &Value) -> TokenErrorKind {
        match check(value) {
            Err(Refused::Token(e)) => e.kind(),
            other => panic!("expected a token refusal, got {other:?}"),
        }
    }

    fn garbage(body: &str) -> bool {
        matches!(
            check_answer(body.as_bytes(), &expect(), NOW),
            Err(Refused::Garbage(_))
        )
    }

    #[test]
    fn an_active_answer_is_a_verified_token() {
        let token = check(&good()).unwrap();
        assert_eq!(token.subject(), Some("svc"));
        assert_eq!(token.binding(), ProvenBinding::None);
        assert_eq!(token.expires_at(), Some(NOW + 60));
    }

    #[test]
    fn definitive_refusals() {
        let with = |name: &str, value: Value| {
            let mut v = good();
            v[name] = value;
            v
        };
        let without = |name: &str| {
            let mut v = good();
            v.as_object_mut().unwrap().remove(name);
            v
        };
        assert_eq!(kind(&json!({ "active": false })), TokenErrorKind::Inactive);
        assert_eq!(kind(&with("exp", json!(NOW - 31))), TokenErrorKind::Expired);
        assert!(
            check(&with("exp", json!(NOW - 29))).is_ok(),
            "within the leeway"
        );
        assert_eq!(
            kind(&with("nbf", json!(NOW + 31))),
            TokenErrorKind::NotYetValid
        );
        assert_eq!(
            kind(&with("iss", json!("https://as.example/"))),
            TokenErrorKind::WrongIssuer
        );
        assert_eq!(
            kind(&with("aud", json!("other"))),
            TokenErrorKind::WrongAudience
        );
        assert_eq!(kind(&with("aud", json!([]))), TokenErrorKind::WrongAudience);
        for claim in ["exp", "iss", "aud"] {
            assert_eq!(
                kind(&without(claim)),
                TokenErrorKind::MissingClaim,
                "{claim}"
            );
        }
        assert_eq!(
            kind(&with("cnf", json!("x"))),
            TokenErrorKind::InvalidConfirmation
        );
        let jkt = json!({ "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" });
        assert_eq!(
            kind(&with("cnf", jkt.clone())),
            TokenErrorKind::TokenTypeMismatch
        );
        assert_eq!(
            kind(&with("token_type", json!("DPoP"))),
            TokenErrorKind::TokenTypeMismatch
        );
        let mut dpop = with("cnf", jkt);
        dpop["token_type"] = json!("DPoP");
        assert!(check(&dpop).is_ok());
        dpop.as_object_mut().unwrap().remove("token_type");
        assert!(check(&dpop).is_ok(), "no token_type: cnf decides");
    }

    #[test]
    fn iss_always_required_aud_unless_relaxed() {
        let relaxed = Expectations {
            require_aud: false,
            require_exp: false,
            ..expect()
        };
        let refused = |body: &str| match check_answer(body.as_bytes(), &relaxed, NOW) {
            Err(Refused::Token(e)) => e.kind(),
            other => panic!("expected a token refusal, got {other:?}"),
        };
        assert_eq!(
            refused(r#"{"active":true}"#),
            TokenErrorKind::MissingClaim,
            "iss"
        );
        assert!(
            check_answer(
                br#"{"active":true,"iss":"https://as.example"}"#,
                &relaxed,
                NOW
            )
            .is_ok()
        );
        // Without aud required, a present aud is still checked.
        assert_eq!(
            refused(r#"{"active":true,"iss":"https://as.example","aud":"other"}"#),
            TokenErrorKind::WrongAudience
        );
        assert!(
            check_answer(
                br#"{"active":true,"iss":"https://as.example","aud":"https://api.example"}"#,
                &relaxed,
                NOW
            )
            .is_ok()
        );
    }

    #[test]
    fn garbage_answers() {
        for body in [
            "",
            "not json",
            "[]",
            "true",
            r#"{"active":"true"}"#,
            r#"{"active":1}"#,
            r#"{}"#,
            r#"{"active":true,"active":false}"#,
            r#"{"active":false,"active":true}"#,
            r#"{"active":true,"cnf":{"x5t#S256":"a","x5t#S256":"b"}}"#,
            r#"{"active":true,"exp":"soon"}"#,
            r#"{"active":true,"iss":1}"#,
            r#"{"active":true,"aud":[1]}"#,
            r#"{"active":true,"aud":{}}"#,
            r#"{"active":true,"token_type":1}"#,
            r#"{"active":true} trailing"#,
        ] {
            assert!(garbage(body), "{body:?}");
        }
    }
}
