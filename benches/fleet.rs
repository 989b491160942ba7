//! What a fleet pays for sharing replay state in Redis.
//!
//! - `dpop_memory_store`: DPoP-checked requests through
//!   `CnfValidationLayer` (a cached DPoP-bound token, a fresh ES256 proof
//!   per request, made outside the timing), 32 in flight on a two-worker
//!   runtime, proofs remembered by the in-memory `MemoryReplayStore`.
//! - `dpop_redis_store`: the same with `RedisReplayStore` on a real
//!   `redis-server` on loopback (started by the bench, persistence off):
//!   one `SET NX PXAT` round trip per request on one multiplexed
//!   connection.
//!
//! Each criterion iteration is one request: the time of a run of at least
//! 4,096 requests, 32 in flight, divided by their number (20 samples). After the criterion runs, the
//! same two in turns for 3 rounds of 20,000 requests each, medians, in
//! plain lines; the last lines: `memory_rps=`, `redis_rps=`,
//! `redis_over_memory_ratio=` (goal 0.80 or better), the CPU time
//! redis-server spent per command (`INFO cpu`; it runs on the same two
//! cores as the bench), this process's CPU time per request in both
//! (`/proc/self/stat`) and `cpu_ratio=`, the throughput ratio that CPU time
//! predicts when every core is busy (steadier than the wall clock on a
//! shared machine), then Redis commands
//! per request, counted by Redis (`INFO commandstats`):
//! `redis_commands_per_dpop_request=` (1), `redis_commands_per_mtls_request=`
//! (0: a certificate-bound token needs no replay check) and
//! `redis_commands_per_l1_token_hit=` (0: a client whose in-memory cache
//! has a fresh token does not ask the shared cache).
//!
//! ```text
//! cargo bench --features redis --bench fleet
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request, Response, StatusCode, Uri, header};
use support::redis::RedisServer;
use tower::{Layer as _, ServiceExt as _};
use tower_token_binding::Thumbprint;
use tower_token_binding::proof::dpop::{DPOP, DpopProofs, DpopVerifier};
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::replay::{BoxReplayStore, MemoryReplayStore, RedisReplayStore};
use tower_token_binding::server::PeerCertificate;
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::{RedisTokenCache, Token, TokenCache};
use tower_token_binding::validation::{CnfValidationLayer, JwksSource, JwtValidator};

const IN_FLIGHT: usize = 32;
const ROUND: usize = 20_000;
const ROUNDS: usize = 3;
const MIN_RUN: usize = 4096;
const CERTIFICATE: &[u8] = b"client certificate";

struct Fixture {
    jwks: String,
    issuer: String,
    audience: String,
    proofs: DpopProofs,
    dpop_token: String,
    mtls_token: String,
}

fn fixture(runtime: &tokio::runtime::Runtime) -> Fixture {
    runtime.block_on(async {
        let pki = TestPki::new().unwrap();
        let issuer = TestIssuer::start(&pki).await.unwrap();
        let proofs = DpopProofs::new(ProofKey::generate(Algorithm::Es256).unwrap());
        let mut dpop_claims = issuer.claims("svc", None);
        dpop_claims["cnf"] = serde_json::json!({ "jkt": proofs.thumbprint().to_string() });
        let mtls_claims = issuer.claims("svc", Some(Thumbprint::from_der(CERTIFICATE)));
        Fixture {
            jwks: issuer.jwks().to_string(),
            issuer: issuer.issuer().to_owned(),
            audience: issuer.audience().to_owned(),
            dpop_token: issuer.sign(&dpop_claims).unwrap(),
            mtls_token: issuer.sign(&mtls_claims).unwrap(),
            proofs,
        }
    })
}

type Svc = tower_token_binding::validation::CnfValidation<
    tower::util::ServiceFn<fn(Request<()>) -> std::future::Ready<Result<Response<()>, Infallible>>>,
    JwtValidator,
>;

