//! `cargo run --example demo` behaves as the README says: six steps, exit 0.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
#[tokio::test]
async fn the_demo_runs_its_six_steps_and_exits_0() {
    let stdout = support::example_stdout("demo").await;
    for step in ["\n1. ", "\n2. ", "\n3. ", "\n4. ", "\n5. ", "\n6. "] {
        assert!(stdout.contains(step), "step {step:?} missing:\n{stdout}");
    }
    assert!(!stdout.contains("not as expected"), "{stdout}");
    assert!(
        stdout.contains("every step behaved as expected"),
        "{stdout}"
    );
    assert!(stdout.contains("token fetches: 1;"), "{stdout}");

    // Step 6, DPoP: accepted with the client's key, no certificate; the
    // same token refused with a thief's proof and with a replayed proof.
    let dpop = &stdout[stdout.find("\n6. ").unwrap()..];
    for line in [
        "token_type DPoP, cnf.jkt = ",
        "-> 200 OK (server saw DPoP key ",
        "certificate none)",
        "ok: 200 with a fresh proof by the client's key, no client certificate",
        "ok: the token is a DPoP token bound to the client's key",
        "-> 401 Unauthorized  WWW-Authenticate: DPoP error=\"invalid_token\"",
        "ok: 401 invalid_token: the token is useless without the client's key",
        "-> 401 Unauthorized  WWW-Authenticate: DPoP error=\"invalid_dpop_proof\"",
        "the DPoP proof has been used before",
        "ok: 401 invalid_dpop_proof: a proof is accepted once",
    ] {
        assert!(dpop.contains(line), "{line:?} missing from step 6:\n{dpop}");
    }
    // The server saw the key the token is bound to.
    let key = |after: &str| {
        let at = dpop.find(after).unwrap() + after.len();
        dpop[at..].split('…').next().unwrap().to_owned()
    };
    assert_eq!(key("cnf.jkt = "), key("server saw DPoP key "), "{dpop}");
    assert_eq!(key("jkt = "), key("cnf.jkt = "), "{dpop}");
}
