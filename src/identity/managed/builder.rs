use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::error::{ManagedIdentityError, ManagedIdentityErrorKind};
use super::imds::{self, Imds};
use super::{ManagedIdentity, Shared, renewal};
use crate::identity::rotation::Rotation;

/// Builds a [`ManagedIdentity`] from IMDS v2; see
/// [`ManagedIdentity::imds_v2`].
///
/// | setting | default |
/// | --- | --- |
/// | base URL | the builder's, else `AZURE_POD_IDENTITY_AUTHORITY_HOST`, else `http://169.254.169.254` |
/// | [`probe_timeout`](Self::probe_timeout) | 1 s |
/// | timeout of each later IMDS request ([`imds_timeout`](Self::imds_timeout)) | 10 s |
/// | scope, resource | none |
#[derive(Debug, Clone)]
pub struct ManagedIdentityBuilder {
    base_url: Option<String>,
    probe_timeout: Duration,
    timeout: Duration,
    params: Vec<(String, String)>,
}

impl Default for ManagedIdentityBuilder {
    fn default() -> Self {
        Self {
            base_url: None,
            probe_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            params: Vec::new(),
        }
    }
}

impl ManagedIdentityBuilder {
    /// Where IMDS answers, `http://host[:port]`, instead of
    /// `http://169.254.169.254` (or the `AZURE_POD_IDENTITY_AUTHORITY_HOST`
    /// environment variable, which this overrides).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// How long the probe waits for IMDS before deciding it is not there.
    /// Default 1 s; at least 10 ms.
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.probe_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// How long each later IMDS request (the metadata, a credential) may
    /// take. Default 10 s; at least 10 ms.
    pub fn imds_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// The old name of [`imds_timeout`](Self::imds_timeout).
    #[deprecated(note = "renamed imds_timeout: a timeout is named for what it bounds")]
    pub fn timeout(self, timeout: Duration) -> Self {
        self.imds_timeout(timeout)
    }

    /// The `scope` tokens are asked for (space-separated), such as
    /// `https://management.azure.com/.default`.
    pub fn scope(self, scope: impl Into<String>) -> Self {
        self.param("scope", scope)
    }

    /// An RFC 8707 `resource` tokens are asked for; may be given more than
    /// once.
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    fn param(mut self, name: &str, value: impl Into<String>) -> Self {
        self.params.push((name.to_owned(), value.into()));
        self
    }

    /// Probes IMDS v2, reads the platform metadata, makes a key and has a
    /// certificate issued for it; then starts renewing it in the
    /// background, on the current Tokio runtime.
    ///
    /// Off Azure (no answer within the probe timeout, a `404`, a server that
    /// is not IMDS) this fails with
    /// [`NotAvailable`](super::ManagedIdentityErrorKind::NotAvailable),
    /// never hanging longer than the probe timeout. Outside a Tokio runtime
    /// it fails with [`Config`](super::ManagedIdentityErrorKind::Config).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_token_binding::identity::managed::{ManagedIdentity, ManagedIdentityErrorKind};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    /// # let nothing_there = format!("http://{closed}");
    /// // Where nothing answers, as off Azure:
    /// let error = ManagedIdentity::imds_v2()
    ///     .base_url(nothing_there)
    ///     .probe_timeout(Duration::from_millis(200))
    ///     .build()
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(error.kind(), ManagedIdentityErrorKind::NotAvailable);
    /// assert!(error.to_string().contains("no IMDS v2"));
    /// # }
    /// ```
    pub async fn build(self) -> Result<ManagedIdentity, ManagedIdentityError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            ManagedIdentityError::new(
                ManagedIdentityErrorKind::Config,
                "a managed identity is built inside a Tokio runtime (it renews in a task of it)",
            )
            .with_source(e)
        })?;
        let variable = std::env::var(imds::BASE_URL_VARIABLE).ok();
        let base = imds::base_url(self.base_url.as_deref(), variable.as_deref())?;
        let imds = Imds::new(base, self.probe_timeout, self.timeout);
        imds.probe().await?;
        let metadata = imds.platform_metadata().await?;
        let issued = imds.issue(&metadata).await?;
        tracing::info!(
            client_id = %issued.endpoint.client_id,
            tenant_id = %issued.endpoint.tenant_id,
            identity_type = %issued.endpoint.identity_type,
            thumbprint = %issued.identity.thumbprint(),
            not_after = %crate::identity::validity::Date(issued.identity.not_after()),
            "managed identity certificate issued by IMDS v2"
        );
        let shared = Arc::new(Shared {
            imds,
            metadata,
            endpoint: issued.endpoint,
            params: self.params,
            rotation: Rotation::new(issued.identity),
            renewing: tokio::sync::Mutex::new(()),
            renewals: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let changes = shared.rotation.subscribe();
        runtime.spawn(renewal::run(Arc::downgrade(&shared), changes));
        Ok(ManagedIdentity { shared })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_runtime_the_build_is_an_error_not_a_panic() {
        let build = ManagedIdentity::imds_v2().build();
        let error = futures_util::FutureExt::now_or_never(build)
            .expect("it fails at once")
            .unwrap_err();
        assert_eq!(error.kind(), ManagedIdentityErrorKind::Config);
    }
}
