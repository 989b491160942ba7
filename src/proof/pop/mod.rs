//! Microsoft's signed HTTP requests (SHR): the `PoP` authorization scheme
//! of Entra, MSAL and Microsoft.IdentityModel
//! (draft-ietf-oauth-signed-http-request as they implement it).
//!
//! A PoP token is requested with `token_type=pop` and
//! [`req_cnf`] (the key's RFC 7638 thumbprint, its KID) and carries
//! `"cnf": {"kid": "<KID>"}`. With every request the client sends
//! `Authorization: PoP <SHR>`: a JWS of type `pop`, signed by the key, whose
//! payload holds the access token (`at`), the time (`ts`), the request's
//! method (`m`), host (`u`) and path (`p`), a `nonce`, the public key
//! (`cnf.jwk`) and, optionally, hashes of the query (`q`), of some headers
//! (`h`) and of the body (`b`).
//!
//! - Client: [`PopProofs`] makes the SHRs of one
//!   [`ProofKey`]; [`PopSigner`] adds `q`, `h` or `b` to
//!   one.
//! - Server: [`PopVerifier`] checks an SHR against the request (a pure
//!   function of the SHR, the request and the time) and returns a
//!   [`VerifiedPopProof`]; the caller then validates its access token
//!   ([`VerifiedPopProof::at`]), checks the token's `cnf.kid`
//!   ([`VerifiedPopProof::is_bound_to`]) and, last, the
//!   [`replay store`](crate::replay).
//! - The canonical pieces, for both: [`host_claim`] (`u`), [`path_claim`]
//!   (`p`), [`query_claim`] (`q`), [`header_claim`] (`h`), [`body_hash`]
//!   (`b`).
//!
//! ```
//! use tower_token_binding::clock;
//! use http::{HeaderMap, Method, Uri};
//! use tower_token_binding::proof::pop::{PopVerifier, PopProofs};
//! use tower_token_binding::proof::{Algorithm, ProofKey};
//!
//! // Client: one key, an SHR per request.
//! let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
//! let uri: Uri = "https://api.example/orders?page=2".parse().unwrap();
//! let shr = shrs.sign(&Method::GET, &uri, "the-access-token").unwrap();
//!
//! // Server: the same request, as the server sees it.
//! let verified = PopVerifier::new()
//!     .verify(&shr, &Method::GET, &uri, &HeaderMap::new(), None, clock::wall())
//!     .unwrap();
//! assert_eq!(verified.at(), "the-access-token");
//! // The token's cnf.kid must name the SHR's key.
//! assert!(verified.is_bound_to(&shrs.kid().to_string()));
//!
//! // Another method: refused.
//! let err = PopVerifier::new()
//!     .verify(&shr, &Method::POST, &uri, &HeaderMap::new(), None, clock::wall())
//!     .unwrap_err();
//! assert_eq!(err.description(), "the PoP SHR method m does not match the request");
//! ```

use std::borrow::Cow;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, Uri};
use serde_json::Value;

use super::default_port;
use super::key::ProofKey;

mod error;
mod signer;
mod verifier;

#[cfg(test)]
mod tests;

pub use error::{CreatePopProofError, CreatePopProofErrorKind, PopError, PopErrorKind};
pub use signer::{PopProofs, PopSigner};
pub use verifier::{PopVerifier, PopVerifierBuilder, VerifiedPopProof};

/// The authorization scheme of signed HTTP requests: `Authorization: PoP
/// <SHR>`.
pub const SCHEME: &str = "PoP";

/// The `typ` of an SHR, and the `token_type` of a PoP token request and
/// response.
pub const POP_TYPE: &str = "pop";

