//! Explains why a resource server would refuse an access token: what the
//! token says, which token profile its shape fits, what it is bound to, and
//! each check the server makes, with its outcome.
//!
//! ```text
//! cargo run --example explain -- TOKEN [--cert PEM] \
//!     [--issuer URL --audience AUD] [--issuer-ca PEM] [--token-profile NAME]
//! cargo run --example explain -- - [...] < token.txt
//! ```
//!
//! `TOKEN` is the access token (a leading `Bearer ` or `DPoP ` is taken
//! off), or `-` to read it from stdin, so that it need not be on a command
//! line where other users of the machine can see it. It is decoded without
//! trusting it: the header's `alg`, `kid` and `typ`, and a summary of the
//! claims (`iss`, `aud`, `sub`, `exp`/`nbf`/`iat` as dates relative to now,
//! the client and permissions as each preset [`TokenProfile`] reads them)
//! are printed, but never the signature, the whole token or the whole
//! payload, and of `cnf` only what it binds to (the certificate thumbprint,
//! `x5t#S256`, is public and printed). Strings from the token are quoted,
//! cut short and their control characters escaped.
//!
//! Then each check the server would make, one line each, `PASS`, `FAIL` or
//! `SKIPPED` with the reason:
//!
//! - `members`: no JSON member named twice in the header or the payload;
//! - `alg`: an asymmetric algorithm the server allows by default;
//! - `shape`: the header `typ` and the claims fit `--token-profile` (one of
//!   [`PRESETS`], default `rfc9068`);
//! - `exp`, `nbf`, `iat`: against the clock, with 30 s of leeway;
//! - `iss`, `aud`: against `--issuer` and `--audience` when given (present
//!   either way);
//! - `cnf`: well-formed, when present;
//! - `signature` and `validator`, with `--issuer` (which needs
//!   `--audience`) only: a [`JwtValidator`] as a server would build it, its
//!   keys found through the issuer's metadata (over HTTPS trusting
//!   `--issuer-ca`, else the platform's roots), checks the token; the
//!   `validator` line is its verdict, and the `signature` line says whether
//!   the signature was verified, refused, or not reached. When the keys
//!   cannot be fetched both are `SKIPPED`, not failed;
//! - `binding`, with `--cert` only: the token's `cnf.x5t#S256` names the
//!   first certificate in that PEM file. A token bound to a DPoP key
//!   (`cnf.jkt`) or a PoP key (`cnf.kid`) is checked per request, from the
//!   proof that comes with it, and cannot be checked here.
//!
//! Exits 0 when every check that ran passed, 1 when one failed (or the
//! token cannot be read as a JWT), 2 on a usage error. Set
//! `RUST_LOG=tower_token_binding=debug` to see why the keys could not be
//! fetched.

use std::collections::HashSet;
use std::fmt;
use std::io::Read as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use tower_token_binding::validation::{
    JwksSource, JwtValidator, PRESETS, TokenError, TokenErrorKind, TokenProfile, ValidateToken,
};
use tower_token_binding::{Confirmation, Thumbprint};

const USAGE: &str = "usage: explain TOKEN|- [--cert PEM] [--issuer URL --audience AUD] \
[--issuer-ca PEM] [--token-profile rfc9068|entra|keycloak|auth0|okta]";

/// The longest token read.
const MAX_TOKEN: usize = 64 * 1024;
/// The clock skew the server allows for `exp`, `nbf` and `iat`.
const LEEWAY: i64 = 30;
/// The algorithms a `JwtValidator` allows unless told otherwise.
const ALLOWED_ALGORITHMS: &[&str] = &[
    "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
];
/// How many characters of a string from the token are shown.
const SHOWN_CHARS: usize = 100;
/// How many items of a list from the token are shown.
const SHOWN_ITEMS: usize = 20;

