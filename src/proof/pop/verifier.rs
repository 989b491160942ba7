use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::HOST;
use http::{HeaderMap, HeaderName, Method, Uri};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::error::{PopError, PopErrorKind};
use super::{POP_TYPE, body_hash, hash, header_hash, path_claim, query_pairs};
use crate::proof::alg::{Algorithm, AlgorithmSet};
use crate::proof::default_port;
use crate::proof::dpop::htu::{is_normal_path, normalize_path};
use crate::proof::jwk::PublicJwk;
use crate::proof::thumbprint::JwkThumbprint;
use crate::proof::verify::{self, ProofError, TimeWindow, verified_accessors};
use crate::proof::window::ReplayWindow;
use crate::replay::ReplayKey;

/// The algorithms a [`PopVerifier`] allows by default.
const DEFAULT_ALGORITHMS: [Algorithm; 3] = [Algorithm::Ps256, Algorithm::Es256, Algorithm::Rs256];

/// The longest nonce accepted, in bytes.
const MAX_NONCE_LEN: usize = 256;

/// Checks signed HTTP requests: a pure function of the SHR, the request
/// and the time.
///
/// [`verify`](Self::verify) checks, in this order:
///
/// 1. the SHR is at most [`max_size`](PopVerifierBuilder::max_size) bytes
///    (16 KiB by default: it carries the access token);
/// 2. it is a compact JWS whose header and payload are JSON objects naming
///    no member twice, with no `crit` header;
/// 3. `typ` is `pop`;
/// 4. `alg` is in the allow-list (default PS256, ES256, RS256; `none` and
///    HMAC cannot be allowed);
/// 5. `cnf.jwk` is an asymmetric public key (no `d` or other private
///    member) of a supported type that fits `alg`; a header `kid`, when
///    present, is its RFC 7638 thumbprint;
/// 6. the signature verifies with that key;
/// 7. `at` (non-empty), `ts` (whole seconds), `m`, `u`, `p` and `nonce`
///    (non-empty, at most 256 bytes) are present;
/// 8. `ts` is not older than the lifetime (5 minutes by default) nor
///    ahead of `now` beyond the leeway (5 s by default);
/// 9. `m` is the request method (case-insensitive); `u` the request's host
///    (case-insensitive) and port (a default port given or omitted on
///    either side); `p` its path (percent-encoding and dot segments of `p`
///    normalised; the request's path must be in normal form already, as a
///    router matches it raw: `/x/../a`, `/./a` or `/%61` is refused);
/// 10. `q`, `h` and `b` when present (and, when required by the builder,
///     present): `q` over the named query pairs, `h` over the named
///     headers, `b` over the body (refused when no body is given to
///     check).
///
/// `q` and `h` list at most
/// [`max_covered_names`](PopVerifierBuilder::max_covered_names) names
/// each (64 by default), checked before the signature; every check of
/// them is linear in the names and the request's query pairs. A name that
/// `q` lists must appear once in the query: a repeated parameter cannot be
/// covered (as the signed HTTP request draft says of repeated parameters),
/// so a request that repeats one is refused rather than checked on its
/// first value. With [`require_query`](PopVerifierBuilder::require_query),
/// a parameter that `q` does not list is refused too.
///
/// Left to the caller, in this order: validating the access token
/// ([`VerifiedPopProof::at`]) as a bare one, checking that its `cnf.kid` names
/// the SHR's key ([`VerifiedPopProof::is_bound_to`]), then that the SHR is new
/// ([`VerifiedPopProof::replay_key`] through a
/// [`ReplayStore`](crate::replay::ReplayStore)), last.
///
/// ```
/// use std::time::Duration;
/// use tower_token_binding::proof::Algorithm;
/// use tower_token_binding::proof::pop::PopVerifier;
///
/// let verifier = PopVerifier::builder()
///     .algorithms([Algorithm::Ps256, Algorithm::Es256])
///     .max_age(Duration::from_secs(120))
///     .require_body(true)
///     .build();
/// assert_eq!(verifier.algorithms(), [Algorithm::Es256, Algorithm::Ps256]);
/// ```
#[derive(Clone, Debug)]
pub struct PopVerifier {
    algorithms: Vec<Algorithm>,
    window: TimeWindow,
    max_size: usize,
    max_covered_names: usize,
    require_query: bool,
    require_headers: Vec<HeaderName>,
    require_body: bool,
}

