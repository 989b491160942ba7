//! What the crate does so far, end to end on loopback: a generated PKI, the
//! embedded authorization server, and bound tokens fetched over real mTLS.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! It exits 0 only if every step behaved as it says. (The full demo, with a
//! resource server and the client layer, grows here as those parts land.)

use std::process::ExitCode;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::{ClientIdentity, Confirmation};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => {
            println!("\nall steps behaved as expected");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let pki = TestPki::new()?;
    let issuer = TestIssuer::start(&pki).await?;
    println!("authorization server: {}", issuer.issuer());

    let a = pki.client_cert("client-a.example")?.identity()?;
    let b = TestPki::self_signed_client("client-b.example")?.identity()?;
    println!("client A (CA-issued):   x5t#S256={}", a.thumbprint());
    println!("client B (self-signed): x5t#S256={}", b.thumbprint());

    println!("\n1. client A asks for a token over mTLS");
    let claims = fetch_claims(&pki, &issuer, Some(&a)).await?;
    let cnf = Confirmation::from_claims(&claims)?.ok_or("the token has no cnf claim")?;
    let bound = cnf.thumbprint().ok_or("the cnf claim has no x5t#S256")?;
    println!("   token cnf.x5t#S256={bound}");
    check(
        cnf.is_bound_to(&a.thumbprint()),
        "   bound to A's certificate: yes",
    )?;
    check(
        !cnf.is_bound_to(&b.thumbprint()),
        "   would a server accept it from B's certificate? no",
    )?;

    println!("\n2. client B asks for a token with its self-signed certificate");
    let claims = fetch_claims(&pki, &issuer, Some(&b)).await?;
    let cnf = Confirmation::from_claims(&claims)?.ok_or("the token has no cnf claim")?;
    check(
        cnf.is_bound_to(&b.thumbprint()),
        "   bound to B's certificate: yes",
    )?;

    println!("\n3. a client without a certificate asks for a token");
    let claims = fetch_claims(&pki, &issuer, None).await?;
    check(
        Confirmation::from_claims(&claims)?.is_none(),
        "   the token is unbound (no cnf): a bearer token",
    )?;

    println!("\ntokens issued: {}", issuer.tokens_issued());
    check(issuer.tokens_issued() == 3, "three requests, three tokens")?;
    Ok(())
}

fn check(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok {
        println!("{what}");
        Ok(())
    } else {
        Err(format!("not as expected: {what}").into())
    }
}

/// Gets a token with the client credentials grant and returns its claims
/// (read without checking the signature: this step only shows the binding).
async fn fetch_claims(
    pki: &TestPki,
    issuer: &TestIssuer,
    identity: Option<&ClientIdentity>,
) -> Result<Value, BoxError> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(pki.client_config(identity)?)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = Request::post(issuer.token_endpoint())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(
            b"grant_type=client_credentials&client_id=demo",
        )))?;
    let response = client.request(request).await?;
    let status = response.status();
    let body: Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
    println!(
        "   POST /token -> {status}, token_type={}",
        body["token_type"]
    );
    let token = body["access_token"].as_str().ok_or("no access_token")?;
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(token)?.claims;
    Ok(claims)
}
