//! The runner of test binaries whose every test needs a program on the
//! machine (Node.js for the interop peer, `redis-server` for the fleet):
//! when it is missing, each test is reported `ignored`, with the reason
//! printed once, instead of passing without having run. Under `CI` a
//! missing program is no reason to skip: the tests run and fail.
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     support::harness::run(
//!         support::redis::missing(),
//!         async_tests![fleet_replay::a_replay_is_refused_across_instances],
//!     )
//! }
//! ```
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::process::ExitCode;

use libtest_mimic::{Arguments, Trial};

/// One async test: its name as libtest would print it, and the test.
pub type AsyncTest = (&'static str, fn() -> Pin<Box<dyn Future<Output = ()>>>);

/// The async tests named `module::function`, each run on its own
/// current-thread runtime, as `#[tokio::test]` would.
#[macro_export]
macro_rules! async_tests {
    ($($module:ident :: $test:ident),* $(,)?) => {
        vec![$(
            (
                concat!(stringify!($module), "::", stringify!($test)),
                (|| Box::pin($module::$test()) as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>)
                    as fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
            )
        ),*]
    };
}

/// Whether the environment variable `CI` says this is a CI run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Runs `tests` with libtest's command line; all of them `ignored` when
/// `missing` names what they need and this is not CI.
pub fn run(missing: Option<String>, tests: Vec<AsyncTest>) -> ExitCode {
    let args = Arguments::from_args();
    let skip = missing.filter(|_| !in_ci());
    if let Some(reason) = &skip {
        if !args.list {
            let line = "!".repeat(78);
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n{line}\nSKIPPED, every test below is ignored: {reason}\n{line}\n"
            );
        }
    }
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            Trial::test(name, move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot build a runtime: {e}"))?
                    .block_on(test());
                Ok(())
            })
            .with_ignored_flag(skip.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
