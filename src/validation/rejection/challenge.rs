//! The `WWW-Authenticate` value of a rejection: one challenge per scheme the
//! route accepts, the request's scheme first with the `error` (RFC 6750
//! section 3, RFC 9449 section 7.1), values escaped as quoted-strings.

use http::HeaderValue;

use super::{RejectionKind, Scheme};

/// The schemes a route accepts, for its challenges.
pub(super) struct Offer<'a> {
    pub(super) bearer: bool,
    /// With DPoP, the `algs` parameter.
    pub(super) dpop_algs: Option<&'a str>,
    /// Signed HTTP requests (`PoP`).
    pub(super) pop: bool,
}

/// One `WWW-Authenticate` value with a challenge for each scheme the route
/// accepts (RFC 7235 section 4.1 allows several in one value; one value is
/// what clients that read a single header see whole).
///
/// With an error, the challenge of the request's scheme comes first and
/// carries it (`DPoP error="invalid_dpop_proof", algs="ES256 ..."`), then
/// bare challenges for the other schemes: `Bearer`, `DPoP algs="..."`,
/// `PoP`. Without credentials, bare challenges for every scheme offered
/// (RFC 9449 section 7.2: `Bearer, DPoP algs="ES256 PS256"`).
pub(super) fn challenges(
    scheme: Scheme,
    kind: RejectionKind,
    description: Option<&str>,
    scope: Option<&str>,
    offer: &Offer<'_>,
) -> HeaderValue {
    let mut value = String::new();
    let mut add_bearer = offer.bearer;
    let mut add_dpop = offer.dpop_algs;
    let mut add_pop = offer.pop;
    if let Some(code) = kind.error_code() {
        value.push_str(scheme.word());
        value.push_str(" error=\"");
        value.push_str(code);
        value.push('"');
        if let Some(description) = description {
            value.push_str(", error_description=\"");
            push_quoted(&mut value, description);
            value.push('"');
        }
        if let (RejectionKind::InsufficientScope, Some(scope)) = (kind, scope) {
            value.push_str(", scope=\"");
            push_quoted(&mut value, scope);
            value.push('"');
        }
        match scheme {
            Scheme::Dpop => {
                if let Some(algs) = add_dpop.take() {
                    push_algs(&mut value, algs, false);
                }
            }
            Scheme::Pop => add_pop = false,
            // An `mtls_pop` client is answered in its own scheme only.
            Scheme::Bearer | Scheme::MtlsPop => add_bearer = false,
        }
    }
    if add_bearer {
        push_separator(&mut value);
        value.push_str("Bearer");
    }
    if let Some(algs) = add_dpop {
        push_separator(&mut value);
        value.push_str("DPoP");
        push_algs(&mut value, algs, true);
    }
    if add_pop {
        push_separator(&mut value);
        value.push_str("PoP");
    }
    if value.is_empty() {
        value.push_str("Bearer");
    }
    // Everything above is printable ASCII: `push_quoted` sees to it.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

fn push_separator(value: &mut String) {
    if !value.is_empty() {
        value.push_str(", ");
    }
}

/// The `algs` parameter: ` algs="..."` right after the scheme word (`bare`),
/// `, algs="..."` after other parameters.
fn push_algs(value: &mut String, algs: &str, bare: bool) {
    value.push_str(if bare { " " } else { ", " });
    value.push_str("algs=\"");
    push_quoted(value, algs);
    value.push('"');
}

/// Escapes for an RFC 7230 quoted-string. RFC 6750 allows only printable
/// ASCII in `error_description` and `scope`; anything else (a custom
/// validator's claim name, say) becomes `?`.
fn push_quoted(out: &mut String, text: &str) {
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(if c == ' ' || c.is_ascii_graphic() {
            c
        } else {
            '?'
        });
    }
}
