use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, Method, Uri};
use serde::Serialize;
use serde_json::Value;

use super::error::{CreatePopProofError, CreatePopProofErrorKind};
use super::{POP_TYPE, body_hash, header_claim, host_claim, path_claim, query_claim, req_cnf};
use crate::proof::dpop::NonceMemory;
use crate::proof::jwk::PublicJwk;
use crate::proof::jws;
use crate::proof::key::ProofKey;
use crate::proof::thumbprint::JwkThumbprint;

/// Makes the signed HTTP requests (SHRs) of one [`ProofKey`]: one fresh SHR
/// per request, for `Authorization: PoP <SHR>`.
///
/// The header (`{"alg","typ":"pop","kid"}`, the KID being the key's RFC
/// 7638 thumbprint) is the same for every SHR of the key, so it is encoded
/// once, here. Each SHR gets the access token (`at`), the time (`ts`), the
/// request's method (`m`), host (`u`) and path (`p`), a nonce of 128 random
/// bits and the public key (`cnf.jwk`). The query, header and body hashes
/// (`q`, `h`, `b`) are opt-in, through [`signer`](Self::signer).
///
/// # Server nonces
///
/// A resource may ask for its own nonce with a `401` and
/// `WWW-Authenticate: PoP nonce="..."` (as MSAL reads it).
/// [`remember_challenge_nonce`](Self::remember_challenge_nonce) keeps it
/// for the response's origin, and the *next* SHR to that origin carries
/// it, once: the one after uses a random nonce again. A server nonce is
/// used once because a server's replay key is (KID, nonce, `ts`): two SHRs
/// with one nonce in the same second would look like a replay. With
/// requests in flight at once, only one of them gets the server's nonce;
/// the others may be asked again (and, through the binding layer's retry
/// policy, retried once each).
///
/// Microsoft's default key is RSA-2048 with PS256
/// (`ProofKey::generate(Algorithm::Ps256)`); ES256 works too. Cloning is
/// cheap.
///
/// ```
/// use http::{Method, Uri};
/// use tower_token_binding::proof::pop::PopProofs;
/// use tower_token_binding::proof::{Algorithm, ProofKey};
///
/// let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
/// let uri: Uri = "https://api.example/items?page=2".parse().unwrap();
///
/// // m, u, p, ts, nonce, at, cnf:
/// let shr = shrs.sign(&Method::GET, &uri, "the-access-token").unwrap();
/// assert_eq!(shr.split('.').count(), 3);
///
/// // The same, with the query hashed into q:
/// let shr = shrs.signer(&Method::GET, &uri, "the-access-token").query().sign().unwrap();
/// # assert_eq!(shr.split('.').count(), 3);
/// ```
#[derive(Clone)]
pub struct PopProofs {
    inner: Arc<Inner>,
}

struct Inner {
    key: ProofKey,
    header_b64: Box<str>,
    req_cnf: Box<str>,
    nonces: NonceMemory,
}

/// The payload of an SHR, serialized straight into the JWS being built.
#[derive(Serialize)]
struct Claims<'a> {
    at: &'a str,
    ts: u64,
    m: &'a str,
    u: &'a str,
    p: &'a str,
    nonce: &'a str,
    cnf: Cnf<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    q: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    h: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b: Option<String>,
}

#[derive(Serialize)]
struct Cnf<'a> {
    jwk: &'a PublicJwk,
}

impl PopProofs {
    /// SHRs signed by `key`.
    pub fn new(key: ProofKey) -> Self {
        // `alg` is a registered name and the KID base64url: nothing to
        // escape.
        let header = format!(
            r#"{{"alg":"{}","typ":"{POP_TYPE}","kid":"{}"}}"#,
            key.algorithm(),
            key.thumbprint()
        );
        Self {
            inner: Arc::new(Inner {
                header_b64: jws::encode_segment(header.as_bytes()).into_boxed_str(),
                req_cnf: req_cnf(&key).into_boxed_str(),
                nonces: NonceMemory::new(),
                key,
            }),
        }
    }

