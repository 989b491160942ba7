//! [`ResourceServerBuilder`]: the settings of a [`ResourceServer`], their
//! defaults, and [`build`](ResourceServerBuilder::build), which reads the
//! TLS files and checks every setting up front.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::proof::Algorithm;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::ResourceServer;
#[cfg(feature = "client")]
use super::introspection;
use crate::ConfigError;
use crate::proof::dpop::DpopVerifier;
use crate::proof::pop::PopVerifier;
use crate::replay::{BoxReplayStore, ReplayStore};
#[cfg(doc)]
use crate::server::Serve;
use crate::server::{ClientCertMode, ServerTlsConfig, ServerTlsError, ServerTlsErrorKind};
use crate::tls;
#[cfg(not(feature = "client"))]
use crate::validation::JwtOrIntrospection;
use crate::validation::{
    CnfValidationLayer, JwksSource, JwtValidator, JwtValidatorBuilder, TENANT_PLACEHOLDER,
    TokenProfile, TrustedIssuer,
};

/// The name [`ConfigError`]s of this builder give.
pub(super) const BUILDER: &str = "ResourceServerBuilder";

/// Builds a [`ResourceServer`]; [`build`](Self::build) refuses what cannot
/// work.
///
/// | setting | default |
/// | --- | --- |
/// | [`issuer`](Self::issuer) | required; more than one may be trusted |
/// | [`audience`](Self::audience) | required |
/// | [`token_profile`](Self::token_profile) | [`TokenProfile::rfc9068`] |
/// | [`allowed_tenants`](Self::allowed_tenants) | none; required for a multi-tenant Entra issuer |
/// | [`tls_pem_files`](Self::tls_pem_files), [`tls_identity`](Self::tls_identity) or [`tls_config`](Self::tls_config) | required |
/// | [`client_cert_mode`](Self::client_cert_mode), [`client_ca_file`](Self::client_ca_file) | [`ClientCertMode::any_certificate`], optional |
/// | [`required_scope`](Self::required_scope) | none |
/// | [`allow_unbound`](Self::allow_unbound) | bound tokens only |
/// | [`algorithms`](Self::algorithms) | all of [`Algorithm`] |
/// | [`leeway`](Self::leeway) | 30 s |
/// | [`allow_missing_claims`](Self::allow_missing_claims) | every RFC 9068 claim required |
/// | [`root_store`](Self::root_store), [`root_ca_file`](Self::root_ca_file) | the platform's roots |
/// | [`jwks_refresh_interval`](Self::jwks_refresh_interval) | 5 min |
/// | [`jwks_unknown_kid_cooldown`](Self::jwks_unknown_kid_cooldown) | 10 s |
/// | [`issuer_timeout`](Self::issuer_timeout) | 10 s |
/// | [`terse`](Self::terse) | `error_description` in challenges |
/// | [`accept_dpop`](Self::accept_dpop) | certificate-bound tokens only |
/// | [`accept_pop`](Self::accept_pop) | certificate-bound tokens only |
/// | [`public_origin`](Self::public_origin) | `https` and the request's authority (DPoP `htu`, PoP `u`) |
/// | [`replay_store`](Self::replay_store) | in memory (DPoP proofs, signed HTTP requests) |
/// | [`handshake_timeout`](Self::handshake_timeout) | 10 s |
/// | [`introspection`](Self::introspection), [`introspection_only`](Self::introspection_only) | JWTs only |
///
/// A setter called twice keeps the last value, except
/// [`issuer`](Self::issuer), [`audience`](Self::audience),
/// [`allowed_tenants`](Self::allowed_tenants) and
/// [`required_scope`](Self::required_scope), which add more.
///
/// The JWT settings ([`algorithms`](Self::algorithms),
/// [`leeway`](Self::leeway), [`allow_missing_claims`](Self::allow_missing_claims))
/// go to the [`JwtValidatorBuilder`] it holds, which checks them at
/// [`build`](Self::build): a refusal is a [`ConfigError`] from it, naming
/// the setter both builders have.
#[derive(Clone)]
pub struct ResourceServerBuilder {
    issuers: Vec<String>,
    audiences: Vec<String>,
    profile: Option<TokenProfile>,
    tenants: Vec<String>,
    tls: Option<Tls>,
    client_certs: Option<ClientCerts>,
    scopes: Vec<String>,
    allow_unbound: bool,
    /// The JWT validator's own settings; the issuers, audiences and token
    /// profile, which introspection shares, are added at build.
    jwt: JwtValidatorBuilder,
    issuer_roots: Option<IssuerRoots>,
    refresh_interval: Option<Duration>,
    cooldown: Option<Duration>,
    issuer_timeout: Option<Duration>,
    terse: bool,
    handshake_timeout: Option<Duration>,
    dpop: Option<DpopVerifier>,
    pop: Option<PopVerifier>,
    public_origin: Option<String>,
    replay_store: Option<BoxReplayStore>,
    #[cfg(feature = "client")]
    pub(super) introspection: Option<introspection::Introspection>,
}

