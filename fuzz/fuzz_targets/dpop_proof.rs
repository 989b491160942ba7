//! A DPoP proof (RFC 9449): any text as the `DPoP` header, verified for a
//! fixed request. Never a panic; the signature check makes acceptance of a
//! fuzzed proof practically impossible, so only errors are expected.
#![no_main]

use std::sync::OnceLock;
use std::time::SystemTime;

use http::{Method, Uri};
use libfuzzer_sys::fuzz_target;
use tower_token_binding::proof::dpop::DpopVerifier;

fuzz_target!(|data: &[u8]| {
    static VERIFIER: OnceLock<DpopVerifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(DpopVerifier::new);
    let Ok(proof) = std::str::from_utf8(data) else {
        return;
    };
    let uri = Uri::from_static("https://api.example/items");
    let _ = verifier.verify(proof, &Method::GET, &uri, Some("token"), SystemTime::now());
});