/// Builds a [`PopVerifier`].
#[derive(Clone, Debug)]
pub struct PopVerifierBuilder {
    algorithms: AlgorithmSet,
    lifetime: Duration,
    leeway: Duration,
    max_size: usize,
    max_covered_names: usize,
    require_query: bool,
    require_headers: Vec<HeaderName>,
    require_body: bool,
}

impl PopVerifierBuilder {
    /// The algorithms allowed (in place of the default PS256, ES256,
    /// RS256). An empty list refuses every SHR.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// How old an SHR's `ts` may be. Default: 5 minutes, as
    /// Microsoft.IdentityModel. The same setting as
    /// [`DpopVerifierBuilder::max_age`](crate::proof::dpop::DpopVerifierBuilder::max_age).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.lifetime = max_age;
        self
    }

    /// [`max_age`](Self::max_age).
    #[deprecated(note = "use `max_age`, as `DpopVerifierBuilder` names it")]
    pub fn lifetime(self, lifetime: Duration) -> Self {
        self.max_age(lifetime)
    }

    /// How far in the future an SHR's `ts` may be, for clock skew.
    /// Default: 5 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The longest SHR accepted, in bytes. Default: 16384.
    pub fn max_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// The most names `q` or `h` may list; an SHR that lists more is
    /// refused (`401 invalid_token`) before its signature is checked.
    /// Default: [`PopVerifier::DEFAULT_MAX_COVERED_NAMES`] (64).
    pub fn max_covered_names(mut self, names: usize) -> Self {
        self.max_covered_names = names;
        self
    }

    /// Requires `q`, covering every pair of the request's query: a request
    /// with a parameter that `q` does not list is refused. Off by default
    /// (a `q` present is checked anyway).
    pub fn require_query(mut self, required: bool) -> Self {
        self.require_query = required;
        self
    }

    /// Requires `h`, covering at least the headers `names`. None by
    /// default (an `h` present is checked anyway).
    pub fn require_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.require_headers = names.into_iter().collect();
        self
    }

    /// Requires `b` (and so a body given to
    /// [`verify`](PopVerifier::verify)). Off by default (a `b` present is
    /// checked anyway).
    pub fn require_body(mut self, required: bool) -> Self {
        self.require_body = required;
        self
    }

    /// The verifier.
    pub fn build(self) -> PopVerifier {
        PopVerifier {
            algorithms: self.algorithms.iter().collect(),
            window: TimeWindow {
                back: self.lifetime,
                ahead: self.leeway,
            },
            max_size: self.max_size,
            max_covered_names: self.max_covered_names,
            require_query: self.require_query,
            require_headers: self.require_headers,
            require_body: self.require_body,
        }
    }
}

impl Default for PopVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl PopVerifier {
    /// The most names `q` or `h` may list, by default: a request signed
    /// by Microsoft's clients covers a few.
    pub const DEFAULT_MAX_COVERED_NAMES: usize = 64;

    /// A verifier with the defaults (see [`PopVerifierBuilder`]).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder, starting from the defaults.
    pub fn builder() -> PopVerifierBuilder {
        PopVerifierBuilder {
            algorithms: DEFAULT_ALGORITHMS.into_iter().collect(),
            lifetime: Duration::from_secs(300),
            leeway: Duration::from_secs(5),
            max_size: 16 * 1024,
            max_covered_names: Self::DEFAULT_MAX_COVERED_NAMES,
            require_query: false,
            require_headers: Vec::new(),
            require_body: false,
        }
    }

    /// The algorithms allowed.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// How old an SHR's `ts` may be ([`PopVerifierBuilder::max_age`]).
    pub fn max_age(&self) -> Duration {
        self.window.back
    }

    /// [`max_age`](Self::max_age).
    #[deprecated(note = "use `max_age`")]
    pub fn lifetime(&self) -> Duration {
        self.max_age()
    }

    /// Whether `b` is required, so that the caller must buffer the body
    /// and pass it to [`verify`](Self::verify).
    pub fn requires_body(&self) -> bool {
        self.require_body
    }

