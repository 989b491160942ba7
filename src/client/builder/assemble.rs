//! Building a [`BoundClient`] from its builder's settings: a managed
//! identity's settings put in place, the settings checked against each
//! other, then the identity, the token source, the token cache, the pool
//! and the layers assembled.

use super::*;

/// What [`BoundClientBuilder::assemble`] makes: a client but for its
/// sender (the hyper pool of [`BoundClient`], or reqwest's clients).
pub(super) struct Parts {
    pub(super) layer: TokenBindingLayer,
    pub(super) retry: InvalidTokenRetry,
    pub(super) cache: Option<TokenCache>,
    /// The pool settings, with the roots loaded.
    pub(super) pool: PoolBuilder,
    pub(super) identity: Option<SharedIdentity>,
    pub(super) dpop: Option<DpopProofs>,
    pub(super) pop: Option<PopProofs>,
    pub(super) max_body: usize,
    pub(super) request_timeout: Duration,
}

/// The error of an HTTPS client (`what`'s) that cannot be built.
pub(super) fn unavailable_pool(what: &str) -> ConfigError {
    ConfigError::unavailable(
        BUILDER,
        Some("pool"),
        format!("cannot build the {what} HTTPS client"),
    )
}

impl BoundClientBuilder {
    /// The settings of a managed identity in place of the client-credentials
    /// and identity settings, which must not be given with it.
    #[cfg(feature = "managed-identity")]
    pub(super) fn with_managed_identity(mut self) -> Result<Self, ConfigError> {
        let Some(managed) = self.managed.take() else {
            return Ok(self);
        };
        let given = [
            (self.self_signed, "self_signed_tls_client_auth"),
            (self.token_source.is_some(), "token_source"),
            (self.identity.is_some(), "identity"),
            (self.allow_unbound_fallback, "allow_unbound_fallback"),
        ];
        let given = self
            .credentials
            .first_given()
            .or_else(|| given.iter().find_map(|(set, name)| set.then_some(*name)));
        if let Some(name) = given {
            return Err(ConfigError::conflict(
                BUILDER,
                "managed_identity",
                format!(
                    "a managed identity brings its own token endpoint, client id and certificate, and never falls back to unbound tokens: drop {name}"
                ),
            ));
        }
        if self.scheme != Scheme::MtlsPop {
            return Err(ConfigError::conflict(
                BUILDER,
                "managed_identity",
                format!(
                    "a managed identity gets certificate-bound tokens: use Scheme::MtlsPop, not Scheme::{:?}",
                    self.scheme
                ),
            ));
        }
        self.credentials = self
            .credentials
            .token_endpoint(managed.token_endpoint())
            .client_id(managed.client_id())
            .entra_mtls_pop()
            .params_first(managed.params());
        self.identity = Some(IdentityChoice::Source(SharedIdentity::new(managed)));
        Ok(self)
    }

    #[cfg(not(feature = "managed-identity"))]
    pub(super) fn with_managed_identity(self) -> Result<Self, ConfigError> {
        Ok(self)
    }

