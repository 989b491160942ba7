//! `cargo run --example reqwest_client` behaves as its header says: a
//! certificate-bound call and a DPoP-bound call succeed, the stolen token
//! is refused with its challenge, exit 0.
#![cfg(feature = "test-util")]

use crate::support;

#[tokio::test]
async fn the_reqwest_example_calls_twice_refuses_the_stolen_token_and_exits_0() {
    let stdout = support::example_stdout("reqwest_client").await;
    for line in [
        "certificate-bound call: 200 OK, the server says \"orders for svc, bound by certificate ",
        "DPoP-bound call: 200 OK, the server says \"orders for reports, bound by DPoP key ",
        "stolen token: 401 Unauthorized; www-authenticate: Bearer error=\"invalid_token\"",
        "every step behaved as expected",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
}
