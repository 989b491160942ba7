//! The real RFC 8705 peer: `oidc-provider` (npm) run by Node, for interop tests.
//!
//! Include it with
//!
//! ```ignore
//! #[path = "support/oidc_provider.rs"]
//! mod oidc_provider;
//! use oidc_provider::{InteropClient, OidcProvider};
//! ```
//!
//! (the module must be named `oidc_provider` at the crate root for
//! [`require_node!`] to find [`skip_or_fail`]).
//!
//! [`OidcProvider::start`] writes a server certificate from the test PKI, the
//! CA and the clients into a temporary directory, runs
//! `node tests/interop/server.mjs` and waits for its `listening on` line. The
//! process is killed when the [`OidcProvider`] is dropped.
//!
//! The npm packages are installed on first use ([`ensure_peer`]): once per
//! test binary, `npm ci --prefix tests/interop --no-audit --no-fund` runs
//! unless `tests/interop/node_modules` already matches
//! `tests/interop/package-lock.json`. Test binaries run in parallel take
//! turns through the lock file `tests/interop/.npm-install.lock`.
//!
//! Without `node` or `npm` (or with a Node.js older than 20) the peer cannot
//! run. Then, when the environment variable `CI` is set, starting it fails;
//! otherwise the error starts with `SKIPPED:` and [`skip_or_fail`] /
//! [`require_node!`] turn it into a loud skip. A failed install is a failure
//! either way.
#![allow(dead_code, unreachable_pub)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tower_token_binding::test_util::{TestCert, TestPki};

use super::harness::in_ci;

/// The audience of tokens requested without a `resource` parameter.
pub const DEFAULT_RESOURCE: &str = "https://api.test";

/// How long the peer may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

const LISTENING: &str = "listening on ";
const INSTALL_HINT: &str = "install Node.js 20 or later (with npm)";

/// The oldest Node.js major version oidc-provider runs on.
const NODE_MAJOR: u32 = 20;

/// How old an install lock may get before it is taken for the leftover of
/// a run that was killed (on Unix, a lock whose process is gone is taken for
/// one at once).
const STALE_LOCK: Duration = Duration::from_secs(600);

/// Starts the peer or, when Node or npm is missing outside CI, skips the
/// test loudly and `return`s from it; any other error panics.
///
/// ```ignore
/// let provider = require_node!(OidcProvider::start(&pki, &clients));
/// ```
///
/// With no argument it only checks the prerequisites:
///
/// ```ignore
/// require_node!();
/// ```
#[macro_export]
macro_rules! require_node {
    () => {
        if let Err(error) = $crate::support::oidc_provider::ensure_peer() {
            $crate::support::oidc_provider::skip_or_fail(&error);
            return;
        }
    };
    ($start:expr) => {
        match $start.await {
            Ok(provider) => provider,
            Err(error) => {
                $crate::support::oidc_provider::skip_or_fail(&error);
                return;
            }
        }
    };
}

/// Prints a loud skip notice (not captured by the test harness) if `error`
/// starts with `SKIPPED:`; panics with `error` otherwise.
#[track_caller]
pub fn skip_or_fail(error: &str) {
    if error.starts_with("SKIPPED:") {
        // Straight to the process's stderr: libtest would swallow `eprintln!`
        // from a passing test.
        let line = "!".repeat(78);
        let test = std::thread::current().name().unwrap_or("?").to_owned();
        let _ = writeln!(
            std::io::stderr().lock(),
            "\n{line}\n{test}: {error}\n{line}\n"
        );
    } else {
        panic!("{error}");
    }
}

/// What the peer lacks to run here (Node.js 20 or later, npm), if
/// anything: the interop runner's reason to report its tests `ignored`.
pub fn missing() -> Option<String> {
    tools().err().map(|problem| {
        format!("the oidc-provider interop peer cannot run: {problem}; {INSTALL_HINT}")
    })
}

/// `tests/interop`.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Makes sure the peer can run: `node` (20 or later) and `npm` are there,
/// and the npm packages are installed, installing them if needed. The
/// outcome is kept for the rest of the test binary.
///
/// `Err` starts with `SKIPPED:` when Node or npm is missing, unless `CI` is
/// set.
pub fn ensure_peer() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY.get_or_init(prepare).clone()
}

