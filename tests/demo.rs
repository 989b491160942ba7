//! `cargo run --example demo` behaves as the README says: five steps, exit 0.
#![cfg(all(feature = "test-util", feature = "axum"))]

mod support;

#[tokio::test]
async fn the_demo_runs_its_five_steps_and_exits_0() {
    let output = tokio::process::Command::new(support::example_binary("demo"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for step in ["\n1. ", "\n2. ", "\n3. ", "\n4. ", "\n5. "] {
        assert!(stdout.contains(step), "step {step:?} missing:\n{stdout}");
    }
    assert!(!stdout.contains("not as expected"), "{stdout}");
    assert!(
        stdout.contains("every step behaved as expected"),
        "{stdout}"
    );
    assert!(stdout.contains("token fetches: 1;"), "{stdout}");
}
