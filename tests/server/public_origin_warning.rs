//! A layer that accepts DPoP proofs without a public origin says once,
//! at `warn`, when it is built, what that leaves unchecked: the host of
//! each proof binds no particular server.
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::dpop;
use tower_token_binding::proof::dpop::DpopVerifier;

#[tokio::test]
async fn proofs_without_a_public_origin_warn_once_per_layer() {
    use tower::Layer as _;

    let (logs, _capturing) = support::Logs::capture(tracing::Level::WARN);
    let warnings = || logs.text().matches("without a public origin").count();

    let s = dpop::setup().await;
    let layer = dpop::layer(&s).accept_dpop(DpopVerifier::new());
    for _ in 0..3 {
        let _ = layer.layer(tower::service_fn(dpop::binding));
    }
    assert_eq!(warnings(), 1);
    // With a public origin, or with certificates alone: nothing to say.
    let _ = dpop::layer(&s)
        .accept_dpop(DpopVerifier::new())
        .public_origin("https://api.example")
        .layer(tower::service_fn(dpop::binding));
    let _ = dpop::layer(&s).layer(tower::service_fn(dpop::binding));
    assert_eq!(warnings(), 1);
}