impl Default for ResourceServerBuilder {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            audiences: Vec::new(),
            profile: None,
            tenants: Vec::new(),
            tls: None,
            client_certs: None,
            scopes: Vec::new(),
            allow_unbound: false,
            jwt: JwtValidator::builder(),
            issuer_roots: None,
            refresh_interval: None,
            cooldown: None,
            issuer_timeout: None,
            terse: false,
            handshake_timeout: None,
            dpop: None,
            pop: None,
            public_origin: None,
            replay_store: None,
            #[cfg(feature = "client")]
            introspection: None,
        }
    }
}

#[derive(Clone)]
enum Tls {
    PemFiles {
        cert: PathBuf,
        key: PathBuf,
    },
    /// In memory; the key behind an `Arc`, as `PrivateKeyDer` is not `Clone`.
    Identity {
        chain: Vec<CertificateDer<'static>>,
        key: Arc<PrivateKeyDer<'static>>,
    },
    Config(Arc<ServerConfig>),
}

#[derive(Clone, Debug)]
enum ClientCerts {
    Mode(ClientCertMode),
    CaFile(PathBuf),
}

#[derive(Clone)]
enum IssuerRoots {
    Store(Arc<RootCertStore>),
    CaFile(PathBuf),
}

impl fmt::Debug for ResourceServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ResourceServerBuilder");
        d.field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field(
                "token_profile",
                &self.profile.as_ref().map(TokenProfile::name),
            )
            .field("allowed_tenants", &self.tenants)
            .field(
                "tls",
                &self.tls.as_ref().map(|tls| match tls {
                    Tls::PemFiles { cert, key } => {
                        format!("{} + {}", cert.display(), key.display())
                    }
                    Tls::Identity { chain, .. } => match chain.first() {
                        Some(leaf) => format!(
                            "a certificate chain in memory (leaf {})",
                            crate::Thumbprint::from_certificate(leaf)
                        ),
                        None => "an empty certificate chain".to_owned(),
                    },
                    Tls::Config(_) => "a rustls ServerConfig".to_owned(),
                }),
            )
            .field("client_certs", &self.client_certs)
            .field("required_scopes", &self.scopes)
            .field("allow_unbound", &self.allow_unbound)
            .field("jwt", &self.jwt)
            .field("dpop", &self.dpop)
            .field("pop", &self.pop)
            .field("public_origin", &self.public_origin);
        #[cfg(feature = "client")]
        d.field("introspection", &self.introspection);
        d.finish_non_exhaustive()
    }
}

