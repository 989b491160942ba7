//! Robustness and shutdown of `serve` over real TLS on loopback: a silent
//! client is dropped after the handshake timeout, garbage and broken
//! handshakes do not stop the server, and graceful shutdown lets in-flight
//! requests finish, closes what is left after its timeout and does not wait
//! for handshakes.
#![cfg(feature = "test-util")]

use crate::support;
use crate::support::tls_server;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use rustls::pki_types::ServerName;
use tls_server::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tower_token_binding::server::ClientCertMode;
use tower_token_binding::test_util::TestPki;

async fn closed_by_server(tcp: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
}

#[tokio::test]
async fn a_silent_client_holds_up_nobody_and_is_dropped_after_the_handshake_timeout() {
    let pki = TestPki::new().unwrap();
    let cert = pki.client_cert("client.example").unwrap();

    // A handshake timeout far longer than the test: the silent client is
    // still waiting while the others are served.
    let patient = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        Echo::default().service(),
        |s| s.handshake_timeout(Duration::from_secs(600)),
        None,
    );
    let _silent = TcpStream::connect(patient.addr).await.unwrap();
    let mut half = TcpStream::connect(patient.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    for alpn in [H1, H2] {
        let seen = fetch(patient.addr, client_config(&pki, Some(&cert), alpn))
            .await
            .unwrap();
        assert_eq!(seen.thumbprint, cert.thumbprint().to_string());
    }

    // A short one: the silent client is dropped, the server goes on. (Not
    // shorter: the real client's handshake must fit in it on a busy machine.)
    let strict = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        Echo::default().service(),
        |s| s.handshake_timeout(Duration::from_secs(1)),
        None,
    );
    let mut silent = TcpStream::connect(strict.addr).await.unwrap();
    closed_by_server(&mut silent).await;
    fetch(strict.addr, client_config(&pki, Some(&cert), H2))
        .await
        .unwrap();
}

#[tokio::test]
async fn garbage_and_broken_handshakes_do_not_stop_the_server() {
    let pki = TestPki::new().unwrap();
    let echo = Echo::default();
    let server = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        echo.service(),
        |s| s,
        None,
    );
    let garbage: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        &[0x16, 0x03, 0x01, 0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0u8; 4096],
    ];
    for bytes in garbage {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        closed_by_server(&mut tcp).await;
    }
    // Hang up at once, and hang up half-way through the handshake.
    drop(TcpStream::connect(server.addr).await.unwrap());
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    drop(half);
    // Garbage after a good handshake: answered with a 400 (or just closed).
    let mut conn = TlsConnector::from(Arc::new(client_config(&pki, None, H1)))
        .connect(
            ServerName::try_from("localhost").unwrap(),
            TcpStream::connect(server.addr).await.unwrap(),
        )
        .await
        .unwrap();
    conn.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    for alpn in [H1, H2] {
        fetch(server.addr, client_config(&pki, None, alpn))
            .await
            .unwrap();
    }
    assert_eq!(echo.calls(), 2);
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let pki = TestPki::new().unwrap();
    let cert = pki.client_cert("client.example").unwrap();
    for alpn in [H1, H2] {
        let echo = Echo::default();
        let mut server = TestServer::start(
            listener().await,
            tls(&pki, ClientCertMode::any_certificate()),
            echo.service(),
            |s| s,
            None,
        );
        let mut conn = connect(server.addr, client_config(&pki, Some(&cert), alpn))
            .await
            .unwrap();
        let entered = echo.entered.notified();
        let in_flight = tokio::spawn(async move { conn.get("/slow").await });
        entered.await;

        let (logs, capturing) = support::Logs::capture(tracing::Level::DEBUG);
        server.stop();
        // Once the server has stopped accepting (in the same run of its
        // task that would end it, were it not to wait), still waiting for
        // the request...
        support::until(Duration::from_secs(20), || {
            !logs.with("no longer accepting").is_empty()
        })
        .await;
        drop(capturing);
        assert!(!server.is_finished());
        assert!(!in_flight.is_finished());

        // ...which finishes normally, and then the server is done.
        echo.release.notify_one();
        let (status, _, body) = in_flight.await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(seen(&body).thumbprint, cert.thumbprint().to_string());
        server.finished().await;

        // It no longer accepts.
        assert!(
            fetch(server.addr, client_config(&pki, Some(&cert), alpn))
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn the_shutdown_timeout_closes_what_is_left() {
    let pki = TestPki::new().unwrap();
    let echo = Echo::default();
    let mut server = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        echo.service(),
        // A handshake that would take forever is abandoned too.
        |s| s.handshake_timeout(Duration::from_secs(600)),
        Some(Duration::from_millis(200)),
    );
    let mut conn = connect(server.addr, client_config(&pki, None, H2))
        .await
        .unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let entered = echo.entered.notified();
    let in_flight = tokio::spawn(async move { conn.get("/never").await });
    entered.await;

    server.stop();
    server.finished().await;
    assert!(in_flight.await.unwrap().is_err());
    closed_by_server(&mut silent).await;
}

#[tokio::test]
async fn a_shutdown_does_not_wait_for_handshakes() {
    let pki = TestPki::new().unwrap();
    let mut server = TestServer::start(
        listener().await,
        tls(&pki, ClientCertMode::any_certificate()),
        Echo::default().service(),
        |s| s.handshake_timeout(Duration::from_secs(600)),
        None,
    );
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Make sure the server has accepted it.
    fetch(server.addr, client_config(&pki, None, H1))
        .await
        .unwrap();
    server.stop();
    server.finished().await;
    closed_by_server(&mut silent).await;
}
