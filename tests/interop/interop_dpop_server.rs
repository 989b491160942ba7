//! Our DPoP resource server (`CnfValidationLayer::accept_dpop`) against
//! implementations we did not write, over real TLS on loopback:
//! - access tokens that node `oidc-provider` issued and bound to the key of
//!   our client layer (`TokenBindingLayer::dpop`), its signing keys found by
//!   discovery: accepted with our client's proofs, with and without nonces,
//!   and refused with a proof from another key;
//! - proofs made by panva's `dpop` (npm) with its own key, driven by
//!   `tests/interop/dpop_client.mjs`: accepted, and refused when replayed.
//!
//! Needs Node.js 20 or later with npm, like `tests/interop/interop.rs`; without them
//! these tests skip loudly, or fail when `CI` is set.
#![cfg(all(feature = "test-util", feature = "axum"))]

use crate::support;
use crate::support::dpop;
use crate::support::oidc_provider;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use dpop::{ALGS, Call, bound_token, send, start, uri};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use oidc_provider::{InteropClient, OidcProvider, OidcProviderOptions, interop_dir};
use serde_json::{Value, json};
use support::https_client;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};
use tower_token_binding::TokenBindingLayer;
use tower_token_binding::proof::dpop::{DPOP, DpopProofs, DpopVerifier, StatelessNonces};
use tower_token_binding::proof::jws::CompactJws;
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::source::ClientCredentials;
use tower_token_binding::test_util::TestPki;
use tower_token_binding::validation::{CnfValidationLayer, JwksSource, JwtValidator};

const SECRET: &str = "correct horse battery staple";

/// How long the npm client may take from start to its last line.
const NODE_TIMEOUT: Duration = Duration::from_secs(30);

/// A verifier that requires nonces from `nonces`, or the default one.
fn verifier(nonces: Option<&StatelessNonces>) -> DpopVerifier {
    match nonces {
        Some(nonces) => DpopVerifier::builder().nonces(nonces.clone()).build(),
        None => DpopVerifier::new(),
    }
}

