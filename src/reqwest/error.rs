//! The crate's errors as `reqwest_middleware::Error`s, downcastable.

use crate::BoxError;
use crate::binding::InsecureTransport;
use crate::pool::PoolError;
use crate::token::TokenUnavailable;

/// `error` as a middleware error. The crate's own error types are kept as
/// they are, so that `anyhow::Error::downcast_ref` finds them; any other
/// is boxed, and found in the error's chain.
pub(crate) fn middleware_error(error: BoxError) -> reqwest_middleware::Error {
    let error = typed::<TokenUnavailable>(error)
        .or_else(typed::<InsecureTransport>)
        .or_else(typed::<PoolError>)
        .unwrap_or_else(anyhow::Error::from_boxed);
    reqwest_middleware::Error::Middleware(error)
}

/// `error` as an `anyhow::Error` of its type `T`, if it is one.
fn typed<T>(error: BoxError) -> Result<anyhow::Error, BoxError>
where
    T: std::error::Error + Send + Sync + 'static,
{
    error.downcast::<T>().map(|e| anyhow::Error::new(*e))
}
