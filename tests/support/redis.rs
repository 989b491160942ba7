//! A real `redis-server` (Debian's package) for the fleet tests and the
//! fleet bench: on a free loopback port, persistence off, ready once it
//! answers `PING`, killed on drop; killed and restarted on the same port;
//! paused (slower than any timeout); three nodes joined into a cluster.
//!
//! Without `redis-server` the tests skip loudly, except under `CI=true`,
//! where a missing server is a failure.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::ops::ControlFlow::{Break, Continue};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, poll_outside};

/// Whether `redis-server` is installed.
fn installed() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the fleet tests lack to run here, if anything: the fleet runner's
/// reason to report its tests `ignored`.
pub fn missing() -> Option<String> {
    (!installed())
        .then(|| "redis-server is not installed (apt-get install redis-server)".to_owned())
}

/// Whether `redis-server` can run here. When it cannot: `false` after a
/// loud note, or a panic under `CI=true`.
pub fn redis_available() -> bool {
    if installed() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("redis-server is missing, and CI=true: install it (apt-get install redis-server)");
    }
    eprintln!(
        "SKIPPED: redis-server is not installed (apt-get install redis-server); this Redis test did not run"
    );
    false
}

/// One `redis-server` process.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A server on a free port, ready; `None` (after a loud note) when
    /// `redis-server` is missing.
    pub fn start() -> Option<Self> {
        if !redis_available() {
            return None;
        }
        Some(Self::start_with(Vec::new()))
    }

    fn start_with(extra: Vec<String>) -> Self {
        let mut last = String::new();
        // A port found free may be taken before the server binds it: try a
        // few.
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                dir: tempfile::tempdir().expect("a temporary directory"),
                extra: extra.clone(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(e) => last = e,
            }
        }
        panic!("cannot start redis-server: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--loglevel", "warning"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command.spawn().map_err(|e| e.to_string())?;
        let port = self.port;
        // The server answering must be this one: another test's may have
        // bound the port first, and this one then exits.
        let ours = format!("process_id:{}\r\n", child.id());
        let answered = poll_outside(Duration::from_secs(10), Duration::from_millis(20), || {
            if command_at(port, &["INFO", "server"]).is_ok_and(|info| info.contains(&ours)) {
                return Break(Ok(()));
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Break(Err(format!("redis-server exited: {status}")));
            }
            Continue(())
        });
        match answered {
            Some(Ok(())) => {
                self.child = Some(child);
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err("redis-server did not answer PING within 10 s".to_owned())
            }
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: persistence is off).
    pub fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        let restarted =
            poll_outside(
                Duration::from_secs(10),
                Duration::from_millis(50),
                || match self.spawn() {
                    Ok(()) => Break(()),
                    Err(e) => {
                        last = e;
                        Continue(())
                    }
                },
            );
        assert!(restarted.is_some(), "cannot restart redis-server: {last}");
    }

    /// Makes every other client wait `ms` milliseconds for its answers
    /// (`CLIENT PAUSE ms ALL`): Redis slower than any timeout.
    pub fn pause(&self, ms: u64) {
        let reply = command_at(self.port, &["CLIENT", "PAUSE", &ms.to_string(), "ALL"])
            .expect("CLIENT PAUSE");
        assert_eq!(reply, "OK");
    }

    /// Ends a pause.
    pub fn unpause(&self) {
        let _ = command_at(self.port, &["CLIENT", "UNPAUSE"]);
    }

    /// Runs one command on a connection of its own; the answer as text.
    pub fn command(&self, args: &[&str]) -> String {
        command_at(self.port, args).expect("a Redis answer")
    }

    /// Calls per command since the start or the last reset (`INFO
    /// commandstats`), keyed by lower-case command name.
    pub fn command_calls(&self) -> HashMap<String, u64> {
        command_calls_at(self.port)
    }

    /// Forgets the command counters (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        self.command(&["CONFIG", "RESETSTAT"]);
    }

    /// The keys (`KEYS *`), as text.
    pub fn keys(&self) -> Vec<String> {
        keys_at(self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three `redis-server` nodes in cluster mode, joined with `redis-cli
/// --cluster create` (no replicas), all slots served.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// A ready cluster; `None` (after a loud note) when `redis-server` is
    /// missing.
    pub fn start() -> Option<Self> {
        if !redis_available() {
            return None;
        }
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                    ]
                    .map(String::from)
                    .to_vec(),
                )
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli (it comes with redis-server)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        cluster.wait_until_up();
        Some(cluster)
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Kills node `i` (SIGKILL). Until the others notice (the node
    /// timeout), commands for its slots fail; then the cluster refuses
    /// every command (`CLUSTERDOWN`), as it serves only with all slots.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Starts node `i` again on its port, with its `nodes.conf` (so it
    /// takes its slots back, empty), and waits until every node says the
    /// cluster is up.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].restart();
        self.wait_until_up();
    }

    fn wait_until_up(&self) {
        for node in &self.nodes {
            let mut info = String::new();
            let up = poll_outside(Duration::from_secs(60), Duration::from_millis(100), || {
                info = command_at(node.port, &["CLUSTER", "INFO"]).unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    Break(())
                } else {
                    Continue(())
                }
            });
            assert!(up.is_some(), "the cluster did not come up: {info}");
        }
    }

    /// How many keys each node holds.
    pub fn keys_per_node(&self) -> Vec<usize> {
        self.nodes.iter().map(|n| n.keys().len()).collect()
    }
}

/// Sends one command in RESP and reads one answer, as text: a simple
/// string, an error (`ERR ...`), an integer, a bulk string or an array
/// (its items joined by newlines).
fn command_at(port: u16, args: &[&str]) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader)
}

fn read_reply(reader: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']);
    let bad = || std::io::Error::other(format!("unexpected Redis answer {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    match kind {
        "+" | ":" => Ok(rest.to_owned()),
        "-" => Ok(format!("ERR {rest}")),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0; len as usize + 2];
            reader.read_exact(&mut buf)?;
            buf.truncate(len as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(reader)?);
            }
            Ok(items.join("\n"))
        }
        _ => Err(bad()),
    }
}

fn command_calls_at(port: u16) -> HashMap<String, u64> {
    let info = command_at(port, &["INFO", "commandstats"]).unwrap_or_default();
    let mut calls = HashMap::new();
    for line in info.lines() {
        // cmdstat_set:calls=12,usec=...
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, stats)) = rest.split_once(':') else {
            continue;
        };
        let n = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        calls.insert(name.to_owned(), n);
    }
    calls
}

fn keys_at(port: u16) -> Vec<String> {
    command_at(port, &["KEYS", "*"])
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The directory of a server (for its log, if one is wanted).
pub fn dir_of(server: &RedisServer) -> PathBuf {
    Path::new(server.dir.path()).to_path_buf()
}
