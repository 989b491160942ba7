//! How each cost grows with the work: many identities, many tokens, many
//! proofs, many keys.
//!
//! Every row is measured at several sizes in one run, and each size prints
//! one line, `name_N=value`, for a script to read (`value` in the unit the
//! name ends with). Memory rows are resident-set growth (Linux
//! `/proc/self/statm`) over many entries, divided by their number.
//!
//! - `pool_identities_N_ns`: one request (HTTP/2 over loopback mTLS, a warm
//!   connection per identity) through `MtlsClientPool` holding N
//!   identities, the identities taken in turn, `max_identities` 2N. The
//!   server runs in a child process, so that its memory is not counted.
//!   `pool_identities_N_one_identity_ns` the same pool with one identity's
//!   connection asked for again and again: what holding N costs when the
//!   connection in use is hot in the CPU's caches.
//! - `pool_identities_N_evicting_us`: the same with `max_identities` N/2:
//!   every request finds its identity evicted, and builds its client and
//!   handshakes again.
//! - `pool_new_identity_N_us`: the first request of an identity the pool
//!   has not seen, with N held: a client built, a handshake, a request.
//! - `pool_bytes_per_identity`: memory per held identity with its idle
//!   HTTP/2 connection (client side only), at 1,000 identities.
//! - `token_cache_keys_N_ns`: a cache hit in one of N token caches (one per
//!   tenant, as a multi-tenant client holds one `TokenBindingLayer` per
//!   tenant source), the tenants taken in turn;
//!   `token_cache_one_cache_keys_N_ns` the same N tenants through one cache
//!   whose source's key changes with the tenant: a `TokenCache` holds one
//!   token, so each change of key is a fetch.
//! - `verified_cache_N_ns`: a hit in `JwtValidator`'s verified-token cache
//!   holding N tokens, the tokens taken in turn
//!   (`verified_cache_N_one_token_ns`: one of them again and again);
//!   `verified_cache_bytes_per_entry` what an entry holds beyond the
//!   token's own bytes, at 10,000 entries (the token's length printed
//!   beside); `verified_cache_evicting_us` a validation in a full cache of
//!   1,000 that evicts with every insert (2,000 tokens in turn), against
//!   `verified_cache_off_us`, the same validation with the cache off.
//! - `replay_memory_N_ns`: an insert into a `MemoryReplayStore` of
//!   capacity N in its steady state: filling, then scanned for expired
//!   proofs when full (a twentieth of the store arriving a second, each
//!   proof living 8 seconds); `replay_memory_bytes_per_entry` in a store of
//!   1,000,000 holding 980,000.
//! - `jwks_keys_N_ns`: a full verification (cache off) of a token whose
//!   `kid` is the last of N keys in the JWKS; `jwks_unknown_kid_N_ns` a
//!   token whose `kid` is in none, refused at the key lookup: the lookup's
//!   own cost.
//!
//! ```text
//! cargo bench --bench scaling
//! ```

use std::hint::black_box;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use futures_util::FutureExt as _;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use tower::ServiceExt as _;
use tower_token_binding::ClientIdentity;
use tower_token_binding::pool::MtlsClientPool;
use tower_token_binding::proof::jws;
use tower_token_binding::proof::{Algorithm, ProofKey};
use tower_token_binding::replay::{MemoryReplayStore, ReplayKey};
use tower_token_binding::server::{self, AnyClientCertVerifier};
use tower_token_binding::test_util::{TestIssuer, TestPki};
use tower_token_binding::token::{BoxError, CacheKey, Token, TokenCache, TokenSource};
use tower_token_binding::validation::{JwksSource, JwtValidator, ValidateToken};

const SERVER_FLAG: &str = "--scaling-server";

fn main() {
    if std::env::args().any(|a| a == SERVER_FLAG) {
        serve();
        return;
    }
    // `cargo test --benches` runs benches with --test: the smallest sizes
    // only, as a smoke test.
    let quick = std::env::args().any(|a| a == "--test");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    replay_rows(quick);
    jwks_rows(quick);
    runtime.block_on(verified_cache_rows(quick));
    runtime.block_on(token_cache_rows(quick));
    runtime.block_on(pool_rows(quick));
    if quick {
        println!("scaling: smoke run done");
    }
}

