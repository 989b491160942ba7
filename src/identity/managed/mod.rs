//! Azure managed identity (IMDS v2): the binding certificate comes from the
//! platform, not from a file.
//!
//! On an Azure host with IMDS v2, [`ManagedIdentity::imds_v2`] finds the
//! host's managed identity, makes an RSA-2048 key in memory (never written
//! anywhere), has IMDS issue a short-lived certificate for it, and renews
//! key and certificate before they run out. The result is an
//! [`IdentitySource`] (the certificate the pool presents) that also knows
//! where to get tokens bound to that certificate: give it to
//! [`BoundClientBuilder::managed_identity`](crate::client::BoundClientBuilder::managed_identity)
//! and the client asks Entra for `mtls_pop` tokens over mutual TLS, with
//! the usual cache, refresh ahead and single flight.
//!
//! The steps, as MSAL takes them:
//!
//! 1. Probe: `GET /metadata/identity/getplatformmetadata?cred-api-version=2.0`
//!    without the `Metadata: true` header must be refused with `400` by a
//!    server whose `Server` header names IMDS. No answer within the probe
//!    timeout (1 s by default), a refused connection, a `404`, another
//!    server: not on Azure, a [`NotAvailable`](ManagedIdentityErrorKind::NotAvailable)
//!    error at once, never a hang.
//! 2. The same request with `Metadata: true`: `clientId`, `tenantId`,
//!    `cuId` and `attestationEndpoint`.
//! 3. A PKCS#10 request signed with RSA-PSS (SHA-256), subject
//!    `CN=<clientId>, DC=<tenantId>`, the `cuId` JSON in the attribute
//!    `1.3.6.1.4.1.311.90.2.10`; `POST /metadata/identity/issuecredential`
//!    with `{"csr": "<base64 DER>"}` answers `client_id`, `tenant_id`,
//!    `certificate` (base64 DER), `identity_type` and
//!    `mtls_authentication_endpoint`. A certificate for another key than
//!    ours, or outside its validity, is refused, and so is a credential for
//!    another client or tenant than the metadata names (ids compared
//!    without regard to case).
//! 4. Tokens: client credentials over mutual TLS with that certificate at
//!    `<mtls_authentication_endpoint>/<tenant_id>/oauth2/v2.0/token`, with
//!    `token_type=mtls_pop`. There is no fallback to unbound tokens: a
//!    `Bearer` answer, or a token without `cnf`, is an error.
//! 5. Renewal: when less than 24 hours of validity remain or half the
//!    lifetime has passed, whichever comes first (half the lifetime for
//!    certificates of a day or less; the lifetime counted from when the
//!    certificate arrived, for one dated back), the platform metadata is read again
//!    and a new key gets a new certificate. The new identity
//!    [replaces](crate::ClientIdentity::replacing) the old one as a renewed
//!    [`ReloadingIdentity`](super::ReloadingIdentity) does: the next request
//!    gets a token bound to the new certificate over a new connection, and
//!    pools drop the old one's connections. A failed renewal keeps the
//!    current certificate and is tried again with backoff (at most 15 s
//!    apart once it has expired).
//!
//! Key attestation (the `attestation_token` some hosts require) is not
//! done. This module was tested against the embedded emulator of
//! [`test_util`](crate::test_util) only, not against Azure.
//!
//! ```
//! use tower_token_binding::BoundClient;
//! use tower_token_binding::identity::managed::ManagedIdentity;
//! # use tower_token_binding::test_util::{ImdsEmulator, TestIssuer, TestPki};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let pki = TestPki::new()?;
//! # let issuer = TestIssuer::start(&pki).await?;
//! # let imds = ImdsEmulator::builder().start(&pki, &issuer).await?;
//! # let imds_url = imds.base_url();
//! let identity = ManagedIdentity::imds_v2()
//!     .base_url(imds_url) // on Azure: leave out
//!     .scope("https://management.azure.com/.default")
//!     .build()
//!     .await?;
//! let client = BoundClient::builder()
//!     .managed_identity(identity.clone())
//! #   .root_store(pki.root_store())
//!     .build()?;
//! assert_eq!(client.identity().unwrap().thumbprint(), identity.thumbprint());
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::rotation::Rotation;
use super::{ClientIdentity, IdentitySource};
use crate::Thumbprint;

mod answer;
mod builder;
mod csr;
mod error;
mod imds;
mod renewal;

