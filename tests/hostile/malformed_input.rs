//! Malformed input gives errors, never panics.

use proptest::prelude::*;
use tower_token_binding::{ClientIdentity, Confirmation, Thumbprint};

proptest! {
    #[test]
    fn thumbprint_parsing_never_panics(s in ".{0,80}") {
        let _ = s.parse::<Thumbprint>();
    }

    #[test]
    fn base64url_lookalikes_parse_only_when_canonical(s in "[A-Za-z0-9_-]{43}") {
        // Every 43-character base64url string is either the canonical
        // encoding of a digest or refused; what parses prints back the same.
        if let Ok(t) = s.parse::<Thumbprint>() {
            prop_assert_eq!(t.to_string(), s);
        }
    }

    #[test]
    fn cnf_from_arbitrary_json_never_panics(text in ".{0,200}") {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = Confirmation::from_value(&value);
            let _ = Confirmation::from_claims(&value);
        }
        let _ = serde_json::from_str::<Confirmation>(&text);
    }

    #[test]
    fn cnf_with_arbitrary_thumbprint_strings(x5t in ".{0,64}") {
        let value = serde_json::json!({ "x5t#S256": x5t });
        let parsed = Confirmation::from_value(&value);
        prop_assert_eq!(parsed.is_ok(), x5t.parse::<Thumbprint>().is_ok());
    }

    #[test]
    fn identity_from_arbitrary_pem_never_panics(
        cert in proptest::collection::vec(any::<u8>(), 0..512),
        key in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        prop_assert!(ClientIdentity::from_pem(&cert, &key).is_err());
    }

    #[test]
    fn identity_from_pem_with_garbage_bodies_never_panics(
        body in "[A-Za-z0-9+/=\n]{0,400}",
        label in prop::sample::select(vec!["CERTIFICATE", "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"]),
    ) {
        let pem = format!("-----BEGIN {label}-----\n{body}\n-----END {label}-----\n");
        let _ = ClientIdentity::from_pem(&pem, &pem);
    }
}