fn prepare() -> Result<(), String> {
    if let Err(problem) = tools() {
        return Err(if in_ci() {
            format!("the oidc-provider interop peer cannot run in CI: {problem}; {INSTALL_HINT}")
        } else {
            format!(
                "SKIPPED: oidc-provider interop test not run: {problem}; {INSTALL_HINT} \
                 to run it"
            )
        });
    }
    install().map_err(|e| format!("cannot install the oidc-provider interop peer: {e}"))
}

/// Says to the terminal what takes time (libtest would hide `eprintln!`).
fn announce(message: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "oidc-provider interop peer: {message}"
    );
}

fn npm() -> &'static str {
    if cfg!(windows) { "npm.cmd" } else { "npm" }
}

/// The output of `program --version`, or why it cannot be run.
fn version_of(program: &str) -> Result<String, String> {
    match std::process::Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Err(e) => Err(format!("cannot run `{program} --version`: {e}")),
        Ok(out) if !out.status.success() => Err(format!(
            "`{program} --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(out) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
    }
}

/// Checks that `node` (recent enough) and `npm` run.
fn tools() -> Result<(), String> {
    let node = version_of("node")?;
    let major = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse::<u32>().ok());
    match major {
        Some(major) if major >= NODE_MAJOR => {}
        _ => return Err(format!("Node.js {node} is older than {NODE_MAJOR}")),
    }
    version_of(npm()).map(drop)
}