pub use builder::ManagedIdentityBuilder;
pub use error::{ManagedIdentityError, ManagedIdentityErrorKind};

#[cfg(feature = "test-util")]
pub(crate) use csr::{
    COMMON_NAME, CU_ID_ATTRIBUTE, DOMAIN_COMPONENT, RSA_ENCRYPTION, RSASSA_PSS, pss_sha256_params,
};
#[cfg(feature = "test-util")]
pub(crate) use imds::{API_VERSION, ISSUE_CREDENTIAL_PATH, METADATA_PATH};

use answer::{Endpoint, PlatformMetadata};
use imds::Imds;

/// A client identity, and where to get tokens bound to it, from Azure's
/// managed identity (IMDS v2); see the [module docs](self).
///
/// Cheap to clone: clones share the identity and its renewal, which stops
/// when the last clone is dropped. `Debug` shows the client, the tenant,
/// the token endpoint and the thumbprint, never the key.
#[derive(Clone)]
pub struct ManagedIdentity {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    imds: Imds,
    /// As read at build.
    metadata: PlatformMetadata,
    /// From the first credential; a renewal must name the same.
    endpoint: Endpoint,
    params: Vec<(String, String)>,
    rotation: Rotation,
    /// Held for a whole renewal, so two never overlap.
    renewing: tokio::sync::Mutex<()>,
    renewals: AtomicU64,
    failures: AtomicU64,
}

/// Counters of a [`ManagedIdentity`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenewalStats {
    /// Times a new certificate replaced the identity.
    pub renewals: u64,
    /// Times a renewal failed (the current certificate stayed).
    pub failures: u64,
}

impl ManagedIdentity {
    /// A builder for the identity IMDS v2 gives this host.
    pub fn imds_v2() -> ManagedIdentityBuilder {
        ManagedIdentityBuilder::default()
    }

    /// The managed identity's client id, as IMDS issued the credential to
    /// (the `client_id` of token requests).
    pub fn client_id(&self) -> &str {
        &self.shared.endpoint.client_id
    }

    /// The tenant id.
    pub fn tenant_id(&self) -> &str {
        &self.shared.endpoint.tenant_id
    }

    /// The identity type IMDS names (system- or user-assigned).
    pub fn identity_type(&self) -> &str {
        &self.shared.endpoint.identity_type
    }

    /// The token endpoint: `<mtls_authentication_endpoint>/<tenant_id>/oauth2/v2.0/token`.
    pub fn token_endpoint(&self) -> &str {
        &self.shared.endpoint.token_endpoint
    }

    /// The attestation endpoint the platform metadata named, if any (key
    /// attestation is not done).
    pub fn attestation_endpoint(&self) -> Option<&str> {
        self.shared.metadata.attestation_endpoint.as_deref()
    }

    /// The IMDS base URL in use.
    pub fn base_url(&self) -> &str {
        self.shared.imds.base_url()
    }

    /// The token-request parameters given to the builder (`scope`,
    /// `resource`).
    pub fn params(&self) -> &[(String, String)] {
        &self.shared.params
    }

    /// The thumbprint of the certificate presented now.
    pub fn thumbprint(&self) -> Thumbprint {
        self.shared.rotation.thumbprint()
    }

    /// A receiver that sees every renewed identity.
    pub fn subscribe(&self) -> watch::Receiver<ClientIdentity> {
        self.shared.rotation.subscribe()
    }

    /// The counters.
    pub fn stats(&self) -> RenewalStats {
        RenewalStats {
            renewals: self.shared.renewals.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
        }
    }

    /// Renews the key and certificate now, without waiting until they are
    /// due; returns the new identity. On failure the current one stays.
    pub async fn renew_now(&self) -> Result<ClientIdentity, ManagedIdentityError> {
        self.shared.renew(None).await
    }
}

