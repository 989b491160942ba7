//! The examples run as separate processes, as a user runs them: the demo,
//! the client and resource server, `explain`, and the resource server
//! behind trusted and real proxies.

#[cfg(feature = "test-util")]
#[macro_use]
#[path = "../support/mod.rs"]
mod support;

mod behind_real_proxies;
mod client_example;
mod client_example_pop;
mod demo;
mod explain_example;
mod grpc_example;
mod reqwest_example;
mod resource_server_example;
mod trusted_proxy;
