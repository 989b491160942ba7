//! The client credentials of a [`ManagedIdentity`]: the identity is the
//! certificate, and this is how it gets tokens with it.

use super::{ClientCredentials, ClientCredentialsBuilder};
use crate::identity::managed::ManagedIdentity;

impl ManagedIdentity {
    /// OAuth client credentials for this identity, ready to build: its
    /// token endpoint and client id, `tls_client_auth` with this identity
    /// (renewals included), Entra's `mtls_pop` tokens, and the builder's
    /// scope or resource. Add a [pool](ClientCredentialsBuilder::pool) or
    /// [roots](ClientCredentialsBuilder::root_store) and build, to use it
    /// without a [`BoundClient`](crate::BoundClient).
    pub fn client_credentials(&self) -> ClientCredentialsBuilder {
        let mut builder = ClientCredentials::builder()
            .token_endpoint(self.token_endpoint())
            .client_id(self.client_id())
            .tls_client_auth(self.clone())
            .entra_mtls_pop();
        for (name, value) in self.params() {
            builder = builder.param(name, value);
        }
        builder
    }
}
