//! The whole story on loopback, in a few seconds: a certificate-bound token
//! works, the same token stolen and replayed from another certificate is
//! refused, a renewed certificate gets a fresh token and fresh connections,
//! a rejected token is replaced by the retry policy, 1,000 concurrent
//! calls cost one token, and a DPoP-bound token (RFC 9449) works with no
//! certificate at all while the same token with a thief's proof, or with the
//! client's own proof replayed, is refused.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! Everything runs in this process on 127.0.0.1 with a PKI generated at
//! start: the crate's test authorization server, a resource server behind
//! `CnfValidationLayer`, and the client a user would build in one expression
//! (`BoundClient`: the retry policy, `TokenBindingLayer`, the token cache,
//! client credentials and the per-certificate pool), its certificate and key
//! read from files that are watched for renewal; then a second client, built
//! with `Scheme::Dpop`, and an API instance that accepts DPoP next to mTLS.
//! It exits 0 only if every step behaved as it says.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};
use tower_token_binding::binding::Scheme;
use tower_token_binding::identity::ReloadingIdentity;
use tower_token_binding::pool::MtlsClientPool;
use tower_token_binding::proof::dpop::{DPOP, DpopProofs, DpopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::server::{self, AnyClientCertVerifier, ConnectionInfo, PeerCertificate};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::{BoxError, Token};
use tower_token_binding::validation::{
    CnfValidationLayer, JwksSource, JwtValidator, VerifiedToken,
};
use tower_token_binding::{BoundClient, ClientIdentity, ProvenBinding};

/// The DPoP client of step 6 authenticates with a secret: it has no
/// certificate.
const DPOP_CLIENT: &str = "dpop-client";
const DPOP_CLIENT_SECRET: &str = "dpop-demo-secret";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => {
            println!("\nevery step behaved as expected");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(ok: bool, what: impl AsRef<str>) -> Result<(), BoxError> {
    if ok {
        println!("   ok: {}", what.as_ref());
        Ok(())
    } else {
        Err(format!("not as expected: {}", what.as_ref()).into())
    }
}

/// The first characters of a thumbprint, enough to tell them apart.
fn short(thumbprint: impl std::fmt::Display) -> String {
    let text = thumbprint.to_string();
    format!("{}…", text.get(..12).unwrap_or(&text))
}

/// The thumbprint the server saw, shortened.
fn seen(outcome: &Outcome) -> String {
    outcome.body["x5t#S256"]
        .as_str()
        .map_or("none".to_owned(), short)
}

/// The DPoP key the server saw, shortened.
fn seen_key(outcome: &Outcome) -> String {
    outcome.body["jkt"]
        .as_str()
        .map_or("none".to_owned(), short)
}

/// The resource server: TLS asking for client certificates, the
/// `CnfValidationLayer`, and a handler that says who called and which
/// binding the request proved. Counts TLS connections (handshakes) and
/// requests, and keeps the `DPoP` proofs it receives, as a request log in
/// front of the API would.
struct Api {
    url: String,
    connections: Arc<Mutex<HashSet<SocketAddr>>>,
    requests: Arc<AtomicUsize>,
    proofs: Arc<Mutex<Vec<String>>>,
}

impl Api {
    fn handshakes(&self) -> usize {
        self.connections.lock().map(|c| c.len()).unwrap_or(0)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn captured_proofs(&self) -> Vec<String> {
        self.proofs.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// Which tokens an API instance accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Accepts {
    /// Certificate-bound tokens (RFC 8705).
    Certificates,
    /// Certificate-bound and DPoP-bound tokens (RFC 9449).
    CertificatesAndDpop,
}

async fn start_api(pki: &TestPki, issuer: &TestIssuer, accepts: Accepts) -> Result<Api, BoxError> {
    let validator = JwtValidator::builder()
        .issuer(issuer.issuer())
        .audience(issuer.audience())
        .jwks(JwksSource::remote(&issuer.jwks_uri())?.root_store(pki.root_store()))
        .build()?;
    let connections = Arc::new(Mutex::new(HashSet::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    let proofs = Arc::new(Mutex::new(Vec::new()));
    let seen = connections.clone();
    let counter = requests.clone();
    let log = proofs.clone();
    let handler = move |request: Request<Incoming>| {
        let seen = seen.clone();
        async move {
            if let (Some(info), Ok(mut seen)) =
                (request.extensions().get::<ConnectionInfo>(), seen.lock())
            {
                seen.insert(info.remote_addr());
            }
            let token = request.extensions().get::<VerifiedToken>();
            let peer = request.extensions().get::<PeerCertificate>();
            let (binding, jkt) = match token.map(VerifiedToken::binding) {
                Some(ProvenBinding::Certificate(_)) => ("certificate", None),
                Some(ProvenBinding::Dpop(jkt)) => ("dpop", Some(jkt.to_string())),
                _ => ("none", None),
            };
            let body = json!({
                "client_id": token.and_then(|t| t.client_id()),
                "x5t#S256": peer.map(|p| p.thumbprint().to_string()),
                "binding": binding,
                "jkt": jkt,
            });
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                body.to_string(),
            ))))
        }
    };
    let mut validation = CnfValidationLayer::new(validator);
    if accepts == Accepts::CertificatesAndDpop {
        validation = validation.accept_dpop(DpopVerifier::new());
    }
    let service = ServiceBuilder::new()
        .map_request(move |request: Request<Incoming>| {
            counter.fetch_add(1, Ordering::SeqCst);
            if let (Some(proof), Ok(mut log)) = (request.headers().get(DPOP), log.lock()) {
                log.push(String::from_utf8_lossy(proof.as_bytes()).into_owned());
            }
            request
        })
        .layer(validation)
        .service_fn(handler);
    let tls = pki.server_config(Arc::new(AnyClientCertVerifier::optional()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://localhost:{}/whoami", listener.local_addr()?.port());
    tokio::spawn(server::serve(listener, tls, service).into_future());
    Ok(Api {
        url,
        connections,
        requests,
        proofs,
    })
}

/// What one call saw.
struct Outcome {
    status: StatusCode,
    error: Option<String>,
    body: Value,
}

async fn outcome(response: Response<Incoming>) -> Result<Outcome, BoxError> {
    let status = response.status();
    let error = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(Outcome {
        status,
        error,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

/// Sends `token` by hand, over a connection presenting `identity` (or none):
/// what an attacker holding a stolen token can do.
async fn replay(
    pki: &TestPki,
    url: &str,
    token: &Token,
    identity: Option<&ClientIdentity>,
) -> Result<Outcome, BoxError> {
    let pool: MtlsClientPool<Full<Bytes>> = MtlsClientPool::builder()
        .root_store(pki.root_store())
        .build()?;
    let mut request = Request::get(url)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token.access_token().secret()),
        )
        .body(Full::default())?;
    if let Some(identity) = identity {
        request.extensions_mut().insert(identity.clone());
    }
    outcome(pool.oneshot(request).await?).await
}

/// Sends a DPoP-bound `token` by hand with the DPoP `proof` given, over a
/// connection presenting no certificate: what an attacker holding a stolen
/// token (and maybe a captured proof) can do.
async fn replay_dpop(
    pki: &TestPki,
    url: &str,
    token: &Token,
    proof: &str,
) -> Result<Outcome, BoxError> {
    let pool: MtlsClientPool<Full<Bytes>> = MtlsClientPool::builder()
        .root_store(pki.root_store())
        .build()?;
    let request = Request::get(url)
        .header(
            header::AUTHORIZATION,
            format!("DPoP {}", token.access_token().secret()),
        )
        .header(DPOP, proof)
        .body(Full::default())?;
    outcome(pool.oneshot(request).await?).await
}

/// The `cnf` member `name` of an access token (a JWT), read without
/// verifying it: what the token says it is bound to.
fn cnf_member(token: &Token, name: &str) -> Result<String, BoxError> {
    Ok(
        tower_token_binding::proof::jws::CompactJws::parse(token.access_token().secret())?
            .claims()
            .get("cnf")
            .and_then(|cnf| cnf.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    )
}

async fn run() -> Result<(), BoxError> {
    let pki = TestPki::new()?;
    let issuer = TestIssuer::builder()
        .client_secret(DPOP_CLIENT, DPOP_CLIENT_SECRET)
        .start(&pki)
        .await?;
    let api = start_api(&pki, &issuer, Accepts::Certificates).await?;
    let a_cert = pki.client_cert("client-a.example")?;
    let a = a_cert.identity()?;
    let b = TestPki::self_signed_client("client-b.example")?.identity()?;
    println!("authorization server  {}", issuer.issuer());
    println!("resource server       {}", api.url);
    println!("client A certificate  x5t#S256={}", a.thumbprint());
    println!("client B certificate  x5t#S256={}", b.thumbprint());

    // Client A's certificate and key, in files a renewal agent rewrites.
    let dir = tempfile::tempdir()?;
    let (cert_path, key_path) = a_cert.write_pem_files(dir.path(), "client-a")?;
    let identity = ReloadingIdentity::builder(&cert_path, &key_path)
        .poll_interval(Duration::from_millis(100))
        .build()?;

    // The client, in one expression.
    let client = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("demo-client")
        .identity(identity.clone())
        .root_store(pki.root_store())
        .build()?;
    let cache = client.cache().cloned().ok_or("no token cache")?;
    let call = |url: String| {
        let client = client.clone();
        async move {
            outcome(
                client
                    .oneshot(Request::get(url).body(Full::default())?)
                    .await?,
            )
            .await
        }
    };

    println!("\n1. Client A gets a token bound to its certificate and calls the API");
    let first = call(api.url.clone()).await?;
    let token = cache.get().await?;
    let token = token.token().clone();
    let cnf = cnf_member(&token, "x5t#S256")?;
    println!("   token cnf.x5t#S256 = {}", short(&cnf));
    println!(
        "   GET /whoami -> {} (server saw certificate {})",
        first.status,
        seen(&first)
    );
    check(
        first.status == StatusCode::OK,
        "200 with its own certificate",
    )?;
    check(
        cnf == a.thumbprint().to_string(),
        "the token is bound to A's certificate",
    )?;

    println!("\n2. The same token, stolen, replayed with client B's certificate");
    let stolen = replay(&pki, &api.url, &token, Some(&b)).await?;
    println!(
        "   GET /whoami -> {}  WWW-Authenticate: {}",
        stolen.status,
        stolen.error.as_deref().unwrap_or("")
    );
    check(
        stolen.status == StatusCode::UNAUTHORIZED
            && stolen
                .error
                .as_deref()
                .is_some_and(|e| e.contains("error=\"invalid_token\"")),
        "401 invalid_token: the token is useless without A's key",
    )?;

    println!("\n3. The same token with no client certificate at all");
    let bare = replay(&pki, &api.url, &token, None).await?;
    println!(
        "   GET /whoami -> {}  WWW-Authenticate: {}",
        bare.status,
        bare.error.as_deref().unwrap_or("")
    );
    check(bare.status == StatusCode::UNAUTHORIZED, "401 invalid_token")?;

    println!("\n4. Client A's certificate is renewed on disk (same key, new certificate)");
    let (fetches, handshakes) = (cache.stats().fetches, api.handshakes());
    let renewed_cert = pki.reissue(&a_cert)?;
    let renewed = renewed_cert.identity()?;
    println!("   new x5t#S256 = {}", short(renewed.thumbprint()));
    let mut changes = identity.subscribe();
    let written = Instant::now();
    std::fs::write(&cert_path, renewed_cert.cert_pem())?;
    tokio::time::timeout(Duration::from_secs(10), changes.changed()).await??;
    println!(
        "   the file watcher loaded it after {} ms (polling every 100 ms)",
        written.elapsed().as_millis()
    );
    let after = call(api.url.clone()).await?;
    println!(
        "   GET /whoami -> {} (server saw {}); tokens fetched +{}, TLS handshakes at the API +{}",
        after.status,
        seen(&after),
        cache.stats().fetches - fetches,
        api.handshakes() - handshakes
    );
    check(
        after.status == StatusCode::OK
            && after.body["x5t#S256"] == renewed.thumbprint().to_string(),
        "200, over a connection presenting the new certificate",
    )?;
    check(
        cache.stats().fetches - fetches == 1 && api.handshakes() - handshakes == 1,
        "exactly one new token and one new connection",
    )?;

    println!(
        "   The authorization server rolls its signing key; a new API instance trusts only the new key"
    );
    issuer.rotate_signing_key()?;
    issuer.retire_old_keys();
    let api2 = start_api(&pki, &issuer, Accepts::Certificates).await?;
    let fetches = cache.stats().fetches;
    let retried = call(api2.url.clone()).await?;
    let sent = api2.requests();
    println!(
        "   GET /whoami (new API) -> {}; requests sent {sent} (1 retry), tokens fetched +{}",
        retried.status,
        cache.stats().fetches - fetches
    );
    check(
        retried.status == StatusCode::OK && sent == 2 && cache.stats().fetches - fetches == 1,
        "401 invalid_token, then the retry policy dropped the token, got a new one, and the call succeeded",
    )?;

    println!("\n5. 1,000 concurrent calls from a fresh client (cold cache, new pool)");
    let fresh = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id("demo-client")
        .identity(a.clone())
        .root_store(pki.root_store())
        .build()?;
    let fresh_cache = fresh.cache().cloned().ok_or("no token cache")?;
    let handshakes = api2.handshakes();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (client, url) = (fresh.clone(), api2.url.clone());
        tasks.spawn(async move {
            let response = client
                .oneshot(Request::get(url).body(Full::default())?)
                .await?;
            Ok::<_, BoxError>(response.status())
        });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        if result?? == StatusCode::OK {
            ok += 1;
        }
    }
    let elapsed = started.elapsed();
    let handshakes = api2.handshakes() - handshakes;
    println!(
        "   {ok} of 1000 answered 200 in {:.0} ms; token fetches: {}; TLS handshakes: {handshakes}",
        elapsed.as_secs_f64() * 1000.0,
        fresh_cache.stats().fetches
    );
    check(ok == 1000, "every call succeeded")?;
    check(
        fresh_cache.stats().fetches == 1,
        "one token fetch for 1,000 concurrent calls",
    )?;
    check(
        (1..=16).contains(&handshakes),
        "a handful of connections at most, reused (HTTP/2 by ALPN)",
    )?;

    println!("\n6. DPoP (RFC 9449): a client with no certificate gets a token bound to its key");
    let api3 = start_api(&pki, &issuer, Accepts::CertificatesAndDpop).await?;
    // The client, in one expression: a new ES256 key, a client secret.
    let dpop_client = BoundClient::builder()
        .issuer(issuer.issuer())
        .client_id(DPOP_CLIENT)
        .client_secret_basic(DPOP_CLIENT_SECRET)
        .root_store(pki.root_store())
        .scheme(Scheme::Dpop)
        .build()?;
    let proofs = dpop_client.dpop_proofs().ok_or("no DPoP key")?;
    let jkt = proofs.thumbprint().to_string();
    println!(
        "   DPoP key {} (generated at build), jkt = {}",
        proofs.key().algorithm(),
        short(&jkt)
    );
    let first = outcome(
        dpop_client
            .clone()
            .oneshot(Request::get(api3.url.clone()).body(Full::default())?)
            .await?,
    )
    .await?;
    let token = dpop_client
        .cache()
        .ok_or("no token cache")?
        .get()
        .await?
        .token()
        .clone();
    let bound_to = cnf_member(&token, "jkt")?;
    println!(
        "   token_type {}, cnf.jkt = {}",
        token.token_type(),
        short(&bound_to)
    );
    println!(
        "   GET /whoami (an API accepting DPoP next to mTLS) -> {} (server saw DPoP key {}, certificate {})",
        first.status,
        seen_key(&first),
        seen(&first)
    );
    check(
        first.status == StatusCode::OK
            && first.body["binding"] == "dpop"
            && first.body["jkt"] == jkt.as_str()
            && first.body["x5t#S256"].is_null(),
        "200 with a fresh proof by the client's key, no client certificate",
    )?;
    check(
        token.token_type().eq_ignore_ascii_case("DPoP") && bound_to == jkt,
        "the token is a DPoP token bound to the client's key",
    )?;
    // The proof of the request just answered 200: the only one the API got.
    let captured = api3.captured_proofs();
    let [accepted] = captured.as_slice() else {
        return Err(format!("expected one DPoP proof at the API, saw {}", captured.len()).into());
    };

    println!("   The token is stolen; the thief signs a proof with its own key");
    let thief = DpopProofs::new(ProofKey::generate(Algorithm::Es256)?);
    let thief_proof = thief.proof(
        &Method::GET,
        &api3.url.parse()?,
        Some(token.access_token().secret()),
    )?;
    let forged = replay_dpop(&pki, &api3.url, &token, &thief_proof).await?;
    println!(
        "   GET /whoami -> {}  WWW-Authenticate: {}",
        forged.status,
        forged.error.as_deref().unwrap_or("")
    );
    check(
        forged.status == StatusCode::UNAUTHORIZED
            && forged
                .error
                .as_deref()
                .is_some_and(|e| e.contains("error=\"invalid_token\"")),
        "401 invalid_token: the token is useless without the client's key",
    )?;

    println!(
        "   The thief replays, verbatim, the client's proof captured from the request answered 200"
    );
    let replayed = replay_dpop(&pki, &api3.url, &token, accepted).await?;
    println!(
        "   GET /whoami -> {}  WWW-Authenticate: {}",
        replayed.status,
        replayed.error.as_deref().unwrap_or("")
    );
    check(
        replayed.status == StatusCode::UNAUTHORIZED
            && replayed.error.as_deref().is_some_and(|e| {
                e.contains("error=\"invalid_dpop_proof\"") && e.contains("used before")
            }),
        "401 invalid_dpop_proof: a proof is accepted once",
    )?;
    Ok(())
}
