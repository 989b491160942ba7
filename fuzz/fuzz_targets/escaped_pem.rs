//! A URL-escaped PEM (nginx, ingress-nginx, AWS ALB, Traefik): any bytes as
//! a field value, never a panic; what parses is a certificate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_token_binding::server::forwarded::parse_escaped_pem;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(peer)) = parse_escaped_pem(data) {
        assert!(peer.certificate().is_some());
    }
});