    pub(super) fn build_checked<B>(self) -> Result<BoundClient<B>, ConfigError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        let parts = self.assemble()?;
        let api_pool = parts
            .pool
            .build::<B>()
            .map_err(|e| unavailable_pool("API").with_source(e))?;
        let service = Retry::new(
            parts.retry,
            tower::Layer::layer(&parts.layer, api_pool.clone()),
        );
        Ok(BoundClient {
            service,
            cache: parts.cache,
            pool: api_pool,
            identity: parts.identity,
            dpop: parts.dpop,
            pop: parts.pop,
            max_body: parts.max_body,
            timeout: parts.request_timeout,
        })
    }

    /// Everything a client is made of but the client that sends its
    /// requests: the settings checked, the identity, the token source and
    /// cache, the binding layer and its retries, the pool settings with
    /// their roots.
    pub(super) fn assemble(self) -> Result<Parts, ConfigError> {
        self.check()?;
        let entra = self.credentials.is_entra();
        let identity = match self.identity {
            Some(IdentityChoice::Source(identity)) => Some(identity),
            Some(IdentityChoice::Files(cert, key)) => {
                let mut builder = ReloadingIdentity::builder(&cert, &key);
                if let Some(interval) = self.poll_interval {
                    builder = builder.poll_interval(interval);
                }
                let identity = builder
                    .build()
                    .map_err(|e| e.renamed(BUILDER, "identity_files"))?;
                Some(SharedIdentity::new(identity))
            }
            None => None,
        };
        let mut pool = self.pool;
        if let Some(roots) = self.roots {
            pool = pool.root_store(roots.load(BUILDER)?);
        }
        // The platform's roots, when none were given, read once for every
        // client made from here (the token endpoint's, the API's).
        let roots = pool
            .roots_or_platform()
            .map_err(|e| unavailable_pool("API").with_source(e))?;
        pool = pool.root_store(roots);

        let dpop = match (self.scheme, self.dpop_key) {
            (Scheme::Dpop, Some(KeyChoice::Key(key))) => Some(key),
            (Scheme::Dpop, Some(KeyChoice::File(path))) => Some(
                ProofKey::from_pem_file(&path)
                    .map_err(|e| ConfigError::unreadable(BUILDER, "dpop_key_file", &path, e))?,
            ),
            (Scheme::Dpop, None) if self.token_source.is_none() => {
                Some(ProofKey::generate(Algorithm::Es256).map_err(|e| {
                    ConfigError::unavailable(
                        BUILDER,
                        Some("dpop_key"),
                        "cannot generate a DPoP key",
                    )
                    .with_source(e)
                })?)
            }
            _ => None,
        };
        let pop = match (self.scheme, self.pop_key) {
            (Scheme::Pop, Some(KeyChoice::Key(key))) => Some(key),
            (Scheme::Pop, Some(KeyChoice::File(path))) => Some(
                ProofKey::from_pem_file(&path)
                    .map_err(|e| ConfigError::unreadable(BUILDER, "pop_key_file", &path, e))?,
            ),
            (Scheme::Pop, None) if self.token_source.is_none() => {
                Some(ProofKey::generate(Algorithm::Ps256).map_err(|e| {
                    ConfigError::unavailable(BUILDER, Some("pop_key"), "cannot generate a PoP key")
                        .with_source(e)
                })?)
            }
            _ => None,
        };
        let mut dpop_proofs = None;
        let mut pop_proofs = None;
        let cache = if self.scheme == Scheme::MtlsOnly {
            None
        } else if let Some(source) = self.token_source {
            Some(source(self.cache))
        } else {
            if identity.is_none() && dpop.is_none() && pop.is_none() {
                return Err(ConfigError::missing(
                    BUILDER,
                    "identity_files",
                    "client credentials over mTLS need an identity",
                ));
            }
            let token_pool = pool
                .clone()
                .build::<Full<Bytes>>()
                .map_err(|e| unavailable_pool("token endpoint").with_source(e))?;
            let mut credentials = self.credentials.pool(token_pool);
            credentials = match identity.clone() {
                identity if credentials.has_secret() => credentials.identity_if_any(identity),
                Some(identity) if self.self_signed => {
                    credentials.self_signed_tls_client_auth(identity)
                }
                Some(identity) => credentials.tls_client_auth(identity),
                // `check` asked for one or the other.
                None => credentials,
            };
            if let Some(key) = dpop {
                credentials = credentials.dpop(key);
            }
            if let Some(key) = pop {
                credentials = credentials.pop(key);
            }
            let source = credentials.build()?;
            dpop_proofs = source.dpop_proofs().cloned();
            pop_proofs = source.pop_proofs().cloned();
            Some(self.cache.build(source))
        };

        let mut layer = match &cache {
            Some(cache) => TokenBindingLayer::with_cache(cache.clone(), self.scheme),
            None => {
                let identity = identity.clone().ok_or_else(|| {
                    ConfigError::missing(
                        BUILDER,
                        "identity_files",
                        "Scheme::MtlsOnly needs an identity",
                    )
                })?;
                TokenBindingLayer::mtls_only(identity)
            }
        };
        let word = self.word.unwrap_or(if entra {
            HeaderWord::MtlsPop
        } else {
            HeaderWord::Bearer
        });
        layer = layer.header_word(word);
        if self.allow_unbound_fallback {
            layer = layer.allow_unbound_fallback();
        }
        if self.allow_http_to_loopback {
            layer = layer.allow_http_to_loopback();
        }
        if self.pop_query {
            layer = layer.pop_sign_query();
        }
        if !self.pop_headers.is_empty() {
            layer = layer.pop_sign_headers(self.pop_headers.iter().cloned());
        }
        let retry = layer.retry_policy().attempts(self.retries);
        Ok(Parts {
            layer,
            retry,
            cache,
            pool,
            identity,
            dpop: dpop_proofs,
            pop: pop_proofs,
            max_body: self.max_body,
            request_timeout: self.request_timeout,
        })
    }

    /// The settings that cannot go together, whatever the files hold.
    fn check(&self) -> Result<(), ConfigError> {
        let conflict = |setting: &'static str, message: &str| {
            Err(ConfigError::conflict(BUILDER, setting, message.to_owned()))
        };
        let oauth_settings = self.credentials.is_configured() || self.self_signed;
        let has_secret = self.credentials.has_secret();
        let entra = self.credentials.is_entra();
        self.credentials.check()?;
        if self.token_source.is_some() && oauth_settings {
            return conflict(
                "token_source",
                "a token_source replaces the client-credentials settings (issuer, token endpoint, client id, secret, scope...): give one or the other",
            );
        }
        if has_secret && self.self_signed {
            return conflict(
                "self_signed_tls_client_auth",
                "choose one client authentication: a client secret or self_signed_tls_client_auth",
            );
        }
        if self.allow_http_to_loopback && self.scheme.binding() == crate::cnf::Binding::Certificate
        {
            return conflict(
                "allow_http_to_loopback",
                "a certificate-bound client always needs https, loopback too: its certificate \
                 goes in the TLS handshake; serve the test API over TLS (test_util::TestPki)",
            );
        }
        if self.dpop_key.is_some() && self.scheme != Scheme::Dpop {
            return conflict(
                "dpop_key",
                "dpop_key and dpop_key_file are for Scheme::Dpop: set scheme(Scheme::Dpop), or drop the key",
            );
        }
        if self.pop_key.is_some() && self.scheme != Scheme::Pop {
            return conflict(
                "pop_key",
                "pop_key and pop_key_file are for Scheme::Pop: set scheme(Scheme::Pop), or drop the key",
            );
        }
        if (self.pop_query || !self.pop_headers.is_empty()) && self.scheme != Scheme::Pop {
            return conflict(
                "pop_sign_query",
                "pop_sign_query and pop_sign_headers are for Scheme::Pop: set scheme(Scheme::Pop), or drop them",
            );
        }
        // DPoP and PoP bind tokens to a proof key the same way, and are
        // misconfigured the same ways.
        let proof_scheme = match self.scheme {
            Scheme::Dpop => Some(("Dpop", "DPoP", self.dpop_key.is_some(), "dpop")),
            Scheme::Pop => Some(("Pop", "PoP", self.pop_key.is_some(), "pop")),
            _ => None,
        };
        if let Some((variant, word, has_key, lower)) = proof_scheme {
            if entra || self.word.is_some() {
                return conflict(
                    "scheme",
                    &format!(
                        "Scheme::{variant} sends Authorization: {word}; the header word and Entra's mtls_pop tokens are for certificate-bound tokens"
                    ),
                );
            }
            if self.token_source.is_some() && has_key {
                return conflict(
                    "token_source",
                    &format!(
                        "a token_source brings tokens bound to its own {word} key (Token::{lower}_bound): drop {lower}_key, or the token_source"
                    ),
                );
            }
            if self.token_source.is_none()
                && oauth_settings
                && !has_secret
                && self.identity.is_none()
            {
                return Err(ConfigError::missing(
                    BUILDER,
                    "client_secret_basic",
                    format!(
                        "{word} client credentials need a client authentication: a client secret, or a certificate (identity_files(..) or identity(..)) for tls_client_auth"
                    ),
                ));
            }
        }
        if self.scheme == Scheme::MtlsOnly && (self.token_source.is_some() || oauth_settings) {
            return conflict(
                "scheme",
                "Scheme::MtlsOnly sends no token: drop the token settings, or choose Scheme::MtlsPop",
            );
        }
        if self.scheme == Scheme::Bearer {
            if self.word == Some(HeaderWord::MtlsPop) || entra {
                return conflict(
                    "scheme",
                    "the mtls_pop header word and Entra's mtls_pop tokens are for bound tokens: use Scheme::MtlsPop",
                );
            }
            if self.token_source.is_none() && oauth_settings {
                return conflict(
                    "scheme",
                    "Scheme::Bearer sends tokens without a client certificate, but client credentials over mTLS get tokens bound to one: use Scheme::MtlsPop, or token_source(...) for unbound tokens",
                );
            }
            if self.allow_unbound_fallback {
                return conflict(
                    "allow_unbound_fallback",
                    "allow_unbound_fallback is for bound schemes; Scheme::Bearer is unbound already",
                );
            }
        }
        let has_identity = self.identity.is_some();
        if self.scheme == Scheme::MtlsOnly && !has_identity {
            return Err(ConfigError::missing(
                BUILDER,
                "identity_files",
                "Scheme::MtlsOnly presents a client certificate: set identity_files(..) or identity(..)",
            ));
        }
        if self.scheme == Scheme::MtlsOnly {
            return Ok(());
        }
        if self.token_source.is_none() && !oauth_settings {
            return Err(ConfigError::missing(
                BUILDER,
                "issuer",
                "nowhere to get tokens from: set issuer(..) or token_endpoint(..) with client_id(..), or token_source(..)",
            ));
        }
        if self.token_source.is_none()
            && !has_identity
            && !matches!(self.scheme, Scheme::Dpop | Scheme::Pop)
        {
            return Err(ConfigError::missing(
                BUILDER,
                "identity_files",
                if has_secret {
                    "certificate-bound tokens need a client certificate next to the client secret: set identity_files(..) or identity(..)"
                } else {
                    "client credentials over mTLS need a client certificate: set identity_files(..) or identity(..)"
                },
            ));
        }
        Ok(())
    }
}