    /// Verifies `shr` (the value after `PoP ` in `Authorization`) for a
    /// request with `method` to `uri`, with `headers` and, when the caller
    /// has buffered it, `body`, at `now`.
    ///
    /// `uri` is the request's URI: absolute (the scheme and authority of
    /// the server's public origin, behind a proxy the configured one), or
    /// origin-form, in which case the host comes from the `Host` header and
    /// the scheme is taken to be `https`.
    pub fn verify(
        &self,
        shr: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<VerifiedPopProof, PopError> {
        let jws = verify::parse::<PopError>(
            shr,
            self.max_size,
            |typ| typ.eq_ignore_ascii_case(POP_TYPE),
            &self.algorithms,
        )?;
        let alg = jws.algorithm();
        let jwk = match jws.claims().get("cnf") {
            Some(Value::Object(cnf)) => match cnf.get("jwk") {
                Some(jwk) => verify::public_key::<PopError>(jwk)?,
                None => return Err(PopError::missing_claim("cnf.jwk")),
            },
            _ => return Err(PopError::missing_claim("cnf")),
        };
        for claim in ["q", "h"] {
            if jws
                .claims()
                .get(claim)
                .and_then(|value| value.get(0))
                .and_then(Value::as_array)
                .is_some_and(|names| names.len() > self.max_covered_names)
            {
                return Err(PopError::new(PopErrorKind::TooManyNames)
                    .with_detail(format!("{claim} lists more names than allowed")));
            }
        }
        let kid = jwk.thumbprint();
        match jws.header().get("kid") {
            None => {}
            Some(Value::String(claimed)) if kid.matches_str(claimed) => {}
            Some(_) => return Err(PopError::new(PopErrorKind::KidMismatch)),
        }
        verify::verify_signature::<PopError>(&jws, &jwk, &self.algorithms)?;

        let mut claims = jws.into_claims();
        let ts = ts_claim(&claims)?;
        let m = verify::string_claim::<PopError>(&claims, "m")?;
        let u = verify::string_claim::<PopError>(&claims, "u")?;
        let p = verify::string_claim::<PopError>(&claims, "p")?;
        let nonce = verify::string_claim::<PopError>(&claims, "nonce")?;
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
            return Err(PopError::missing_claim("nonce"));
        }
        if verify::string_claim::<PopError>(&claims, "at")?.is_empty() {
            return Err(PopError::missing_claim("at"));
        }

        let ts_since_epoch = self.window.check::<PopError>(ts, now)?;

        if !m.eq_ignore_ascii_case(method.as_str()) {
            return Err(PopError::new(PopErrorKind::MethodMismatch));
        }
        host_matches(u, uri, headers)
            .map_err(|why| PopError::new(PopErrorKind::HostMismatch).with_detail(why))?;
        if !is_normal_path(uri.path()) {
            return Err(PopError::new(PopErrorKind::PathMismatch)
                .with_detail("the request path is not in normal form"));
        }
        if normalize_path(p) != normalize_path(&path_claim(uri.path())) {
            return Err(PopError::new(PopErrorKind::PathMismatch));
        }
        self.check_query(claims.get("q"), uri.query().unwrap_or_default())?;
        self.check_headers(claims.get("h"), headers)?;
        self.check_body(claims.get("b"), body)?;

        let window = ReplayWindow::new(
            ReplayKey::from_parts(
                "shr",
                &[kid.as_bytes(), nonce.as_bytes(), &ts.to_be_bytes()],
            ),
            ts_since_epoch,
            self.window.back,
            now,
        );
        let nonce = nonce.to_owned();
        let at = match claims.remove("at") {
            Some(Value::String(at)) => at,
            _ => return Err(PopError::missing_claim("at")),
        };
        Ok(VerifiedPopProof {
            jwk,
            alg,
            at,
            nonce,
            ts: UNIX_EPOCH.checked_add(ts_since_epoch).unwrap_or(now),
            window,
        })
    }