#[derive(Default)]
struct Args {
    token: Option<String>,
    cert: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    issuer_ca: Option<String>,
    token_profile: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--cert" => args.cert = Some(value()?),
            "--issuer" => args.issuer = Some(value()?),
            "--audience" => args.audience = Some(value()?),
            "--issuer-ca" => args.issuer_ca = Some(value()?),
            "--token-profile" => args.token_profile = Some(value()?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other if other == "-" || !other.starts_with('-') => {
                if args.token.is_some() {
                    return Err(format!("give one token\n{USAGE}"));
                }
                args.token = Some(flag);
            }
            // Echoed only when it looks like an option: anything else could
            // be a token pasted in the wrong place.
            other
                if other.starts_with("--")
                    && other.len() <= 40
                    && other[2..]
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'-') =>
            {
                return Err(format!("unknown option {other}\n{USAGE}"));
            }
            _ => return Err(format!("unknown option\n{USAGE}")),
        }
    }
    if args.token.is_none() {
        return Err(format!(
            "no token: give it, or - to read it from stdin\n{USAGE}"
        ));
    }
    if args.issuer.is_some() && args.audience.is_none() {
        return Err(format!(
            "--issuer needs --audience (the server's, to check the token as it would)\n{USAGE}"
        ));
    }
    if args.issuer_ca.is_some() && args.issuer.is_none() {
        return Err(format!("--issuer-ca works with --issuer only\n{USAGE}"));
    }
    if let Some(name) = &args.token_profile {
        if TokenProfile::named(name).is_none() {
            return Err(format!(
                "--token-profile takes one of {}, not {}\n{USAGE}",
                PRESETS.join(", "),
                shown(name)
            ));
        }
    }
    Ok(args)
}

/// Why the explanation stopped before the checks.
enum Stop {
    /// A mistake on the command line or in a file it names: exit 2.
    Usage(String),
    /// The token cannot be read as a JWT: exit 1.
    Unreadable(String),
}

/// The token: the argument, or stdin for `-`; at most [`MAX_TOKEN`] bytes,
/// without surrounding whitespace and a leading authorization scheme.
fn read_token(arg: &str) -> Result<String, Stop> {
    let raw = if arg == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .take(MAX_TOKEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Stop::Usage(format!("cannot read the token from stdin: {e}")))?;
        if bytes.len() > MAX_TOKEN {
            return Err(Stop::Unreadable(format!(
                "more than {MAX_TOKEN} bytes on stdin: not an access token"
            )));
        }
        String::from_utf8(bytes)
            .map_err(|_| Stop::Unreadable("the token is not UTF-8 text".to_owned()))?
    } else {
        arg.to_owned()
    };
    let mut token = raw.trim();
    for scheme in ["Bearer ", "DPoP "] {
        if token.len() > scheme.len()
            && token.is_char_boundary(scheme.len())
            && token[..scheme.len()].eq_ignore_ascii_case(scheme)
        {
            token = token[scheme.len()..].trim_start();
        }
    }
    if token.len() > MAX_TOKEN {
        return Err(Stop::Unreadable(format!(
            "the token is longer than {MAX_TOKEN} bytes: not an access token"
        )));
    }
    if token.is_empty() {
        return Err(Stop::Unreadable("the token is empty".to_owned()));
    }
    Ok(token.to_owned())
}

/// A JWT's header and claims, decoded without checking anything, and the
/// first JSON member named twice in either, if any.
struct Decoded {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    duplicate: Option<String>,
}

fn decode(token: &str) -> Result<Decoded, String> {
    let segments: Vec<&str> = token.split('.').collect();
    match segments.len() {
        3 => {}
        5 => {
            return Err(
                "five segments: an encrypted JWT (JWE), which cannot be read \
                        without the resource server's key"
                    .to_owned(),
            );
        }
        n => {
            return Err(format!(
                "not a JWT: {n} segment(s) separated by '.', where a JWT has three \
                 (an opaque token is checked by introspection, not here)"
            ));
        }
    }
    let mut parts = Vec::with_capacity(2);
    let mut duplicate = None;
    for (name, segment) in [("header", segments[0]), ("payload", segments[1])] {
        let json = URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|e| format!("not a JWT: the {name} is not base64url without padding ({e})"))?;
        let object: Map<String, Value> = serde_json::from_slice(&json)
            .map_err(|e| format!("not a JWT: the {name} is not a JSON object ({e})"))?;
        if duplicate.is_none() {
            if let Err(e) = serde_json::from_slice::<NoDuplicates>(&json) {
                duplicate = Some(format!("the {name} names {e}"));
            }
        }
        parts.push(object);
    }
    let claims = parts.pop().unwrap_or_default();
    let header = parts.pop().unwrap_or_default();
    Ok(Decoded {
        header,
        claims,
        duplicate,
    })
}