    /// The key SHRs are signed with.
    pub fn key(&self) -> &ProofKey {
        &self.inner.key
    }

    /// The key's KID: its RFC 7638 thumbprint, the `cnf.kid` of its tokens.
    pub fn kid(&self) -> JwkThumbprint {
        self.inner.key.thumbprint()
    }

    /// The `req_cnf` of a token request for this key (see
    /// [`req_cnf`](super::req_cnf)).
    pub fn req_cnf(&self) -> &str {
        &self.inner.req_cnf
    }

    /// The server nonces waiting for the next SHR to their origin (see
    /// [Server nonces](Self#server-nonces)). Clones share them.
    pub fn nonces(&self) -> &NonceMemory {
        &self.inner.nonces
    }

    /// Remembers the nonce of a `PoP` challenge in a response from `uri`
    /// (`WWW-Authenticate: PoP nonce="..."`: the scheme and name in any
    /// case, the value a token or a quoted string, other parameters
    /// around it) for the next SHR to its origin. Returns whether there
    /// was exactly one such nonce, of 1 to 256 characters, and it was
    /// remembered.
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue, Method, Uri};
    /// use tower_token_binding::proof::pop::PopProofs;
    /// use tower_token_binding::proof::{Algorithm, ProofKey};
    ///
    /// let shrs = PopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    /// let uri: Uri = "https://api.example/items".parse().unwrap();
    /// let mut headers = HeaderMap::new();
    /// headers.insert(
    ///     "www-authenticate",
    ///     HeaderValue::from_static(r#"Bearer realm="api", pop error="invalid_token", Nonce="n\"1""#),
    /// );
    /// assert!(shrs.remember_challenge_nonce(&uri, &headers));
    /// assert_eq!(shrs.nonces().get(&uri).as_deref(), Some("n\"1"));
    /// // The next SHR to the origin takes it; the one after has a random nonce.
    /// let _ = shrs.sign(&Method::GET, &uri, "the-access-token").unwrap();
    /// assert!(shrs.nonces().get(&uri).is_none());
    /// ```
    #[cfg(feature = "client")]
    #[cfg_attr(docsrs, doc(cfg(feature = "client")))]
    pub fn remember_challenge_nonce(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        super::super::challenge::pop_challenge_nonce(headers).is_some_and(|nonce| {
            (1..=MAX_SERVER_NONCE_LEN).contains(&nonce.len())
                && !nonce.chars().any(char::is_control)
                && self.inner.nonces.remember_unchecked(uri, &nonce)
        })
    }

    /// An SHR for a request with `method` to `uri` (absolute) carrying
    /// `access_token`, now: `m`, `u`, `p`, `ts`, `nonce`, `at` and `cnf`,
    /// no `q`, `h` or `b`. The nonce is the server's when its origin gave
    /// one not yet used (see [Server nonces](Self#server-nonces)), a random
    /// one otherwise.
    pub fn sign(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: &str,
    ) -> Result<String, CreatePopProofError> {
        self.signer(method, uri, access_token).sign()
    }

    /// A builder for one SHR, to add `q`, `h` or `b`, or to choose the
    /// nonce or the time.
    pub fn signer<'a>(
        &'a self,
        method: &'a Method,
        uri: &'a Uri,
        access_token: &'a str,
    ) -> PopSigner<'a> {
        PopSigner {
            shrs: self,
            method,
            uri,
            access_token,
            query: false,
            headers: None,
            body: None,
            nonce: None,
            now: None,
        }
    }
}

impl fmt::Debug for PopProofs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PopProofs")
            .field("key", &self.inner.key)
            .finish()
    }
}

/// One signed HTTP request being made, from
/// [`PopProofs::signer`]: `q`, `h` and `b` are added on demand.
///
/// A body hash needs the body's bytes before the request is sent: pass
/// them with [`body`](Self::body) when the body is already in memory. A
/// streaming body cannot be hashed without buffering it, so the clients of
/// this crate send no `b` (a resource that requires one refuses them).
#[must_use]
pub struct PopSigner<'a> {
    shrs: &'a PopProofs,
    method: &'a Method,
    uri: &'a Uri,
    access_token: &'a str,
    query: bool,
    headers: Option<(&'a HeaderMap, &'a [HeaderName])>,
    body: Option<&'a [u8]>,
    nonce: Option<&'a str>,
    now: Option<SystemTime>,
}