fn ok(_: Request<()>) -> std::future::Ready<Result<Response<()>, Infallible>> {
    std::future::ready(Ok(Response::new(())))
}

fn service(f: &Fixture, store: BoxReplayStore) -> Svc {
    let validator = JwtValidator::builder()
        .issuer(&f.issuer)
        .audience(&f.audience)
        .jwks(JwksSource::from_json(&f.jwks).unwrap())
        .build()
        .unwrap();
    CnfValidationLayer::new(validator)
        .accept_dpop(DpopVerifier::new())
        .replay_store(store)
        .layer(tower::service_fn(
            ok as fn(Request<()>) -> std::future::Ready<Result<Response<()>, Infallible>>,
        ))
}

fn url() -> Uri {
    "https://api.example/orders".parse().unwrap()
}

/// `n` DPoP requests, each with a fresh proof.
fn dpop_requests(f: &Fixture, n: usize) -> Vec<Request<()>> {
    let url = url();
    (0..n)
        .map(|_| {
            let proof = f
                .proofs
                .proof(&Method::GET, &url, Some(&f.dpop_token))
                .unwrap();
            Request::get(url.clone())
                .header(header::AUTHORIZATION, format!("DPoP {}", f.dpop_token))
                .header(DPOP, proof)
                .body(())
                .unwrap()
        })
        .collect()
}

