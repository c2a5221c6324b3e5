//! `dainet bench ledger`: committed transactions per second and finality latency of a ledger run
//! by `--validators` validator *processes* on loopback.
//!
//! The benchmark makes keys and a genesis in a temporary folder, picks free loopback ports, and
//! starts each validator as a child process of this binary (`dainet ledger node … --load R/n
//! --duration S`). Each node signs and submits its share of the load to its own mempool (data-use
//! records, see [`dainet_node::load`]) and measures, per transaction, the time from submission
//! until it knows the transaction is in a finalized block it has persisted. When all children have
//! exited, the benchmark reads every node's ledger folder and checks that all hold the same block
//! at the lowest tip height among them (a block hash commits to every block below it), then
//! prints one JSON line:
//!
//! - `tx_per_s`: the sum over nodes of their own transactions finalized inside their measured
//!   window, each divided by its window (from the node's first finalized block to the end of
//!   submission — the first seconds, spent connecting, are not counted);
//! - `latency_ms`: p50, p99 and max over every committed transaction of every node (1 ms buckets,
//!   rounded up);
//! - `same_chain`, `common_height`, `heights`: the agreement check;
//! - `cpu_utilization`: the children's CPU time over the wall time × hardware threads — near 1.0
//!   means the run was CPU-bound;
//! - the load rate, versions, hardware threads and the load average before the run (another busy
//!   process on the machine shows there).

use anyhow::{bail, Context, Result};
use dainet_ledger::block::Block;
use dainet_ledger::folder::LedgerDir;
use dainet_ledger::genesis::{Founder, Genesis};
use dainet_ledger::identity::Keypair;
use dainet_ledger::store::BlockStore;
use getrandom::SysRng;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The default total load: a rate this benchmark sustained with a p50 finality latency far
/// below 300 ms on the idle 2-core development machine (5,933 tx/s committed at p50 90 ms;
/// 8,000 offered tipped over; see the `dainet-node` README for the sweep).
const DEFAULT_RATE: u32 = 6_000;

/// Arguments of `dainet bench ledger`.
#[derive(Debug, clap::Args)]
pub struct LedgerArgs {
    /// Validator processes to run.
    #[arg(long, value_parser = super::bounds::count(1, 64), default_value_t = 4)]
    pub validators: usize,
    /// Total offered load, transactions per second, split evenly across the validators.
    #[arg(long, value_parser = super::bounds::count32(1, 1_000_000), default_value_t = DEFAULT_RATE)]
    pub rate: u32,
    /// Seconds each validator runs (connecting, load, drain).
    #[arg(long, value_parser = super::bounds::seconds, default_value_t = 14.0)]
    pub duration: f64,
    /// Seconds at the end of the run without new submissions, so the last ones can finalize.
    #[arg(long, value_parser = super::bounds::seconds, default_value_t = 2.0)]
    pub drain: f64,
    /// Keep the keys, genesis, ledgers and logs in this new folder instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// Runs `dainet bench ledger`.
pub fn ledger(args: LedgerArgs) -> Result<()> {
    let n = args.validators;
    if n == 0 {
        bail!("bad --validators: at least 1 is needed (4 tolerate one faulty validator)");
    }
    if args.rate < n as u32 {
        bail!("bad --rate: rate={} is below one transaction per second per validator ({n})", args.rate);
    }
    if !(args.duration > args.drain && args.drain >= 0.0) {
        bail!("bad --duration: it must exceed --drain: duration={} drain={}", args.duration, args.drain);
    }
    let load_before = super::loadavg();
    let (root, temporary) = match &args.keep {
        Some(dir) => {
            if dir.exists() {
                bail!("{}: already exists; --keep needs a new folder", dir.display());
            }
            (dir.clone(), false)
        }
        None => (std::env::temp_dir().join(format!("dainet-bench-ledger-{}-{}", std::process::id(), now_ms()?)), true),
    };
    std::fs::create_dir_all(&root).with_context(|| format!("{}: cannot create the folder", root.display()))?;
    let result = run(&args, &root);
    if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    let mut line = result?;
    line["load_average_before"] = json!(load_before);
    println!("{line}");
    Ok(())
}

/// One validator child process and where its files are.
struct Spawned {
    child: Child,
    dir: PathBuf,
    log: PathBuf,
}

fn run(args: &LedgerArgs, root: &Path) -> Result<Value> {
    let n = args.validators;
    let mut rng = ChaCha20Rng::try_from_rng(&mut SysRng).context("cannot read the operating system's random source")?;
    let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate(&mut rng)).collect();
    let mut key_files = Vec::with_capacity(n);
    for (i, key) in keys.iter().enumerate() {
        let path = root.join(format!("validator-{i}.key"));
        key.save(&path).with_context(|| format!("{}: cannot write the key", path.display()))?;
        key_files.push(path);
    }
    let founders = keys.iter().enumerate().map(|(i, k)| Founder {
        id: k.node_id(),
        name: format!("validator-{i}"),
        validator: true,
    });
    let genesis =
        Genesis { name: "bench-ledger".into(), timestamp_ms: now_ms()?, founders: founders.collect(), treasury: None };
    let genesis_file = root.join("genesis");
    crate::node::write_new(&genesis_file, &genesis.encode())?;
    let addrs = free_loopback_addrs(n)?;