impl Shared {
    /// Renews the credential (one renewal at a time). With `seen`, the
    /// thumbprint a decision to renew was based on: when the identity is
    /// another one by the time the renewal lock is taken (renewed
    /// meanwhile, by [`renew_now`](ManagedIdentity::renew_now) say), that
    /// identity is returned, and IMDS is not asked again.
    async fn renew(
        &self,
        seen: Option<Thumbprint>,
    ) -> Result<ClientIdentity, ManagedIdentityError> {
        let _renewing = self.renewing.lock().await;
        if let Some(seen) = seen {
            let current = self.rotation.current();
            if current.thumbprint() != seen {
                return Ok(current);
            }
        }
        // Read again each time, as MSAL does: the request must carry what
        // the platform says now.
        let result = match self.imds.platform_metadata().await {
            Ok(metadata) => self.imds.issue(&metadata).await,
            Err(e) => Err(e),
        };
        let result = result.and_then(|issued| {
            if issued.endpoint != self.endpoint {
                return Err(ManagedIdentityError::new(
                    ManagedIdentityErrorKind::InvalidResponse,
                    format!(
                        "the renewed credential is for client {:?} at {:?}, not {:?} at {:?} as before; refused",
                        issued.endpoint.client_id,
                        issued.endpoint.token_endpoint,
                        self.endpoint.client_id,
                        self.endpoint.token_endpoint
                    ),
                ));
            }
            Ok(issued.identity)
        });
        match result {
            Ok(identity) => {
                let (identity, previous) = self.rotation.replace(identity);
                self.renewals.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    old = %previous.thumbprint(),
                    new = %identity.thumbprint(),
                    not_after = %super::validity::Date(identity.not_after()),
                    "managed identity certificate renewed"
                );
                Ok(identity)
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

impl IdentitySource for ManagedIdentity {
    fn current(&self) -> ClientIdentity {
        self.shared.rotation.current()
    }

    fn thumbprint(&self) -> Thumbprint {
        self.shared.rotation.thumbprint()
    }
}

impl fmt::Debug for ManagedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedIdentity")
            .field("client_id", &self.client_id())
            .field("tenant_id", &self.tenant_id())
            .field("token_endpoint", &self.token_endpoint())
            .field("thumbprint", &self.thumbprint())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    //! The interleavings of a renewal by the task with one by hand, forced
    //! step by step: the test calls `Shared::renew` as the task does, with
    //! the thumbprint the task found due.

    use std::time::Duration;

    use super::*;
    use crate::test_util::{ImdsEmulator, TestIssuer, TestPki};

    async fn managed() -> (ManagedIdentity, ImdsEmulator, TestIssuer, TestPki) {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        // A week: the task itself is not due during the test.
        let imds = ImdsEmulator::builder()
            .certificate_lifetime(Duration::from_secs(7 * 24 * 3600))
            .start(&pki, &issuer)
            .await
            .unwrap();
        let identity = ManagedIdentity::imds_v2()
            .base_url(imds.base_url())
            .probe_timeout(Duration::from_millis(300))
            .scope("https://api.example/.default")
            .build()
            .await
            .unwrap();
        assert_eq!(imds.credentials_issued(), 1);
        (identity, imds, issuer, pki)
    }

    #[tokio::test]
    async fn a_renewal_found_due_is_not_made_after_one_by_hand() {
        let (identity, imds, _issuer, _pki) = managed().await;

        // The task finds the identity due for renewal.
        let seen = identity.thumbprint();

        // A renewal by hand lands before the task goes on.
        let by_hand = identity.renew_now().await.unwrap();
        assert_eq!(imds.credentials_issued(), 2);

        // The task goes on from its decision: it takes the renewed identity,
        // and IMDS issues nothing more.
        let renewed = identity.shared.renew(Some(seen)).await.unwrap();
        assert_eq!(renewed.thumbprint(), by_hand.thumbprint());
        assert_eq!(imds.credentials_issued(), 2, "renewed twice");
        assert_eq!(identity.stats().renewals, 1);
    }

    #[tokio::test]
    async fn a_renewal_found_due_waits_for_one_by_hand_and_takes_it() {
        let (identity, imds, _issuer, _pki) = managed().await;
        let seen = identity.thumbprint();

        // The renewal by hand holds the renewal lock (it is polled first)
        // when the task's renewal asks for it.
        let (by_hand, task) = tokio::join!(identity.renew_now(), identity.shared.renew(Some(seen)));
        assert_eq!(task.unwrap().thumbprint(), by_hand.unwrap().thumbprint());
        assert_eq!(imds.credentials_issued(), 2, "renewed twice");

        // A renewal for the identity as it is does go to IMDS.
        let current = identity.thumbprint();
        let renewed = identity.shared.renew(Some(current)).await.unwrap();
        assert_ne!(renewed.thumbprint(), current);
        assert_eq!(imds.credentials_issued(), 3);
        assert_eq!(identity.stats().renewals, 2);
    }
}
