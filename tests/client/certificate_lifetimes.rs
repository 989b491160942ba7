//! Client certificates outside their validity period: refused at load
//! unless accepted by name, refused by a `ReloadingIdentity` (which keeps
//! its identity and says why), and warned about a day before they expire.
#![cfg(feature = "test-util")]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tower_token_binding::ConfigErrorKind;
use tower_token_binding::client::BoundClient;
use tower_token_binding::identity::{IdentitySource, Reload, ReloadingIdentity};
use tower_token_binding::test_util::{TestCert, TestPki};
use tower_token_binding::{ClientIdentity, IdentityErrorKind};

use crate::support::{self, Logs};

const DAY: Duration = Duration::from_secs(86_400);

/// `secs` after 1970, and how certificates and errors write it.
fn date(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}
/// 2020-01-01T00:00:00Z
const JAN_2020: u64 = 1_577_836_800;
/// 2021-06-30T12:00:00Z
const JUN_2021: u64 = 1_625_054_400;
/// 2099-01-01T00:00:00Z
const JAN_2099: u64 = 4_070_908_800;
/// 2100-01-01T00:00:00Z
const JAN_2100: u64 = 4_102_444_800;

/// The key's base64 lines, none of which may ever show in a log or error.
fn key_lines(cert: &TestCert) -> Vec<String> {
    cert.key_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_owned)
        .collect()
}

fn shows_no_key(text: &str, cert: &TestCert) {
    for line in key_lines(cert) {
        assert!(!text.contains(&line), "key material in {text:?}");
    }
}

#[test]
fn a_certificate_outside_its_validity_is_refused_at_load() {
    let pki = TestPki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let expired = pki
        .client_cert_valid("svc.example", date(JAN_2020), date(JUN_2021))
        .unwrap();
    let not_yet = pki
        .client_cert_valid("svc.example", date(JAN_2099), date(JAN_2100))
        .unwrap();

    for (cert, kind, validity, dates) in [
        (
            &expired,
            IdentityErrorKind::Expired,
            (date(JAN_2020), date(JUN_2021)),
            ("2020-01-01T00:00:00Z", "2021-06-30T12:00:00Z"),
        ),
        (
            &not_yet,
            IdentityErrorKind::NotYetValid,
            (date(JAN_2099), date(JAN_2100)),
            ("2099-01-01T00:00:00Z", "2100-01-01T00:00:00Z"),
        ),
    ] {
        let (cert_path, key_path) = cert.write_pem_files(dir.path(), "client").unwrap();
        let check = |e: tower_token_binding::IdentityError, file: Option<&Path>| {
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.path(), file, "{e}");
            let message = e.to_string();
            assert!(message.contains(dates.0), "{message}");
            assert!(message.contains(dates.1), "{message}");
            if let Some(file) = file {
                assert!(message.contains(&file.display().to_string()), "{message}");
            }
            assert!(message.contains("accept_outside_validity"), "{message}");
            shows_no_key(&format!("{message} {e:?}"), cert);
            assert_eq!(
                (e.not_before(), e.not_after()),
                (Some(validity.0), Some(validity.1))
            );
        };

        // From files, the error names the certificate file.
        let e = ClientIdentity::from_pem_files(&cert_path, &key_path).unwrap_err();
        check(e, Some(&cert_path));
        let e = ReloadingIdentity::from_pem_files(&cert_path, &key_path).unwrap_err();
        check(e, Some(&cert_path));
        // From bytes and DER, no file to name.
        let e = ClientIdentity::from_pem(cert.cert_pem(), cert.key_pem()).unwrap_err();
        check(e, None);
        let e = ClientIdentity::from_der(cert.chain(), cert.private_key()).unwrap_err();
        check(e, None);
        // The one-expression client refuses it at build.
        let e = BoundClient::builder()
            .token_endpoint("https://as.example/token")
            .client_id("svc")
            .identity_files(&cert_path, &key_path)
            .root_store(pki.root_store())
            .build()
            .unwrap_err();
        assert_eq!(e.kind(), ConfigErrorKind::Unreadable);
        // The dates are in the cause, the IdentityError.
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains(dates.1), "{cause}");

        // Accepted when asked for by name, with its dates.
        let identity = ClientIdentity::loader()
            .accept_outside_validity()
            .from_pem_files(&cert_path, &key_path)
            .unwrap();
        assert_eq!(identity.thumbprint(), cert.thumbprint());
        assert_eq!((identity.not_before(), identity.not_after()), validity);
        let reloading = ReloadingIdentity::builder(&cert_path, &key_path)
            .accept_outside_validity()
            .build()
            .unwrap();
        assert_eq!(reloading.current().thumbprint(), cert.thumbprint());
    }
}