/// Deserializes any JSON, refusing an object that names a member twice, at
/// any depth: the server refuses such a token before reading anything
/// else, since parsers disagree on which member counts.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoDuplicates)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = NoDuplicates;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            if !seen.insert(name.clone()) {
                return Err(de::Error::custom(format!("{} twice", shown(&name))));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(self)
    }
}

/// A string from the token as it is safe to print: quoted, cut short, its
/// control and invisible formatting characters escaped.
fn shown(text: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if i == SHOWN_CHARS {
            out.push_str("\"...");
            return out;
        }
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control()
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
                    | '\u{2060}'..='\u{206F}' | '\u{FEFF}') =>
            {
                out.extend(c.escape_unicode());
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON value from the token, shown without printing whole objects.
fn shown_value(value: &Value) -> String {
    match value {
        Value::String(s) => shown(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_owned(),
        Value::Array(items) => {
            let mut list: Vec<String> = items.iter().take(SHOWN_ITEMS).map(shown_value).collect();
            if items.len() > SHOWN_ITEMS {
                list.push(format!("... {} more", items.len() - SHOWN_ITEMS));
            }
            format!("[{}]", list.join(", "))
        }
        Value::Object(members) => format!("an object of {} member(s)", members.len()),
    }
}

fn shown_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut list = Vec::new();
    let mut more = 0;
    for item in items {
        if list.len() < SHOWN_ITEMS {
            list.push(shown(item));
        } else {
            more += 1;
        }
    }
    if list.is_empty() {
        return "none".to_owned();
    }
    if more > 0 {
        list.push(format!("... {more} more"));
    }
    list.join(" ")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A NumericDate as a UTC date and its distance from `now`.
fn when(t: i64, now: i64) -> String {
    // Years 1970 to 9999.
    if !(0..=253_402_300_799).contains(&t) {
        return format!("{t} (not a date)");
    }
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let date = format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    let distance = t.saturating_sub(now);
    let relative = match distance {
        0 => "now".to_owned(),
        d if d > 0 => format!("in {}", span(d)),
        d => format!("{} ago", span(d.saturating_neg())),
    };
    format!("{date} ({relative})")
}

fn span(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h {} min", s / 3600, s / 60 % 60),
        s => format!("{} days", s / 86_400),
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
    Skipped,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "SKIPPED",
        })
    }
}

