//! `ReloadingIdentity`: files renewed on disk, half-written pairs, missing
//! files, the poller.
#![cfg(feature = "test-util")]

use std::time::Duration;

use tower_token_binding::IdentityErrorKind;
use tower_token_binding::identity::{IdentitySource, Reload, ReloadingIdentity};
use tower_token_binding::test_util::TestPki;

fn write(path: &std::path::Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
}

#[tokio::test]
async fn reloads_a_new_pair_and_refuses_a_broken_one() {
    let pki = TestPki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = pki.client_cert("a.example").unwrap();
    let b = pki.client_cert("b.example").unwrap();
    let (cert, key) = a.write_pem_files(dir.path(), "client").unwrap();
    // Polled rarely: this test looks itself.
    let identity = ReloadingIdentity::builder(&cert, &key)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert_eq!(identity.current().thumbprint(), a.thumbprint());
    assert!(matches!(identity.reload_now().await, Reload::Unchanged));

    // The same files rewritten: nothing to do.
    write(&cert, a.cert_pem());
    assert!(matches!(identity.reload_now().await, Reload::Unchanged));

    // Half-written: B's certificate, A's key.
    write(&cert, b.cert_pem());
    match identity.reload_now().await {
        Reload::Refused(e) => {
            assert_eq!(e.kind(), IdentityErrorKind::KeyMismatch);
            assert_eq!(e.path(), Some(key.as_path()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(identity.current().thumbprint(), a.thumbprint());
    // Looked at again unchanged: not refused (and not warned about) twice.
    assert!(matches!(identity.reload_now().await, Reload::Unchanged));
    assert_eq!(identity.stats().refused, 1);

    // The key arrives.
    write(&key, b.key_pem());
    match identity.reload_now().await {
        Reload::Reloaded(new) => assert_eq!(new.thumbprint(), b.thumbprint()),
        other => panic!("{other:?}"),
    }
    assert_eq!(identity.current().thumbprint(), b.thumbprint());
    assert_eq!(IdentitySource::thumbprint(&identity), b.thumbprint());

    // A truncated certificate, then a missing key: refused, B stays.
    write(&cert, &b.cert_pem()[..b.cert_pem().len() / 2]);
    assert!(matches!(identity.reload_now().await, Reload::Refused(_)));
    write(&cert, b.cert_pem());
    std::fs::remove_file(&key).unwrap();
    match identity.reload_now().await {
        Reload::Refused(e) => assert_eq!(e.kind(), IdentityErrorKind::Io),
        other => panic!("{other:?}"),
    }
    let refused = identity.stats().refused;
    assert!(matches!(identity.reload_now().await, Reload::Refused(_)));
    assert_eq!(
        identity.stats().refused,
        refused,
        "a missing file is counted once"
    );
    assert_eq!(identity.current().thumbprint(), b.thumbprint());

    // Back as it was: no reload needed.
    write(&key, b.key_pem());
    assert!(matches!(identity.reload_now().await, Reload::Unchanged));
    assert_eq!(identity.stats().reloads, 1);
}

#[tokio::test]
async fn the_poller_picks_up_renewals_and_subscribers_hear_of_them() {
    let pki = TestPki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = pki.client_cert("a.example").unwrap();
    let renewed = pki.reissue(&a).unwrap();
    let (cert, key) = a.write_pem_files(dir.path(), "client").unwrap();
    let identity = ReloadingIdentity::builder(&cert, &key)
        .poll_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let mut changes = identity.subscribe();

    // Renewal with the same key: only the certificate file changes.
    write(&cert, renewed.cert_pem());
    tokio::time::timeout(Duration::from_secs(10), changes.changed())
        .await
        .expect("the poller saw the renewal")
        .unwrap();
    assert_eq!(changes.borrow().thumbprint(), renewed.thumbprint());
    assert_eq!(identity.current().thumbprint(), renewed.thumbprint());
    assert_eq!(identity.stats().reloads, 1);
}

#[test]
fn loading_needs_a_valid_pair_and_no_runtime() {
    let pki = TestPki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = pki.client_cert("a.example").unwrap();
    let b = pki.client_cert("b.example").unwrap();
    let (cert, _) = a.write_pem_files(dir.path(), "a").unwrap();
    let (_, key) = b.write_pem_files(dir.path(), "b").unwrap();
    let e = ReloadingIdentity::from_pem_files(&cert, &key).unwrap_err();
    assert_eq!(e.kind(), IdentityErrorKind::KeyMismatch);
    let e = ReloadingIdentity::from_pem_files(dir.path().join("x.pem"), &key).unwrap_err();
    assert_eq!(e.kind(), IdentityErrorKind::Io);

    // Built outside a runtime: usable, and Debug shows no key material.
    let (cert, key) = a.write_pem_files(dir.path(), "a").unwrap();
    let identity = ReloadingIdentity::from_pem_files(&cert, &key).unwrap();
    assert_eq!(identity.current().thumbprint(), a.thumbprint());
    let debug = format!("{identity:?}");
    assert!(debug.contains(&a.thumbprint().to_string()));
    let key_line = a.key_pem().lines().nth(1).unwrap();
    assert!(!debug.contains(key_line));
}
