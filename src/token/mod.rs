//! Access tokens on the client side: where they come from and how they are
//! cached.
//!
//! A [`TokenSource`] yields a [`Token`] (the access token, its type, its
//! expiry and the [`ClientIdentity`](crate::ClientIdentity) it is bound to);
//! a [`TokenCache`] in front of it fetches once for many callers, refreshes
//! ahead of expiry and backs off on failure; a [`SharedTokenCache`] under
//! it ([`shared`]; `RedisTokenCache` with the `redis` feature) shares
//! tokens across the processes of a fleet.
//! [`TokenBindingLayer`](crate::TokenBindingLayer) uses one for every request.

mod cache;
pub(crate) mod endpoint_error;
mod error;
mod key;
pub mod shared;
mod source;
#[allow(clippy::module_inception)]
mod token;

pub use cache::{Acquire, CacheStats, CachedToken, TokenCache, TokenCacheBuilder};
pub use error::{TokenUnavailable, TokenUnavailableKind};
pub use key::{CacheKey, CacheKeyBuilder};
pub use shared::{LockOwner, SharedCacheEvent, SharedCachePolicy, SharedKey, SharedTokenCache};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use shared::{RedisCacheStats, RedisTokenCache};
pub use source::{BoxError, StaticToken, TokenSource};
pub use token::{AccessToken, Token};

/// What a token is bound to: now [`cnf::Binding`](crate::cnf::Binding), the
/// one name of the bindings on both sides.
#[deprecated(note = "renamed `cnf::Binding`")]
pub type TokenBinding = crate::cnf::Binding;
