use std::fmt;
use std::sync::Arc;

use crate::Thumbprint;
use crate::proof::JwkThumbprint;

/// What a cached token is cached under: everything that changes the token.
///
/// Built by a [`TokenSource`](super::TokenSource) from its settings (token
/// endpoint, client id, scope or resource, binding mode...) and the
/// [`Thumbprint`] of the certificate its tokens are bound to: the whole
/// certificate, never just its public key, so a renewed certificate with the
/// same key is a new key here too. A source of DPoP-bound tokens adds the
/// [`JwkThumbprint`] (`jkt`) of its proof key, so tokens bound to one key
/// are never served for another. Cheap to clone and compare.
///
/// ```
/// use tower_token_binding::Thumbprint;
/// use tower_token_binding::token::CacheKey;
///
/// let a = CacheKey::builder()
///     .part("token_endpoint", "https://login.example/token")
///     .part("client_id", "svc")
///     .thumbprint(Thumbprint::from_der(b"certificate A"))
///     .build();
/// let b = CacheKey::builder()
///     .part("token_endpoint", "https://login.example/token")
///     .part("client_id", "svc")
///     .thumbprint(Thumbprint::from_der(b"certificate B"))
///     .build();
/// assert_ne!(a, b);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(Arc<Parts>);

#[derive(PartialEq, Eq, Hash, Default)]
struct Parts {
    parts: Vec<(String, String)>,
    thumbprint: Option<Thumbprint>,
    jkt: Option<JwkThumbprint>,
}

impl CacheKey {
    /// A builder.
    pub fn builder() -> CacheKeyBuilder {
        CacheKeyBuilder::default()
    }

    /// The key of a source whose tokens never change in kind.
    pub fn constant() -> Self {
        static CONSTANT: std::sync::OnceLock<CacheKey> = std::sync::OnceLock::new();
        CONSTANT
            .get_or_init(|| CacheKey(Arc::new(Parts::default())))
            .clone()
    }

    /// The thumbprint in the key, if any.
    pub fn thumbprint(&self) -> Option<Thumbprint> {
        self.0.thumbprint
    }

    /// The `jkt` of the DPoP proof key in the key, if any.
    pub fn jkt(&self) -> Option<JwkThumbprint> {
        self.0.jkt
    }

    /// This key with `thumbprint` in place of the one it has (if any).
    pub(crate) fn with_thumbprint(&self, thumbprint: Thumbprint) -> Self {
        CacheKey(Arc::new(Parts {
            parts: self.0.parts.clone(),
            thumbprint: Some(thumbprint),
            jkt: self.0.jkt,
        }))
    }

    /// SHA-256 over every part, the thumbprint and the `jkt`, each preceded
    /// by its length: the key of the tokens in a shared cache.
    pub(crate) fn digest(&self) -> [u8; 32] {
        use aws_lc_rs::digest;
        let mut context = digest::Context::new(&digest::SHA256);
        let mut part = |bytes: &[u8]| {
            context.update(&(bytes.len() as u64).to_be_bytes());
            context.update(bytes);
        };
        part(b"tower-token-binding cache key v1");
        for (name, value) in &self.0.parts {
            part(name.as_bytes());
            part(value.as_bytes());
        }
        let thumbprint = self.0.thumbprint.map(|t| t.to_string());
        part(b"x5t#S256");
        part(thumbprint.as_deref().unwrap_or("").as_bytes());
        let jkt = self.0.jkt.map(|j| j.to_string());
        part(b"jkt");
        part(jkt.as_deref().unwrap_or("").as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(context.finish().as_ref());
        out
    }

    /// Compares, first by pointer (the common case: the same key again).
    pub(crate) fn same(&self, other: &CacheKey) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self == other
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_map();
        for (name, value) in &self.0.parts {
            d.entry(name, value);
        }
        if let Some(t) = &self.0.thumbprint {
            d.entry(&"x5t#S256", t);
        }
        if let Some(jkt) = &self.0.jkt {
            d.entry(&"jkt", &format_args!("{jkt}"));
        }
        d.finish()
    }
}

/// Builds a [`CacheKey`].
#[derive(Default, Debug)]
pub struct CacheKeyBuilder {
    parts: Vec<(String, String)>,
    thumbprint: Option<Thumbprint>,
    jkt: Option<JwkThumbprint>,
}

impl CacheKeyBuilder {
    /// Adds a named setting. Never put a secret here: keys show in `Debug`.
    pub fn part(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parts.push((name.into(), value.into()));
        self
    }

    /// The thumbprint of the certificate the tokens are bound to.
    pub fn thumbprint(mut self, thumbprint: Thumbprint) -> Self {
        self.thumbprint = Some(thumbprint);
        self
    }

    /// The RFC 7638 thumbprint (`jkt`) of the DPoP key the tokens are
    /// bound to.
    pub fn jkt(mut self, jkt: JwkThumbprint) -> Self {
        self.jkt = Some(jkt);
        self
    }

    /// Builds the key.
    pub fn build(self) -> CacheKey {
        CacheKey(Arc::new(Parts {
            parts: self.parts,
            thumbprint: self.thumbprint,
            jkt: self.jkt,
        }))
    }
}