    let exe = std::env::current_exe().context("cannot find this program's path to start the validators")?;
    let mut spawned: Vec<Spawned> = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let rate = args.rate / n as u32 + u32::from((i as u32) < args.rate % n as u32);
        let dir = root.join(format!("node-{i}"));
        let log = root.join(format!("node-{i}.log"));
        let log_file = std::fs::File::create(&log).with_context(|| format!("{}: cannot create", log.display()))?;
        let mut command = Command::new(&exe);
        command
            .args(["ledger", "node", "--key"])
            .arg(&key_files[i])
            .arg("--genesis")
            .arg(&genesis_file)
            .arg("--dir")
            .arg(&dir)
            .args(["--listen", &addrs[i]])
            .args(["--load", &rate.to_string()])
            .args(["--duration", &args.duration.to_string(), "--drain", &args.drain.to_string()]);
        for (j, key) in keys.iter().enumerate() {
            if j != i {
                command.args(["--peer", &format!("{}@{}", key.node_id(), addrs[j])]);
            }
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log_file);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                stop_all(&mut spawned);
                return Err(err).context("cannot start a validator process");
            }
        };
        spawned.push(Spawned { child, dir, log });
    }

    let limit = Duration::from_secs_f64(args.duration) + Duration::from_secs(60);
    let reports = collect(&mut spawned, started + limit)?;
    let wall_s = started.elapsed().as_secs_f64();
    let cpu_s = children_cpu_seconds();

    // Agreement: every node's stored block at the lowest tip height.
    let ledgers = spawned.iter().map(|s| LedgerDir::open_read_only(&s.dir)).collect::<Result<Vec<_>, _>>()?;
    let mut heights = Vec::with_capacity(n);
    for ledger in &ledgers {
        heights.push(ledger.store().tip()?.map_or(0, |t| t.height));
    }
    let common_height = heights.iter().copied().min().unwrap_or(0);
    let mut hashes = Vec::with_capacity(n);
    for (s, ledger) in spawned.iter().zip(&ledgers) {
        let bytes = ledger
            .store()
            .block(common_height)?
            .with_context(|| format!("{}: no block at height {common_height}", s.dir.display()))?;
        let block =
            Block::decode(&bytes).with_context(|| format!("{}: block {common_height} is garbled", s.dir.display()))?;
        hashes.push(block.hash());
    }
    let same_chain = hashes.windows(2).all(|w| w[0] == w[1]);

    let mut histogram: BTreeMap<u64, u64> = BTreeMap::new();
    let (mut tx_per_s, mut committed, mut submitted, mut skipped, mut pending) = (0.0, 0u64, 0u64, 0u64, 0u64);
    let mut per_node = Vec::with_capacity(n);
    for report in &reports {
        let load = &report["load"];
        tx_per_s += load["tx_per_s"].as_f64().unwrap_or(0.0);
        committed += load["committed"].as_u64().unwrap_or(0);
        submitted += load["submitted"].as_u64().unwrap_or(0);
        skipped += load["skipped"].as_u64().unwrap_or(0);
        pending += load["pending"].as_u64().unwrap_or(0);
        for pair in load["latency_histogram_ms"].as_array().into_iter().flatten() {
            if let (Some(ms), Some(count)) = (pair[0].as_u64(), pair[1].as_u64()) {
                *histogram.entry(ms).or_insert(0) += count;
            }
        }
        per_node.push(json!({
            "tx_per_s": round2(load["tx_per_s"].as_f64().unwrap_or(0.0)),
            "p50_ms": load["latency_ms"]["p50"],
            "window_s": load["window_s"],
            "warmup_s": load["warmup_s"],
            "height": report["height"],
            "proposed": report["proposed"],
            "rejected_messages": report["rejected_messages"],
        }));
    }
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    Ok(json!({
        "bench": "ledger",
        "validators": n,
        "processes": true,
        "rate_tx_per_s": args.rate,
        "duration_s": args.duration,
        "tx_per_s": round2(tx_per_s),
        "latency_ms": {
            "p50": histogram_percentile(&histogram, 50.0),
            "p99": histogram_percentile(&histogram, 99.0),
            "max": histogram.keys().next_back().copied().unwrap_or(0),
        },
        "submitted": submitted,
        "committed": committed,
        "skipped": skipped,
        "pending_at_stop": pending,
        "blocks": common_height,
        "heights": heights,
        "common_height": common_height,
        "same_chain": same_chain,
        "tx_body": dainet_node::load::load_body().kind(),
        "cpu_utilization": round2(cpu_s / (wall_s * threads as f64)),
        "threads": threads,
        "versions": {
            "dainet": env!("CARGO_PKG_VERSION"),
            "commonware": "2026.10.0",
            "ed25519-dalek": "3.0.0",
            "redb": "4.6.0",
        },
        "per_node": per_node,
    }))
}

