//! [`ResourceServer`]: an issuer URL, an audience and TLS files in, a
//! running resource server that accepts certificate-bound tokens (and,
//! when asked, DPoP-bound and PoP-bound ones) out.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tower::Service;

mod builder;
mod error;
#[cfg(feature = "client")]
mod introspection;
#[cfg(test)]
mod tests;

pub use builder::ResourceServerBuilder;
#[allow(deprecated)]
pub use error::ResourceServerError;

use super::Serve;
use crate::validation::{CnfValidation, CnfValidationLayer, JwtOrIntrospection};

#[cfg(doc)]
use crate::validation::{JwksSource, JwtValidator};

use crate::BoxError;

/// A resource server for RFC 8705 certificate-bound access tokens, set up in
/// one expression: the TLS server of [`serve()`](super::serve()) (client
/// certificates on every request) in front of a [`CnfValidationLayer`] with a
/// [`JwtValidator`] whose keys come from the issuer's published JWKS (and,
/// with [`introspection`](ResourceServerBuilder::introspection), opaque
/// tokens checked by RFC 7662 introspection: a [`JwtOrIntrospection`]).
///
/// [`ResourceServer::builder`] takes the issuer (or several, each with its
/// own keys), the audience and the TLS certificate; how the issuer shapes
/// its tokens is a [`TokenProfile`](crate::validation::TokenProfile) (RFC
/// 9068 by default; Entra, Keycloak, Auth0, Okta as presets). Everything
/// else has a default that can be changed (see
/// [`ResourceServerBuilder`]). [`build`](ResourceServerBuilder::build) is
/// synchronous, reads the files and checks every setting, so a
/// misconfiguration is a [`ConfigError`](crate::ConfigError) naming the
/// setting at start-up, never a panic
/// or a failure at the first request. Nothing is fetched then: the issuer's
/// metadata and keys are fetched at the first request with a token (see
/// [`JwksSource::discover`]), and the last good keys are kept when the
/// issuer is unreachable later.
///
/// [`serve`](Self::serve) wraps any service that [`serve()`](super::serve())
/// accepts (an axum `Router`, a `tower::service_fn`) with the validation
/// layer and returns the usual [`Serve`], so graceful shutdown and the
/// handshake timeout work as there. To stack the layers yourself, take
/// [`layer`](Self::layer) and [`tls_config`](Self::tls_config).
///
#[cfg_attr(feature = "axum", doc = "```no_run")]
#[cfg_attr(not(feature = "axum"), doc = "```ignore")]
/// use axum::{Router, routing::get};
/// use tower_token_binding::server::ResourceServer;
/// use tower_token_binding::validation::VerifiedToken;
///
/// async fn hello(token: VerifiedToken) -> String {
///     format!("hello {}", token.subject().unwrap_or("?"))
/// }
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Router::new().route("/hello", get(hello));
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// ResourceServer::builder()
///     .issuer("https://login.example.com")   // JWKS found through its metadata
///     .audience("https://api.example.com")
///     .tls_pem_files("server.pem", "server.key")
///     .build()?
///     .serve(listener, app)
///     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
///     .await?;
/// # Ok(())
/// # }
/// ```
///
/// The same against the test issuer of [`test_util`](crate::test_util),
/// with a client that gets a token bound to its certificate and calls over
/// mutual TLS with it (the client half of this crate):
///
#[cfg_attr(all(feature = "axum", feature = "test-util"), doc = "```")]
#[cfg_attr(not(all(feature = "axum", feature = "test-util")), doc = "```ignore")]
/// use axum::{Router, routing::get};
/// use http::StatusCode;
/// use tower_token_binding::BoundClient;
/// use tower_token_binding::server::ResourceServer;
/// use tower_token_binding::test_util::{TestIssuer, TestPki};
/// use tower_token_binding::validation::VerifiedToken;
///
/// async fn hello(token: VerifiedToken) -> String {
///     format!("hello {}", token.subject().unwrap_or("?"))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let pki = TestPki::new()?;
/// let issuer = TestIssuer::start(&pki).await?;
/// let (chain, key) = pki.server_identity()?; // in memory: no files
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let url = format!("https://localhost:{}/hello", listener.local_addr()?.port());
/// let server = ResourceServer::builder()
///     .issuer(issuer.issuer())
///     .audience(issuer.audience())
///     .tls_identity(chain, key)
///     .root_store(pki.root_store()) // the test CA, not the platform's roots
///     .build()?
///     .serve(listener, Router::new().route("/hello", get(hello)));
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let running = tokio::spawn(
///     server.with_graceful_shutdown(async move { let _ = stopped.await; }).into_future(),
/// );
///
/// // The client: tokens bound to its certificate, sent over connections that present it.
/// let client = BoundClient::builder()
///     .issuer(issuer.issuer())
///     .client_id("svc")
///     .self_signed_tls_client_auth()
///     .identity(TestPki::self_signed_client("svc.example")?.identity()?)
///     .root_store(pki.root_store())
///     .build()?;
///
/// let response = client.get(&url).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// assert_eq!(response.body(), "hello svc");
/// assert_eq!(issuer.jwks_fetches(), 1);
///
/// stop.send(()).unwrap();
/// running.await??;
/// # Ok(())
/// # }
/// # use std::future::IntoFuture as _;
/// ```
#[derive(Clone)]
pub struct ResourceServer {
    issuers: Vec<String>,
    layer: CnfValidationLayer<JwtOrIntrospection>,
    tls: Arc<ServerConfig>,
    handshake_timeout: Option<Duration>,
}

impl fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The TLS config holds the server's private key: left out.
        f.debug_struct("ResourceServer")
            .field("issuers", &self.issuers)
            .field("layer", &self.layer)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl ResourceServer {
    /// A builder. [`issuer`](ResourceServerBuilder::issuer),
    /// [`audience`](ResourceServerBuilder::audience) and the TLS certificate
    /// ([`tls_pem_files`](ResourceServerBuilder::tls_pem_files) or
    /// [`tls_config`](ResourceServerBuilder::tls_config)) are required.
    pub fn builder() -> ResourceServerBuilder {
        ResourceServerBuilder::default()
    }

    /// The configured validation layer, to stack it yourself (behind a
    /// TLS-terminating proxy with
    /// [`ForwardedClientCertLayer`](super::forwarded::ForwardedClientCertLayer),
    /// on some routes only, ...). Cheap: the validator and its keys are
    /// shared with the server's.
    pub fn layer(&self) -> CnfValidationLayer<JwtOrIntrospection> {
        self.layer.clone()
    }

    /// The rustls server config [`serve`](Self::serve) uses.
    pub fn tls_config(&self) -> Arc<ServerConfig> {
        self.tls.clone()
    }

    /// Serves `service` on `listener` over TLS, behind the validation layer:
    /// [`serve()`](super::serve()) with [`layer`](Self::layer) around
    /// `service`, the TLS config and the handshake timeout of the builder.
    ///
    /// Await the returned [`Serve`] to run it; configure it first as usual
    /// ([`with_graceful_shutdown`](Serve::with_graceful_shutdown),
    /// [`shutdown_timeout`](Serve::shutdown_timeout)). Requests that reach
    /// `service` carry the [`VerifiedToken`](crate::validation::VerifiedToken)
    /// and the [`PeerCertificate`](super::PeerCertificate) in their
    /// extensions.
    pub fn serve<S, B>(
        self,
        listener: TcpListener,
        service: S,
    ) -> Serve<CnfValidation<S, JwtOrIntrospection>>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body + Default + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        use tower::Layer as _;
        let serve = super::serve(listener, self.tls, self.layer.layer(service));
        match self.handshake_timeout {
            Some(timeout) => serve.handshake_timeout(timeout),
            None => serve,
        }
    }
}
