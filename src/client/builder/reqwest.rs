//! The settings of a [`BoundClient`] for reqwest: the middleware, its pool
//! of certificate clients, and a `ClientWithMiddleware` on a reqwest client
//! that trusts the same roots.

use super::assemble::{Parts, unavailable_pool};
use super::*;
use crate::cnf::Binding;
use crate::pool::tls_config;
use crate::reqwest::{MtlsReqwestPool, TokenBindingMiddleware, client_settings};

impl BoundClientBuilder {
    /// Passes each reqwest client this builder makes through `configure`
    /// before it is built, after its own settings: the client under the
    /// middleware of [`build_reqwest`](Self::build_reqwest), and each
    /// certificate's client in the pool that sends certificate-bound
    /// requests (also with [`build_reqwest_middleware`](Self::build_reqwest_middleware),
    /// whose DPoP, PoP and `Bearer` requests go through your own client).
    /// For a user agent, default headers, a proxy, reqwest's other
    /// timeouts. The TLS settings are this builder's: a `configure` that
    /// changes them breaks the binding. So is the redirect policy (none
    /// followed): one that follows redirects carries a DPoP proof, and a
    /// client certificate, on to another origin.
    ///
    /// ```
    /// use tower_token_binding::BoundClient;
    ///
    /// let client = BoundClient::builder()
    ///     .token_endpoint("https://login.example.com/oauth2/token")
    ///     .client_id("my-service")
    ///     .identity_files("tests/data/client.pem", "tests/data/client-pkcs8.key")
    ///     .configure_reqwest(|client| client.user_agent("orders-sync/1.0"))
    ///     .build_reqwest();
    /// # let _ = client;
    /// ```
    pub fn configure_reqwest(
        mut self,
        configure: impl Fn(::reqwest::ClientBuilder) -> ::reqwest::ClientBuilder + Send + Sync + 'static,
    ) -> Self {
        self.reqwest_configure = Some(std::sync::Arc::new(configure));
        self
    }

    /// The settings of a [`BoundClient`], for reqwest: a
    /// `reqwest_middleware::ClientWithMiddleware` whose every request
    /// carries a bound token, on a `reqwest::Client` that trusts the same
    /// roots ([`root_store`](Self::root_store), [`root_ca_file`](Self::root_ca_file),
    /// or the platform's). See [`build_reqwest_middleware`](Self::build_reqwest_middleware)
    /// for what the middleware does, and [`crate::reqwest`] for an example.
    ///
    /// The same settings, defaults and [`ConfigError`]s as [`build`](Self::build);
    /// the [`pool`](Self::pool) settings (connect timeout, idle connections,
    /// HTTP versions) are each reqwest client's, and
    /// [`request_timeout`](Self::request_timeout) is reqwest's `timeout`
    /// (an attempt, from sending to the body's last byte; the token fetch
    /// has its own [`token_timeout`](Self::token_timeout)).
    ///
    /// The client follows no redirect: a `3xx` is the answer, as under
    /// [`build`](Self::build). reqwest would keep the `DPoP` proof, made
    /// for the first URL, on a redirect to another origin, even one to
    /// plain `http`. Send the request to the new location again, if it is
    /// to be followed: the middleware authorizes it afresh.
    pub fn build_reqwest(self) -> Result<reqwest_middleware::ClientWithMiddleware, ConfigError> {
        let configure = self.reqwest_configure.clone();
        let (middleware, pool) = self.with_managed_identity()?.reqwest_parts()?;
        let roots = pool
            .roots_or_platform()
            .map_err(|e| unavailable_pool("API").with_source(e))?;
        let tls =
            tls_config(&pool, &roots, None).map_err(|e| unavailable_pool("API").with_source(e))?;
        let mut client = client_settings(&pool, tls);
        if let Some(configure) = configure {
            client = configure(client);
        }
        let client = client
            .build()
            .map_err(|e| unavailable_pool("API").with_source(e))?;
        Ok(reqwest_middleware::ClientBuilder::new(client)
            .with(middleware)
            .build())
    }

    /// The settings of a [`BoundClient`], as a [`TokenBindingMiddleware`]
    /// for a `reqwest-middleware` chain of your own: the same token source,
    /// cache, scheme, proofs and retries as [`build`](Self::build) stacks,
    /// with the same [`ConfigError`]s. For certificate-bound tokens, the
    /// middleware holds an [`MtlsReqwestPool`] made from the
    /// [`pool`](Self::pool) settings, and sends those requests itself,
    /// presenting the token's certificate; put it last in the chain.
    ///
    /// DPoP, PoP and `Bearer` requests go on to your own `reqwest::Client`,
    /// which must trust the API's certificate itself:
    /// [`root_store`](Self::root_store) and [`root_ca_file`](Self::root_ca_file)
    /// are for the clients this builder makes (the token endpoint's, the
    /// pool's). [`configure_reqwest`](Self::configure_reqwest) sets what
    /// else the pool's clients need of yours (a user agent, a proxy).
    ///
    /// Build your `reqwest::Client` with `redirect(Policy::none())`, as
    /// below: a client that follows redirects sends the `DPoP` proof on to
    /// wherever one points, another host or plain `http` (reqwest drops
    /// only `Authorization` there), and no middleware can stop it.
    ///
    /// ```
    /// use tower_token_binding::BoundClient;
    /// use tower_token_binding::binding::Scheme;
    ///
    /// let middleware = BoundClient::builder()
    ///     .token_endpoint("https://login.example.com/oauth2/token")
    ///     .client_id("my-service")
    ///     .client_secret_basic("s3cret")
    ///     .scheme(Scheme::Dpop)
    ///     .build_reqwest_middleware()
    ///     .unwrap();
    /// let reqwest = reqwest::Client::builder()
    ///     .redirect(reqwest::redirect::Policy::none())
    ///     .build()
    ///     .unwrap();
    /// let client = reqwest_middleware::ClientBuilder::new(reqwest)
    ///     .with(middleware)
    ///     .build();
    /// # let _ = client;
    /// ```
    pub fn build_reqwest_middleware(self) -> Result<TokenBindingMiddleware, ConfigError> {
        self.with_managed_identity()?
            .reqwest_parts()
            .map(|(middleware, _)| middleware)
    }

    /// The middleware, and the pool settings its clients are made with.
    fn reqwest_parts(self) -> Result<(TokenBindingMiddleware, PoolBuilder), ConfigError> {
        let configure = self.reqwest_configure.clone();
        let Parts {
            layer,
            retry,
            mut pool,
            request_timeout,
            ..
        } = self.assemble()?;
        if pool.response_timeout.is_none() {
            pool = pool.response_timeout(request_timeout);
        }
        let certificate = layer.settings.scheme.binding() == Binding::Certificate;
        let mut middleware = TokenBindingMiddleware::new(layer).retry_policy(retry);
        if certificate {
            let mut mtls = MtlsReqwestPool::new(pool.clone())
                .map_err(|e| unavailable_pool("mTLS").with_source(e))?;
            if let Some(configure) = configure {
                mtls = mtls.configured(configure);
            }
            middleware = middleware.mtls_pool(mtls);
        }
        Ok((middleware, pool))
    }
}
