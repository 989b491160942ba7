//! What DPoP costs per request.
//!
//! - `proof_creation_es256`: `DpopProofs::proof` for a resource request
//!   (nonce lookup, `jti`, `ath`, claims, signing, encoding).
//! - `bare_signature_es256`: aws-lc-rs signing a message of the same length
//!   as that proof's signing input with the same kind of P-256 key: the
//!   physical floor.
//! - `server_verification_es256`: `DpopVerifier::verify` of such a proof
//!   (parse, key from the header, signature, claims, `htu`, `ath`), round
//!   512 distinct proofs made beforehand, as a server sees a new one per
//!   request (ECDSA verification runs in variable time: one signature
//!   verified over and over would be faster than any real request).
//! - `bare_verify`: aws-lc-rs verifying a P-256 signature over a message
//!   of that proof's signing-input length, with a key parsed once, round
//!   512 distinct signatures: the
//!   floor of `server_verification_es256` and of a DPoP request through
//!   the server layer.
//! - `memory_replay_store_insert`: deriving a `ReplayKey` and inserting it
//!   into a `MemoryReplayStore` in its steady state (entries expiring as
//!   new ones arrive).
//!
//! Target: proof creation within 1.3× of the bare signature.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    ParsedPublicKey,
};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Uri};
use tower_token_binding::proof::dpop::{DpopProofs, DpopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::replay::{MemoryReplayStore, ReplayKey};

/// A token of a typical length (the test issuer's are about 470 bytes).
fn access_token() -> String {
    "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.".to_owned() + &"a".repeat(430)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("dpop");
    let token = access_token();
    let uri: Uri = "https://api.example.com/v1/orders/12345?expand=items"
        .parse()
        .unwrap();
    let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
    let proof = proofs.proof(&Method::GET, &uri, Some(&token)).unwrap();
    let signing_input_len = proof.rfind('.').unwrap();
    println!(
        "proof: {} bytes, signing input {signing_input_len} bytes",
        proof.len()
    );

    group.bench_function("proof_creation_es256", |b| {
        b.iter(|| {
            proofs
                .proof(
                    black_box(&Method::GET),
                    black_box(&uri),
                    Some(black_box(&token)),
                )
                .unwrap()
        })
    });

    let bare = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let message = vec![b'e'; signing_input_len];
    let rng = SystemRandom::new();
    group.bench_function("bare_signature_es256", |b| {
        b.iter(|| bare.sign(&rng, black_box(&message)).unwrap())
    });

    // A server sees a new proof, so a new signature, with every request.
    // ECDSA verification runs in variable time, and one signature verified
    // over and over lets the branch predictor learn its scalars: both
    // verification rows go round `DISTINCT` proofs (or signatures) made
    // beforehand, as `server_validation`'s `request_dpop` makes a fresh
    // one per request.
    const DISTINCT: usize = 512;
    let verifier = DpopVerifier::new();
    let now = SystemTime::now();
    let fresh: Vec<String> = (0..DISTINCT)
        .map(|_| proofs.proof(&Method::GET, &uri, Some(&token)).unwrap())
        .collect();
    for proof in &fresh {
        verifier
            .verify(proof, &Method::GET, &uri, Some(&token), now)
            .unwrap();
    }
    let mut next = fresh.iter().cycle();
    group.bench_function("server_verification_es256", |b| {
        b.iter(|| {
            verifier
                .verify(
                    black_box(next.next().unwrap()),
                    &Method::GET,
                    black_box(&uri),
                    Some(&token),
                    now,
                )
                .unwrap()
        })
    });

    let signatures: Vec<_> = (0..DISTINCT)
        .map(|_| bare.sign(&rng, &message).unwrap())
        .collect();
    let public =
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, bare.public_key().as_ref()).unwrap();
    for signature in &signatures {
        public.verify_sig(&message, signature.as_ref()).unwrap();
    }
    let mut next = signatures.iter().cycle();
    group.bench_function("bare_verify", |b| {
        b.iter(|| {
            public
                .verify_sig(
                    black_box(&message),
                    black_box(next.next().unwrap().as_ref()),
                )
                .unwrap()
        })
    });

    let store = MemoryReplayStore::new();
    let mut n: u64 = 0;
    let start = SystemTime::now();
    group.bench_function("memory_replay_store_insert", |b| {
        b.iter(|| {
            n += 1;
            // 1 ms per insert and 60 s expiry: about 60,000 live entries.
            let now = start + Duration::from_millis(n);
            let key = ReplayKey::from_parts("bench", &[&n.to_be_bytes()]);
            assert!(
                store
                    .insert_at(key, now + Duration::from_secs(60), now)
                    .unwrap()
            );
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
