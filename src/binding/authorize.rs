//! Authorizing one request: the token's `Authorization` value (built once
//! per token and header word), its identity for the transport, and for
//! DPoP a fresh proof, for PoP a fresh signed HTTP request; where the
//! request went, to learn the nonce its response may carry; and settling
//! that response with the cache and the nonce memory. The tower layer and
//! the reqwest middleware both go through here.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri, header};

use super::layer::Settings;
use super::retry::says_invalid_token;
use super::{HeaderWord, Scheme};
use crate::proof::dpop::{DPOP, DpopProofs};
use crate::proof::pop::{self, PopProofs};
use crate::token::{BoxError, CachedToken, TokenCache, TokenUnavailable, TokenUnavailableKind};

/// Where a DPoP or PoP request went, to learn the nonce its response may
/// carry.
pub(crate) struct NonceOrigin {
    pub(crate) keys: NonceKeys,
    pub(crate) uri: Uri,
    /// The request carried a nonce the server gave (a PoP SHR signed with
    /// the origin's server nonce): a challenge to it is not about a
    /// missing nonce.
    pub(crate) server_nonce: bool,
}

/// Whose nonces a response's nonce is for.
pub(crate) enum NonceKeys {
    /// Every response's `DPoP-Nonce` is the origin's next nonce.
    Dpop(DpopProofs),
    /// A `401` with `WWW-Authenticate: PoP nonce="..."` gives the nonce
    /// for the next SHR to the origin.
    Pop(PopProofs),
}

impl NonceOrigin {
    /// Remembers the nonce of a response to this request (its status and
    /// headers), if it has one that the nonce memory takes; returns whether
    /// it did.
    pub(crate) fn remember(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        match &self.keys {
            NonceKeys::Dpop(proofs) => proofs.nonces().remember_from_headers(&self.uri, headers),
            NonceKeys::Pop(shrs) => {
                let remembered = status == StatusCode::UNAUTHORIZED
                    && shrs.remember_challenge_nonce(&self.uri, headers);
                if remembered {
                    tracing::debug!("the resource asked for a PoP nonce; the next SHR carries it");
                }
                remembered
            }
        }
    }
}

/// The slot of the cached `DPoP <token>` value, after the header words'.
const DPOP_SLOT: usize = 2;

/// Puts the token's header and identity on the request, as `settings` say.
/// For a DPoP request, also a fresh proof, for a PoP one a fresh SHR; then
/// returns where the request goes, so that the response's nonce is
/// remembered (boxed: most requests have none, and their future stays
/// small).
pub(crate) fn authorize<B>(
    request: &mut Request<B>,
    token: &CachedToken,
    settings: &Settings,
    cache: &TokenCache,
) -> Result<Option<Box<NonceOrigin>>, BoxError> {
    if settings.scheme == Scheme::Dpop {
        if let Some(proofs) = token.token().dpop_proofs() {
            return authorize_dpop(request, token, proofs).map(|origin| Some(Box::new(origin)));
        }
    }
    if settings.scheme == Scheme::Pop {
        if let Some(shrs) = token.token().pop_proofs() {
            let server_nonce = shrs.nonces().get(request.uri()).is_some();
            authorize_pop(request, token, shrs, settings)?;
            return Ok(Some(Box::new(NonceOrigin {
                keys: NonceKeys::Pop(shrs.clone()),
                uri: request.uri().clone(),
                server_nonce,
            })));
        }
    }
    let identity = token.token().identity();
    let word = match (settings.scheme, identity) {
        (Scheme::Bearer, _) => Some(HeaderWord::Bearer),
        (Scheme::Dpop | Scheme::Pop, _) if settings.allow_unbound_fallback => {
            cache.count_fallback();
            tracing::warn!(
                scheme = %settings.scheme,
                "the token source returned a token not bound to a proof key; sending it as a bearer token, as allowed"
            );
            Some(HeaderWord::Bearer)
        }
        (Scheme::Dpop, _) => {
            return Err(TokenUnavailable::new(TokenUnavailableKind::NotDpopBound, None).into());
        }
        (Scheme::Pop, _) => {
            return Err(TokenUnavailable::new(TokenUnavailableKind::NotPopBound, None).into());
        }
        (Scheme::MtlsPop, Some(_)) => Some(settings.word),
        (Scheme::MtlsPop, None) if settings.allow_unbound_fallback => {
            cache.count_fallback();
            tracing::warn!(
                "the token source returned an unbound token; sending it as a bearer token, as allowed"
            );
            Some(HeaderWord::Bearer)
        }
        (Scheme::MtlsOnly, Some(_)) => None,
        (Scheme::MtlsPop | Scheme::MtlsOnly, None) => {
            return Err(TokenUnavailable::new(TokenUnavailableKind::Unbound, None).into());
        }
    };
    if matches!(settings.scheme, Scheme::MtlsPop | Scheme::MtlsOnly) {
        if let Some(identity) = identity {
            request.extensions_mut().insert(identity.clone());
        }
    }
    if let Some(word) = word {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            header_value(token, word.as_str(), word.index())?,
        );
    }
    Ok(None)
}

