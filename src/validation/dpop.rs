//! The DPoP half of [`CnfValidationLayer`](super::CnfValidationLayer): the
//! proof header, the `htu` of a request, the proof check, and the public
//! origin setting.

use std::fmt;

use http::uri::{Authority, Scheme as UriScheme};
use http::{HeaderMap, HeaderValue, Request, Uri, header};

use super::layer::Settings;
use super::rejection::{Rejection, RejectionKind, Scheme};
use crate::proof::dpop::{DPOP, DpopError, DpopErrorKind, DpopVerifier, VerifiedDpopProof};

/// The scheme and authority clients address this server by, for the `htu`
/// of DPoP proofs: `https://api.example.com`, `https://api.example.com:8443`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PublicOrigin {
    scheme: UriScheme,
    authority: Authority,
}

impl PublicOrigin {
    /// Parses an origin: `http` or `https`, a host and an optional port, no
    /// user info, and nothing after the authority but an optional `/`.
    pub(crate) fn parse(text: &str) -> Result<Self, InvalidPublicOrigin> {
        let invalid = |why| InvalidPublicOrigin {
            origin: text.to_owned(),
            why,
        };
        if text.contains(['#', '?']) {
            return Err(invalid("it has a query or a fragment"));
        }
        let uri: Uri = text.parse().map_err(|_| invalid("it is not a URI"))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => UriScheme::HTTPS,
            Some(s) if s.eq_ignore_ascii_case("http") => UriScheme::HTTP,
            _ => return Err(invalid("its scheme is not http or https")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid("it has no host"))?
            .clone();
        if authority.as_str().contains('@') {
            return Err(invalid("it has user info"));
        }
        if authority.host().is_empty() {
            return Err(invalid("it has no host"));
        }
        if authority.as_str().ends_with(':') {
            return Err(invalid("its port is empty"));
        }
        if !matches!(uri.path(), "" | "/") {
            return Err(invalid("it has a path"));
        }
        Ok(Self { scheme, authority })
    }
}

/// A [public origin](super::CnfValidationLayer::public_origin) that is not
/// an `http` or `https` origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPublicOrigin {
    origin: String,
    why: &'static str,
}

impl fmt::Display for InvalidPublicOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a public origin such as https://api.example.com: {}",
            self.origin, self.why
        )
    }
}

impl std::error::Error for InvalidPublicOrigin {}

/// The request's `DPoP` header: `Ok(None)` without one, an error for two or
/// more (RFC 9449 section 4.3: exactly one).
pub(crate) fn proof_header(headers: &HeaderMap) -> Result<Option<&HeaderValue>, RejectionKind> {
    let mut values = headers.get_all(DPOP).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(RejectionKind::MultipleDpopProofs);
    }
    Ok(first)
}

/// The URI a DPoP proof's `htu` must name for `request`: the scheme and
/// authority of the public origin when one is configured, else `https` and
/// the request's authority (the HTTP/2 `:authority` or absolute-form
/// target, or the `Host` header; none when a target's authority and `Host`
/// differ);
/// the request's path. `None` when the request names no authority.
pub(crate) fn request_htu<B>(request: &Request<B>, origin: Option<&PublicOrigin>) -> Option<Uri> {
    absolute_uri(request, origin, request.uri().path())
}

/// The absolute URI of `request` as its client addressed it, as for
/// [`request_htu`], with `path_and_query` after the authority.
pub(crate) fn absolute_uri<B>(
    request: &Request<B>,
    origin: Option<&PublicOrigin>,
    path_and_query: &str,
) -> Option<Uri> {
    let (scheme, authority) = match origin {
        Some(origin) => (origin.scheme.clone(), origin.authority.clone()),
        None => {
            let host = match request.headers().get(header::HOST) {
                Some(host) => Some(host.to_str().ok()?.parse::<Authority>().ok()?),
                None => None,
            };
            let authority = match (request.uri().authority(), host) {
                // An absolute-form target (or HTTP/2 `:authority`) and a
                // `Host` that differ: no proof matches such a request.
                (Some(target), Some(host)) if !same_authority(target, &host) => return None,
                (Some(target), _) => target.clone(),
                (None, host) => host?,
            };
            if authority.as_str().contains('@') {
                return None;
            }
            (UriScheme::HTTPS, authority)
        }
    };
    Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .ok()
}

/// Whether two authorities name the same host (case-insensitively) and
/// port (443 when none is given: without a public origin the scheme is
/// taken to be `https`).
fn same_authority(a: &Authority, b: &Authority) -> bool {
    // The port as written (`Authority::port` has none for `:99999`); a
    // port that is not a u16 matches nothing.
    let port = |x: &Authority| {
        let text = x.as_str();
        let tail = text.rfind(']').map_or(text, |at| &text[at + 1..]);
        match tail.rsplit_once(':') {
            Some((_, port)) => port.parse::<u16>().ok(),
            None => Some(443),
        }
    };
    a.host().eq_ignore_ascii_case(b.host()) && port(a).is_some() && port(a) == port(b)
}

