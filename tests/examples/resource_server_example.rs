//! Drives `examples/resource_server.rs` as a separate process, the way a test
//! outside Rust would.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::{get_json, https_client, send};
use tokio::process::Command;
use tower_token_binding::test_util::{TestIssuer, TestPki};

struct Server {
    child: tokio::process::Child,
    url: String,
}

async fn start(args: &[&str]) -> Server {
    let (child, url) = support::spawn_announcing("resource_server", args).await;
    Server { child, url }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn token(
    pki: &TestPki,
    issuer: &TestIssuer,
    identity: Option<&tower_token_binding::ClientIdentity>,
) -> String {
    let (status, body) = support::post_form(
        &https_client(pki, identity),
        &issuer.token_endpoint(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "svc"),
            ("scope", "read"),
        ],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    body["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn over_mtls_with_the_keys_found_through_the_issuer() {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server_cert = pki.server_cert().unwrap();
    let cert = write(dir.path(), "server.pem", server_cert.cert_pem());
    let key = write(dir.path(), "server.key", server_cert.key_pem());
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let mut server = start(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--any-client-cert",
        "--issuer",
        issuer.issuer(),
        "--audience",
        issuer.audience(),
        "--issuer-ca",
        &ca,
        "--required-scope",
        "read",
    ])
    .await;
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );

    let client_cert = TestPki::self_signed_client("svc.example").unwrap();
    let identity = client_cert.identity().unwrap();
    let bound = token(&pki, &issuer, Some(&identity)).await;
    let whoami = format!("{}/whoami", server.url);
    let get = |token: &str| {
        Request::get(&whoami)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    let (status, body) = send(&https_client(&pki, Some(&identity)), get(&bound)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sub"], "svc");
    assert_eq!(body["client_id"], "svc");
    assert_eq!(body["scope"], "read");
    assert_eq!(body["x5t#S256"], identity.thumbprint().to_string());

    // The stolen token from another certificate, or none.
    let thief = pki
        .client_cert("thief.example")
        .unwrap()
        .identity()
        .unwrap();
    let (status, _) = send(&https_client(&pki, Some(&thief)), get(&bound)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&https_client(&pki, None), get(&bound)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // No token; a valid token on another path.
    let (status, _) = get_json(&https_client(&pki, Some(&identity)), &whoami).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let other = Request::get(format!("{}/nothing", server.url))
        .header(header::AUTHORIZATION, format!("Bearer {bound}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let (status, _) = send(&https_client(&pki, Some(&identity)), other).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The keys came from the jwks_uri in the issuer's metadata, once.
    assert_eq!(issuer.jwks_fetches(), 1);

    server.child.kill().await.unwrap();
}

/// DPoP next to mTLS, with server nonces and a public origin: a proof
/// without the nonce is answered `use_dpop_nonce` and the nonce, the retry
/// with it is accepted, the same proof again (a replay) is refused, and so
/// is a proof for the server's own address rather than the public origin.
#[tokio::test]
async fn dpop_with_nonces_behind_a_public_origin() {
    use http::Method;
    use tower_token_binding::proof::dpop::{DPOP, DPOP_NONCE, DpopProofs};
    use tower_token_binding::proof::{Algorithm, ProofKey};

    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server_cert = pki.server_cert().unwrap();
    let cert = write(dir.path(), "server.pem", server_cert.cert_pem());
    let key = write(dir.path(), "server.key", server_cert.key_pem());
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let mut server = start(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--issuer",
        issuer.issuer(),
        "--audience",
        issuer.audience(),
        "--issuer-ca",
        &ca,
        "--dpop-nonce",
        "--public-origin",
        "https://api.example.com",
    ])
    .await;

    let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let mut claims = issuer.claims("svc", None);
    claims["cnf"] = serde_json::json!({ "jkt": proofs.thumbprint().to_string() });
    let token = issuer.sign(&claims).unwrap();
    let public: http::Uri = "https://api.example.com/whoami".parse().unwrap();
    let whoami = format!("{}/whoami", server.url);
    let client = https_client(&pki, None);
    let call = |proof: &str| {
        Request::get(&whoami)
            .header(header::AUTHORIZATION, format!("DPoP {token}"))
            .header(DPOP, proof)
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    // No nonce yet: 401 use_dpop_nonce, and the nonce to use.
    let proof = proofs.proof(&Method::GET, &public, Some(&token)).unwrap();
    let response = client.request(call(&proof)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(
        challenge.starts_with("DPoP error=\"use_dpop_nonce\""),
        "{challenge}"
    );
    assert!(
        challenge.ends_with(", Bearer"),
        "mTLS is accepted too: {challenge}"
    );
    let nonce = response.headers()[DPOP_NONCE].to_str().unwrap().to_owned();

    // With it: accepted, the key's thumbprint proven.
    proofs.nonces().remember(&public, &nonce);
    let proof = proofs.proof(&Method::GET, &public, Some(&token)).unwrap();
    let (status, body) = send(&client, call(&proof)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["binding"], "dpop");
    assert_eq!(body["jkt"], proofs.thumbprint().to_string());

    // A stolen proof, replayed: refused.
    let response = client.request(call(&proof)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(
        challenge.starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    // A proof for the address the server listens on, not the public origin.
    let local: http::Uri = whoami.parse().unwrap();
    proofs.nonces().remember(&local, &nonce);
    let proof = proofs.proof(&Method::GET, &local, Some(&token)).unwrap();
    let response = client.request(call(&proof)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    server.child.kill().await.unwrap();
}

/// `--accept-pop` next to mTLS and DPoP: a signed HTTP request by the
/// token's key is accepted once and reported as `pop` with its KID; the
/// token presented bare is refused; challenges offer `PoP`.
#[tokio::test]
async fn pop_beside_the_other_bindings() {
    use http::Method;
    use tower_token_binding::proof::pop::PopProofs;
    use tower_token_binding::proof::{Algorithm, ProofKey};

    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server_cert = pki.server_cert().unwrap();
    let cert = write(dir.path(), "server.pem", server_cert.cert_pem());
    let key = write(dir.path(), "server.key", server_cert.key_pem());
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let mut server = start(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--issuer",
        issuer.issuer(),
        "--audience",
        issuer.audience(),
        "--issuer-ca",
        &ca,
        "--accept-pop",
    ])
    .await;

    let shrs = PopProofs::new(ProofKey::generate(Algorithm::Ps256).unwrap());
    let mut claims = issuer.claims("svc", None);
    claims["cnf"] = serde_json::json!({ "kid": shrs.kid().to_string() });
    let token = issuer.sign(&claims).unwrap();
    // The server answers on 127.0.0.1: the SHR's `u` names it.
    let whoami = format!("{}/whoami", server.url);
    let client = https_client(&pki, None);
    let call = |authorization: String| {
        Request::get(&whoami)
            .header(header::AUTHORIZATION, authorization)
            .body(Full::<Bytes>::default())
            .unwrap()
    };

    let shr = shrs
        .sign(&Method::GET, &whoami.parse().unwrap(), &token)
        .unwrap();
    let (status, body) = send(&client, call(format!("PoP {shr}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["binding"], "pop");
    assert_eq!(body["kid"], shrs.kid().to_string());
    assert_eq!(body["sub"], "svc");

    // The same SHR again, and the token without one: refused.
    let challenge = |response: http::Response<hyper::body::Incoming>| {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let replayed = challenge(client.request(call(format!("PoP {shr}"))).await.unwrap());
    assert!(
        replayed.starts_with("PoP error=\"invalid_token\""),
        "{replayed}"
    );
    let bare = challenge(
        client
            .request(call(format!("Bearer {token}")))
            .await
            .unwrap(),
    );
    assert!(bare.starts_with("Bearer error=\"invalid_token\""), "{bare}");
    assert!(bare.ends_with(", PoP"), "PoP is offered: {bare}");

    server.child.kill().await.unwrap();
}

#[tokio::test]
async fn behind_a_proxy_with_a_jwks_file() {
    let fetches = behind_a_proxy(|dir, _, issuer| {
        vec![
            "--jwks-file".to_owned(),
            write(dir, "jwks.json", &issuer.jwks().to_string()),
        ]
    })
    .await;
    assert_eq!(fetches, 0, "the keys come from the file");
}

#[tokio::test]
async fn behind_a_proxy_with_the_keys_found_through_the_issuer() {
    let fetches = behind_a_proxy(|dir, pki, _| {
        vec![
            "--issuer-ca".to_owned(),
            write(dir, "ca.pem", &pki.ca_pem()),
        ]
    })
    .await;
    assert_eq!(fetches, 1);
}

/// The example in trusted-proxy mode, its keys set by `keys`; returns the
/// issuer's JWKS fetches.
async fn behind_a_proxy(keys: impl FnOnce(&Path, &TestPki, &TestIssuer) -> Vec<String>) -> usize {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path(), &pki, &issuer);
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--issuer",
        issuer.issuer(),
        "--audience",
        issuer.audience(),
        "--trust-client-cert-header",
        // The test connects from loopback.
        "--trusted-proxy",
        "127.0.0.0/8",
    ];
    args.extend(keys.iter().map(String::as_str));
    let mut server = start(&args).await;
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );

    let client_cert = pki.client_cert("svc.example").unwrap();
    let identity = client_cert.identity().unwrap();
    let bound = token(&pki, &issuer, Some(&identity)).await;
    let plain: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let forwarded = |cert_header: &str| {
        Request::get(format!("{}/whoami", server.url))
            .header(header::AUTHORIZATION, format!("Bearer {bound}"))
            .header("client-cert", cert_header)
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    let der = base64::engine::general_purpose::STANDARD.encode(client_cert.cert());

    let response = plain.request(forwarded(&format!(":{der}:"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = plain
        .request(forwarded("not a byte sequence"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let other = pki.client_cert("other.example").unwrap();
    let other = base64::engine::general_purpose::STANDARD.encode(other.cert());
    let response = plain
        .request(forwarded(&format!(":{other}:")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    server.child.kill().await.unwrap();
    issuer.jwks_fetches()
}

/// Runs the example with `args`, expecting it to fail at once; returns its
/// exit code and stderr.
async fn refused(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(support::example_binary("resource_server"))
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "{args:?} was accepted");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn bad_arguments_exit_with_a_message() {
    let (code, stderr) = refused(&["--help"]).await;
    assert_eq!(code, Some(2));
    assert!(stderr.starts_with("usage: resource_server"), "{stderr}");
    let (_, stderr) = refused(&["--listen", "127.0.0.1:0", "--bogus"]).await;
    assert!(stderr.contains("unknown argument"), "{stderr}");

    let base = [
        "--listen",
        "127.0.0.1:0",
        "--issuer",
        "https://x",
        "--audience",
        "y",
    ];
    let with = |more: &[&'static str]| [&base[..], more].concat();
    // ResourceServer's build refuses a missing file, naming it, before
    // anything listens.
    let (_, stderr) = refused(&with(&[
        "--tls-cert",
        "/nonexistent.pem",
        "--tls-key",
        "/nonexistent.key",
    ]))
    .await;
    assert!(stderr.contains("/nonexistent.pem"), "{stderr}");
    let (_, stderr) = refused(&with(&[
        "--trust-client-cert-header",
        "--trusted-proxy",
        "127.0.0.1",
        "--jwks-file",
        "/nonexistent.json",
    ]))
    .await;
    assert!(stderr.contains("/nonexistent.json"), "{stderr}");
    // Options that do not go together.
    let (_, stderr) = refused(&with(&[
        "--tls-cert",
        "a.pem",
        "--tls-key",
        "a.key",
        "--client-ca",
        "ca.pem",
        "--any-client-cert",
    ]))
    .await;
    assert!(
        stderr.contains("at most one of --client-ca and --any-client-cert"),
        "{stderr}"
    );
    let (_, stderr) = refused(&with(&[
        "--tls-cert",
        "a.pem",
        "--tls-key",
        "a.key",
        "--jwks-file",
        "jwks.json",
    ]))
    .await;
    assert!(
        stderr.contains("--jwks-file works with --forwarded only"),
        "{stderr}"
    );
    let (_, stderr) = refused(&with(&[
        "--tls-cert",
        "a.pem",
        "--tls-key",
        "a.key",
        "--public-origin",
        "api.example.com",
    ]))
    .await;
    assert!(stderr.contains("is not a public origin"), "{stderr}");
}

/// `--token-profile okta` with two `--issuer`s: an Okta-shaped token (no
/// `typ`, `cid`, `scp` array) from the second is accepted and read as Okta
/// shapes it, `--required-scope` looking in `scp`; an unknown profile name
/// or a multi-tenant issuer without `--allowed-tenant` is refused at start.
#[tokio::test]
async fn token_profiles_and_several_issuers() {
    use tower_token_binding::test_util::get_with_token;
    let pki = TestPki::new().unwrap();
    let first = TestIssuer::start(&pki).await.unwrap();
    let second = TestIssuer::start(&pki).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server_cert = pki.server_cert().unwrap();
    let cert = write(dir.path(), "server.pem", server_cert.cert_pem());
    let key = write(dir.path(), "server.key", server_cert.key_pem());
    let ca = write(dir.path(), "ca.pem", &pki.ca_pem());
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--issuer",
        first.issuer(),
        "--issuer",
        second.issuer(),
        "--audience",
        "api://orders",
        "--issuer-ca",
        &ca,
        "--token-profile",
        "okta",
        "--required-scope",
        "orders.read",
    ];
    let mut server = start(&args).await;
    let holder = pki.client_cert("holder.example").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |scp: &str| {
        let claims = serde_json::json!({
            "ver": 1, "jti": format!("AT.{scp}"), "iss": second.issuer(), "aud": "api://orders",
            "iat": now, "exp": now + 300, "cid": "0oa1b2c3", "sub": "0oa1b2c3", "scp": [scp],
            "cnf": { "x5t#S256": holder.thumbprint().to_string() },
        });
        second.sign_with_typ(None, &claims).unwrap()
    };
    let url = format!("{}/whoami", server.url);
    let identity = holder.identity().unwrap();
    let response = get_with_token(&pki, &url, &token("orders.read"), Some(&identity))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["client_id"], "0oa1b2c3");
    assert_eq!(body["scopes"], serde_json::json!(["orders.read"]));
    let response = get_with_token(&pki, &url, &token("orders.write"), Some(&identity))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(first.jwks_fetches(), 0, "the first issuer was never asked");
    server.child.kill().await.unwrap();

    let mut unknown = args.to_vec();
    let at = unknown.iter().position(|a| *a == "okta").unwrap();
    unknown[at] = "google";
    let (code, stderr) = refused(&unknown).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--token-profile takes one of rfc9068, entra"),
        "{stderr}"
    );
    let organizations = first.multi_tenant_endpoint();
    let (_, stderr) = refused(&[
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--issuer",
        &organizations,
        "--audience",
        "api://orders",
        "--token-profile",
        "entra",
    ])
    .await;
    assert!(stderr.contains("allow-list of tenants"), "{stderr}");
}