#[test]
fn a_certificate_that_expires_within_a_day_is_warned_about_once_per_identity() {
    let (logs, _guard) = Logs::capture(tracing::Level::WARN);
    let pki = TestPki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let soon = pki
        .client_cert_valid(
            "svc.example",
            now - DAY,
            now + Duration::from_secs(3 * 3600),
        )
        .unwrap();
    let later = pki
        .client_cert_valid("svc.example", now - DAY, now + 30 * DAY)
        .unwrap();
    let (soon_cert, soon_key) = soon.write_pem_files(dir.path(), "soon").unwrap();
    let (later_cert, later_key) = later.write_pem_files(dir.path(), "later").unwrap();

    // Thirty days left: nothing to say.
    ClientIdentity::from_pem_files(&later_cert, &later_key).unwrap();
    assert!(logs.lines().is_empty(), "{:?}", logs.lines());

    // Three hours left: loaded, and warned about, naming the file and the
    // dates, never the key.
    let identity = ClientIdentity::from_pem_files(&soon_cert, &soon_key).unwrap();
    let warnings = logs.with("expires within 24 hours");
    assert_eq!(warnings.len(), 1, "{:?}", logs.lines());
    let warning = &warnings[0];
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains(&soon_cert.display().to_string()),
        "{warning}"
    );
    assert!(warning.contains("not_after="), "{warning}");
    assert!(
        warning.contains(&soon.thumbprint().to_string()),
        "{warning}"
    );
    shows_no_key(warning, &soon);

    // The same identity, cloned and used again: not warned about again.
    let _clone = identity.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reloading = ReloadingIdentity::builder(&soon_cert, &soon_key)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    // A new identity (loaded again from the files): warned about once...
    assert_eq!(logs.with("expires within 24 hours").len(), 2);
    // ...however often its files are looked at.
    for _ in 0..3 {
        let reload = runtime.block_on(reloading.reload_now());
        assert!(matches!(reload, Reload::Unchanged), "{reload:?}");
    }
    assert_eq!(logs.with("expires within 24 hours").len(), 2);
}

#[tokio::test]
async fn a_reloading_identity_keeps_its_identity_when_the_files_are_out_of_date() {
    let (logs, _guard) = Logs::capture(tracing::Level::WARN);
    let pki = TestPki::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let current = pki
        .client_cert_valid("svc.example", now - DAY, now + 30 * DAY)
        .unwrap();
    let expired = pki
        .client_cert_valid("svc.example", date(JAN_2020), date(JUN_2021))
        .unwrap();
    let (cert, key) = current.write_pem_files(dir.path(), "client").unwrap();
    let identity = ReloadingIdentity::builder(&cert, &key)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap();

    // An expired pair: refused, the current identity stays, and the warning
    // names the file and the dates.
    expired.write_pem_files(dir.path(), "client").unwrap();
    match identity.reload_now().await {
        Reload::Refused(e) => {
            assert_eq!(e.kind(), IdentityErrorKind::Expired);
            assert_eq!(e.path(), Some(cert.as_path()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(identity.current().thumbprint(), current.thumbprint());
    let warnings = logs.with("refused");
    assert_eq!(warnings.len(), 1, "{:?}", logs.lines());
    let warning = &warnings[0];
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(&cert.display().to_string()), "{warning}");
    assert!(warning.contains("2020-01-01T00:00:00Z"), "{warning}");
    assert!(warning.contains("2021-06-30T12:00:00Z"), "{warning}");
    shows_no_key(warning, &expired);
    shows_no_key(warning, &current);
    // Looked at again: the same files are not refused (or warned about)
    // twice.
    assert!(matches!(identity.reload_now().await, Reload::Unchanged));
    assert_eq!(identity.stats().refused, 1);

    // A pair valid from two seconds on: refused now, the current identity
    // stays; the same files are taken once they are valid, without being
    // written again.
    let starts = SystemTime::now() + Duration::from_secs(2);
    let early = pki
        .client_cert_valid("svc.example", starts, starts + 30 * DAY)
        .unwrap();
    early.write_pem_files(dir.path(), "client").unwrap();
    match identity.reload_now().await {
        Reload::Refused(e) => assert_eq!(e.kind(), IdentityErrorKind::NotYetValid),
        other => panic!("{other:?}"),
    }
    assert_eq!(identity.current().thumbprint(), current.thumbprint());
    assert!(matches!(identity.reload_now().await, Reload::Unchanged));
    assert_eq!(identity.stats().refused, 2);
    support::advance(Duration::from_millis(3100)).await;
    match identity.reload_now().await {
        Reload::Reloaded(new) => assert_eq!(new.thumbprint(), early.thumbprint()),
        other => panic!("{other:?}"),
    }
    assert_eq!(identity.current().thumbprint(), early.thumbprint());
    let stats = identity.stats();
    assert_eq!((stats.reloads, stats.refused), (1, 2));
}