/// The checks made, in order.
#[derive(Default)]
struct Checks(Vec<(Outcome, &'static str, String)>);

impl Checks {
    fn pass(&mut self, check: &'static str, why: impl Into<String>) {
        self.0.push((Outcome::Pass, check, why.into()));
    }
    fn fail(&mut self, check: &'static str, why: impl Into<String>) {
        self.0.push((Outcome::Fail, check, why.into()));
    }
    fn skip(&mut self, check: &'static str, why: impl Into<String>) {
        self.0.push((Outcome::Skipped, check, why.into()));
    }
    fn failed(&self) -> usize {
        self.0
            .iter()
            .filter(|(o, _, _)| *o == Outcome::Fail)
            .count()
    }
}

/// The header `typ` as a profile reads it: `Ok(None)` when absent, an
/// error when it is not a string.
fn header_typ(header: &Map<String, Value>) -> Result<Option<&str>, String> {
    match header.get("typ") {
        None => Ok(None),
        Some(Value::String(typ)) => Ok(Some(typ)),
        Some(other) => Err(format!(
            "the header typ is not a string ({})",
            shown_value(other)
        )),
    }
}

/// A shape refusal, short: the claim it lacks, or what is wrong.
fn refusal(e: &TokenError) -> String {
    match e.claim() {
        Some(claim) => format!("no valid {claim} claim"),
        None => e.to_string(),
    }
}

fn print_summary(decoded: &Decoded, now: i64) {
    let header = &decoded.header;
    println!("header");
    for name in ["alg", "kid", "typ"] {
        let value = header.get(name).map_or("(absent)".to_owned(), shown_value);
        println!("  {name:<5} {value}");
    }
    let others: Vec<&str> = header
        .keys()
        .map(String::as_str)
        .filter(|n| !["alg", "kid", "typ"].contains(n))
        .collect();
    if !others.is_empty() {
        println!("  also  {}", shown_list(others.into_iter()));
    }

    let claims = &decoded.claims;
    println!("claims");
    for name in ["iss", "aud", "sub"] {
        let value = claims.get(name).map_or("(absent)".to_owned(), shown_value);
        println!("  {name:<5} {value}");
    }
    for name in ["exp", "nbf", "iat"] {
        let value = match claims.get(name) {
            None => "(absent)".to_owned(),
            Some(Value::Number(n)) => n
                .as_f64()
                .map_or_else(|| n.to_string(), |t| when(t as i64, now)),
            Some(other) => format!("{} (not a number)", shown_value(other)),
        };
        println!("  {name:<5} {value}");
    }
    let shown_names = ["iss", "aud", "sub", "exp", "nbf", "iat", "cnf"];
    let others: Vec<&str> = claims
        .keys()
        .map(String::as_str)
        .filter(|n| !shown_names.contains(n))
        .collect();
    if !others.is_empty() {
        println!("  also  {}", shown_list(others.into_iter()));
    }

    println!("bound to");
    match claims.get("cnf") {
        None => println!("  nothing: no cnf, an unbound (bearer) token"),
        Some(cnf) => match Confirmation::from_value(cnf) {
            Err(e) => println!("  cannot tell: the cnf claim is malformed ({e})"),
            Ok(cnf) => {
                let mut any = false;
                if let Some(thumbprint) = cnf.thumbprint() {
                    println!("  a certificate (mTLS, RFC 8705): cnf.x5t#S256 {thumbprint}");
                    any = true;
                }
                if cnf.jkt().is_some() {
                    println!("  a DPoP key (RFC 9449): cnf.jkt");
                    any = true;
                }
                if cnf.kid().is_some() {
                    println!("  a PoP key (Microsoft's signed HTTP requests): cnf.kid");
                    any = true;
                }
                if !any {
                    let names: Vec<&str> = cnf.other_members().keys().map(String::as_str).collect();
                    println!(
                        "  nothing this server checks (cnf members: {})",
                        shown_list(names.into_iter())
                    );
                }
            }
        },
    }
}

/// Which preset profiles the token's shape fits, and the client and
/// permissions each reads; returns the names of those that fit.
fn print_profiles(
    typ: &Result<Option<&str>, String>,
    claims: &Map<String, Value>,
) -> Vec<&'static str> {
    println!("token profiles (shape, and the client and permissions each reads)");
    let mut fits = Vec::new();
    for &name in PRESETS {
        let Some(profile) = TokenProfile::named(name) else {
            continue;
        };
        let shape = match typ {
            Err(e) => format!("does not fit: {e}"),
            Ok(typ) => match profile.check_shape(*typ, claims) {
                Ok(()) => {
                    fits.push(name);
                    "fits".to_owned()
                }
                Err(e) => format!("does not fit: {}", refusal(&e)),
            },
        };
        let client = profile.client_id(claims).map_or("none".to_owned(), shown);
        let permissions = shown_list(profile.permissions(claims));
        println!("  {name:<9} {shape}");
        println!("  {:<9} client {client}; permissions {permissions}", "");
    }
    if fits.is_empty() {
        println!("  the shape fits none of the presets");
    } else {
        println!("  the shape fits: {}", fits.join(", "));
    }
    fits
}

/// The checks that need nothing but the token and the clock.
fn check_token(
    checks: &mut Checks,
    decoded: &Decoded,
    typ: &Result<Option<&str>, String>,
    profile: &TokenProfile,
    fits: &[&str],
    args: &Args,
    now: i64,
) {
    let (header, claims) = (&decoded.header, &decoded.claims);
    match &decoded.duplicate {
        None => checks.pass("members", "no JSON member named twice"),
        Some(e) => checks.fail("members", format!("{e}: refused before anything else")),
    }

    match header.get("alg") {
        Some(Value::String(alg)) if ALLOWED_ALGORITHMS.contains(&alg.as_str()) => {
            checks.pass("alg", format!("{alg}, allowed"));
        }
        Some(Value::String(alg)) if alg.eq_ignore_ascii_case("none") => {
            checks.fail("alg", "none: an unsigned token");
        }
        Some(Value::String(alg)) if alg.starts_with("HS") => checks.fail(
            "alg",
            format!("{}: HMAC, never accepted with keys from a JWKS", shown(alg)),
        ),
        Some(other) => checks.fail(
            "alg",
            format!("{} is not an allowed algorithm", shown_value(other)),
        ),
        None => checks.fail("alg", "absent"),
    }

    let name = profile.name();
    match typ {
        Err(e) => checks.fail("shape", e.clone()),
        Ok(typ) => match profile.check_shape(*typ, claims) {
            Ok(()) => checks.pass("shape", format!("fits the {name} token profile")),
            Err(e) => {
                let others: Vec<&str> = fits.iter().copied().filter(|&f| f != name).collect();
                let hint = match others.first() {
                    Some(first) => format!(
                        "; the shape fits {}: try --token-profile {first}",
                        others.join(", ")
                    ),
                    None => String::new(),
                };
                checks.fail(
                    "shape",
                    format!("does not fit the {name} token profile: {e}{hint}"),
                );
            }
        },
    }

    let number = |name: &str| -> Option<Result<i64, String>> {
        claims.get(name).map(|value| match value {
            Value::Number(n) => n
                .as_f64()
                .map(|t| t as i64)
                .ok_or_else(|| format!("{n} is not a NumericDate")),
            other => Err(format!("{} is not a number", shown_value(other))),
        })
    };
    match number("exp") {
        None => checks.fail("exp", "absent: every token must have one"),
        Some(Err(e)) => checks.fail("exp", e),
        Some(Ok(exp)) if now > exp.saturating_add(LEEWAY) => checks.fail(
            "exp",
            format!("expired {}, beyond the {LEEWAY} s leeway", when(exp, now)),
        ),
        Some(Ok(exp)) => checks.pass("exp", format!("expires {}", when(exp, now))),
    }
    match number("nbf") {
        None => checks.skip("nbf", "absent (optional)"),
        Some(Err(e)) => checks.fail("nbf", e),
        Some(Ok(nbf)) if nbf > now.saturating_add(LEEWAY) => checks.fail(
            "nbf",
            format!(
                "not valid until {}, beyond the {LEEWAY} s leeway",
                when(nbf, now)
            ),
        ),
        Some(Ok(nbf)) => checks.pass("nbf", format!("valid since {}", when(nbf, now))),
    }
    match number("iat") {
        None => checks.skip(
            "iat",
            "absent (the shape check says whether that is allowed)",
        ),
        Some(Err(e)) => checks.fail("iat", e),
        Some(Ok(iat)) if iat > now.saturating_add(LEEWAY) => checks.fail(
            "iat",
            format!(
                "issued in the future, {}, beyond the {LEEWAY} s leeway",
                when(iat, now)
            ),
        ),
        Some(Ok(iat)) => checks.pass("iat", format!("issued {}", when(iat, now))),
    }

    match (claims.get("iss"), &args.issuer) {
        (None, _) => checks.fail("iss", "absent: every token must name its issuer"),
        (Some(Value::String(iss)), Some(expected)) if iss == expected => {
            checks.pass("iss", format!("{} is --issuer", shown(iss)));
        }
        (Some(Value::String(iss)), Some(expected)) => checks.fail(
            "iss",
            format!(
                "{} is not --issuer {} (compared exactly, trailing slash included)",
                shown(iss),
                shown(expected)
            ),
        ),
        (Some(Value::String(_)), None) => checks.skip("iss", "no --issuer to compare with"),
        (Some(other), _) => checks.fail("iss", format!("{} is not a string", shown_value(other))),
    }

    let audiences: Option<Vec<&str>> = match claims.get("aud") {
        Some(Value::String(aud)) => Some(vec![aud.as_str()]),
        Some(Value::Array(items)) => items.iter().map(Value::as_str).collect(),
        _ => None,
    };
    match (claims.get("aud"), audiences, &args.audience) {
        (None, _, _) => checks.fail("aud", "absent: every token must name its audience"),
        (Some(other), None, _) => checks.fail(
            "aud",
            format!(
                "{} is not a string or an array of strings",
                shown_value(other)
            ),
        ),
        (Some(_), Some(auds), Some(expected)) if auds.contains(&expected.as_str()) => {
            checks.pass("aud", format!("names --audience {}", shown(expected)));
        }
        (Some(aud), Some(_), Some(expected)) => checks.fail(
            "aud",
            format!(
                "{} does not name --audience {}",
                shown_value(aud),
                shown(expected)
            ),
        ),
        (Some(_), Some(_), None) => checks.skip("aud", "no --audience to compare with"),
    }

    match claims.get("cnf").map(Confirmation::from_value) {
        None => checks.skip("cnf", "absent: the token is not bound"),
        Some(Ok(_)) => checks.pass("cnf", "well-formed"),
        Some(Err(e)) => checks.fail("cnf", format!("malformed: {e}")),
    }
}

/// The signature and the server's verdict, from a `JwtValidator` built as
/// a server would build it, when `--issuer` is given.
async fn check_with_issuer(
    checks: &mut Checks,
    token: &str,
    kid: Option<&Value>,
    profile: &TokenProfile,
    args: &Args,
) -> Result<(), Stop> {
    let (Some(issuer), Some(audience)) = (&args.issuer, &args.audience) else {
        checks.skip(
            "signature",
            "no --issuer: give --issuer and --audience to fetch its keys and check it",
        );
        return Ok(());
    };
    let mut keys =
        JwksSource::discover(issuer).map_err(|e| Stop::Usage(format!("--issuer: {e}")))?;
    if let Some(path) = &args.issuer_ca {
        keys = keys.root_store(Arc::new(root_store(path)?));
    }
    let validator = JwtValidator::builder()
        .issuer(issuer)
        .audience(audience)
        .jwks(keys)
        .token_profile(profile.clone())
        .build()
        .map_err(|e| Stop::Usage(format!("cannot check tokens of this issuer: {e}")))?;
    let verdict = ValidateToken::validate(&validator, token).await;

    use TokenErrorKind as K;
    let verified = match kid {
        Some(kid) => format!("verified with the issuer's key {}", shown_value(kid)),
        None => "verified with the issuer's key".to_owned(),
    };
    match &verdict {
        Ok(_) => checks.pass("signature", verified),
        Err(e) if e.kind() == K::KeysUnavailable => checks.skip(
            "signature",
            format!(
                "keys unavailable: the issuer's metadata or JWKS could not be fetched from {}",
                shown(issuer)
            ),
        ),
        Err(e)
            if matches!(
                e.kind(),
                K::BadSignature | K::UnknownKey | K::DisallowedAlgorithm
            ) =>
        {
            checks.fail("signature", format!("{:?}: {e}", e.kind()));
        }
        // Steps after the signature (the validator's order): the claims
        // against the clock and the audience, the RFC 9068 claims, `cnf`.
        Err(e)
            if matches!(
                e.kind(),
                K::Expired | K::NotYetValid | K::WrongAudience | K::InvalidConfirmation
            ) || (e.kind() == K::MissingClaim && e.claim() != Some("iss")) =>
        {
            checks.pass("signature", verified);
        }
        Err(_) => checks.skip(
            "signature",
            "not reached: the validator refused the token before checking it",
        ),
    }
    match verdict {
        Ok(_) => checks.pass(
            "validator",
            "a server with these settings accepts the token",
        ),
        Err(e) if e.kind() == K::KeysUnavailable => checks.skip(
            "validator",
            format!(
                "{:?}: {e}; set RUST_LOG=tower_token_binding=debug to see why",
                e.kind()
            ),
        ),
        Err(e) => checks.fail("validator", format!("refused: {:?}: {e}", e.kind())),
    }
    Ok(())
}

/// The binding to the first certificate of `--cert`, when given.
fn check_binding(
    checks: &mut Checks,
    claims: &Map<String, Value>,
    args: &Args,
) -> Result<(), Stop> {
    let cnf = match claims.get("cnf").map(Confirmation::from_value) {
        None => None,
        Some(Ok(cnf)) => Some(cnf),
        Some(Err(_)) => {
            checks.fail("binding", "the cnf claim is malformed (see cnf)");
            return Ok(());
        }
    };
    let proof_bound = cnf.as_ref().and_then(|cnf| {
        if cnf.jkt().is_some() {
            Some("a DPoP key (cnf.jkt): checked per request from the DPoP proof")
        } else if cnf.kid().is_some() {
            Some("a PoP key (cnf.kid): checked per request from the signed request")
        } else {
            None
        }
    });
    let bound_cert = cnf.as_ref().and_then(Confirmation::thumbprint);
    let Some(path) = &args.cert else {
        let why = match (bound_cert, proof_bound) {
            (Some(_), _) => "no --cert: give the client's certificate to compare".to_owned(),
            (None, Some(proof)) => format!("bound to {proof}; that cannot be checked here"),
            (None, None) => "no --cert, and the token is not bound: a server refuses it \
                             unless it allows unbound tokens"
                .to_owned(),
        };
        checks.skip("binding", why);
        return Ok(());
    };
    let der = read_certificates(path)?
        .into_iter()
        .next()
        .ok_or_else(|| Stop::Usage(format!("{path}: no CERTIFICATE in it")))?;
    let presented = Thumbprint::from_certificate(&der);
    match (cnf, proof_bound) {
        (Some(cnf), _) if cnf.thumbprint().is_some() => {
            if cnf.is_bound_to(&presented) {
                checks.pass(
                    "binding",
                    format!("cnf.x5t#S256 is {path}'s thumbprint {presented}"),
                );
            } else {
                let bound = cnf
                    .thumbprint()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                checks.fail(
                    "binding",
                    format!(
                        "the token is bound to the certificate {bound}, \
                         not to {path} ({presented})"
                    ),
                );
            }
        }
        (_, Some(proof)) => checks.skip(
            "binding",
            format!("bound to {proof}, not to a certificate: it cannot be checked here"),
        ),
        _ => checks.fail(
            "binding",
            format!("the token is not bound to a certificate (no cnf.x5t#S256), so not to {path}"),
        ),
    }
    Ok(())
}

fn read_certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, Stop> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Stop::Usage(format!("{path}: {e}")))
}