    fn check_query(&self, q: Option<&Value>, query: &str) -> Result<(), PopError> {
        let mismatch =
            |why: &'static str| PopError::new(PopErrorKind::QueryMismatch).with_detail(why);
        let Some(q) = q else {
            if self.require_query {
                return Err(PopError::missing_claim("q"));
            }
            return Ok(());
        };
        let (names, hash_claimed) = names_and_hash(q, self.max_covered_names)
            .ok_or_else(|| PopError::missing_claim("q"))?;
        // Names are compared as an application reads them, decoded
        // (`%61mount` and `amount` are one parameter to `form_urlencoded`
        // and axum's `Query`), and case-sensitively.
        let mut listed: HashMap<Cow<'_, str>, Covered<'_>> = HashMap::with_capacity(names.len());
        for name in &names {
            if listed
                .insert(form_decoded(name), Covered::default())
                .is_some()
            {
                return Err(mismatch("q names a parameter twice"));
            }
        }
        // One pass over the query: each listed name's first spelling and
        // value, and how often it appears in any spelling.
        for (name, value) in query_pairs(query) {
            match listed.get_mut(&form_decoded(name)) {
                Some(covered) => {
                    covered.first.get_or_insert((name, value));
                    covered.times += 1;
                }
                None if self.require_query => {
                    return Err(mismatch("q does not cover every query parameter"));
                }
                None => {}
            }
        }
        let mut input = String::with_capacity(query.len());
        for (i, name) in names.iter().enumerate() {
            let covered = listed.get(&form_decoded(name)).copied().unwrap_or_default();
            let (spelled, value) = covered
                .first
                .ok_or_else(|| mismatch("q names a parameter the request lacks"))?;
            if covered.times > 1 {
                return Err(mismatch("q names a parameter the request repeats"));
            }
            if spelled != *name {
                return Err(mismatch("q names a parameter the request spells otherwise"));
            }
            if i > 0 {
                input.push('&');
            }
            input.push_str(name);
            input.push('=');
            input.push_str(value);
        }
        let expected = hash(input.as_bytes());
        if !bool::from(expected.as_bytes().ct_eq(hash_claimed.as_bytes())) {
            return Err(mismatch("the query hash differs"));
        }
        Ok(())
    }

    fn check_headers(&self, h: Option<&Value>, headers: &HeaderMap) -> Result<(), PopError> {
        let mismatch =
            |why: &'static str| PopError::new(PopErrorKind::HeaderMismatch).with_detail(why);
        let Some(h) = h else {
            if !self.require_headers.is_empty() {
                return Err(PopError::missing_claim("h"));
            }
            return Ok(());
        };
        let (names, hash) = names_and_hash(h, self.max_covered_names)
            .ok_or_else(|| PopError::missing_claim("h"))?;
        let Some(lower) = distinct_lower_case(&names) else {
            return Err(mismatch("h names a header twice"));
        };
        if self
            .require_headers
            .iter()
            .any(|required| !lower.contains(required.as_str()))
        {
            return Err(mismatch("h does not cover the headers required"));
        }
        let (_, expected) = header_hash(headers, names.iter().copied())
            .ok_or_else(|| mismatch("h names a header the request lacks"))?;
        if !bool::from(expected.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(mismatch("the header hash differs"));
        }
        Ok(())
    }

    fn check_body(&self, b: Option<&Value>, body: Option<&[u8]>) -> Result<(), PopError> {
        let claimed = match b {
            None if self.require_body => return Err(PopError::missing_claim("b")),
            None => return Ok(()),
            Some(Value::String(b)) => b,
            Some(_) => return Err(PopError::missing_claim("b")),
        };
        let Some(body) = body else {
            return Err(PopError::new(PopErrorKind::BodyMismatch)
                .with_detail("no body was given to check b against"));
        };
        if !bool::from(body_hash(body).as_bytes().ct_eq(claimed.as_bytes())) {
            return Err(PopError::new(PopErrorKind::BodyMismatch));
        }
        Ok(())
    }
}

/// A name `q` lists, as the request has it.
#[derive(Clone, Copy, Default)]
struct Covered<'a> {
    /// The first pair with that name: its spelling and value, raw.
    first: Option<(&'a str, &'a str)>,
    /// How many pairs have that name, in any spelling.
    times: usize,
}

