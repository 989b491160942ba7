//! Unit tests of the resource server builder: settings refused at build.

use super::*;
use crate::proof::dpop::DpopVerifier;
use crate::proof::pop::PopVerifier;

#[test]
fn dpop_settings_are_checked_at_build() {
    use crate::ConfigErrorKind as K;
    let base = || {
        ResourceServer::builder()
            .issuer("https://login.example")
            .audience("https://api.example")
    };
    let kind = |builder: ResourceServerBuilder| {
        let e = builder.build().unwrap_err();
        (e.kind(), e.setting().unwrap())
    };
    assert_eq!(
        kind(base().public_origin("https://api.example")),
        (K::Conflict, "public_origin")
    );
    assert_eq!(
        kind(base().replay_store(crate::replay::MemoryReplayStore::new())),
        (K::Conflict, "replay_store")
    );
    let err = base()
        .accept_dpop(DpopVerifier::new())
        .public_origin("api.example")
        .build()
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.setting()),
        (K::Invalid, Some("public_origin"))
    );
    assert!(err.to_string().contains("not a public origin"), "{err}");
    // Good PoP settings too.
    assert_eq!(
        kind(
            base()
                .accept_pop(PopVerifier::new())
                .public_origin("https://api.example")
                .replay_store(crate::replay::MemoryReplayStore::new())
        ),
        (K::Missing, "tls_pem_files")
    );
    // Good DPoP settings get as far as the missing TLS files.
    assert_eq!(
        kind(
            base()
                .accept_dpop(DpopVerifier::new())
                .public_origin("https://api.example")
        ),
        (K::Missing, "tls_pem_files")
    );
}
