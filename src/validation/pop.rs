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
    let Some((header, _)) = token.split_once('.') else {
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
    if crate::proof::jws::segments(token).is_none() {
        // Not a compact JWS.
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

    /// What `is_signed_request` was before it decoded into the stack and
    /// looked for `"pop"` first: three segments, the whole header decoded
    /// and parsed.
    fn parsed_in_full(token: &str) -> bool {
        let mut segments = token.split('.');
        let (Some(header), Some(_), Some(_), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return false;
        };
        if header.len() > MAX_HEADER_LEN {
            return false;
        }
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(header) else {
            return false;
        };
        #[derive(serde::Deserialize)]
        struct Header<'a> {
            #[serde(borrow)]
            typ: Option<std::borrow::Cow<'a, str>>,
        }
        serde_json::from_slice::<Header<'_>>(&bytes)
            .ok()
            .and_then(|h| h.typ)
            .is_some_and(|typ| typ.eq_ignore_ascii_case(POP_TYPE))
    }

    /// A header of exactly `len` bytes whose `typ` is `typ` (JSON text).
    fn header_of(len: usize, typ: &str) -> String {
        let bare = format!(r#"{{"typ":{typ},"kid":""}}"#);
        let kid = "k".repeat(len - bare.len());
        format!(r#"{{"typ":{typ},"kid":"{kid}"}}"#)
    }

    /// Every way JSON spells `pop` as the `typ` (case, escapes of the name
    /// or of any letter, white space, member order), at the length limit
    /// and past it: told as before.
    #[test]
    fn every_spelling_of_pop_is_a_signed_request() {
        let spellings = [
            r#""pop""#,
            r#""PoP""#,
            r#""pOP""#,
            r#""\u0070op""#,
            r#""P\u004fP""#,
            r#""po\u0050""#,
            r#""\u0050\u004F\u0050""#,
            r#""\u0070\u006f\u0070""#,
        ];
        for typ in spellings {
            for header in [
                format!(r#"{{"typ":{typ}}}"#),
                format!(r#"{{"t\u0079p":{typ}}}"#),
                format!(r#"{{"\u0074\u0079\u0070" :	{typ} }}"#),
                format!(r#"{{"alg":"ES256","kid":"a\"pop","typ":{typ},"nonce":"\\"}}"#),
                format!("\n{{\r\n\"typ\"\t:\n{typ}}}\n"),
            ] {
                let token = jws(&header);
                assert!(is_signed_request(&token), "{header}");
                assert_eq!(is_signed_request(&token), parsed_in_full(&token));
            }
        }
        // The last header that fits (2048 characters, 1536 bytes), and the
        // ones around it.
        for len in 1530..=1540 {
            for typ in [r#""pop""#, r#""p\u006fp""#, r#""jwt""#] {
                let header = header_of(len, typ);
                let encoded = URL_SAFE_NO_PAD.encode(&header);
                for token in [
                    format!("{encoded}.e30.c2ln"),
                    format!("{encoded}.."),
                    format!("{encoded}.e30"),
                    format!("{encoded}.e30.c2ln."),
                ] {
                    assert_eq!(
                        is_signed_request(&token),
                        parsed_in_full(&token),
                        "{len} {typ} {}",
                        &token[encoded.len()..]
                    );
                }
            }
        }
        assert!(is_signed_request(&jws(&header_of(1536, r#""pop""#))));
        assert!(!is_signed_request(&jws(&header_of(1537, r#""pop""#))));
    }

    /// Not `pop`, whatever looks like it: as before.
    #[test]
    fn near_misses_are_tokens() {
        for header in [
            r#"{"typ":"pop "}"#,
            r#"{"typ":" pop"}"#,
            r#"{"typ":"popp"}"#,
            r#"{"typ":"po"}"#,
            r#"{"typ":"p\u0000op"}"#,
            r#"{"typ":"ｐｏｐ"}"#,
            r#"{"typ":["pop"]}"#,
            r#"{"typ":{"pop":1}}"#,
            r#"{"TYP":"pop"}"#,
            r#"{"typ":"pop","typ":"pop"}"#,
            r#"{"typ":"pop"}x"#,
            r#"{"typ":"pop""#,
            r#"{"typ":"\u0070op\"}"#,
            r#"{"typ":"jwt","x":"\"pop\""}"#,
            "\"pop\"",
            "",
        ] {
            let token = jws(header);
            assert!(!is_signed_request(&token), "{header}");
            assert_eq!(is_signed_request(&token), parsed_in_full(&token));
        }
        // Neither with another segment count, nor padded, nor with
        // standard base64's alphabet.
        let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"pop","kid":"??>>"}"#);
        for token in [
            format!("{header}.e30"),
            format!("{header}.e30.c2ln.x"),
            format!("{header}=.e30.c2ln"),
            format!("{}.e30.c2ln", header.replace('-', "+").replace('_', "/")),
        ] {
            assert_eq!(is_signed_request(&token), parsed_in_full(&token), "{token}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

        /// Headers made of JSON's pieces, `typ` and `pop` among them in
        /// every case and escape: the same answer as parsing them in full.
        #[test]
        fn the_shortcut_agrees_with_parsing_in_full(
            pieces in proptest::collection::vec(proptest::sample::select(vec![
                "{", "}", "[", "]", ",", ":", " ", "\"typ\"", "\"t\\u0079p\"", "\"pop\"",
                "\"POP\"", "\"p\\u006fp\"", "\"Po\\u0050\"", "\"pop", "pop\"", "\"", "\\",
                "\"alg\"", "\"ES256\"", "1", "null",
            ]), 0..24),
            rest in proptest::sample::select(vec![".e30.c2ln", ".e30", "..", ".a.b.c", ""]),
        ) {
            let token = format!("{}{rest}", URL_SAFE_NO_PAD.encode(pieces.concat()));
            proptest::prop_assert_eq!(is_signed_request(&token), parsed_in_full(&token));
        }
    }
}
