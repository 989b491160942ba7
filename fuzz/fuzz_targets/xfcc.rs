//! Envoy's `x-forwarded-client-cert`: any bytes as a header value, parsed
//! as one element list, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_token_binding::server::forwarded::parse_xfcc_header;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let _ = parse_xfcc_header(&value);
    }
});