impl ResourceServerBuilder {
    /// An issuer (authorization server) whose tokens are accepted: the
    /// exact `iss` they carry, and where its signing keys are found
    /// ([`JwksSource::discover`]: RFC 8414 metadata, else OpenID Connect
    /// Discovery). An `https://` URL. Required; may be called more than once
    /// to trust several issuers, each with its own metadata and keys (Entra
    /// v1 and v2 of one tenant, two Keycloak realms, a migration). A token
    /// is checked only against the keys of the issuer its `iss` names, and
    /// an `iss` that names none is refused before any key is fetched.
    ///
    /// Under a profile with a tenant claim ([`TokenProfile::entra`]), a
    /// Microsoft Entra multi-tenant endpoint
    /// (`https://login.microsoftonline.com/organizations/v2.0`, or
    /// `/common/v2.0`) is a multi-tenant issuer: its metadata names
    /// `https://login.microsoftonline.com/{tenantid}/v2.0`, which is filled
    /// from each token's `tid`, and the tenant must be one of the
    /// [`allowed_tenants`](Self::allowed_tenants) (required then). With
    /// [`JwtValidator`] itself, the same is a
    /// [`TrustedIssuer::tenants`](crate::validation::TrustedIssuer::tenants).
    /// Under a profile without a tenant claim such an endpoint is one exact
    /// issuer, which no token names, and a `warn` says so at build.
    ///
    /// ```
    /// use tower_token_binding::server::ResourceServer;
    /// use tower_token_binding::validation::TokenProfile;
    ///
    /// let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    /// let builder = ResourceServer::builder()
    ///     .token_profile(TokenProfile::entra())
    ///     .issuer(format!("https://login.microsoftonline.com/{tenant}/v2.0"))
    ///     .issuer(format!("https://sts.windows.net/{tenant}/"))
    ///     .audience("api://orders");
    /// # let _ = builder;
    /// ```
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// How the issuers shape their access tokens; see [`TokenProfile`] and
    /// its presets (`rfc9068`, the default; `entra`, `keycloak`, `auth0`,
    /// `okta`). The profile also decides which claims
    /// [`required_scope`](Self::required_scope) reads (Entra's `scp` and
    /// `roles`, Okta's `scp` array, ...). It never weakens the signature,
    /// `iss`, `aud`, expiry or binding checks.
    ///
    /// ```
    /// use tower_token_binding::server::ResourceServer;
    /// use tower_token_binding::validation::TokenProfile;
    ///
    /// let builder = ResourceServer::builder()
    ///     .issuer("https://kc.example/realms/orders")
    ///     .audience("orders-api")
    ///     .token_profile(TokenProfile::keycloak())
    ///     .required_scope("orders.read");
    /// # let _ = builder;
    /// ```
    pub fn token_profile(mut self, profile: TokenProfile) -> Self {
        self.profile = Some(profile);
        self
    }

    /// The tenants whose tokens a multi-tenant [`issuer`](Self::issuer)
    /// (Entra `/organizations/v2.0` or `/common/v2.0`) may carry; adds to
    /// earlier calls. Required with such an issuer, an error without one.
    ///
    /// ```
    /// use tower_token_binding::server::ResourceServer;
    /// use tower_token_binding::validation::TokenProfile;
    ///
    /// let builder = ResourceServer::builder()
    ///     .token_profile(TokenProfile::entra())
    ///     .issuer("https://login.microsoftonline.com/organizations/v2.0")
    ///     .allowed_tenants(["72f988bf-86f1-41af-91ab-2d7cd011db47"])
    ///     .audience("api://orders");
    /// # let _ = builder;
    /// ```
    pub fn allowed_tenants<I>(mut self, tenants: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.tenants.extend(tenants.into_iter().map(Into::into));
        self
    }

    /// An `aud` accepted: this resource server's identifier. Required; may
    /// be called more than once to accept several.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The server's certificate chain (leaf first) and private key from PEM
    /// files (they may be the same file), read by [`build`](Self::build).
    /// Replaces a [`tls_identity`](Self::tls_identity) or a
    /// [`tls_config`](Self::tls_config).
    pub fn tls_pem_files(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.tls = Some(Tls::PemFiles {
            cert: cert.as_ref().to_owned(),
            key: key.as_ref().to_owned(),
        });
        self
    }

