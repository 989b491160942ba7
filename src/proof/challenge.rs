//! Reading `WWW-Authenticate` challenges (RFC 9110 section 11.6.1) as a
//! client must: whether one says `invalid_token` or `use_dpop_nonce`, and
//! the nonce of a `PoP` challenge. Shared by the client's retries and the
//! signer of Microsoft's signed HTTP requests.

use http::{HeaderMap, header};

/// Whether a challenge says `error="invalid_token"`.
pub(crate) fn says_invalid_token(headers: &HeaderMap) -> bool {
    says(
        headers,
        &["bearer", "mtls_pop", "dpop", "pop"],
        "invalid_token",
    )
}

/// Whether a `DPoP` challenge says `error="use_dpop_nonce"`.
pub(crate) fn says_use_dpop_nonce(headers: &HeaderMap) -> bool {
    says(headers, &["dpop"], "use_dpop_nonce")
}

/// The `nonce` of a `PoP` challenge (Microsoft's signed HTTP requests, as
/// MSAL reads it: `WWW-Authenticate: PoP nonce="..."`), unescaped, if the
/// headers have exactly one such challenge value. The scheme and the
/// parameter's name are case-insensitive, the value a token or a quoted
/// string (with `\` escapes), among any other parameters.
pub(crate) fn pop_challenge_nonce(headers: &HeaderMap) -> Option<String> {
    let mut found = None;
    for value in headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for (scheme, params) in challenges(value) {
            if !scheme.eq_ignore_ascii_case("pop") {
                continue;
            }
            for (_, param) in split_outside_quotes(params) {
                let Some((name, value)) = param.split_once('=') else {
                    continue;
                };
                if !name.trim().eq_ignore_ascii_case("nonce") {
                    continue;
                }
                let nonce = param_value(value.trim())?;
                if found.replace(nonce).is_some() {
                    // Two nonces: which one would the server check?
                    return None;
                }
            }
        }
    }
    found
}

/// An auth-param's value: a token, or a quoted string with its escapes
/// undone. `None` when it is neither.
fn param_value(value: &str) -> Option<String> {
    let Some(quoted) = value.strip_prefix('"') else {
        let is_token = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        return is_token.then(|| value.to_owned());
    };
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    // No closing quote.
    None
}

/// Whether a `WWW-Authenticate` value has a challenge of one of `schemes`
/// (lower case) whose `error` is `code`. A value may hold several
/// challenges (`Bearer realm="a", DPoP error="use_dpop_nonce"`): the error
/// must follow the scheme's word, before the next challenge's.
fn says(headers: &HeaderMap, schemes: &[&str], code: &str) -> bool {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| {
            let lower = value.to_ascii_lowercase();
            challenges(&lower).any(|(scheme, params)| {
                schemes.contains(&scheme)
                    && split_outside_quotes(params).into_iter().any(|(_, param)| {
                        // `error = "code"`: spaces around `=` are allowed
                        // (RFC 9110's BWS).
                        param.split_once('=').is_some_and(|(name, value)| {
                            name.trim() == "error"
                                && param_value(value.trim()).is_some_and(|v| v == code)
                        })
                    })
            })
        })
}

/// The challenges of a lower-cased `WWW-Authenticate` value, as (scheme,
/// parameters) pairs. The value is split at commas outside quoted strings;
/// a piece that starts with a token followed by a space or nothing (not by
/// `=`) starts a new challenge.
fn challenges(value: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut starts: Vec<(usize, usize)> = Vec::new();
    for (at, piece) in split_outside_quotes(value) {
        let trimmed = piece.trim_start();
        let offset = at + (piece.len() - trimmed.len());
        let word_end = trimmed.find([' ', '\t', '=']).unwrap_or(trimmed.len());
        // `name = value` (with spaces around `=`) is a parameter too.
        let is_scheme = word_end > 0
            && !trimmed[word_end..].trim_start().starts_with('=')
            && trimmed[..word_end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if is_scheme {
            starts.push((offset, word_end));
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|(start, _)| *start)
        .chain([value.len()])
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |((start, word_end), end)| {
            let scheme = value.get(start..start + word_end).unwrap_or_default();
            let params = value.get(start + word_end..end).unwrap_or_default();
            (scheme, params)
        })
}

/// The pieces of `value` between commas that are not inside a quoted
/// string, with their offsets.
fn split_outside_quotes(value: &str) -> Vec<(usize, &str)> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in value.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                pieces.push((start, &value[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push((start, &value[start..]));
    pieces
}