/// Sends `requests` through `svc`, `IN_FLIGHT` at a time (as many tasks,
/// each taking its share in turn); the time it took.
async fn run(svc: &Svc, requests: Vec<Request<()>>) -> Duration {
    let mut shares: Vec<Vec<Request<()>>> = (0..IN_FLIGHT).map(|_| Vec::new()).collect();
    for (i, request) in requests.into_iter().enumerate() {
        shares[i % IN_FLIGHT].push(request);
    }
    let start = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for request in share {
                    let response = svc.clone().oneshot(request).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

/// The CPU time this process has used, in seconds (`/proc/self/stat`,
/// user and system, in clock ticks of 10 ms); 0 where it cannot be read.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name, which ends with ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let ticks: f64 = fields
        .get(11..13)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// The CPU time redis-server has used, in seconds (`INFO cpu`).
fn redis_cpu(redis: &RedisServer) -> f64 {
    redis
        .command(&["INFO", "cpu"])
        .lines()
        .filter_map(|line| {
            line.strip_prefix("used_cpu_sys:")
                .or_else(|| line.strip_prefix("used_cpu_user:"))
        })
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn bench(c: &mut Criterion) {
    let Some(redis) = RedisServer::start() else {
        eprintln!("the fleet bench needs redis-server: nothing measured");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let f = fixture(&runtime);
    let redis_store = runtime
        .block_on(RedisReplayStore::connect(&redis.url()))
        .unwrap();
    let memory = service(
        &f,
        BoxReplayStore::new(MemoryReplayStore::with_capacity(8_000_000)),
    );
    let shared = service(&f, BoxReplayStore::new(redis_store.clone()));

    let mut group = c.benchmark_group("fleet");
    // A sample is at least `MIN_RUN` requests (its time per request
    // scaled to the iterations asked): a short run would measure the
    // ramp up and down of the 32 tasks, not 32 in flight.
    group.sample_size(20);
    for (name, svc) in [
        ("dpop_memory_store", &memory),
        ("dpop_redis_store", &shared),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let n = (iters as usize).max(MIN_RUN);
                let requests = dpop_requests(&f, n);
                let took = runtime.block_on(run(svc, requests));
                took.mul_f64(iters as f64 / n as f64)
            })
        });
    }
    group.finish();

    // The ratio, in turns, same run.
    let mut rps = [Vec::new(), Vec::new()];
    let mut own_cpu = [0.0, 0.0];
    let mut server_cpu = 0.0;
    for _ in 0..ROUNDS {
        for (i, svc) in [&memory, &shared].into_iter().enumerate() {
            let requests = dpop_requests(&f, ROUND);
            let (server, own) = (redis_cpu(&redis), own_cpu_seconds());
            let took = runtime.block_on(run(svc, requests));
            own_cpu[i] += own_cpu_seconds() - own;
            if i == 1 {
                server_cpu += redis_cpu(&redis) - server;
            }
            rps[i].push(ROUND as f64 / took.as_secs_f64());
        }
    }
    let [memory_rps, redis_rps] = rps.map(median);
    let per_request = |seconds: f64| seconds * 1e6 / (ROUNDS * ROUND) as f64;
    let server_us_per_command = per_request(server_cpu);
    let [memory_cpu_us, redis_cpu_us] = own_cpu.map(per_request);

    // Memory per remembered proof: all keys are unexpired proofs (the
    // run is shorter than their lifetime).
    let keys: f64 = redis.command(&["DBSIZE"]).parse().unwrap_or(0.0);
    let used: f64 = redis
        .command(&["INFO", "memory"])
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let bytes_per_proof = used / keys.max(1.0);

    // Commands per request, as Redis counts them.
    let commands = |redis: &RedisServer| -> u64 {
        redis
            .command_calls()
            .iter()
            .filter(|(name, _)| !name.starts_with("config") && !name.starts_with("info"))
            .map(|(_, n)| n)
            .sum()
    };
    redis.reset_stats();
    let n = 1_000;
    runtime.block_on(run(&shared, dpop_requests(&f, n)));
    let per_dpop = commands(&redis) as f64 / n as f64;

    redis.reset_stats();
    let peer = PeerCertificate::new(CERTIFICATE.to_vec().into());
    runtime.block_on(async {
        for _ in 0..n {
            let mut request = Request::get(url())
                .header(header::AUTHORIZATION, format!("Bearer {}", f.mtls_token))
                .body(())
                .unwrap();
            request.extensions_mut().insert(peer.clone());
            let response = shared.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
        }
    });
    let per_mtls = commands(&redis) as f64 / n as f64;

    let per_l1_hit = runtime.block_on(async {
        let shared_cache = RedisTokenCache::connect(&redis.url()).await.unwrap();
        let cache = TokenCache::builder()
            .shared(shared_cache)
            .build(|| async { Ok(Token::new("t").expires_in(Duration::from_secs(3600))) });
        cache.get().await.unwrap();
        redis.reset_stats();
        for _ in 0..n {
            cache.get().await.unwrap();
        }
        commands(&redis) as f64 / n as f64
    });

    println!("{ROUNDS} rounds of {ROUND} DPoP requests, {IN_FLIGHT} in flight, medians");
    println!("memory_rps={memory_rps:.0}");
    println!("redis_rps={redis_rps:.0}");
    println!("redis_over_memory_ratio={:.3}", redis_rps / memory_rps);
    println!(
        "time per request: memory {:.1} us, redis {:.1} us (2 cores: client, server and redis-server)",
        1e6 / memory_rps,
        1e6 / redis_rps
    );
    println!("cpu_us_per_request_memory={memory_cpu_us:.1}");
    println!("cpu_us_per_request_redis={redis_cpu_us:.1}");
    println!("redis_server_cpu_us_per_command={server_us_per_command:.1}");
    // With every core busy, throughput goes as the inverse of the CPU
    // time per request, redis-server's included: less noisy than the
    // wall-clock ratio on a shared machine.
    println!(
        "cpu_ratio={:.3}",
        memory_cpu_us / (redis_cpu_us + server_us_per_command)
    );
    println!("redis_keys={keys:.0} redis_bytes_per_proof={bytes_per_proof:.0}");
    println!("redis_commands_per_dpop_request={per_dpop:.3}");
    println!("redis_commands_per_mtls_request={per_mtls:.3}");
    println!("redis_commands_per_l1_token_hit={per_l1_hit:.3}");
    drop(redis);
}

criterion_group!(benches, bench);
criterion_main!(benches);