/// Installs the npm packages unless `node_modules` already matches the
/// lockfile, taking turns with other test binaries.
fn install() -> Result<(), String> {
    if installed().is_ok() {
        return Ok(());
    }
    let _lock = InstallLock::acquire()?;
    // Another test binary may have installed them while we waited.
    let why = match installed() {
        Ok(()) => return Ok(()),
        Err(why) => why,
    };
    let dir = interop_dir();
    announce(&format!(
        "{why}; running `npm ci --prefix {} --no-audit --no-fund`",
        dir.display()
    ));
    let output = std::process::Command::new(npm())
        .arg("ci")
        .arg("--prefix")
        .arg(&dir)
        .args(["--no-audit", "--no-fund"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`npm ci --prefix {}` failed ({}):\n{}{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    installed().map_err(|why| format!("`npm ci` succeeded, but {why}"))?;
    announce("installed");
    Ok(())
}

fn read_json(path: &Path) -> Result<serde_json::Map<String, Value>, String> {
    let text =
        std::fs::read(path).map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
    match serde_json::from_slice(&text) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(format!("{} is not a JSON object", path.display())),
    }
}

/// Whether `node_modules` is complete and matches `package-lock.json`, by
/// the record npm keeps of what it installed
/// (`node_modules/.package-lock.json`): every package the lockfile wants
/// (optional ones may be missing) at the same version and integrity, nothing
/// else, and each one's `package.json` on disk. `Err` says what differs.
fn installed() -> Result<(), String> {
    let dir = interop_dir();
    let wanted = read_json(&dir.join("package-lock.json"))?;
    let Ok(have) = read_json(&dir.join("node_modules/.package-lock.json")) else {
        return Err("tests/interop/node_modules is not installed".to_owned());
    };
    let packages = |lock: &serde_json::Map<String, Value>| {
        lock.get("packages")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let (wanted, have) = (packages(&wanted), packages(&have));
    for (path, entry) in wanted.iter().filter(|(path, _)| !path.is_empty()) {
        match have.get(path) {
            Some(installed)
                if installed.get("version") == entry.get("version")
                    && installed.get("integrity") == entry.get("integrity") => {}
            Some(_) => return Err(format!("{path} differs from package-lock.json")),
            None if entry.get("optional") == Some(&Value::Bool(true)) => {}
            None => return Err(format!("{path} is not installed")),
        }
    }
    for path in have.keys() {
        if !wanted.contains_key(path) {
            return Err(format!("{path} is not in package-lock.json"));
        }
        if !dir.join(path).join("package.json").is_file() {
            return Err(format!("{path} is incomplete"));
        }
    }
    Ok(())
}

/// `tests/interop/.npm-install.lock`, held while npm installs; removed on
/// drop.
struct InstallLock(PathBuf);

impl InstallLock {
    /// Creates the lock file, waiting while another process holds it.
    fn acquire() -> Result<Self, String> {
        use std::ops::ControlFlow::{Break, Continue};
        let path = interop_dir().join(".npm-install.lock");
        let mut told = false;
        let acquired = crate::support::poll_outside(
            Duration::from_secs(600),
            Duration::from_millis(200),
            || loop {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(mut file) => {
                        let _ = writeln!(file, "{}", std::process::id());
                        return Break(Ok(()));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        if let Some(why) = stale(&path) {
                            announce(&format!("removing {} ({why})", path.display()));
                            let _ = std::fs::remove_file(&path);
                            continue;
                        }
                        if !told {
                            announce(&format!(
                                "waiting for another test's npm install ({} exists)",
                                path.display()
                            ));
                            told = true;
                        }
                        return Continue(());
                    }
                    Err(e) => return Break(Err(format!("cannot create {}: {e}", path.display()))),
                }
            },
        );
        match acquired {
            Some(Ok(())) => Ok(Self(path)),
            Some(Err(e)) => Err(e),
            None => Err(format!("{} still held after 10 minutes", path.display())),
        }
    }
}

impl Drop for InstallLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Why the lock file at `path` is a leftover (its process was killed), if
/// it is one.
fn stale(path: &Path) -> Option<String> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    if age > STALE_LOCK {
        return Some(format!("{} s old", age.as_secs()));
    }
    // Empty or unreadable: just created, the pid not written yet.
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    (!process_alive(pid)?).then(|| format!("process {pid} that made it is gone"))
}

/// Whether process `pid` runs; `None` where that cannot be told.
fn process_alive(pid: u32) -> Option<bool> {
    if !cfg!(unix) {
        return None;
    }
    if Path::new("/proc/self").exists() {
        return Some(Path::new(&format!("/proc/{pid}")).exists());
    }
    // `kill -0` signals nothing; it says whether the process exists.
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .map(|status| status.success())
}

/// A client registered with the peer: oidc-provider client metadata.
///
/// Every client gets the client credentials grant only, no redirect URIs and
/// certificate-bound access tokens (`tls_client_certificate_bound_access_tokens:
/// true`) unless [`InteropClient::with`] says otherwise.
#[derive(Clone, Debug)]
pub struct InteropClient {
    metadata: serde_json::Map<String, Value>,
}

impl InteropClient {
    fn new(client_id: &str, auth_method: &str) -> Self {
        let metadata = json!({
            "client_id": client_id,
            "token_endpoint_auth_method": auth_method,
            "grant_types": ["client_credentials"],
            "response_types": [],
            "redirect_uris": [],
            "tls_client_certificate_bound_access_tokens": true,
        });
        let Value::Object(metadata) = metadata else {
            unreachable!()
        };
        Self { metadata }
    }

    /// RFC 8705 `tls_client_auth`: a certificate from the test CA whose DNS
    /// subject alternative names include `san_dns`.
    pub fn tls_client_auth(client_id: &str, san_dns: &str) -> Self {
        Self::new(client_id, "tls_client_auth").with("tls_client_auth_san_dns", san_dns)
    }

    /// RFC 8705 `self_signed_tls_client_auth`: exactly the certificate `cert`
    /// (registered in `jwks` as `x5c`; the peer derives the key parameters).
    pub fn self_signed(client_id: &str, cert: &TestCert) -> Self {
        let der = base64::engine::general_purpose::STANDARD.encode(cert.cert());
        Self::new(client_id, "self_signed_tls_client_auth")
            .with("jwks", json!({ "keys": [{ "x5c": [der] }] }))
    }

    /// `client_secret_basic` with `secret` (tokens are still bound to the
    /// certificate the client presents).
    pub fn client_secret_basic(client_id: &str, secret: &str) -> Self {
        Self::new(client_id, "client_secret_basic").with("client_secret", secret)
    }

    /// The same client asking for DPoP-bound tokens (RFC 9449) instead of
    /// certificate-bound ones: `dpop_bound_access_tokens: true` (a token
    /// request without a proof is refused) and
    /// `tls_client_certificate_bound_access_tokens: false`.
    pub fn dpop_bound(self) -> Self {
        self.with("tls_client_certificate_bound_access_tokens", false)
            .with("dpop_bound_access_tokens", true)
    }

    /// Sets (or with `Value::Null`, removes) one metadata field, for example
    /// `scope` or `tls_client_certificate_bound_access_tokens`.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        match value.into() {
            Value::Null => self.metadata.remove(field),
            value => self.metadata.insert(field.to_owned(), value),
        };
        self
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.metadata["client_id"].as_str().unwrap_or_default()
    }

    /// `token_endpoint_auth_method`.
    pub fn auth_method(&self) -> &str {
        self.metadata["token_endpoint_auth_method"]
            .as_str()
            .unwrap_or_default()
    }

    /// `client_secret`, if any.
    pub fn client_secret(&self) -> Option<&str> {
        self.metadata.get("client_secret").and_then(Value::as_str)
    }

    /// The metadata as sent to the peer.
    pub fn metadata(&self) -> Value {
        Value::Object(self.metadata.clone())
    }
}