/// Wait for every child (killing all at `deadline`) and parse the JSON line each printed.
fn collect(spawned: &mut [Spawned], deadline: Instant) -> Result<Vec<Value>> {
    let mut outputs: Vec<Option<std::process::Output>> = (0..spawned.len()).map(|_| None).collect();
    loop {
        let mut running = false;
        for (i, s) in spawned.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match s.child.try_wait() {
                    Ok(Some(_)) => outputs[i] = Some(take_output(&mut s.child)),
                    Ok(None) => running = true,
                    Err(err) => return Err(err).context("cannot wait for a validator process"),
                }
            }
        }
        if !running {
            break;
        }
        if Instant::now() >= deadline {
            stop_all(spawned);
            bail!("the validators did not stop in time; their logs are node-*.log (pass --keep DIR to keep them)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut reports = Vec::with_capacity(spawned.len());
    for (i, (s, output)) in spawned.iter().zip(outputs).enumerate() {
        let output = output.context("a validator's output is missing")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().rev().find(|l| l.starts_with('{'));
        match (output.status.success(), line.map(serde_json::from_str::<Value>)) {
            (true, Some(Ok(report))) => reports.push(report),
            _ => bail!("validator {i} failed: status={} log={}: {}", output.status, s.log.display(), log_tail(&s.log)),
        }
    }
    Ok(reports)
}

/// The exited child's stdout (it wrote one short line, so the pipe never filled).
fn take_output(child: &mut Child) -> std::process::Output {
    use std::io::Read as _;
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_end(&mut stdout);
    }
    let status = child.wait().unwrap_or_else(|_| std::process::ExitStatus::default());
    std::process::Output { status, stdout, stderr: Vec::new() }
}

fn stop_all(spawned: &mut [Spawned]) {
    for s in spawned.iter_mut() {
        let _ = s.child.kill();
        let _ = s.child.wait();
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// `n` distinct loopback addresses with ports free right now (bound, read, released together).
fn free_loopback_addrs(n: usize) -> Result<Vec<String>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot find free loopback ports")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.to_string())).collect()
}

/// The nearest-rank percentile of a `[ms] -> count` histogram.
fn histogram_percentile(histogram: &BTreeMap<u64, u64>, p: f64) -> u64 {
    let total: u64 = histogram.values().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (&ms, &count) in histogram {
        seen += count;
        if seen >= rank {
            return ms;
        }
    }
    histogram.keys().next_back().copied().unwrap_or(0)
}

/// User and system CPU seconds of all waited-for children.
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass, which is zero-initialised and owned.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) == 0).then_some(usage)
    };
    usage.map_or(0.0, |u| {
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        secs(u.ru_utime) + secs(u.ru_stime)
    })
}

fn now_ms() -> Result<u64> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).context("the system clock is before 1970")?;
    Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_are_nearest_rank() {
        let h: BTreeMap<u64, u64> = [(10, 50), (20, 49), (300, 1)].into();
        assert_eq!(histogram_percentile(&h, 50.0), 10);
        assert_eq!(histogram_percentile(&h, 99.0), 20);
        assert_eq!(histogram_percentile(&h, 100.0), 300);
        assert_eq!(histogram_percentile(&BTreeMap::new(), 50.0), 0);
    }
}