/// `Authorization: DPoP <token>` and a new `DPoP` proof for this request
/// (its method, its URI without query and fragment, the token's hash, the
/// origin's nonce), both marked sensitive; the identity that got the token,
/// if any, for an mTLS transport.
fn authorize_dpop<B>(
    request: &mut Request<B>,
    token: &CachedToken,
    proofs: &DpopProofs,
) -> Result<NonceOrigin, BoxError> {
    let secret = token.token().access_token().secret();
    let proof = proofs.proof(request.method(), request.uri(), Some(secret))?;
    let mut proof = HeaderValue::try_from(proof)
        .map_err(|_| "the DPoP proof has characters not allowed in an HTTP header")?;
    proof.set_sensitive(true);
    let authorization = header_value(token, "DPoP", DPOP_SLOT)?;
    let headers = request.headers_mut();
    headers.insert(header::AUTHORIZATION, authorization);
    headers.insert(DPOP, proof);
    if let Some(identity) = token.token().identity() {
        request.extensions_mut().insert(identity.clone());
    }
    Ok(NonceOrigin {
        keys: NonceKeys::Dpop(proofs.clone()),
        uri: request.uri().clone(),
        server_nonce: false,
    })
}

/// `Authorization: PoP <SHR>` with a new signed HTTP request for this
/// request (its method, host and path, the time, the origin's server nonce
/// if one waits, else a random one, the token and the key), marked
/// sensitive; the identity that got the token, if any,
/// for an mTLS transport. `q` and `h` as the settings say; never `b`: the
/// body may stream.
fn authorize_pop<B>(
    request: &mut Request<B>,
    token: &CachedToken,
    shrs: &PopProofs,
    settings: &Settings,
) -> Result<(), BoxError> {
    let secret = token.token().access_token().secret();
    let mut signer = shrs.signer(request.method(), request.uri(), secret);
    if settings.pop_query {
        signer = signer.query();
    }
    if let Some(names) = &settings.pop_headers {
        signer = signer.headers(request.headers(), names);
    }
    let signed = signer.sign()?;
    let mut value = HeaderValue::try_from(format!("{} {signed}", pop::SCHEME))
        .map_err(|_| "the signed HTTP request has characters not allowed in an HTTP header")?;
    value.set_sensitive(true);
    request.headers_mut().insert(header::AUTHORIZATION, value);
    if let Some(identity) = token.token().identity() {
        request.extensions_mut().insert(identity.clone());
    }
    Ok(())
}

/// What the response to an authorized request told the cache and the nonce
/// memory, for a retry to decide on.
pub(crate) struct Settled {
    /// The response's nonce was remembered for the next request.
    pub(crate) nonce_remembered: bool,
    /// The token the request carried, when the response is a `401`.
    pub(crate) rejected: Option<Arc<CachedToken>>,
}

/// Settles the response (its `status` and `headers`) to a request that
/// carried `token` and went to `origin`: remembers the nonce it may carry,
/// and tells the token it was accepted or, on `401 invalid_token`, drops it
/// from the cache (once per token), so that any retry gets a new one.
pub(crate) fn settle(
    status: StatusCode,
    headers: &HeaderMap,
    token: Option<Arc<CachedToken>>,
    origin: Option<Box<NonceOrigin>>,
) -> Settled {
    let mut nonce_remembered = false;
    let mut sent_server_nonce = false;
    if let Some(origin) = origin {
        // A response may carry the origin's next nonce.
        sent_server_nonce = origin.server_nonce;
        nonce_remembered = origin.remember(status, headers);
    }
    let mut rejected = None;
    if let Some(token) = token {
        if status == StatusCode::UNAUTHORIZED {
            // A PoP challenge that gives a nonce to a request that had none
            // of the server's is about the nonce, whatever its error says;
            // one to a request that carried the server's nonce is about the
            // token.
            let about_nonce =
                token.token().pop_proofs().is_some() && nonce_remembered && !sent_server_nonce;
            if says_invalid_token(headers) && !about_nonce {
                token.rejected();
            }
            rejected = Some(token);
        } else if !status.is_server_error() {
            token.accepted();
        }
    }
    Settled {
        nonce_remembered,
        rejected,
    }
}

/// `<word> <token>`, marked sensitive, built once per token and word.
fn header_value(token: &CachedToken, word: &str, slot: usize) -> Result<HeaderValue, BoxError> {
    token.headers[slot]
        .get_or_init(|| {
            let secret = token.token().access_token().secret();
            let mut value = HeaderValue::try_from(format!("{word} {secret}")).ok()?;
            value.set_sensitive(true);
            Some(value)
        })
        .clone()
        .ok_or_else(|| "the access token has characters not allowed in an HTTP header".into())
}