impl<'a> PopSigner<'a> {
    /// Adds `q`: every pair of the URI's query, in order (an empty `q`
    /// when there is no query).
    pub fn query(mut self) -> Self {
        self.query = true;
        self
    }

    /// Adds `h` over the headers `names` of `headers` (each must be
    /// present, with a visible ASCII value).
    pub fn headers(mut self, headers: &'a HeaderMap, names: &'a [HeaderName]) -> Self {
        self.headers = Some((headers, names));
        self
    }

    /// Adds `b`, the hash of `body`.
    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = Some(body);
        self
    }

    /// Uses `nonce` instead of the origin's server nonce or a random one
    /// (a server nonce waiting for the origin stays for the next SHR).
    pub fn nonce(mut self, nonce: &'a str) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// Uses `now` as `ts` instead of the current time.
    pub fn at_time(mut self, now: SystemTime) -> Self {
        self.now = Some(now);
        self
    }

    /// Signs the SHR. Without a [`nonce`](Self::nonce) given, it takes
    /// the server nonce waiting for the URI's origin, if any (it is used
    /// once), and makes a random one otherwise.
    pub fn sign(self) -> Result<String, CreatePopProofError> {
        let u = host_claim(self.uri).ok_or(CreatePopProofError::new(
            CreatePopProofErrorKind::RelativeUri,
        ))?;
        let p = path_claim(self.uri.path());
        let mut nonce_buf = [0u8; 22];
        let server_nonce = match self.nonce {
            Some(_) => None,
            None => self.shrs.inner.nonces.take(self.uri),
        };
        let nonce = match (self.nonce, server_nonce.as_deref()) {
            (Some(nonce), _) | (None, Some(nonce)) => nonce,
            (None, None) => random_nonce(&mut nonce_buf)?,
        };
        let q = self
            .query
            .then(|| query_claim(self.uri.query().unwrap_or_default()));
        let h = match self.headers {
            Some((headers, names)) => Some(
                header_claim(headers, names)
                    .ok_or(CreatePopProofError::new(CreatePopProofErrorKind::Header))?,
            ),
            None => None,
        };
        let claims = Claims {
            at: self.access_token,
            ts: self
                .now
                .unwrap_or_else(crate::clock::wall)
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            m: self.method.as_str(),
            u: &u,
            p: &p,
            nonce,
            cnf: Cnf {
                jwk: self.shrs.inner.key.public_jwk(),
            },
            q,
            h,
            b: self.body.map(body_hash),
        };
        let hint = 200
            + claims.at.len()
            + claims.u.len()
            + claims.p.len()
            + claims.cnf.jwk.as_json().len()
            + claims.b.as_ref().map_or(0, |_| 50);
        let inner = &self.shrs.inner;
        jws::sign_streamed(&inner.key, &inner.header_b64, hint, |out| {
            serde_json::to_writer(out, &claims).map_err(std::io::Error::other)
        })
        .map_err(CreatePopProofError::signing)
    }
}

/// The longest server nonce kept, in bytes (what `PopVerifier` accepts).
#[cfg(feature = "client")]
const MAX_SERVER_NONCE_LEN: usize = 256;

/// 128 random bits, base64url.
fn random_nonce(buf: &mut [u8; 22]) -> Result<&str, CreatePopProofError> {
    let mut random = [0u8; 16];
    aws_lc_rs::rand::fill(&mut random)
        .map_err(|_| CreatePopProofError::new(CreatePopProofErrorKind::Random))?;
    match URL_SAFE_NO_PAD.encode_slice(random, buf) {
        Ok(22) => std::str::from_utf8(buf)
            .map_err(|_| CreatePopProofError::new(CreatePopProofErrorKind::Random)),
        _ => Err(CreatePopProofError::new(CreatePopProofErrorKind::Random)),
    }
}
