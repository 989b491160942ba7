//! Comparing a proof's `htu` with the request URI (RFC 9449 section 4.3,
//! item 9): query and fragment ignored, after the syntax- and scheme-based
//! normalisations of RFC 3986 sections 6.2.2 and 6.2.3 (case of the scheme
//! and host, default ports, an empty path as `/`, percent-encoding case and
//! unreserved characters, dot segments).
//!
//! The normalisations apply to the proof's side. The request's path must
//! already be in normal form ([`is_normal_path`]): a router matches the
//! raw path, so a proof for `/whoami` must not pass on `/x/../whoami` or
//! `/%77hoami`, which a router may send elsewhere.

use std::borrow::Cow;

use http::Uri;

/// Why an `htu` does not name the request URI (a detail for logs).
pub(crate) type Mismatch = &'static str;

/// Whether the `htu` claim names `request` (absolute).
pub(crate) fn matches(claim: &str, request: &Uri) -> Result<(), Mismatch> {
    let Some(request) = Parts::of(request) else {
        return Err("the request URI given to the verifier is not absolute");
    };
    let claim: Uri = claim.parse().map_err(|_| "htu is not a URI")?;
    let claim = Parts::of(&claim).ok_or("htu is not an absolute URI")?;
    if claim.userinfo {
        return Err("htu has userinfo");
    }
    if !claim.scheme.eq_ignore_ascii_case(request.scheme) {
        return Err("htu names another scheme");
    }
    if !claim.host.eq_ignore_ascii_case(request.host) {
        return Err("htu names another host");
    }
    if claim.port != request.port {
        return Err("htu names another port");
    }
    if !is_normal_path(request.path) {
        return Err("the request path is not in normal form");
    }
    if normalize_path(claim.path) != normalize_path(request.path) {
        return Err("htu names another path");
    }
    Ok(())
}

struct Parts<'a> {
    scheme: &'a str,
    host: &'a str,
    /// Explicit, or the scheme's default.
    port: Option<u16>,
    path: &'a str,
    userinfo: bool,
}

impl<'a> Parts<'a> {
    fn of(uri: &'a Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?;
        let port = uri.port_u16().or(if scheme.eq_ignore_ascii_case("https") {
            Some(443)
        } else if scheme.eq_ignore_ascii_case("http") {
            Some(80)
        } else {
            None
        });
        Some(Self {
            scheme,
            host: authority.host(),
            port,
            path: uri.path(),
            userinfo: authority.as_str().contains('@'),
        })
    }
}

/// The path with percent-encoding normalised and dot segments removed; `/`
/// for an empty path.
pub(crate) fn normalize_path(path: &str) -> Cow<'_, str> {
    let path = if path.is_empty() { "/" } else { path };
    let path = if path.contains('%') {
        Cow::Owned(normalize_percent_encoding(path))
    } else {
        Cow::Borrowed(path)
    };
    if path.starts_with('/') && path.split('/').any(|s| s == "." || s == "..") {
        Cow::Owned(remove_dot_segments(&path))
    } else {
        path
    }
}

/// Whether a request's `path` is as a router will match it: no `.` or `..`
/// segment and no percent-encoded unreserved character (RFC 3986 sections
/// 6.2.2.2 and 6.2.2.3), so that normalising it changes nothing but the
/// case of hex digits. Linear in the path.
pub(crate) fn is_normal_path(path: &str) -> bool {
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return false;
    }
    let bytes = path.as_bytes();
    bytes.iter().enumerate().all(|(i, byte)| {
        if *byte != b'%' {
            return true;
        }
        let decoded = match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(hi), Some(lo)) => hex(*hi).zip(hex(*lo)).map(|(h, l)| (h << 4) | l),
            _ => None,
        };
        !decoded.is_some_and(is_unreserved)
    })
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)
}

