//! The `PoP` half of [`CnfValidationLayer`](super::CnfValidationLayer):
//! Microsoft's signed HTTP requests (SHR), checked against the request.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Request;

use super::BufferedBody;
use super::dpop::absolute_uri;
use super::layer::Settings;
use super::rejection::Rejection;
use crate::proof::pop::{POP_TYPE, PopError, PopErrorKind, PopVerifier, VerifiedPopProof};

/// Checks the SHR of a request sent with `Authorization: PoP <SHR>`:
/// everything [`PopVerifier::verify`] checks, against the request's method,
/// absolute URI (the public origin's host when one is configured, else the
/// request's; its path and query), headers and, when a [`BufferBodyLayer`]
/// outside has read it, body, now (without a [`BufferedBody`], an SHR with
/// a body hash is refused). Its access token, the binding to it and the
/// replay check come later.
///
/// [`BufferBodyLayer`]: super::BufferBodyLayer
pub(crate) fn verify<B>(
    verifier: &PopVerifier,
    settings: &Settings,
    request: &Request<B>,
    shr: &str,
) -> Result<VerifiedPopProof, Rejection> {
    let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    // Without a usable authority (none, user info in Host, a target that
    // is not Host's) no SHR can match: refused here, never checked against
    // a stand-in URI.
    let Some(uri) = absolute_uri(request, settings.public_origin.as_ref(), path_and_query) else {
        return Err(Rejection::pop(
            PopError::new(PopErrorKind::HostMismatch)
                .with_detail("the request names no usable authority"),
        ));
    };
    verifier
        .verify(
            shr,
            request.method(),
            &uri,
            request.headers(),
            request
                .extensions()
                .get::<BufferedBody>()
                .map(|body| body.bytes().as_ref()),
            crate::clock::wall(),
        )
        .map_err(Rejection::pop)
}

/// The rejection of a replayed SHR.
pub(crate) fn replayed() -> Rejection {
    Rejection::pop(PopError::new(PopErrorKind::Replayed))
}

/// The largest JWS header looked at by [`is_signed_request`], in base64url
/// characters.
const MAX_HEADER_LEN: usize = 2048;

/// Whether `token` is a signed HTTP request rather than an access token: a
/// compact JWS whose header says `"typ": "pop"`. Only the header is decoded
/// (at most [`MAX_HEADER_LEN`] characters), so a bearer token costs little.
pub(crate) fn is_signed_request(token: &str) -> bool {
    let Some((header, rest)) = token.split_once('.') else {
        return false;
    };
    if header.len() > MAX_HEADER_LEN {
        return false;
    }
    let mut buffer = [0u8; MAX_HEADER_LEN / 4 * 3 + 3];
    let Ok(length) = URL_SAFE_NO_PAD.decode_slice(header, &mut buffer) else {
        return false;
    };
    let bytes = &buffer[..length];
    // A header without the string `"pop"` written out (in any case), nor
    // any escape that could spell it, has no `typ` `pop`: access tokens
    // (`"typ":"at+jwt"`, or none) end here, unparsed, the rest of the token
    // not read.
    let spelled = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'"'
            && bytes
                .get(i + 1..i + 5)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"pop\""))
    });
    if !spelled && !bytes.contains(&b'\\') {
        return false;
    }
    // Three segments: a compact JWS.
    if rest.bytes().filter(|&b| b == b'.').count() != 1 {
        return false;
    }
    #[derive(serde::Deserialize)]
    struct Header<'a> {
        #[serde(borrow)]
        typ: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Header<'_>>(bytes)
        .ok()
        .and_then(|h| h.typ)
        .is_some_and(|typ| typ.eq_ignore_ascii_case(POP_TYPE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jws(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn signed_requests_are_told_from_tokens() {
        assert!(is_signed_request(&jws(
            r#"{"alg":"PS256","typ":"pop","kid":"k"}"#
        )));
        assert!(is_signed_request(&jws(r#"{"typ":"POP","alg":"ES256"}"#)));
        // Escapes are JSON's, not a way around the check.
        assert!(is_signed_request(&jws(r#"{"t\u0079p":"p\u006Fp"}"#)));
        assert!(is_signed_request(&jws(r#"{"typ" : "Pop"}"#)));
        for token in [
            jws(r#"{"alg":"RS256","typ":"at+jwt"}"#),
            jws(r#"{"alg":"RS256"}"#),
            jws(r#"{"typ":7}"#),
            jws(r#"{"kid":"pop","typ":"JWT"}"#),
            "opaque-token".to_owned(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            "!!.e30.c2ln".to_owned(),
            format!("{}.e30.c2ln", "A".repeat(MAX_HEADER_LEN + 4)),
        ] {
            assert!(!is_signed_request(&token), "{token}");
        }
    }
}
