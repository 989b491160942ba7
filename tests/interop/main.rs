//! The crate against a certified OpenID provider (node `oidc-provider`,
//! under `tests/interop`): tokens, DPoP and introspection both ways.
//! Without Node outside CI every test is reported `ignored`, with the
//! reason (`support::harness`).

#[cfg(feature = "test-util")]
#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod interop;
mod interop_dpop;
mod interop_dpop_server;
mod interop_introspection;
mod interop_reqwest;
mod interop_smoke;

fn main() -> std::process::ExitCode {
    support::harness::run(
        support::oidc_provider::missing(),
        async_tests![
            interop::every_auth_method_gets_a_bound_token_that_our_server_accepts_only_with_its_certificate,
            interop::discovery_finds_the_token_endpoint,
            interop::an_unregistered_certificate_is_a_typed_invalid_client,
            interop::the_example_client_against_the_example_server_and_oidc_provider,
            interop_dpop::every_auth_method_gets_a_dpop_token_bound_to_our_key,
            interop_dpop::every_auth_method_gets_a_dpop_token_when_nonces_are_required,
            interop_dpop::a_dpop_client_without_a_proof_is_refused,
            interop_dpop_server::an_oidc_provider_dpop_token_is_accepted_with_our_proofs_only,
            interop_dpop_server::an_oidc_provider_dpop_token_is_accepted_with_our_proofs_only_when_nonces_are_required,
            interop_dpop_server::proofs_from_the_npm_dpop_package_are_accepted_and_their_replay_refused,
            interop_dpop_server::the_npm_dpop_package_retries_with_our_nonce_and_its_replay_is_refused,
            interop_reqwest::oidc_provider_tokens_through_reqwest_with_their_certificate_or_key,
            interop_introspection::certificate_bound_opaque_tokens_and_revocation,
            interop_introspection::the_resource_server_introspects_over_mtls_at_the_alias,
            interop_introspection::dpop_bound_opaque_tokens_need_a_proof_by_their_key,
            interop_smoke::discovery_advertises_certificate_bound_tokens,
            interop_smoke::every_client_auth_method_gets_a_certificate_bound_jwt,
            interop_smoke::the_token_is_bound_to_the_certificate_of_the_request,
            interop_smoke::an_unregistered_certificate_is_an_invalid_client,
            interop_smoke::a_resource_indicator_sets_the_audience,
            interop_smoke::jwt_access_tokens_are_not_introspectable,
            interop_smoke::mtls_endpoint_aliases_when_asked_for,
            interop_smoke::bad_client_metadata_fails_the_start_with_the_reason,
        ],
    )
}