/// The `req_cnf` of a PoP token request for `key`: base64url (no padding)
/// of `{"kid":"<KID>"}`, where the KID is the key's RFC 7638 thumbprint.
///
/// ```
/// use base64::Engine as _;
/// use tower_token_binding::proof::pop::req_cnf;
/// use tower_token_binding::proof::{Algorithm, ProofKey};
///
/// let key = ProofKey::generate(Algorithm::Ps256).unwrap();
/// let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
///     .decode(req_cnf(&key))
///     .unwrap();
/// assert_eq!(json, format!(r#"{{"kid":"{}"}}"#, key.thumbprint()).into_bytes());
/// ```
pub fn req_cnf(key: &ProofKey) -> String {
    // A thumbprint is base64url: nothing to escape.
    URL_SAFE_NO_PAD.encode(format!(r#"{{"kid":"{}"}}"#, key.thumbprint()))
}

/// The `u` of a request to `uri` (absolute): its host, with `:port` only
/// when the port is not the scheme's default. `None` for a URI without
/// scheme or host.
///
/// ```
/// use http::Uri;
/// use tower_token_binding::proof::pop::host_claim;
///
/// let u = |uri: &str| host_claim(&uri.parse::<Uri>().unwrap()).unwrap();
/// assert_eq!(u("https://www.contoso.com:443/"), "www.contoso.com");
/// assert_eq!(u("https://www.contoso.com:81/"), "www.contoso.com:81");
/// assert_eq!(u("http://www.contoso.com:80/"), "www.contoso.com");
/// ```
pub fn host_claim(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let host = uri.host()?;
    Some(match uri.port_u16() {
        Some(port) if Some(port) != default_port(scheme) => format!("{host}:{port}"),
        _ => host.to_owned(),
    })
}

/// The `p` of a request with `path` (without its query): `path`
/// percent-encoded (characters that may not appear in a path are encoded,
/// existing `%XX` escapes are kept), `/` for an empty path.
///
/// ```
/// use tower_token_binding::proof::pop::path_claim;
///
/// assert_eq!(path_claim("/pa th1"), "/pa%20th1");
/// assert_eq!(path_claim(""), "/");
/// assert_eq!(path_claim("/a%2Fb/c"), "/a%2Fb/c");
/// ```
pub fn path_claim(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
    if path.bytes().all(keep) {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() + 8);
    for byte in path.bytes() {
        if keep(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Cow::Owned(out)
}

/// base64url (no padding) of the SHA-256 of `bytes`.
fn hash(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, bytes))
}

/// The `b` of a request with `body`: base64url (no padding) of its
/// SHA-256.
///
/// ```
/// use tower_token_binding::proof::pop::body_hash;
///
/// assert_eq!(body_hash(b"abcd"), "iNQmb9TmM40TuEX88olXnSCciXgjuSF9o-Fhk28DFYk");
/// ```
pub fn body_hash(body: &[u8]) -> String {
    hash(body)
}

/// The raw `name=value` pairs of a query, in order (no percent-decoding;
/// an empty pair is skipped, a pair without `=` has an empty value).
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The `q` of a request with `query` (the part after `?`, raw):
/// `[[names], hash]`, the names of its pairs in order and the base64url
/// SHA-256 of `n1=v1&n2=v2...` over the raw pairs.
///
/// ```
/// use tower_token_binding::proof::pop::query_claim;
///
/// assert_eq!(
///     query_claim("b=bar&a=foo&c=duck").to_string(),
///     r#"[["b","a","c"],"u4LgkGUWhP9MsKrEjA4dizIllDXluDku6ZqCeyuR-JY"]"#,
/// );
/// ```
pub fn query_claim(query: &str) -> Value {
    let mut names = Vec::new();
    let mut input = String::with_capacity(query.len());
    for (name, value) in query_pairs(query) {
        if !names.is_empty() {
            input.push('&');
        }
        input.push_str(name);
        input.push('=');
        input.push_str(value);
        names.push(Value::String(name.to_owned()));
    }
    Value::Array(vec![
        Value::Array(names),
        Value::String(hash(input.as_bytes())),
    ])
}

/// The `h` of the headers `names` of a request: `[[lower-case names],
/// hash]`, the base64url SHA-256 of `n1: v1\nn2: v2...`. A header given
/// several times is taken with its values joined by `", "`. `None` when a
/// header named is absent or its value is not visible ASCII.
///
/// ```
/// use http::HeaderMap;
/// use http::header::{CONTENT_TYPE, ETAG};
/// use tower_token_binding::proof::pop::header_claim;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(CONTENT_TYPE, "application/json".parse().unwrap());
/// headers.insert(ETAG, "742-3u8f34-3r2nvv3".parse().unwrap());
/// assert_eq!(
///     header_claim(&headers, &[CONTENT_TYPE, ETAG]).unwrap().to_string(),
///     r#"[["content-type","etag"],"P6z5XN4tTzHkfwe3XO1YvVUIurSuhvh_UG10N_j-aGs"]"#,
/// );
/// ```
pub fn header_claim(headers: &HeaderMap, names: &[HeaderName]) -> Option<Value> {
    let (names, hash) = header_hash(headers, names.iter().map(HeaderName::as_str))?;
    Some(Value::Array(vec![
        Value::Array(names.into_iter().map(Value::String).collect()),
        Value::String(hash),
    ]))
}

/// The lower-case names and the hash of `h` over the headers `names`.
fn header_hash<'a>(
    headers: &HeaderMap,
    names: impl Iterator<Item = &'a str>,
) -> Option<(Vec<String>, String)> {
    let mut lower = Vec::new();
    let mut input = String::new();
    for name in names {
        let name = name.to_ascii_lowercase();
        let mut values = headers.get_all(name.as_str()).iter();
        let first = values.next()?.to_str().ok()?;
        if !lower.is_empty() {
            input.push('\n');
        }
        input.push_str(&name);
        input.push_str(": ");
        input.push_str(first);
        for value in values {
            input.push_str(", ");
            input.push_str(value.to_str().ok()?);
        }
        lower.push(name);
    }
    Some((lower, hash(input.as_bytes())))
}