fn root_store(path: &str) -> Result<RootCertStore, Stop> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| Stop::Usage(format!("{path}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Stop::Usage(format!("{path}: no CERTIFICATE in it")));
    }
    Ok(roots)
}

async fn run(args: Args) -> Result<bool, Stop> {
    let token = read_token(args.token.as_deref().unwrap_or_default())?;
    let decoded = decode(&token).map_err(Stop::Unreadable)?;
    let profile = args
        .token_profile
        .as_deref()
        .and_then(TokenProfile::named)
        .unwrap_or_default();
    let now = now();

    println!(
        "a JWT of {} bytes (the token and its signature are not shown)",
        token.len()
    );
    print_summary(&decoded, now);
    let typ = header_typ(&decoded.header);
    let fits = print_profiles(&typ, &decoded.claims);

    let mut checks = Checks::default();
    check_token(&mut checks, &decoded, &typ, &profile, &fits, &args, now);
    let kid = decoded.header.get("kid");
    check_with_issuer(&mut checks, &token, kid, &profile, &args).await?;
    check_binding(&mut checks, &decoded.claims, &args)?;

    println!(
        "checks (token profile {}, leeway {LEEWAY} s)",
        profile.name()
    );
    for (outcome, check, why) in &checks.0 {
        println!("  {outcome:<8} {check:<10} {why}");
    }
    let failed = checks.failed();
    let unsigned = checks
        .0
        .iter()
        .any(|(outcome, check, _)| *check == "signature" && matches!(outcome, Outcome::Skipped));
    if failed == 0 && unsigned {
        println!(
            "result: every check that ran passed, but the signature was NOT checked \
             (a server checks it first)"
        );
    } else if failed == 0 {
        println!("result: every check that ran passed");
    } else {
        println!("result: {failed} check(s) failed: a server would refuse this token");
    }
    Ok(failed == 0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(Stop::Usage(message)) => {
            eprintln!("explain: {message}");
            ExitCode::from(2)
        }
        Err(Stop::Unreadable(message)) => {
            eprintln!("explain: {message}");
            ExitCode::FAILURE
        }
    }
}