    /// The server's certificate `chain` (leaf first) and private `key`, in
    /// memory: [`tls_pem_files`](Self::tls_pem_files) without files, for
    /// certificates from a secret store or made by a test (see
    /// [`TestPki::server_identity`](crate::test_util::TestPki::server_identity)).
    /// Checked by [`build`](Self::build) (an empty chain, or a key that is
    /// not the leaf's, is a [`ConfigErrorKind::Invalid`](crate::ConfigErrorKind::Invalid)
    /// error naming `tls_identity`). Client
    /// certificates are asked for as with the files. Replaces
    /// [`tls_pem_files`](Self::tls_pem_files) or
    /// [`tls_config`](Self::tls_config). The key is never shown by `Debug`.
    ///
    #[cfg_attr(feature = "test-util", doc = "```")]
    #[cfg_attr(not(feature = "test-util"), doc = "```ignore")]
    /// use tower_token_binding::server::ResourceServer;
    /// use tower_token_binding::test_util::TestPki;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let pki = TestPki::new()?;
    /// let (chain, key) = pki.server_identity()?;
    /// let server = ResourceServer::builder()
    ///     .issuer("https://login.example")
    ///     .audience("https://api.example")
    ///     .tls_identity(chain, key)
    ///     .root_store(pki.root_store())
    ///     .build()?;
    /// # let _ = server;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tls_identity(
        mut self,
        chain: impl IntoIterator<Item = CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.tls = Some(Tls::Identity {
            chain: chain.into_iter().collect(),
            key: Arc::new(key),
        });
        self
    }

    /// A ready rustls config, instead of [`tls_pem_files`](Self::tls_pem_files)
    /// or [`tls_identity`](Self::tls_identity) (which it replaces). It decides how client certificates are checked,
    /// so it cannot be combined with
    /// [`client_cert_mode`](Self::client_cert_mode) or
    /// [`client_ca_file`](Self::client_ca_file); build it with
    /// [`ServerTlsConfig`] so that clients are asked for certificates.
    pub fn tls_config(mut self, config: impl Into<Arc<ServerConfig>>) -> Self {
        self.tls = Some(Tls::Config(config.into()));
        self
    }

    /// How client certificates are asked for and checked. Default
    /// [`ClientCertMode::any_certificate`], optional: RFC 8705 clients may
    /// use self-signed certificates, and the token's binding to the
    /// certificate is the check that matters; a client without one still
    /// connects and gets a proper `401` for a bound token.
    pub fn client_cert_mode(mut self, mode: ClientCertMode) -> Self {
        self.client_certs = Some(ClientCerts::Mode(mode));
        self
    }

    /// Accepts only client certificates issued by the CAs in this PEM file
    /// (RFC 8705 `tls_client_auth`), still optional:
    /// [`ClientCertMode::trusted_roots`] with the file's certificates, read
    /// by [`build`](Self::build).
    pub fn client_ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.client_certs = Some(ClientCerts::CaFile(path.as_ref().to_owned()));
        self
    }

    /// Requires every token to grant `scope` (`403 insufficient_scope`
    /// otherwise). May be called more than once. A malformed scope is an
    /// error from [`build`](Self::build).
    pub fn required_scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Also accepts tokens without `cnf` (plain bearer tokens); see
    /// [`CnfValidationLayer::allow_unbound`]. Bound tokens are still checked
    /// against the client certificate.
    pub fn allow_unbound(mut self) -> Self {
        self.allow_unbound = true;
        self
    }

    /// The signature algorithms allowed: [`JwtValidatorBuilder::algorithms`]
    /// of the validator this builder holds. Default: all of [`Algorithm`];
    /// none is an error from [`build`](Self::build).
    pub fn algorithms(self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.jwt(|jwt| jwt.algorithms(algorithms))
    }

    /// Clock skew allowed for `exp` and `nbf`. Default 30 s. See
    /// [`JwtValidatorBuilder::leeway`].
    pub fn leeway(self, leeway: Duration) -> Self {
        self.jwt(|jwt| jwt.leeway(leeway))
    }

    /// Accepts tokens without some of the claims RFC 9068 requires (`sub`,
    /// `client_id`, `iat`, `jti`); see
    /// [`JwtValidatorBuilder::allow_missing_claims`](crate::validation::JwtValidatorBuilder::allow_missing_claims).
    /// Adds to earlier calls; any other name is an error from
    /// [`build`](Self::build).
    pub fn allow_missing_claims<I>(self, claims: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.jwt(|jwt| jwt.allow_missing_claims(claims))
    }

    /// One setting of the JWT validator's builder held.
    fn jwt(mut self, set: impl FnOnce(JwtValidatorBuilder) -> JwtValidatorBuilder) -> Self {
        self.jwt = set(self.jwt);
        self
    }

    /// Trusts `roots` for the issuer's HTTPS certificate (metadata, JWKS and,
    /// with [`introspection`](Self::introspection), the introspection
    /// endpoint), instead of the platform's root certificates. The same name
    /// as [`BoundClientBuilder::root_store`](crate::client::BoundClientBuilder::root_store).
    /// Replaces a [`root_ca_file`](Self::root_ca_file).
    pub fn root_store(mut self, roots: impl Into<Arc<RootCertStore>>) -> Self {
        self.issuer_roots = Some(IssuerRoots::Store(roots.into()));
        self
    }

    /// Trusts the CA certificates in this PEM file for the issuer's HTTPS
    /// certificate, as [`root_store`](Self::root_store) does, instead of
    /// the platform's roots; read by [`build`](Self::build). The same name
    /// as [`BoundClientBuilder::root_ca_file`](crate::client::BoundClientBuilder::root_ca_file).
    pub fn root_ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.issuer_roots = Some(IssuerRoots::CaFile(path.as_ref().to_owned()));
        self
    }

    /// The old name of [`root_store`](Self::root_store).
    #[deprecated(note = "renamed root_store, as on every builder")]
    pub fn issuer_root_store(self, roots: impl Into<Arc<RootCertStore>>) -> Self {
        self.root_store(roots)
    }

    /// The old name of [`root_ca_file`](Self::root_ca_file).
    #[deprecated(note = "renamed root_ca_file, as on every builder")]
    pub fn issuer_root_ca_file(self, path: impl AsRef<Path>) -> Self {
        self.root_ca_file(path)
    }

    /// How often the signing keys are fetched again in the background.
    /// Default 5 minutes. See [`RemoteJwks`](crate::validation::RemoteJwks).
    pub fn jwks_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = Some(interval);
        self
    }

    /// The least time between two key fetches caused by unknown `kid`s or
    /// by failures. Default 10 s. See
    /// [`RemoteJwks::unknown_kid_cooldown`](crate::validation::RemoteJwks::unknown_kid_cooldown).
    pub fn jwks_unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = Some(cooldown);
        self
    }

    /// How long each request to the issuer (metadata, JWKS) may take.
    /// Default 10 s. See [`RemoteJwks::issuer_timeout`](crate::validation::RemoteJwks::issuer_timeout).
    pub fn issuer_timeout(mut self, timeout: Duration) -> Self {
        self.issuer_timeout = Some(timeout);
        self
    }

    /// Leaves `error_description` out of the `WWW-Authenticate` challenges,
    /// and the one-line body naming the class of fault out of a `503`; see [`CnfValidationLayer::terse`].
    pub fn terse(mut self) -> Self {
        self.terse = true;
        self
    }

    /// How long a client may take over its TLS handshake; see
    /// [`Serve::handshake_timeout`]. Default 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = Some(timeout);
        self
    }

    /// Also accepts DPoP-bound tokens (RFC 9449) next to certificate-bound
    /// ones, their proofs checked by `verifier`; see
    /// [`CnfValidationLayer::accept_dpop`]. For server nonces, build the
    /// verifier with them:
    ///
    /// ```
    /// use tower_token_binding::proof::dpop::{DpopVerifier, StatelessNonces};
    /// use tower_token_binding::server::ResourceServer;
    ///
    /// let builder = ResourceServer::builder()
    ///     .accept_dpop(
    ///         DpopVerifier::builder()
    ///             .nonces(StatelessNonces::random().unwrap())
    ///             .build(),
    ///     )
    ///     .public_origin("https://api.example.com");
    /// # let _ = builder;
    /// ```
    pub fn accept_dpop(mut self, verifier: DpopVerifier) -> Self {
        self.dpop = Some(verifier);
        self
    }

    /// Also accepts PoP-bound tokens (`cnf.kid`) in Microsoft's signed HTTP
    /// requests (`Authorization: PoP <SHR>`), checked by `verifier`; see
    /// [`CnfValidationLayer::accept_pop`]. The server does not buffer
    /// request bodies, so an SHR's body hash `b` is refused here, and a
    /// verifier that requires it is an error from [`build`](Self::build):
    /// for that, stack [`layer`](ResourceServer::layer) behind a
    /// [`BufferBodyLayer`](crate::validation::BufferBodyLayer) yourself.
    ///
    /// ```
    /// use tower_token_binding::proof::pop::PopVerifier;
    /// use tower_token_binding::server::ResourceServer;
    ///
    /// let builder = ResourceServer::builder()
    ///     .accept_pop(PopVerifier::new())
    ///     .public_origin("https://api.example.com");
    /// # let _ = builder;
    /// ```
    pub fn accept_pop(mut self, verifier: PopVerifier) -> Self {
        self.pop = Some(verifier);
        self
    }

    /// The origin clients address this server by, for the `htu` of DPoP
    /// proofs and the `u` of signed HTTP requests (behind a proxy or load
    /// balancer); see [`CnfValidationLayer::public_origin`]. Needs
    /// [`accept_dpop`](Self::accept_dpop) or
    /// [`accept_pop`](Self::accept_pop); a malformed origin is an error
    /// from [`build`](Self::build).
    pub fn public_origin(mut self, origin: impl Into<String>) -> Self {
        self.public_origin = Some(origin.into());
        self
    }

    /// Where DPoP proofs and signed HTTP requests are remembered (a store
    /// shared by every replica, say); see
    /// [`CnfValidationLayer::replay_store`]. Default: in memory. Needs
    /// [`accept_dpop`](Self::accept_dpop) or
    /// [`accept_pop`](Self::accept_pop).
    pub fn replay_store(mut self, store: impl ReplayStore) -> Self {
        self.replay_store = Some(BoxReplayStore::new(store));
        self
    }

    /// Checks the settings, reads the files and builds the server. Needs no
    /// Tokio runtime and makes no request. A refusal is a [`ConfigError`]
    /// naming the setting.
    ///
    /// ```
    /// use tower_token_binding::ConfigErrorKind;
    /// use tower_token_binding::server::ResourceServer;
    ///
    /// let error = ResourceServer::builder()
    ///     .issuer("https://login.example.com")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(error.kind(), ConfigErrorKind::Missing);
    /// assert_eq!(error.setting(), Some("audience"));
    /// ```
    pub fn build(self) -> Result<ResourceServer, ConfigError> {
        if self.issuers.is_empty() {
            return Err(ConfigError::missing(
                BUILDER,
                "issuer",
                "an issuer is required",
            ));
        }
        let profile = self.profile.unwrap_or_default();
        profile
            .check()
            .map_err(|e| ConfigError::invalid(BUILDER, "token_profile", e.to_string()))?;
        for (i, issuer) in self.issuers.iter().enumerate() {
            if self.issuers[..i].contains(issuer) {
                return Err(ConfigError::invalid(
                    BUILDER,
                    "issuer",
                    "the same issuer is given twice",
                ));
            }
        }
        let mut sources = Vec::with_capacity(self.issuers.len());
        for issuer in &self.issuers {
            if issuer.contains(TENANT_PLACEHOLDER) {
                return Err(ConfigError::invalid(
                    BUILDER,
                    "issuer",
                    "an issuer holds {tenantid}: give the multi-tenant endpoint the metadata \
                     comes from instead (https://login.microsoftonline.com/organizations/v2.0)",
                ));
            }
            let jwks = JwksSource::discover(issuer).map_err(|e| e.renamed(BUILDER, "issuer"))?;
            let template = multi_tenant_template(issuer);
            if template.is_some() && profile.tenant_claim_name().is_none() {
                tracing::warn!(
                    %issuer,
                    profile = %profile.name(),
                    "this issuer looks like a Microsoft Entra multi-tenant endpoint, whose \
                     tokens each name their own tenant's issuer; under this token profile it is \
                     trusted as one exact issuer, which those tokens never name: use \
                     token_profile(TokenProfile::entra()) and allowed_tenants"
                );
            }
            let template = template.filter(|_| profile.tenant_claim_name().is_some());
            sources.push((issuer.clone(), template, jwks));
        }
        let multi_tenant = sources.iter().any(|(_, template, _)| template.is_some());
        if multi_tenant && self.tenants.is_empty() {
            return Err(ConfigError::missing(
                BUILDER,
                "allowed_tenants",
                "a multi-tenant issuer needs an allow-list of tenants",
            ));
        }
        if multi_tenant {
            crate::validation::issuer::check_tenants(&self.tenants)
                .map_err(|e| ConfigError::invalid(BUILDER, "allowed_tenants", e.to_string()))?;
            let templates: Vec<&String> =
                sources.iter().filter_map(|(_, t, _)| t.as_ref()).collect();
            if templates
                .iter()
                .enumerate()
                .any(|(i, t)| templates[..i].contains(t))
            {
                return Err(ConfigError::invalid(
                    BUILDER,
                    "issuer",
                    "two issuers are the same multi-tenant issuer (an Entra /organizations \
                     and /common endpoint name the same template): give one",
                ));
            }
        }
        if !multi_tenant && !self.tenants.is_empty() {
            return Err(ConfigError::conflict(
                BUILDER,
                "allowed_tenants",
                "allowed_tenants needs a multi-tenant issuer (an Entra /organizations/v2.0 \
                 or /common/v2.0 endpoint, under TokenProfile::entra)",
            ));
        }
        if self.audiences.is_empty() {
            return Err(ConfigError::missing(
                BUILDER,
                "audience",
                "an audience is required",
            ));
        }
        if self.audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(ConfigError::invalid(
                BUILDER,
                "audience",
                "an audience must not be empty",
            ));
        }

        let proofs = self.dpop.is_some() || self.pop.is_some();
        if !proofs && (self.public_origin.is_some() || self.replay_store.is_some()) {
            return Err(ConfigError::conflict(
                BUILDER,
                if self.public_origin.is_some() {
                    "public_origin"
                } else {
                    "replay_store"
                },
                "public_origin and replay_store are DPoP and PoP settings: both are off \
                 without accept_dpop or accept_pop",
            ));
        }
        if self.pop.as_ref().is_some_and(PopVerifier::requires_body) {
            return Err(ConfigError::conflict(
                BUILDER,
                "accept_pop",
                "the server does not buffer request bodies, so a verifier \
                 that requires the body hash b would refuse every request; stack \
                 BufferBodyLayer outside ResourceServer::layer() instead",
            ));
        }
        let invalid_origin =
            |e| ConfigError::invalid(BUILDER, "public_origin", ToString::to_string(&e));
        if let Some(origin) = &self.public_origin {
            CnfValidationLayer::new(())
                .try_public_origin(origin)
                .map_err(invalid_origin)?;
        }

        let invalid_scope =
            |e| ConfigError::invalid(BUILDER, "required_scope", ToString::to_string(&e));
        // Checked now, before any file is read; applied once the validator
        // is built.
        for scope in &self.scopes {
            CnfValidationLayer::new(())
                .try_required_scope(scope.as_str())
                .map_err(invalid_scope)?;
        }

        let tls = match (self.tls, self.client_certs) {
            (None, _) => {
                return Err(ConfigError::missing(
                    BUILDER,
                    "tls_pem_files",
                    "the server's TLS certificate is required (tls_pem_files, tls_identity \
                     or tls_config)",
                ));
            }
            (Some(Tls::Config(_)), Some(_)) => {
                return Err(ConfigError::conflict(
                    BUILDER,
                    "tls_config",
                    "client_cert_mode and client_ca_file cannot change a ready tls_config: \
                     set client certificates in the ServerConfig, or use tls_pem_files",
                ));
            }
            (Some(Tls::Config(config)), None) => config,
            (Some(Tls::PemFiles { cert, key }), client_certs) => Arc::new(
                server_tls(client_certs)?
                    .build_from_pem_files(&cert, &key)
                    .map_err(|e| tls_file_error(e, &cert, &key))?,
            ),
            (Some(Tls::Identity { chain, key }), client_certs) => Arc::new(
                server_tls(client_certs)?
                    .build(chain, key.clone_key())
                    .map_err(|e| {
                        ConfigError::invalid(
                            BUILDER,
                            "tls_identity",
                            format!("the server's TLS cannot be set up: {e}"),
                        )
                    })?,
            ),
        };

        let roots = match self.issuer_roots {
            Some(IssuerRoots::Store(roots)) => roots,
            Some(IssuerRoots::CaFile(path)) => Arc::new(
                crate::identity::root_store_from_pem_file(&path)
                    .map_err(|e| ConfigError::unreadable(BUILDER, "root_ca_file", &path, e))?,
            ),
            None => Arc::new(tls::platform_roots().ok_or_else(|| {
                ConfigError::unavailable(
                    BUILDER,
                    Some("root_store"),
                    "no platform root certificates found; trust the issuer with \
                     root_store or root_ca_file",
                )
            })?),
        };
        #[cfg(feature = "client")]
        let profile_for_answers = profile.clone();
        let mut validator = self.jwt.token_profile(profile);
        for (issuer, template, jwks) in sources {
            let mut remote = jwks.root_store(roots.clone());
            if let Some(interval) = self.refresh_interval {
                remote = remote.refresh_interval(interval);
            }
            if let Some(cooldown) = self.cooldown {
                remote = remote.unknown_kid_cooldown(cooldown);
            }
            if let Some(timeout) = self.issuer_timeout {
                remote = remote.issuer_timeout(timeout);
            }
            validator = validator.trust(match template {
                None => TrustedIssuer::new(issuer, remote),
                Some(template) => TrustedIssuer::tenants(
                    template.clone(),
                    self.tenants.clone(),
                    remote.metadata_issuer(template),
                ),
            });
        }
        for audience in &self.audiences {
            validator = validator.audience(audience.clone());
        }
        let validator = validator.build()?;
        #[cfg(feature = "client")]
        let validator = introspection::validator(
            self.introspection,
            validator,
            &self.issuers[0],
            &self.audiences,
            &roots,
            &profile_for_answers,
        )?;
        #[cfg(not(feature = "client"))]
        let validator = JwtOrIntrospection::jwt_only(validator);

        let mut layer = CnfValidationLayer::new(validator);
        for scope in self.scopes {
            layer = layer.try_required_scope(scope).map_err(invalid_scope)?;
        }
        if self.allow_unbound {
            layer = layer.allow_unbound();
        }
        if self.terse {
            layer = layer.terse();
        }
        if let Some(store) = self.replay_store {
            layer = layer.replay_store(store);
        }
        if let Some(verifier) = self.dpop {
            layer = layer.accept_dpop(verifier);
        }
        if let Some(verifier) = self.pop {
            layer = layer.accept_pop(verifier);
        }
        if let Some(origin) = &self.public_origin {
            layer = layer.try_public_origin(origin).map_err(invalid_origin)?;
        }
        Ok(ResourceServer {
            issuers: self.issuers,
            layer,
            tls,
            handshake_timeout: self.handshake_timeout,
        })
    }
}