/// A query parameter's name as `application/x-www-form-urlencoded` decodes
/// it (`+` a space, percent-escapes undone, invalid UTF-8 replaced);
/// borrowed when there is nothing to decode.
pub(super) fn form_decoded(name: &str) -> Cow<'_, str> {
    if !name.contains(['%', '+']) {
        return Cow::Borrowed(name);
    }
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(hi), Some(lo)) => {
                    out.push(((hi << 4) | lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// `[[names...], "hash"]`, with at most `max` names.
fn names_and_hash(value: &Value, max: usize) -> Option<(Vec<&str>, &str)> {
    let [Value::Array(names), Value::String(hash)] = value.as_array()?.as_slice() else {
        return None;
    };
    if names.len() > max {
        return None;
    }
    let names = names
        .iter()
        .map(Value::as_str)
        .collect::<Option<Vec<_>>>()?;
    Some((names, hash))
}

/// The names in lower case, or `None` when two are the same but for case.
/// Linear in the names.
fn distinct_lower_case(names: &[&str]) -> Option<HashSet<String>> {
    let mut seen = HashSet::with_capacity(names.len());
    for name in names {
        if !seen.insert(name.to_ascii_lowercase()) {
            return None;
        }
    }
    Some(seen)
}

/// Whether `u` names the request's host and port.
fn host_matches(u: &str, uri: &Uri, headers: &HeaderMap) -> Result<(), &'static str> {
    let scheme = uri.scheme_str().unwrap_or("https");
    let default = default_port(scheme);
    let (host, port) = match uri.authority() {
        Some(authority) => (authority.host().to_owned(), authority.port_u16()),
        None => {
            let host = headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .ok_or("the request has no host")?;
            let authority: http::uri::Authority = host
                .parse()
                .map_err(|_| "the request's Host is not an authority")?;
            (authority.host().to_owned(), authority.port_u16())
        }
    };
    let claim: http::uri::Authority = u.parse().map_err(|_| "u is not a host")?;
    if claim.as_str().contains('@') {
        return Err("u has userinfo");
    }
    if !claim.host().eq_ignore_ascii_case(&host) {
        return Err("u names another host");
    }
    if claim.port_u16().or(default) != port.or(default) {
        return Err("u names another port");
    }
    Ok(())
}

/// `ts`: whole Unix seconds, not negative.
fn ts_claim(claims: &Map<String, Value>) -> Result<u64, PopError> {
    match claims.get("ts") {
        Some(Value::Number(ts)) => ts.as_u64().ok_or_else(|| PopError::missing_claim("ts")),
        _ => Err(PopError::missing_claim("ts")),
    }
}

/// A signed HTTP request that passed [`PopVerifier::verify`].
///
/// Left to the caller: validating the access token ([`at`](Self::at)) like
/// a bare one, checking that its `cnf.kid` names this SHR's key
/// ([`is_bound_to`](Self::is_bound_to)), and, last, that the SHR is new:
/// [`replay_key`](Self::replay_key) inserted into a
/// [`ReplayStore`](crate::replay::ReplayStore) until
/// [`replay_expires_at`](Self::replay_expires_at).
///
/// `Debug` shows the key, algorithm, nonce and time, never the access token.
#[derive(Clone)]
pub struct VerifiedPopProof {
    jwk: PublicJwk,
    alg: Algorithm,
    at: String,
    nonce: String,
    ts: SystemTime,
    /// What it is remembered by, and how long it is acceptable.
    window: ReplayWindow,
}

impl fmt::Debug for VerifiedPopProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedPopProof")
            .field("kid", &self.kid())
            .field("alg", &self.alg)
            .field("nonce", &self.nonce)
            .field("ts", &self.ts)
            .finish_non_exhaustive()
    }
}

impl VerifiedPopProof {
    /// The KID: the RFC 7638 thumbprint of `cnf.jwk`.
    pub fn kid(&self) -> JwkThumbprint {
        self.jwk.thumbprint()
    }

    /// Whether `cnf_kid` (the `kid` member of the access token's `cnf`) is
    /// the thumbprint of the SHR's key: parsed strictly, compared in
    /// constant time.
    pub fn is_bound_to(&self, cnf_kid: &str) -> bool {
        self.jwk.thumbprint().matches_str(cnf_kid)
    }

    verified_accessors!(
        "SHR",
        "ts",
        "PopVerifier::verify",
        "the KID, the nonce and `ts`"
    );

    /// The access token (`at`), still to be validated.
    pub fn at(&self) -> &str {
        &self.at
    }

    /// Takes the access token (`at`) out.
    pub fn into_at(self) -> String {
        self.at
    }

    /// The SHR's `nonce`.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The SHR's `ts`.
    pub fn ts(&self) -> SystemTime {
        self.ts
    }
}
