use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower::Service;

use super::layer::Settings;
use super::rejection::{Rejection, RejectionKind, Scheme};
use super::{TokenError, VerifiedToken};
use crate::server::PeerCertificate;

pin_project! {
    /// Response future for [`CnfValidation`](super::CnfValidation).
    pub struct ResponseFuture<S, ReqBody, F>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, F>
    where
        S: Service<Request<ReqBody>>,
    {
        Validating {
            #[pin]
            validation: F,
            request: Option<Request<ReqBody>>,
            inner: Option<S>,
            settings: Arc<Settings>,
            scheme: Scheme,
        },
        /// The token passed: waiting for the inner service to be ready.
        Authorized {
            request: Option<Request<ReqBody>>,
            inner: S,
        },
        Calling {
            #[pin]
            future: S::Future,
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
    ) -> Self {
        Self {
            state: State::Validating {
                validation,
                request: Some(request),
                inner: Some(inner),
                settings,
                scheme,
            },
        }
    }

    pub(crate) fn rejected(response: S::Response) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<S, ReqBody, ResBody, F> Future for ResponseFuture<S, ReqBody, F>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    F: Future<Output = Result<VerifiedToken, TokenError>>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Validating {
                    validation,
                    request,
                    inner,
                    settings,
                    scheme,
                } => {
                    let result = ready!(validation.poll(cx));
                    let (Some(mut request), Some(inner)) = (request.take(), inner.take()) else {
                        // Only reachable when polled again after completion.
                        let rejection = Rejection::new(RejectionKind::MissingCredentials, *scheme);
                        return Poll::Ready(Ok(rejection.into_response(true, None)));
                    };
                    let verdict =
                        result
                            .map_err(|e| Rejection::token(e, *scheme))
                            .and_then(|token| {
                                let peer = request.extensions().get::<PeerCertificate>();
                                authorize(&token, peer, settings, *scheme)
                                    .map(|()| token)
                                    .map_err(|kind| Rejection::new(kind, *scheme))
                            });
                    match verdict {
                        Ok(token) => {
                            request.extensions_mut().insert(token);
                            this.state.set(State::Authorized {
                                request: Some(request),
                                inner,
                            });
                        }
                        Err(rejection) => {
                            tracing::debug!(
                                rejection = ?rejection.kind(),
                                reason = %rejection,
                                "request refused"
                            );
                            return Poll::Ready(Ok(rejection
                                .into_response(settings.terse, settings.scope_param.as_deref())));
                        }
                    }
                }
                StateProj::Authorized { request, inner } => {
                    ready!(inner.poll_ready(cx))?;
                    let Some(request) = request.take() else {
                        // Only reachable when polled again after completion.
                        let rejection =
                            Rejection::new(RejectionKind::MissingCredentials, Scheme::Bearer);
                        return Poll::Ready(Ok(rejection.into_response(true, None)));
                    };
                    let future = inner.call(request);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => return future.poll(cx),
                StateProj::Rejected { response } => {
                    return Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                        Rejection::new(RejectionKind::MissingCredentials, Scheme::Bearer)
                            .into_response(true, None)
                    })));
                }
            }
        }
    }
}

/// RFC 8705 section 3: a bound token only on a connection with its
/// certificate; then the required scopes.
fn authorize(
    token: &VerifiedToken,
    peer: Option<&PeerCertificate>,
    settings: &Settings,
    scheme: Scheme,
) -> Result<(), RejectionKind> {
    match token.confirmation() {
        Some(cnf) => {
            let bound = cnf
                .thumbprint()
                .ok_or(RejectionKind::UnsupportedConfirmation)?;
            let peer = peer.ok_or(RejectionKind::NoClientCertificate)?;
            if !bound.matches(&peer.thumbprint()) {
                return Err(RejectionKind::CertificateMismatch);
            }
        }
        None if settings.allow_unbound && scheme == Scheme::Bearer => {}
        None => return Err(RejectionKind::UnboundToken),
    }
    if let Some(missing) = settings
        .required_scopes
        .iter()
        .find(|scope| !token.has_scope(scope))
    {
        tracing::debug!(scope = %missing, "required scope missing");
        return Err(RejectionKind::InsufficientScope);
    }
    Ok(())
}