/// The issuer template of a Microsoft Entra multi-tenant endpoint: the
/// `organizations` or `common` path segment becomes `{tenantid}`, as the
/// endpoint's metadata names it. `None` for any other issuer.
fn multi_tenant_template(issuer: &str) -> Option<String> {
    let (scheme, rest) = issuer.split_once("://")?;
    let (authority, path) = rest.split_once('/')?;
    let mut segments: Vec<&str> = path.split('/').collect();
    let first = segments.first_mut()?;
    if *first != "organizations" && *first != "common" {
        return None;
    }
    *first = TENANT_PLACEHOLDER;
    Some(format!("{scheme}://{authority}/{}", segments.join("/")))
}

/// The server TLS settings for `client_certs` (any certificate by default),
/// their verifier checked first, so that its failure is not blamed on the
/// server's certificate.
fn server_tls(client_certs: Option<ClientCerts>) -> Result<ServerTlsConfig, ConfigError> {
    let (mode, setting) = match client_certs {
        None => (ClientCertMode::any_certificate(), "client_cert_mode"),
        Some(ClientCerts::Mode(mode)) => (mode, "client_cert_mode"),
        Some(ClientCerts::CaFile(path)) => {
            let roots = crate::identity::root_store_from_pem_file(&path)
                .map_err(|e| ConfigError::unreadable(BUILDER, "client_ca_file", &path, e))?;
            (ClientCertMode::trusted_roots(roots), "client_ca_file")
        }
    };
    mode.verifier().map_err(|e| {
        ConfigError::invalid(
            BUILDER,
            setting,
            format!("the client certificates cannot be trusted so: {e}"),
        )
    })?;
    Ok(ServerTlsConfig::new(mode))
}

/// A TLS error while reading the server's files, naming the file.
fn tls_file_error(e: ServerTlsError, cert: &Path, key: &Path) -> ConfigError {
    let path = match (e.path(), e.kind()) {
        (Some(path), _) => path.to_owned(),
        // Errors without a file are about the pair: name the key, which
        // does not belong to the certificate.
        (None, ServerTlsErrorKind::KeyMismatch) => key.to_owned(),
        (None, _) => cert.to_owned(),
    };
    ConfigError::unreadable(BUILDER, "tls_pem_files", &path, e)
}