/// oidc-provider issues the token to our `ClientCredentials`; our client
/// layer presents it to our server layer, which finds oidc-provider's keys by
/// discovery. With `nonces`, both oidc-provider and our server require them.
async fn oidc_provider_token_through_both_our_layers(nonces: bool) {
    let pki = TestPki::new().unwrap();
    let clients = [InteropClient::client_secret_basic("dpop-secret", SECRET).dpop_bound()];
    let options = OidcProviderOptions {
        dpop_require_nonce: nonces,
        ..Default::default()
    };
    let provider = require_node!(OidcProvider::start_with(&pki, &clients, options));

    let validator = JwtValidator::builder()
        .issuer(provider.issuer())
        .audience(provider.default_resource())
        .jwks(
            JwksSource::discover(provider.issuer())
                .unwrap()
                .root_store(pki.root_store()),
        )
        .build()
        .unwrap();
    let server_nonces = StatelessNonces::random().unwrap();
    let server_nonces = nonces.then_some(&server_nonces);
    let api = start(
        &pki,
        CnfValidationLayer::new(validator).accept_dpop(verifier(server_nonces)),
    )
    .await;

    let source = ClientCredentials::builder()
        .issuer(provider.issuer())
        .root_store(pki.root_store())
        .token_timeout(Duration::from_secs(10))
        .client_id("dpop-secret")
        .client_secret_basic(SECRET)
        .dpop(ProofKey::generate(Algorithm::Es256).unwrap())
        .build()
        .unwrap();
    let proofs = source.dpop_proofs().unwrap().clone();
    let binding = TokenBindingLayer::dpop(source);
    // What our client layer sent, attempt by attempt: the token and the proof.
    let sent = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    let client = ServiceBuilder::new()
        .layer(RetryLayer::new(binding.retry_policy()))
        .layer(binding)
        .map_request({
            let sent = sent.clone();
            move |request: Request<Full<Bytes>>| {
                let header = |name| request.headers()[name].to_str().unwrap().to_owned();
                let token = header(header::AUTHORIZATION)
                    .strip_prefix("DPoP ")
                    .expect("the DPoP scheme")
                    .to_owned();
                sent.lock().unwrap().push((token, header(DPOP)));
                request
            }
        })
        .service(https_client(&pki, None));
    let get = || async {
        let request = Request::get(&api).body(Full::default()).unwrap();
        let response = client.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    let proof_claims = |proof: &str| CompactJws::parse(proof).unwrap().into_claims();

    let (status, body) = get().await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", provider.log());
    assert_eq!(body, format!("dpop {}", proofs.thumbprint()));
    let token = {
        let sent = sent.lock().unwrap();
        // With nonces, the first proof had none and was refused; the retry
        // carried the one our server gave.
        assert_eq!(sent.len(), if nonces { 2 } else { 1 });
        assert!(proof_claims(&sent[0].1).get("nonce").is_none());
        if nonces {
            assert_eq!(sent[1].0, sent[0].0, "the same token");
            assert!(proof_claims(&sent[1].1)["nonce"].is_string());
        }
        sent[0].0.clone()
    };
    // The token is oidc-provider's, bound to our client's key.
    let claims = crate::support::unverified_claims(&token);
    assert_eq!(claims["iss"], provider.issuer());
    assert_eq!(claims["cnf"]["jkt"], proofs.thumbprint().to_string());

    // The nonce is remembered: the next request goes through at once.
    let (status, _) = get().await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sent.lock().unwrap().len(), if nonces { 3 } else { 2 });

    // The same token with a proof made by another key (with a good nonce, so
    // that only the key is wrong) is refused; a new proof by our key passes.
    let client = https_client(&pki, None);
    let proof = |by: &DpopProofs| {
        let now = SystemTime::now();
        let nonce = server_nonces.map(|n| n.current(now));
        by.proof_at(
            &Method::GET,
            &uri(&api),
            Some(&token),
            nonce.as_deref(),
            now,
        )
        .unwrap()
    };
    let thief = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let answer = send(&client, &Call::dpop(&api, &token, proof(&thief))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(
        answer.challenge.starts_with("DPoP error=\"invalid_token\""),
        "{answer:?}"
    );
    assert_eq!(answer.body, "", "the handler never ran");
    let answer = send(&client, &Call::dpop(&api, &token, proof(&proofs))).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

pub(crate) async fn an_oidc_provider_dpop_token_is_accepted_with_our_proofs_only() {
    oidc_provider_token_through_both_our_layers(false).await;
}

pub(crate) async fn an_oidc_provider_dpop_token_is_accepted_with_our_proofs_only_when_nonces_are_required()
 {
    oidc_provider_token_through_both_our_layers(true).await;
}

/// What `tests/interop/dpop_client.mjs` saw.
struct NpmClientRun {
    /// The thumbprint of the key it generated.
    jkt: String,
    /// One per request: `status`, `wwwAuthenticate`, `dpopNonce`, `body`.
    answers: Vec<Value>,
}

/// Runs the npm `dpop` client against `url` with a key of type `alg`,
/// giving it a token that `sign` makes for the key's thumbprint.
async fn npm_dpop_client(
    pki: &TestPki,
    url: &str,
    alg: &str,
    sign: impl FnOnce(&str) -> String,
) -> NpmClientRun {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let mut child = tokio::process::Command::new("node")
        .arg(interop_dir().join("dpop_client.mjs"))
        .arg(url)
        .arg(alg)
        .current_dir(interop_dir())
        .env("NODE_EXTRA_CA_CERTS", &ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let run = async {
        let first = stdout.next_line().await.unwrap().unwrap_or_default();
        let jkt = serde_json::from_str::<Value>(&first)
            .ok()
            .and_then(|v| v["jkt"].as_str().map(str::to_owned));
        let Some(jkt) = jkt else {
            return Err(format!("a thumbprint instead of {first:?}"));
        };
        stdin
            .write_all(format!("{}\n", sign(&jkt)).as_bytes())
            .await
            .unwrap();
        drop(stdin);
        let mut answers = Vec::new();
        while let Some(line) = stdout.next_line().await.unwrap() {
            answers.push(serde_json::from_str(&line).map_err(|e| format!("{line:?}: {e}"))?);
        }
        let status = child.wait().await.unwrap();
        if !status.success() {
            return Err(format!("exit {status}"));
        }
        Ok(NpmClientRun { jkt, answers })
    };
    let outcome = tokio::time::timeout(NODE_TIMEOUT, run).await;
    match outcome {
        Ok(Ok(run)) => run,
        outcome => {
            let _ = child.start_kill();
            let mut log = String::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stderr.read_to_string(&mut log)).await;
            let what = match outcome {
                Ok(Err(what)) => what,
                _ => format!("no answer within {NODE_TIMEOUT:?}"),
            };
            panic!("dpop_client.mjs {alg}: {what}; stderr:\n{log}");
        }
    }
}

pub(crate) async fn proofs_from_the_npm_dpop_package_are_accepted_and_their_replay_refused() {
    require_node!();
    let s = dpop::setup().await;
    let api = start(&s.pki, dpop::layer(&s).accept_dpop(DpopVerifier::new())).await;
    // Node's fetch may try `localhost` on ::1 first; the server listens on
    // 127.0.0.1, which its certificate names too.
    let url = api.replace("//localhost:", "//127.0.0.1:");
    // `dpop` 2 signs Ed25519 proofs with the fully-specified `alg`
    // "Ed25519" (RFC 9864), which the verifier takes as "EdDSA".
    for alg in ["ES256", "PS256", "RS256", "Ed25519"] {
        let run = npm_dpop_client(&s.pki, &url, alg, |jkt| {
            bound_token(&s.issuer, &json!({ "jkt": jkt }))
        })
        .await;
        let [accepted, replayed] = run.answers.as_slice() else {
            panic!("{alg}: two answers, not {:?}", run.answers);
        };
        assert_eq!(accepted["status"], 200, "{alg}: {accepted}");
        assert_eq!(accepted["body"], format!("dpop {}", run.jkt), "{alg}");
        assert_eq!(replayed["status"], 401, "{alg}: {replayed}");
        let challenge = replayed["wwwAuthenticate"].as_str().unwrap_or_default();
        assert!(
            challenge.starts_with(
                "DPoP error=\"invalid_dpop_proof\", \
                 error_description=\"the DPoP proof has been used before\""
            ) && challenge.contains(ALGS),
            "{alg}: {replayed}"
        );
        assert_eq!(replayed["body"], "", "{alg}: the handler never ran");
    }
}

pub(crate) async fn the_npm_dpop_package_retries_with_our_nonce_and_its_replay_is_refused() {
    require_node!();
    let s = dpop::setup().await;
    let nonces = StatelessNonces::random().unwrap();
    let api = start(&s.pki, dpop::layer(&s).accept_dpop(verifier(Some(&nonces)))).await;
    let url = api.replace("//localhost:", "//127.0.0.1:");
    let run = npm_dpop_client(&s.pki, &url, "ES256", |jkt| {
        bound_token(&s.issuer, &json!({ "jkt": jkt }))
    })
    .await;
    let [asked, accepted, replayed] = run.answers.as_slice() else {
        panic!("three answers, not {:?}", run.answers);
    };
    assert_eq!(asked["status"], 401, "{asked}");
    assert!(
        asked["wwwAuthenticate"]
            .as_str()
            .unwrap()
            .starts_with("DPoP error=\"use_dpop_nonce\""),
        "{asked}"
    );
    let nonce = asked["dpopNonce"].as_str().expect("a DPoP-Nonce");
    assert!(nonces.is_valid(nonce, SystemTime::now()));
    assert_eq!(accepted["status"], 200, "{accepted}");
    assert_eq!(accepted["body"], format!("dpop {}", run.jkt));
    assert_eq!(replayed["status"], 401, "{replayed}");
    assert!(
        replayed["wwwAuthenticate"]
            .as_str()
            .unwrap()
            .starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{replayed}"
    );
}