/// How to run the peer; `Default` is what [`OidcProvider::start`] uses.
#[derive(Clone, Debug, Default)]
pub struct OidcProviderOptions {
    /// Publish RFC 8705 section 5 `mtls_endpoint_aliases` (token and
    /// introspection endpoints under `/mtls/`) and ignore client certificates
    /// on the regular endpoints, like a deployment whose default endpoints do
    /// not do mutual TLS: there, mTLS client authentication fails with
    /// `invalid_client` and certificate-bound token requests with
    /// `invalid_grant`.
    pub mtls_endpoint_aliases: bool,
    /// Access token lifetime (whole seconds, at least 1); 600 s if `None`.
    pub token_ttl: Option<Duration>,
    /// The audience of tokens requested without `resource`;
    /// [`DEFAULT_RESOURCE`] if `None`.
    pub default_resource: Option<String>,
    /// Require DPoP proofs to carry a server nonce (`features.dPoP` with a
    /// 32-byte `nonceSecret` and `requireNonce: () => true`): a proof
    /// without one gets `400 use_dpop_nonce` and a `DPoP-Nonce` header.
    /// DPoP itself is always on.
    pub dpop_require_nonce: bool,
    /// Issue opaque access tokens (`accessTokenFormat: 'opaque'`), which
    /// resource servers check by introspection, and turn on token
    /// revocation (RFC 7009) at [`OidcProvider::revocation_endpoint`].
    pub opaque_tokens: bool,
}

/// A running `oidc-provider`, killed on drop.
#[derive(Debug)]
pub struct OidcProvider {
    issuer: String,
    options: OidcProviderOptions,
    child: Child,
    // Closing it tells the peer to exit, should `kill_on_drop` not be reached.
    stdin: Option<ChildStdin>,
    log: Arc<Mutex<Vec<u8>>>,
    // Holds the PEM and clients files while the peer runs.
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    /// Starts the peer with a fresh server certificate from `pki` (trusting
    /// `pki`'s CA for `tls_client_auth`) and `clients`.
    pub async fn start(pki: &TestPki, clients: &[InteropClient]) -> Result<Self, String> {
        Self::start_with(pki, clients, OidcProviderOptions::default()).await
    }

    /// [`OidcProvider::start`] with `options`.
    pub async fn start_with(
        pki: &TestPki,
        clients: &[InteropClient],
        options: OidcProviderOptions,
    ) -> Result<Self, String> {
        ensure_peer()?;

        let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
        let server = pki
            .server_cert()
            .map_err(|e| format!("cannot make a server certificate: {e}"))?;
        let (cert_path, key_path) = server
            .write_pem_files(dir.path(), "server")
            .map_err(|e| format!("cannot write the server certificate: {e}"))?;
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, pki.ca_pem()).map_err(|e| format!("cannot write the CA: {e}"))?;
        let clients_path = dir.path().join("clients.json");
        let clients_json: Vec<Value> = clients.iter().map(InteropClient::metadata).collect();
        std::fs::write(
            &clients_path,
            serde_json::to_vec_pretty(&clients_json).expect("JSON"),
        )
        .map_err(|e| format!("cannot write the clients: {e}"))?;

