use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use super::VerifiedToken;

/// The rejection of the [`VerifiedToken`] extractor: the handler is not
/// behind a [`CnfValidationLayer`](super::CnfValidationLayer). A server
/// misconfiguration, so `500`.
#[derive(Debug, Clone, Copy)]
pub struct MissingVerifiedToken;

impl IntoResponse for MissingVerifiedToken {
    fn into_response(self) -> Response {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "no verified token: is the handler behind CnfValidationLayer?",
        )
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedToken {
    type Rejection = MissingVerifiedToken;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<VerifiedToken>()
            .cloned()
            .ok_or(MissingVerifiedToken)
    }
}