/// The median over `rounds` of the time per call of `f`, called `calls`
/// times a round, in nanoseconds.
fn per_call(rounds: usize, calls: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..calls {
                f();
            }
            started.elapsed().as_nanos() as f64 / calls as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The same for an asynchronous `f`.
async fn per_call_async<F, Fut>(rounds: usize, calls: usize, mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..calls {
            f().await;
        }
        samples.push(started.elapsed().as_nanos() as f64 / calls as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// This process's resident memory, in bytes (Linux), or `None`.
fn resident() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// `(after - before) / count`, printed as `name=value`, or `name=?` where
/// memory cannot be read.
fn print_bytes_per(name: &str, before: Option<u64>, after: Option<u64>, count: usize) {
    match (before, after) {
        (Some(before), Some(after)) => {
            println!("{name}={}", after.saturating_sub(before) / count as u64)
        }
        _ => println!("{name}=?"),
    }
}

// --- Memory replay store -------------------------------------------------

fn replay_rows(quick: bool) {
    let sizes: &[usize] = if quick {
        &[1_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    };
    if !quick {
        // Memory: a store of 1,000,000 filled with proofs that all live, to
        // 98 % (its 16 shards do not fill evenly).
        let capacity = 1_000_000;
        let held = capacity / 50 * 49;
        let base = resident();
        let store = MemoryReplayStore::with_capacity(capacity);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for i in 0..held as u64 {
            let key = ReplayKey::from_parts("scaling", &[&i.to_be_bytes()]);
            store
                .insert_at(key, now + Duration::from_secs(60), now)
                .unwrap();
        }
        print_bytes_per("replay_memory_bytes_per_entry", base, resident(), held);
    }
    for &n in sizes {
        let store = MemoryReplayStore::with_capacity(n);
        // A twentieth of the store arrives each (simulated) second and
        // lives 8 seconds: in the steady state the store fills, its scan
        // drops the expired proofs (more than half of it), and it fills
        // again, with room to spare for shards that fill faster.
        let step = Duration::from_nanos(20_000_000_000 / n as u64);
        let lifetime = Duration::from_secs(8);
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut i: u64 = 0;
        let mut insert = || {
            i += 1;
            let now = start + step * i as u32;
            let key = ReplayKey::from_parts("scaling", &[&i.to_be_bytes()]);
            assert!(
                store.insert_at(key, now + lifetime, now).unwrap(),
                "a fresh proof is accepted"
            );
        };
        // Several fillings: the steady state.
        for _ in 0..3 * n + 10_000 {
            insert();
        }
        let ns = per_call(7, 20_000, &mut insert);
        println!("replay_memory_{n}_ns={ns:.0}");
    }
}

// --- JWKS ------------------------------------------------------------------

/// A JWKS of `keys`, ES256 keys named `k0`, `k1`, ... in their `kid`.
fn jwks_of(keys: &[ProofKey]) -> String {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let mut jwk: serde_json::Value =
                serde_json::from_str(key.public_jwk().as_json()).unwrap();
            jwk["kid"] = format!("k{i}").into();
            jwk["alg"] = "ES256".into();
            jwk["use"] = "sig".into();
            jwk
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

fn signed(key: &ProofKey, kid: &str, claims: &serde_json::Value) -> String {
    let header = serde_json::json!({ "alg": "ES256", "typ": "at+jwt", "kid": kid });
    let header = jws::encode_segment(header.to_string().as_bytes());
    jws::sign(key, &header, claims.to_string().as_bytes()).unwrap()
}

/// RFC 9068 claims for `client_id` that the bench's validators accept.
fn claims(client_id: &str) -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::json!({
        "iss": "https://issuer.example",
        "aud": "https://api.example",
        "sub": client_id,
        "client_id": client_id,
        "iat": now,
        "exp": now + 3600,
        "jti": format!("{client_id}-{now}"),
    })
}

fn jwks_rows(quick: bool) {
    let sizes: &[usize] = if quick { &[1] } else { &[1, 10, 100] };
    for &n in sizes {
        let keys: Vec<ProofKey> = (0..n)
            .map(|_| ProofKey::generate(Algorithm::Es256).unwrap())
            .collect();
        let validator = JwtValidator::builder()
            .issuer("https://issuer.example")
            .audience("https://api.example")
            .jwks(JwksSource::from_json(&jwks_of(&keys)).unwrap())
            .cache_capacity(0)
            .build()
            .unwrap();
        let last = n - 1;
        let token = signed(&keys[last], &format!("k{last}"), &claims("svc"));
        let unknown = signed(&keys[last], "no-such-key", &claims("svc"));
        let validate = |token: &str| validator.validate(token).now_or_never().unwrap();
        assert!(validate(&token).is_ok());
        assert!(validate(&unknown).is_err());
        let ns = per_call(7, 200, || {
            black_box(validate(black_box(&token))).unwrap();
        });
        println!("jwks_keys_{n}_ns={ns:.0}");
        let ns = per_call(7, 20_000, || {
            black_box(validate(black_box(&unknown))).unwrap_err();
        });
        println!("jwks_unknown_kid_{n}_ns={ns:.0}");
    }
}

// --- Verified-token cache --------------------------------------------------

async fn verified_cache_rows(quick: bool) {
    let pki = TestPki::new().unwrap();
    let issuer = TestIssuer::start(&pki).await.unwrap();
    let count = if quick { 2_000 } else { 10_000 };
    let tokens: Vec<String> = (0..count)
        .map(|i| {
            issuer
                .sign(&issuer.claims(&format!("svc-{i}"), None))
                .unwrap()
        })
        .collect();
    let validator = |capacity| {
        JwtValidator::builder()
            .issuer(issuer.issuer())
            .audience(issuer.audience())
            .jwks(JwksSource::from_json(&issuer.jwks().to_string()).unwrap())
            .cache_capacity(capacity)
            .build()
            .unwrap()
    };
    let sizes: &[usize] = if quick {
        &[1, 1_000]
    } else {
        &[1, 1_000, 10_000]
    };
    for &n in sizes {
        let cache = validator(16_384);
        let base = resident();
        for token in &tokens[..n] {
            cache.validate(token).now_or_never().unwrap().unwrap();
        }
        if n == 10_000 {
            let mean_len = tokens[..n].iter().map(String::len).sum::<usize>() / n;
            if let (Some(before), Some(after)) = (base, resident()) {
                let per_entry = after.saturating_sub(before) / n as u64;
                println!(
                    "verified_cache_bytes_per_entry={}",
                    per_entry.saturating_sub(mean_len as u64)
                );
            } else {
                println!("verified_cache_bytes_per_entry=?");
            }
            println!("verified_cache_token_bytes={mean_len}");
        }
        let mut next = tokens[..n].iter().cycle();
        let ns = per_call(7, 20_000, || {
            let token = next.next().unwrap();
            black_box(cache.validate(token).now_or_never().unwrap()).unwrap();
        });
        println!("verified_cache_{n}_ns={ns:.0}");
        // The same cache, one token asked for again and again: what the
        // size of the table costs when its entries are in the CPU's caches.
        let one = &tokens[n / 2];
        let ns = per_call(7, 20_000, || {
            black_box(cache.validate(one).now_or_never().unwrap()).unwrap();
        });
        println!("verified_cache_{n}_one_token_ns={ns:.0}");
    }

    // Full and evicting: 2,000 tokens in turn through a cache of 1,000.
    let full = validator(1_000);
    let off = validator(0);
    let mut next = tokens[..2_000].iter().cycle();
    let us = per_call(5, 400, || {
        let token = next.next().unwrap();
        black_box(full.validate(token).now_or_never().unwrap()).unwrap();
    }) / 1_000.0;
    println!("verified_cache_evicting_us={us:.1}");
    let mut next = tokens[..2_000].iter().cycle();
    let us = per_call(5, 400, || {
        let token = next.next().unwrap();
        black_box(off.validate(token).now_or_never().unwrap()).unwrap();
    }) / 1_000.0;
    println!("verified_cache_off_us={us:.1}");
}

// --- Token caches ----------------------------------------------------------

/// A source whose cache key is the tenant `current` names: one cache in
/// front of every tenant.
struct Tenants {
    keys: Vec<CacheKey>,
    current: Arc<AtomicUsize>,
}

impl TokenSource for Tenants {
    type Future = std::future::Ready<Result<Token, BoxError>>;

    fn fetch(&self) -> Self::Future {
        let tenant = self.current.load(Ordering::Relaxed);
        std::future::ready(Ok(
            Token::new(format!("token-of-tenant-{tenant}")).expires_in(Duration::from_secs(3600))
        ))
    }

    fn cache_key(&self) -> CacheKey {
        self.keys[self.current.load(Ordering::Relaxed)].clone()
    }
}

async fn token_cache_rows(quick: bool) {
    let sizes: &[usize] = if quick { &[1, 100] } else { &[1, 100, 10_000] };
    for &n in sizes {
        let caches: Vec<TokenCache> = (0..n)
            .map(|i| {
                TokenCache::new(move || async move {
                    Ok(Token::new(format!("token-of-tenant-{i}"))
                        .expires_in(Duration::from_secs(3600)))
                })
            })
            .collect();
        for cache in &caches {
            cache.get().await.unwrap();
        }
        let mut next = caches.iter().cycle();
        let ns = per_call(7, 100_000, || {
            let cache = next.next().unwrap();
            black_box(cache.get().now_or_never().unwrap()).unwrap();
        });
        println!("token_cache_keys_{n}_ns={ns:.0}");

        let current = Arc::new(AtomicUsize::new(0));
        let one = TokenCache::new(Tenants {
            keys: (0..n)
                .map(|i| CacheKey::builder().part("tenant", i.to_string()).build())
                .collect(),
            current: current.clone(),
        });
        let mut tenant = 0;
        let ns = per_call_async(7, 10_000, || {
            tenant = (tenant + 1) % n;
            current.store(tenant, Ordering::Relaxed);
            let get = one.get();
            async move {
                black_box(get.await).unwrap();
            }
        })
        .await;
        println!("token_cache_one_cache_keys_{n}_ns={ns:.0}");
    }
}

// --- Client pool -----------------------------------------------------------

/// The server, in a child process: prints its port and its CA (PEM, `|`
/// for line ends), then serves until its standard input closes.
fn serve() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    std::thread::spawn(|| {
        // The parent is gone (or done) when standard input closes.
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    runtime.block_on(async {
        let pki = TestPki::new().unwrap();
        let tls = Arc::new(
            pki.server_config(Arc::new(AnyClientCertVerifier::optional()))
                .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        println!("{}", pki.ca_pem().replace('\n', "|"));
        std::io::stdout().flush().unwrap();
        let app = Router::new().route("/", get(|| async { "ok" }));
        server::serve(listener, tls, app).await.unwrap();
    });
}

/// The child server, killed when dropped.
struct ServerProcess {
    child: Child,
    url: String,
    roots: RootCertStore,
}

impl ServerProcess {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg(SERVER_FLAG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines.next().unwrap().unwrap();
        let ca = lines.next().unwrap().unwrap().replace('|', "\n");
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        Self {
            child,
            url: format!("https://localhost:{port}/"),
            roots,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn send(pool: &MtlsClientPool<Full<Bytes>>, url: &str, identity: &ClientIdentity) {
    let request = Request::get(url)
        .extension(identity.clone())
        .body(Full::default())
        .unwrap();
    let response = pool.clone().oneshot(request).await.unwrap();
    assert!(response.status().is_success());
    response.into_body().collect().await.unwrap();
}

/// Sends one request for each of `identities`, 32 at a time.
async fn warm(pool: &MtlsClientPool<Full<Bytes>>, url: &str, identities: &[ClientIdentity]) {
    for chunk in identities.chunks(32) {
        let sends = chunk.iter().map(|identity| send(pool, url, identity));
        futures_util::future::join_all(sends).await;
    }
}

async fn pool_rows(quick: bool) {
    let server = ServerProcess::start();
    let url = server.url.clone();
    let sizes: &[usize] = if quick {
        &[1, 10]
    } else {
        &[1, 10, 100, 1_000]
    };
    let largest = *sizes.last().unwrap();
    const NEW: usize = 20;
    let pki = TestPki::new().unwrap();
    let identities: Vec<ClientIdentity> = (0..largest + NEW)
        .map(|i| {
            pki.client_cert(&format!("tenant-{i}.example"))
                .unwrap()
                .identity()
                .unwrap()
        })
        .collect();
    let pool_of = |max: usize| -> MtlsClientPool<Full<Bytes>> {
        MtlsClientPool::builder()
            .root_store(server.roots.clone())
            .http2_only()
            .max_identities(max)
            .build()
            .unwrap()
    };
    for &n in sizes {
        let held = &identities[..n];
        let pool = pool_of(2 * n);
        let base = resident();
        warm(&pool, &url, held).await;
        if n == largest && !quick {
            print_bytes_per("pool_bytes_per_identity", base, resident(), n);
        }
        let mut next = held.iter().cycle();
        let ns = per_call_async(7, 1_000.max(n), || send(&pool, &url, next.next().unwrap())).await;
        println!("pool_identities_{n}_ns={ns:.0}");
        // The same pool, one identity's connection again and again.
        let ns = per_call_async(7, 1_000, || send(&pool, &url, &held[n / 2])).await;
        println!("pool_identities_{n}_one_identity_ns={ns:.0}");

        // New identities, N held: each one's first request.
        let mut firsts: Vec<f64> = Vec::with_capacity(NEW);
        for identity in &identities[largest..largest + NEW] {
            let started = Instant::now();
            send(&pool, &url, identity).await;
            firsts.push(started.elapsed().as_secs_f64() * 1e6);
        }
        firsts.sort_by(f64::total_cmp);
        println!("pool_new_identity_{n}_us={:.0}", firsts[NEW / 2]);
        drop(pool);

        if n >= 10 {
            // Fewer slots than identities: every request evicts.
            let pool = pool_of(n / 2);
            let mut next = held.iter().cycle();
            let us =
                per_call_async(5, 40, || send(&pool, &url, next.next().unwrap())).await / 1_000.0;
            println!("pool_identities_{n}_evicting_us={us:.0}");
        }
    }
    drop(server);
}
