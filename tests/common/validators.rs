//! Validator processes for the tests that run `dainet ledger node`: keys and a genesis made with
//! the CLI, a free loopback address each, and the commands and reports around them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dainet_ledger::block::Block;
use dainet_ledger::folder::LedgerDir;
use dainet_ledger::store::BlockStore;
use serde_json::Value;

use super::{dainet, s, stderr};

/// The tests that start several validator processes run one at a time, so that on a small machine
/// they do not starve each other.
pub static PROCESSES: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    PROCESSES.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `dainet ARGS`, asserts success, returns stdout's first line.
pub fn ok(args: &[&str]) -> String {
    let out = dainet(args);
    assert!(out.status.success(), "dainet {args:?}: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string()
}

/// Keys (made with `dainet keygen`) and a genesis (made with `dainet ledger genesis`) for `n`
/// validators, and a free loopback address for each.
pub struct Setup {
    pub tmp: tempfile::TempDir,
    pub keys: Vec<PathBuf>,
    pub ids: Vec<String>,
    pub genesis: PathBuf,
    pub addrs: Vec<String>,
}

pub fn setup(n: usize) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let mut keys = Vec::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let key = tmp.path().join(format!("v{i}.key"));
        ids.push(ok(&["keygen", "--out", s(&key)]));
        keys.push(key);
    }
    let genesis = tmp.path().join("genesis");
    let mut args = vec!["ledger", "genesis", "--chain", "e2e", "--out", s(&genesis)];
    let named: Vec<String> = ids.iter().enumerate().map(|(i, id)| format!("{id}=org{i}")).collect();
    for v in &named {
        args.extend(["--validator", v.as_str()]);
    }
    let hash = ok(&args);
    assert_eq!(hash.len(), 64, "genesis prints its chain id: {hash}");
    let listeners: Vec<_> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let addrs = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    Setup { tmp, keys, ids, genesis, addrs }
}

impl Setup {
    pub fn dir(&self, i: usize) -> PathBuf {
        self.tmp.path().join(format!("node-{i}"))
    }

    /// `dainet ledger node` for validator `i` with every other validator as a peer.
    pub fn node(&self, i: usize, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dainet"));
        command.args(["ledger", "node", "--key", s(&self.keys[i]), "--genesis", s(&self.genesis)]);
        command.args(["--dir", s(&self.dir(i)), "--listen", &self.addrs[i]]);
        for j in (0..self.ids.len()).filter(|&j| j != i) {
            command.args(["--peer", &format!("{}@{}", self.ids[j], self.addrs[j])]);
        }
        command.args(extra).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }
}

/// Wait for `child` (killing it after `limit`), returning its output.
pub fn finish(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The JSON report a node printed as its last stdout line.
pub fn report(out: &Output) -> Value {
    assert!(out.status.success(), "node failed: {}", stderr(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().expect("a report line");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {e}: {line}"))
}

pub fn block_hash_at(dir: &Path, height: u64) -> String {
    let ledger = LedgerDir::open(dir).unwrap();
    Block::decode(&ledger.store().block(height).unwrap().unwrap()).unwrap().hash().to_string()
}

/// A running `dainet ledger node --status-every S` whose stdout is read as it comes: each
/// `{"status": {...}}` line is kept with the time it arrived; stderr is kept whole.
pub struct Watched {
    child: Child,
    statuses: std::sync::Arc<std::sync::Mutex<Vec<(Instant, Value)>>>,
    stdout: std::thread::JoinHandle<Vec<String>>,
    stderr: std::thread::JoinHandle<String>,
}

/// What a [`Watched`] node left: its exit, every stdout line, its stderr.
pub struct Stopped {
    pub status: std::process::ExitStatus,
    pub lines: Vec<String>,
    pub stderr: String,
}

impl Stopped {
    /// The final report (the last stdout line), asserting the node exited 0.
    pub fn report(&self) -> Value {
        assert!(self.status.success(), "node failed ({}): {}", self.status, self.stderr);
        let line = self.lines.last().expect("a report line");
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {e}: {line}"))
    }
}

impl Watched {
    /// Spawn `command` (which must pipe stdout and stderr).
    pub fn spawn(mut command: Command) -> Watched {
        let mut child = command.spawn().expect("dainet ledger node starts");
        let statuses = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout piped");
        let kept = statuses.clone();
        let stdout = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
                if let Ok(mut value) = serde_json::from_str::<Value>(&line) {
                    if let Some(status) = value.get_mut("status") {
                        kept.lock().unwrap().push((Instant::now(), status.take()));
                    }
                }
                lines.push(line);
            }
            lines
        });
        let err = child.stderr.take().expect("stderr piped");
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(err), &mut all);
            all
        });
        Watched { child, statuses, stdout, stderr }
    }

    /// The statuses so far, oldest first.
    pub fn statuses(&self) -> Vec<(Instant, Value)> {
        self.statuses.lock().unwrap().clone()
    }

    /// The height of the latest status (0 before the first).
    pub fn height(&self) -> u64 {
        self.statuses.lock().unwrap().last().and_then(|(_, s)| s["height"].as_u64()).unwrap_or(0)
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// The finalization rate (blocks/s) between the first status at or after `from` and the last
    /// at or before `to`; `None` with fewer than two such statuses.
    pub fn rate(&self, from: Instant, to: Instant) -> Option<f64> {
        let statuses = self.statuses.lock().unwrap();
        let window: Vec<&(Instant, Value)> = statuses.iter().filter(|(t, _)| *t >= from && *t <= to).collect();
        let (first, last) = (window.first()?, window.last()?);
        let seconds = last.0.duration_since(first.0).as_secs_f64();
        let blocks = last.1["height"].as_u64()?.checked_sub(first.1["height"].as_u64()?)?;
        (seconds > 0.0).then(|| blocks as f64 / seconds)
    }

    /// Send `signal` (libc::SIGTERM to stop gracefully, libc::SIGKILL to crash it) and wait for
    /// it to exit, killing it after `limit`.
    pub fn stop(mut self, signal: libc::c_int, limit: Duration) -> Stopped {
        // SAFETY: kill sends a signal to the child this test started; no memory is touched.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() && start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        Stopped { status, lines: self.stdout.join().unwrap(), stderr: self.stderr.join().unwrap() }
    }
}

/// Wait until `done()` holds, checking every 100 ms; false if `limit` passed first.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}
