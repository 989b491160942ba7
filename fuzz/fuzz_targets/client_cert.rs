//! RFC 9440 `Client-Cert`: any bytes as a field value, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_token_binding::server::forwarded::parse_client_cert_header;

fuzz_target!(|data: &[u8]| {
    let _ = parse_client_cert_header(data);
});
