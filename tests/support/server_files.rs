//! Server TLS files for `ResourceServer` tests: a certificate and key
//! written to a temporary folder, with the broken variants `build` must
//! refuse (another key, a file that is not PEM, a missing file).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tower_token_binding::test_util::TestPki;

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Every way `build` can be misconfigured, with the files it reads.
pub struct Files {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub other_key: PathBuf,
    pub ca: PathBuf,
    pub not_pem: PathBuf,
    pub missing: PathBuf,
    pub roots: rustls::RootCertStore,
}

pub fn files() -> Files {
    let pki = TestPki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "server")
        .unwrap();
    let (_, other_key) = pki
        .server_cert()
        .unwrap()
        .write_pem_files(dir.path(), "other")
        .unwrap();
    Files {
        cert,
        key,
        other_key,
        ca: write(dir.path(), "ca.pem", &pki.ca_pem()),
        not_pem: write(dir.path(), "notes.txt", "not a certificate\n"),
        missing: dir.path().join("missing.pem"),
        roots: pki.root_store(),
        _dir: dir,
    }
}