/// Checks the proof of a request sent with `Authorization: DPoP <token>`:
/// everything [`DpopVerifier::verify`] checks, against the request's method
/// and `htu`, now. The binding to the token and the replay check come later.
pub(crate) fn verify<B>(
    verifier: &DpopVerifier,
    settings: &Settings,
    request: &Request<B>,
    proof: &HeaderValue,
    token: &str,
) -> Result<VerifiedDpopProof, Rejection> {
    let refuse = |e| Rejection::dpop(e, Scheme::Dpop);
    let Ok(proof) = proof.to_str() else {
        let malformed = DpopError::new(DpopErrorKind::Malformed)
            .with_detail("the DPoP header is not visible ASCII");
        return Err(refuse(malformed));
    };
    // Without an authority, a relative URI: no proof matches it.
    let htu = request_htu(request, settings.public_origin.as_ref())
        .unwrap_or_else(|| Uri::from_static("/"));
    verifier
        .verify(
            proof,
            request.method(),
            &htu,
            Some(token),
            crate::clock::wall(),
        )
        .map_err(refuse)
}

/// The `DPoP-Nonce` header for a response to a DPoP request, when the
/// verifier requires nonces: the current one.
pub(crate) fn nonce_header(settings: &Settings, scheme: Scheme) -> Option<HeaderValue> {
    if scheme != Scheme::Dpop {
        return None;
    }
    let nonces = settings.dpop.as_ref()?.nonces()?;
    HeaderValue::from_str(&nonces.current(crate::clock::wall())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_origins() {
        for good in [
            "https://api.example.com",
            "https://api.example.com/",
            "HTTPS://API.example.com:8443",
            "http://127.0.0.1:8080",
            "https://[::1]:8443",
        ] {
            assert!(PublicOrigin::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "api.example.com",
            "/path",
            "ftp://api.example.com",
            "https://user@api.example.com",
            "https://api.example.com/v1",
            "https://api.example.com?x=1",
            "https://api.example.com#f",
            "https://api.example.com:",
            "https://",
        ] {
            let err = PublicOrigin::parse(bad).unwrap_err();
            assert!(
                err.to_string().contains("not a public origin"),
                "{bad}: {err}"
            );
        }
    }

    fn htu(request: Request<()>, origin: Option<&str>) -> Option<String> {
        let origin = origin.map(|o| PublicOrigin::parse(o).unwrap());
        request_htu(&request, origin.as_ref()).map(|u| u.to_string())
    }

    #[test]
    fn htu_of_a_request() {
        // HTTP/1.1: origin-form and Host; the query is left out.
        let request = Request::get("/a/b?c=d")
            .header(header::HOST, "api.example:8443")
            .body(())
            .unwrap();
        assert_eq!(
            htu(request, None).as_deref(),
            Some("https://api.example:8443/a/b")
        );
        // HTTP/2: the authority in the URI, its scheme replaced by https.
        let request = Request::get("http://api.example/a").body(()).unwrap();
        assert_eq!(htu(request, None).as_deref(), Some("https://api.example/a"));
        // Behind a proxy: the configured origin, whatever Host says.
        let request = Request::get("/a?q")
            .header(header::HOST, "10.0.0.7:8080")
            .body(())
            .unwrap();
        assert_eq!(
            htu(request, Some("https://api.example.com")).as_deref(),
            Some("https://api.example.com/a")
        );
        // No authority at all; user info in Host.
        assert_eq!(htu(Request::get("/a").body(()).unwrap(), None), None);
        let request = Request::get("/a")
            .header(header::HOST, "u@api.example")
            .body(())
            .unwrap();
        assert_eq!(htu(request, None), None);
        // An absolute-form target whose authority is not Host's: none.
        let request = Request::get("https://other.example/a")
            .header(header::HOST, "api.example")
            .body(())
            .unwrap();
        assert_eq!(htu(request, None), None);
        let request = Request::get("https://api.example:8443/a")
            .header(header::HOST, "api.example")
            .body(())
            .unwrap();
        assert_eq!(htu(request, None), None);
        // The same authority written otherwise: as the target says.
        let request = Request::get("https://API.example:443/a")
            .header(header::HOST, "api.example")
            .body(())
            .unwrap();
        assert_eq!(
            htu(request, None).as_deref(),
            Some("https://API.example:443/a")
        );
        // Behind a proxy, the configured origin decides.
        let request = Request::get("https://other.example/a")
            .header(header::HOST, "api.example")
            .body(())
            .unwrap();
        assert_eq!(
            htu(request, Some("https://api.example")).as_deref(),
            Some("https://api.example/a")
        );
    }

    /// `same_authority` compares `port_u16()`, which is `None` both for no
    /// port and for a port that does not fit in 16 bits: an absolute-form
    /// target `https://api.example:99999/a` (or `:65979`) counts as the
    /// same authority as `Host: api.example`, so the documented rule "an
    /// absolute-form target whose authority is not Host's matches no
    /// proof" does not hold, and the htu built from it then passes a proof
    /// for `https://api.example/a` (the port again read as 443).
    #[test]
    fn a_target_port_out_of_range_is_not_hosts_authority() {
        for target in ["https://api.example:99999/a", "https://api.example:65979/a"] {
            let request = Request::get(target)
                .header(header::HOST, "api.example")
                .body(())
                .unwrap();
            assert_eq!(htu(request, None), None, "{target}");
        }
    }

    #[test]
    fn one_proof_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(proof_header(&headers), Ok(None));
        headers.append(DPOP, HeaderValue::from_static("a"));
        assert!(proof_header(&headers).unwrap().is_some());
        headers.append(DPOP, HeaderValue::from_static("b"));
        assert_eq!(
            proof_header(&headers),
            Err(RejectionKind::MultipleDpopProofs)
        );
    }
}
