use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

use super::layer::Settings;
use super::rejection::{Rejection, RejectionKind, Scheme};
use super::{TokenError, VerifiedToken};
use super::{dpop, pop};
use crate::peer::PeerCertificate;
use crate::proof::JwkThumbprint;
use crate::proof::dpop::{DPOP_NONCE, DpopError, DpopErrorKind, VerifiedDpopProof};
use crate::proof::pop::{PopError, PopErrorKind, VerifiedPopProof};
use crate::replay::{
    ReplayError, ReplayErrorKind, ReplayFuture, ReplayKey, ReplayOwner, ReplayStore as _,
};
use crate::{Confirmation, ProvenBinding};

/// What a request proved its key with, besides a client certificate:
/// checked on its own before the token is validated; its binding to the
/// token and the replay check come after. (Not `Debug`: a signed request
/// holds the access token.)
pub(crate) enum Proof {
    /// A `DPoP` proof header.
    Dpop(VerifiedDpopProof),
    /// A signed HTTP request (`Authorization: PoP`).
    Pop(VerifiedPopProof),
}

impl Proof {
    fn replay_key(&self) -> ReplayKey {
        match self {
            Proof::Dpop(proof) => proof.replay_key(),
            Proof::Pop(shr) => shr.replay_key(),
        }
    }

    /// The proof's key: DPoP's `jkt`, the SHR's `kid`. Its digest is the
    /// owner the replay store counts the proof against.
    fn key(&self) -> JwkThumbprint {
        match self {
            Proof::Dpop(proof) => proof.jkt(),
            Proof::Pop(shr) => shr.kid(),
        }
    }

    fn replay_expires_at(&self) -> SystemTime {
        match self {
            Proof::Dpop(proof) => proof.replay_expires_at(),
            Proof::Pop(shr) => shr.replay_expires_at(),
        }
    }

    /// `None` while the proof's `iat` (the SHR's `ts`) is still within the
    /// verifier's window at `now`; else the rejection of a proof too old.
    /// Checked again right before the replay store is asked: the token's
    /// validation (a key fetch, an introspection call) may have taken long
    /// enough for the proof to age out since it was verified.
    fn too_old_at(&self, now: SystemTime) -> Option<Rejection> {
        match self {
            Proof::Dpop(proof) if !proof.is_acceptable_at(now) => Some(Rejection::dpop(
                DpopError::new(DpopErrorKind::IatTooOld),
                Scheme::Dpop,
            )),
            Proof::Pop(shr) if !shr.is_acceptable_at(now) => {
                Some(Rejection::pop(PopError::new(PopErrorKind::TooOld)))
            }
            _ => None,
        }
    }
}

pin_project! {
    /// Response future for [`CnfValidation`](super::CnfValidation).
    pub struct ResponseFuture<S, ReqBody, F>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, F>,
        // The request is a gRPC call: refusals are gRPC statuses.
        grpc: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, F>
    where
        S: Service<Request<ReqBody>>,
    {
        /// The token is being validated (the DPoP proof or the signed
        /// request, if any, passed its own checks already).
        Validating {
            #[pin]
            validation: F,
            request: Option<Request<ReqBody>>,
            inner: Option<S>,
            settings: Arc<Settings>,
            scheme: Scheme,
            // Boxed: only DPoP and PoP requests have one, and every other
            // request's future stays small.
            proof: Option<Box<Proof>>,
        },
        /// Token, binding and scopes passed: asking the replay store
        /// whether the DPoP proof (or the signed request) is new, last.
        Replaying {
            check: ReplayFuture,
            // The proof's key, for the warning when it is over its share.
            key: JwkThumbprint,
            request: Option<Request<ReqBody>>,
            inner: Option<S>,
            settings: Arc<Settings>,
            scheme: Scheme,
        },
        /// The request passed: waiting for the inner service to be ready.
        Authorized {
            request: Option<Request<ReqBody>>,
            inner: S,
            nonce: Option<HeaderValue>,
            scheme: Scheme,
        },
        Calling {
            #[pin]
            future: S::Future,
            nonce: Option<HeaderValue>,
        },
        Rejected {
            response: Option<S::Response>,
        },
    }
}

impl<S, ReqBody, F> ResponseFuture<S, ReqBody, F>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn validating(
        validation: F,
        request: Request<ReqBody>,
        inner: S,
        settings: Arc<Settings>,
        scheme: Scheme,
        proof: Option<Proof>,
        grpc: bool,
    ) -> Self {
        Self {
            grpc,
            state: State::Validating {
                validation,
                request: Some(request),
                inner: Some(inner),
                settings,
                scheme,
                proof: proof.map(Box::new),
            },
        }
    }

    pub(crate) fn rejected(response: S::Response) -> Self {
        Self {
            grpc: false,
            state: State::Rejected {
                response: Some(response),
            },
        }
    }
}

/// The answer for a future polled again after it completed.
fn polled_after_completion<B: Default + 'static>() -> Response<B> {
    Rejection::new(RejectionKind::MissingCredentials, Scheme::Bearer)
        .into_response(&Settings::default())
}