        let mut command = Command::new("node");
        command
            .arg(interop_dir().join("server.mjs"))
            .arg("--cert")
            .arg(&cert_path)
            .arg("--key")
            .arg(&key_path)
            .arg("--ca")
            .arg(&ca_path)
            .arg("--clients")
            .arg(&clients_path)
            .current_dir(interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if options.mtls_endpoint_aliases {
            command.arg("--mtls-aliases");
        }
        if options.dpop_require_nonce {
            command.arg("--dpop-nonce");
        }
        if options.opaque_tokens {
            command.arg("--opaque-tokens");
        }
        if let Some(ttl) = options.token_ttl {
            command
                .arg("--token-ttl")
                .arg(ttl.as_secs().max(1).to_string());
        }
        if let Some(resource) = &options.default_resource {
            command.arg("--default-resource").arg(resource);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run node: {e}"))?;

        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr_task = tokio::spawn(collect(child.stderr.take().expect("piped"), log.clone()));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();

        let first = tokio::time::timeout(START_TIMEOUT, stdout.next_line()).await;
        let issuer = match first {
            Ok(Ok(Some(line))) if line.starts_with(LISTENING) => {
                line[LISTENING.len()..].trim().to_owned()
            }
            outcome => {
                let what = match outcome {
                    Ok(Ok(Some(line))) => format!("printed {line:?} instead of `listening on`"),
                    Ok(Ok(None)) => "exited before listening".to_owned(),
                    Ok(Err(e)) => format!("stdout failed: {e}"),
                    Err(_) => format!("did not listen within {START_TIMEOUT:?}"),
                };
                let _ = child.start_kill();
                let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                let _ = tokio::time::timeout(Duration::from_secs(5), stderr_task).await;
                let stderr = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
                return Err(format!(
                    "oidc-provider interop peer {what} (exit: {status:?}); stderr:\n{stderr}"
                ));
            }
        };
        // Nothing else is expected on stdout; keep draining it regardless.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });

        Ok(Self {
            issuer,
            options,
            stdin: child.stdin.take(),
            child,
            log,
            _dir: dir,
        })
    }

    /// The issuer, `https://127.0.0.1:PORT`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// The regular token endpoint (`token_endpoint` in the discovery
    /// document). With [`OidcProviderOptions::mtls_endpoint_aliases`] it
    /// ignores client certificates.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// The token endpoint that does mutual TLS: the
    /// `mtls_endpoint_aliases.token_endpoint` when aliases are published,
    /// [`OidcProvider::token_endpoint`] otherwise.
    pub fn mtls_token_endpoint(&self) -> String {
        if self.options.mtls_endpoint_aliases {
            format!("{}/mtls/token", self.issuer)
        } else {
            self.token_endpoint()
        }
    }

    /// The token introspection endpoint (RFC 7662), regular.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/token/introspection", self.issuer)
    }

    /// The token revocation endpoint (RFC 7009), with
    /// [`OidcProviderOptions::opaque_tokens`].
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/token/revocation", self.issuer)
    }

    /// The JWKS with the peer's ES256 signing key.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// The audience of tokens requested without `resource`.
    pub fn default_resource(&self) -> &str {
        self.options
            .default_resource
            .as_deref()
            .unwrap_or(DEFAULT_RESOURCE)
    }

    /// What the peer wrote to stderr so far (warnings, and one line per
    /// failed token or introspection request with oidc-provider's reason).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// Stops the peer and waits for it to exit.
    pub async fn stop(mut self) {
        self.stdin.take();
        let _ = self.child.kill().await;
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("oidc-provider interop peer stderr:\n{}", self.log());
        }
        // `kill_on_drop` kills the process; closing stdin also asks it to go.
        self.stdin.take();
    }
}

async fn collect(mut from: impl AsyncRead + Unpin, into: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        into.lock().unwrap().extend_from_slice(&buf[..n]);
    }
}
