//! The examples as a fleet sharing one real Redis: two
//! `examples/resource_server` processes with `--replay-store` refuse on
//! the second a DPoP proof the first accepted; three `examples/client`
//! processes with `--token-cache` (one certificate) get one token from the
//! issuer between them.
#![cfg(all(feature = "test-util", feature = "axum", feature = "redis"))]

use crate::support;
use crate::support::dpop;
use crate::support::redis as redis_support;
use std::path::Path;

use http::{Method, StatusCode};
use redis_support::RedisServer;
use tokio::process::Command;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

pub(crate) async fn example_servers_share_replay_state_and_example_clients_share_tokens() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = dpop::setup().await;
    let dir = tempfile::tempdir().unwrap();
    let server_cert = s.pki.server_cert().unwrap();
    let cert = write(dir.path(), "server.pem", server_cert.cert_pem());
    let key = write(dir.path(), "server.key", server_cert.key_pem());
    let ca = write(dir.path(), "ca.pem", &s.pki.ca_pem());
    let redis_url = redis.url();
    let mut servers = Vec::new();
    for _ in 0..2 {
        servers.push(
            support::spawn_announcing(
                "resource_server",
                &[
                    "--listen",
                    "127.0.0.1:0",
                    "--tls-cert",
                    &cert,
                    "--tls-key",
                    &key,
                    "--any-client-cert",
                    "--issuer",
                    s.issuer.issuer(),
                    "--audience",
                    s.issuer.audience(),
                    "--issuer-ca",
                    &ca,
                    "--public-origin",
                    "https://api.example.com",
                    "--replay-store",
                    &redis_url,
                ],
            )
            .await,
        );
    }

    // One proof, for the public origin: accepted once in the fleet.
    let proof = s
        .proofs
        .proof(
            &Method::GET,
            &dpop::uri("https://api.example.com/whoami"),
            Some(&s.token),
        )
        .unwrap();
    let client = support::https_client(&s.pki, None);
    let mut statuses = Vec::new();
    for (_, url) in servers.iter().chain(servers.iter()) {
        let call = dpop::Call::dpop(&format!("{url}/whoami"), &s.token, proof.clone());
        statuses.push(dpop::send(&client, &call).await.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED
        ]
    );
    assert_eq!(redis.keys().len(), 1, "{:?}", redis.keys());

    // Three client processes, one after the other, one certificate.
    let me = s.pki.client_cert("svc.example").unwrap();
    let (my_cert, my_key) = me.write_pem_files(dir.path(), "client").unwrap();
    let whoami = format!("{}/whoami", servers[0].1);
    let before = s.issuer.tokens_issued();
    for n in 0..3 {
        let output = Command::new(support::example_binary("client"))
            .args(["--issuer", s.issuer.issuer(), "--client-id", "svc"])
            .arg("--cert")
            .arg(&my_cert)
            .arg("--key")
            .arg(&my_key)
            .args(["--ca", &ca, "--token-cache", &redis_url])
            .args(["--requests", "5", &whoami])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Each process asks its source at most once, and only the first
        // one reaches the issuer.
        let fetched = if n == 0 { 1 } else { 0 };
        assert!(
            stdout
                .trim_end()
                .ends_with(&format!("requests=5 ok=5 token_fetches={fetched}")),
            "{stdout}"
        );
    }
    assert_eq!(s.issuer.tokens_issued(), before + 1);
}