/// Decodes percent-encoded unreserved characters and upper-cases the hex
/// digits of the others (RFC 3986 sections 6.2.2.1 and 6.2.2.2). A `%` not
/// followed by two hex digits is kept as it is.
fn normalize_percent_encoding(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match (bytes.get(i), bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'%'), Some(hi), Some(lo)) => hex(*hi).zip(hex(*lo)).map(|(h, l)| (h << 4) | l),
            _ => None,
        };
        match decoded {
            Some(byte) if is_unreserved(byte) => {
                out.push(char::from(byte));
                i += 3;
            }
            Some(byte) => {
                out.push_str(&format!("%{byte:02X}"));
                i += 3;
            }
            None => {
                // Copy up to the next `%` (or the end) at once.
                let end = bytes[i + 1..]
                    .iter()
                    .position(|b| *b == b'%')
                    .map_or(bytes.len(), |at| i + 1 + at);
                out.push_str(&path[i..end]);
                i = end;
            }
        }
    }
    out
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 3986 section 5.2.4 for an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path[1..].split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            segment => {
                out.push(segment);
                continue;
            }
        }
        if i == last {
            // `/a/.` and `/a/b/..` end in a slash.
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(claim: &str, request: &str) -> Result<(), Mismatch> {
        matches(claim, &request.parse().unwrap())
    }

    #[test]
    fn equivalent_uris_match() {
        for (claim, request) in [
            ("https://api.example/a", "https://api.example/a"),
            ("https://api.example/a", "https://api.example/a?q=1"),
            ("https://api.example/a?q=2#f", "https://api.example/a?q=1"),
            ("HTTPS://API.Example/a", "https://api.example/a"),
            ("https://api.example:443/a", "https://api.example/a"),
            ("https://api.example/a", "https://api.example:443/a"),
            ("http://api.example:80/a", "http://api.example/a"),
            ("https://api.example", "https://api.example/"),
            (
                "https://api.example/%7Euser/%2f",
                "https://api.example/~user/%2F",
            ),
            ("https://api.example/a/./b/../c", "https://api.example/a/c"),
            ("https://api.example/a/%2E%2E/c", "https://api.example/c"),
            ("https://api.example/%2f", "https://api.example/%2F"),
            ("https://[::1]:8443/x", "https://[::1]:8443/x"),
        ] {
            assert_eq!(check(claim, request), Ok(()), "{claim} vs {request}");
        }
    }

    #[test]
    fn other_uris_do_not() {
        for (claim, request) in [
            ("https://api.example/a", "https://api.example/b"),
            ("https://api.example/a", "https://api.example/a/"),
            ("https://api.example/A", "https://api.example/a"),
            ("http://api.example/a", "https://api.example/a"),
            ("https://api.example:8443/a", "https://api.example/a"),
            ("https://api.example:443/a", "https://api.example:8443/a"),
            ("https://other.example/a", "https://api.example/a"),
            ("https://user@api.example/a", "https://api.example/a"),
            ("https://api.example/%2F", "https://api.example//"),
            ("/a", "https://api.example/a"),
            ("not a uri", "https://api.example/a"),
            ("", "https://api.example/a"),
        ] {
            assert!(check(claim, request).is_err(), "{claim} vs {request}");
        }
        assert!(check("https://api.example/a", "/a").is_err());
    }

    #[test]
    fn request_paths_not_in_normal_form_match_nothing() {
        for (claim, request) in [
            (
                "https://api.example/whoami",
                "https://api.example/x/../whoami",
            ),
            ("https://api.example/whoami", "https://api.example/./whoami"),
            ("https://api.example/whoami", "https://api.example/%77hoami"),
            (
                "https://api.example/x/../whoami",
                "https://api.example/x/../whoami",
            ),
            (
                "https://api.example/%77hoami",
                "https://api.example/%77hoami",
            ),
            (
                "https://api.example/a/%2E%2E/c",
                "https://api.example/a/%2E%2E/c",
            ),
        ] {
            assert_eq!(
                check(claim, request),
                Err("the request path is not in normal form"),
                "{claim} vs {request}"
            );
        }
        for path in [
            "/",
            "",
            "/a/b",
            "/%2F",
            "/%2f",
            "/a/..b/.c",
            "/é%C3%A9",
            "/%",
            "/%zz",
        ] {
            assert!(is_normal_path(path), "{path}");
        }
        for path in ["/.", "/..", "/a/./b", "/a/../b", "/%61", "/%7E", "/%2e"] {
            assert!(!is_normal_path(path), "{path}");
        }
    }

    #[test]
    fn dot_segments() {
        for (path, want) in [
            ("/a/b/c/./../../g", "/a/g"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/..", "/"),
            ("/../../a", "/a"),
            ("/a//b/../c", "/a//c"),
            ("/a/..b/.c", "/a/..b/.c"),
        ] {
            assert_eq!(normalize_path(path), want, "{path}");
        }
    }

    #[test]
    fn percent_encoding() {
        for (path, want) in [
            ("/%41%2d%7e%2f%3a", "/A-~%2F%3A"),
            ("/%", "/%"),
            ("/%4", "/%4"),
            ("/%zz%41", "/%zzA"),
            ("/é%c3%a9", "/é%C3%A9"),
        ] {
            assert_eq!(normalize_path(path), want, "{path}");
        }
    }
}