impl<S, ReqBody, ResBody, F> Future for ResponseFuture<S, ReqBody, F>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    F: Future<Output = Result<VerifiedToken, TokenError>>,
    ResBody: Default + 'static,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let grpc = *this.grpc;
        loop {
            match this.state.as_mut().project() {
                StateProj::Validating {
                    validation,
                    request,
                    inner,
                    settings,
                    scheme,
                    proof,
                } => {
                    let result = ready!(validation.poll(cx));
                    let (Some(mut request), Some(inner)) = (request.take(), inner.take()) else {
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    let scheme = *scheme;
                    let verdict =
                        result
                            .map_err(|e| Rejection::token(e, scheme))
                            .and_then(|token| {
                                let peer = request.extensions().get::<PeerCertificate>();
                                authorize(&token, peer, settings, scheme, proof.as_deref())
                                    .map(|binding| token.with_binding(binding))
                                    .map_err(|kind| Rejection::new(kind, scheme))
                            });
                    let token = match verdict {
                        Ok(token) => token,
                        Err(rejection) => {
                            return Poll::Ready(Ok(refuse(rejection, settings, grpc)));
                        }
                    };
                    request.extensions_mut().insert(token);
                    let next = match proof.take() {
                        // Still within its window now, however long the
                        // token took: else it would reach the store past
                        // its lifetime.
                        Some(proof) => {
                            if let Some(rejection) = proof.too_old_at(crate::clock::wall()) {
                                return Poll::Ready(Ok(refuse(rejection, settings, grpc)));
                            }
                            // Last: only a proof that is otherwise accepted
                            // reaches the store.
                            // Counted against the proof's key, so that one
                            // key cannot fill the store for everyone.
                            let key = proof.key();
                            match &settings.replay_store {
                                Some(store) => State::Replaying {
                                    check: store.insert_if_absent_for(
                                        proof.replay_key(),
                                        ReplayOwner::of_key(key.as_bytes()),
                                        proof.replay_expires_at(),
                                    ),
                                    key,
                                    request: Some(request),
                                    inner: Some(inner),
                                    settings: settings.clone(),
                                    scheme,
                                },
                                None => {
                                    crate::metrics::replay_check(
                                        super::labels::proof_label(scheme),
                                        Err(ReplayErrorKind::Other),
                                    );
                                    let rejection = Rejection::replay_store(
                                        ReplayError::new(ReplayErrorKind::Other),
                                        scheme,
                                    );
                                    return Poll::Ready(Ok(refuse(rejection, settings, grpc)));
                                }
                            }
                        }
                        None => State::Authorized {
                            request: Some(request),
                            inner,
                            nonce: dpop::nonce_header(settings, scheme),
                            scheme,
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Replaying {
                    check,
                    key,
                    request,
                    inner,
                    settings,
                    scheme,
                } => {
                    let scheme = *scheme;
                    let fresh = ready!(Pin::new(check).poll(cx));
                    crate::metrics::replay_check(
                        super::labels::proof_label(scheme),
                        fresh
                            .as_ref()
                            .map(|fresh| *fresh)
                            .map_err(ReplayError::kind),
                    );
                    let (Some(request), Some(inner)) = (request.take(), inner.take()) else {
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    let rejection = match fresh {
                        Ok(true) => {
                            let nonce = dpop::nonce_header(settings, scheme);
                            this.state.set(State::Authorized {
                                request: Some(request),
                                inner,
                                nonce,
                                scheme,
                            });
                            continue;
                        }
                        Ok(false) if scheme == Scheme::Pop => pop::replayed(),
                        Ok(false) => {
                            Rejection::dpop(DpopError::new(DpopErrorKind::Replayed), Scheme::Dpop)
                        }
                        Err(e) if e.is_owner_share_exceeded() => {
                            // The client of this key sends more proofs
                            // than its part of the store: it alone is
                            // refused (429). Once a second at most.
                            if let Some(suppressed) = settings.replay_share_warnings.allow() {
                                tracing::warn!(
                                    key = %key,
                                    suppressed,
                                    "a proof key holds its share of the replay store: \
                                     request refused (429); at most one such warning a \
                                     second, `suppressed` counts those left out since \
                                     the last"
                                );
                            }
                            Rejection::replay_store(e, scheme)
                        }
                        Err(e) => {
                            // Once a second at most per layer: an outage
                            // refuses every DPoP/PoP request.
                            if let Some(suppressed) = settings.replay_warnings.allow() {
                                tracing::warn!(
                                    error = %e,
                                    source = ?std::error::Error::source(&e),
                                    suppressed,
                                    "the replay store failed: request refused (503); \
                                     at most one such warning a second, `suppressed` \
                                     counts those left out since the last"
                                );
                            }
                            Rejection::replay_store(e, scheme)
                        }
                    };
                    return Poll::Ready(Ok(refuse(rejection, settings, grpc)));
                }
                StateProj::Authorized {
                    request,
                    inner,
                    nonce,
                    scheme,
                } => {
                    ready!(inner.poll_ready(cx))?;
                    let Some(request) = request.take() else {
                        return Poll::Ready(Ok(polled_after_completion()));
                    };
                    crate::metrics::accepted(
                        super::labels::scheme_label(*scheme),
                        request
                            .extensions()
                            .get::<VerifiedToken>()
                            .map_or(crate::ProvenBinding::None, VerifiedToken::binding),
                    );
                    let nonce = nonce.take();
                    let future = inner.call(request);
                    this.state.set(State::Calling { future, nonce });
                }
                StateProj::Calling { future, nonce } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(nonce) = nonce.take() {
                        response.headers_mut().entry(DPOP_NONCE).or_insert(nonce);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Rejected { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .unwrap_or_else(polled_after_completion)));
                }
            }
        }
    }
}

/// The response for `rejection` (a gRPC status for a gRPC call), logged:
/// every refusal of the layer, before the token is validated or after.
pub(super) fn refuse<B: Default + 'static>(
    rejection: Rejection,
    settings: &Settings,
    grpc: bool,
) -> Response<B> {
    tracing::debug!(
        rejection = ?rejection.kind(),
        reason = %rejection,
        "request refused"
    );
    let response = rejection.into_response(settings);
    if grpc {
        super::rejection::grpc::refusal(response, settings)
    } else {
        response
    }
}

/// The binding the token's `cnf` names, proven by this request, then the
/// required scopes:
///
/// - `x5t#S256` (RFC 8705 section 3): only on a connection with that client
///   certificate, and not with the `DPoP` or `PoP` scheme or on a DPoP-only
///   route;
/// - `jkt` (RFC 9449 section 7.1): only with the `DPoP` scheme and a proof
///   by that key, on a route that accepts DPoP;
/// - `kid` (signed HTTP requests): only with the `PoP` scheme and a signed
///   request by the key with that thumbprint, on a route that accepts them;
/// - more than one: refused, as the binding to prove is ambiguous;
/// - none: the `DPoP` and `PoP` schemes are refused; an unbound `Bearer`
///   token only where the layer allows them.
fn authorize(
    token: &VerifiedToken,
    peer: Option<&PeerCertificate>,
    settings: &Settings,
    scheme: Scheme,
    proof: Option<&Proof>,
) -> Result<ProvenBinding, RejectionKind> {
    use RejectionKind as K;
    let cnf = token.confirmation();
    let x5t = cnf.and_then(Confirmation::thumbprint);
    let jkt = cnf.and_then(Confirmation::jkt);
    let kid = cnf.and_then(Confirmation::kid);
    let binding = match (x5t, jkt, kid) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            return Err(K::UnsupportedConfirmation);
        }
        // The `PoP` scheme proves a `kid` and nothing else.
        (_, _, None) if scheme == Scheme::Pop => return Err(K::NotPopBound),
        (Some(bound), None, None) => {
            if scheme == Scheme::Dpop {
                return Err(K::NotDpopBound);
            }
            if !settings.accepts_certificates() {
                return Err(K::UnsupportedConfirmation);
            }
            let presented = peer.ok_or(K::NoClientCertificate)?.thumbprint();
            if !bound.matches(&presented) {
                return Err(K::CertificateMismatch);
            }
            ProvenBinding::Certificate(presented)
        }
        (None, Some(bound), None) => {
            if settings.dpop.is_none() {
                return Err(K::UnsupportedConfirmation);
            }
            // A proof exists only for the `DPoP` scheme.
            let Some(Proof::Dpop(proof)) = proof else {
                return Err(K::DpopBoundAsBearer);
            };
            let key = proof.jkt();
            if !key.matches(bound) {
                return Err(K::DpopKeyMismatch);
            }
            ProvenBinding::Dpop(key)
        }
        (None, None, Some(bound)) => {
            if settings.pop.is_none() {
                return Err(K::UnsupportedConfirmation);
            }
            // A signed request exists only for the `PoP` scheme.
            let Some(Proof::Pop(shr)) = proof else {
                return Err(K::PopBoundWithoutSignedRequest);
            };
            let key = shr.kid();
            if !key.matches(bound) {
                return Err(K::PopKeyMismatch);
            }
            ProvenBinding::Pop(key)
        }
        (None, None, None) if scheme == Scheme::Dpop => return Err(K::NotDpopBound),
        (None, None, None) if cnf.is_some() => return Err(K::UnsupportedConfirmation),
        (None, None, None) if settings.allow_unbound && scheme == Scheme::Bearer => {
            ProvenBinding::None
        }
        (None, None, None) => return Err(K::UnboundToken),
    };
    if let Some(missing) = settings
        .required_scopes
        .iter()
        .find(|scope| !token.has_scope(scope))
    {
        tracing::debug!(scope = %missing, "required scope missing");
        return Err(K::InsufficientScope);
    }
    Ok(binding)
}
