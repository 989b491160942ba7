//! The pool-clients gauge is the process's absolute count, whichever
//! recorder sees it and whenever that recorder was installed: a client
//! counted in before a recorder and counted out under it does not make the
//! gauge negative.
//!
//! The gauge counts every pool of the process, so this binary holds one
//! test: no other test's pools change the count while it runs. Everything
//! runs on a current-thread runtime on the test's thread, where the
//! recorders are installed (`metrics::with_local_recorder`).
#![cfg(feature = "metrics")]

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower_token_binding::metrics::POOL_CLIENTS;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::{BoundClient, ClientIdentity};

/// The gauge's last value since the last snapshot, if it was set.
fn gauge(snapshotter: &Snapshotter) -> Option<f64> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, _, _, _)| key.key().name() == POOL_CLIENTS)
        .map(|(_, _, _, value)| match value {
            DebugValue::Gauge(value) => value.into_inner(),
            other => panic!("{POOL_CLIENTS} is {other:?}"),
        })
}

/// A client that has fetched a token with `identity` over mutual TLS: one
/// per-identity client held in its token endpoint's pool.
async fn client_holding_one(
    pki: &TestPki,
    issuer: &TestIssuer,
    identity: ClientIdentity,
) -> BoundClient {
    let client = BoundClient::builder()
        .token_endpoint(issuer.mtls_token_endpoint())
        .client_id("svc")
        .identity(identity)
        .root_store(pki.root_store())
        .build()
        .unwrap();
    client.cache().unwrap().get().await.unwrap();
    assert_eq!(client.pool().stats().identities, 0, "no API call yet");
    client
}

#[test]
fn the_gauge_is_the_absolute_count_whatever_the_recorder() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pki = TestPki::new().unwrap();
    let issuer = runtime.block_on(TestIssuer::start(&pki)).unwrap();
    let identity = |name: &str| pki.client_cert(name).unwrap().identity().unwrap();

    // No recorder yet: a client counted in unseen.
    let first = runtime.block_on(client_holding_one(&pki, &issuer, identity("a.example")));

    // A recorder installed now sees the whole count from the next change.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let second = metrics::with_local_recorder(&recorder, || {
        runtime.block_on(client_holding_one(&pki, &issuer, identity("b.example")))
    });
    assert_eq!(gauge(&snapshotter), Some(2.0));
    // The client it never saw counted in, counted out: one left, not zero.
    metrics::with_local_recorder(&recorder, || drop(first));
    assert_eq!(gauge(&snapshotter), Some(1.0));
    // And none, not below zero.
    metrics::with_local_recorder(&recorder, || drop(second));
    assert_eq!(gauge(&snapshotter), Some(0.0));

    // A client counted in under one recorder and out under another.
    let third = metrics::with_local_recorder(&recorder, || {
        runtime.block_on(client_holding_one(&pki, &issuer, identity("c.example")))
    });
    assert_eq!(gauge(&snapshotter), Some(1.0));
    let other = DebuggingRecorder::new();
    let other_snapshotter = other.snapshotter();
    metrics::with_local_recorder(&other, || drop(third));
    assert_eq!(gauge(&other_snapshotter), Some(0.0));
}
