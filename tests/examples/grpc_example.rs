//! `cargo run --example grpc` behaves as its header says: a bound unary
//! call succeeds, the stolen token is refused with `UNAUTHENTICATED` and
//! its challenge, exit 0.
#![cfg(feature = "test-util")]

use crate::support;

#[tokio::test]
async fn the_grpc_example_calls_once_refuses_the_stolen_token_and_exits_0() {
    let stdout = support::example_stdout("grpc").await;
    for line in [
        "bound call: ok, the server says \"hello, svc\"",
        "stolen token: refused, Unauthenticated",
        "www-authenticate: Bearer error=\"invalid_token\"",
        "every step behaved as expected",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
}
