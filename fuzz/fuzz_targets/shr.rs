//! Microsoft's signed HTTP request (`Authorization: PoP <SHR>`): the first
//! line of the input as the SHR, the rest as the request's query, verified
//! with `q` required. Never a panic, and linear in the query.
#![no_main]

use std::sync::OnceLock;
use std::time::SystemTime;

use http::{HeaderMap, Method, Uri};
use libfuzzer_sys::fuzz_target;
use tower_token_binding::proof::pop::PopVerifier;

fuzz_target!(|data: &[u8]| {
    static VERIFIER: OnceLock<PopVerifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| PopVerifier::builder().require_query(true).build());
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (shr, query) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(uri) = format!("https://api.example/items?{query}").parse::<Uri>() else {
        return;
    };
    let _ = verifier.verify(shr, &Method::GET, &uri, &HeaderMap::new(), None, SystemTime::now());
});
