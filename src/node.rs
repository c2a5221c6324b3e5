//! `dainet ledger node` runs one validator of a ledger on the network; `dainet ledger genesis`
//! writes the genesis file the validators share.
//!
//! A node (see [`dainet_node`]) keeps its ledger in `--dir` (so `dainet ledger show|verify DIR`
//! read it) and simplex's vote journal in `DIR/consensus`. It runs until `--duration` passes or it
//! gets SIGINT/SIGTERM, then prints one JSON line (a [`dainet_node::NodeReport`]) on stdout; logs
//! go to stderr (`RUST_LOG` filters them). Bad input — an unreadable key, a file that is not a
//! genesis, a key that is not a validator, a bad peer or listen address, a ledger folder that does
//! not replay — is one `error:` line and exit code 2.

use anyhow::{bail, Context, Result};
use dainet_ledger::genesis::{Founder, Genesis};
use dainet_ledger::identity::NodeId;
use dainet_node::{LoadConfig, NodeConfig, Peer};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Arguments of `dainet ledger node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// The node's key file (`dainet keygen`); the key must be a validator of the genesis.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The genesis file (`dainet ledger genesis`).
    #[arg(long, value_name = "FILE")]
    pub genesis: PathBuf,
    /// The node folder: its ledger (ledger.redb, blobs/) and consensus/; created if missing,
    /// reopened (every block replayed and checked) if not.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Where to listen for the other validators.
    #[arg(long, value_name = "IP:PORT")]
    pub listen: String,
    /// Another validator and its listen address; repeat for each.
    #[arg(long = "peer", value_name = "NODEID@IP:PORT")]
    pub peers: Vec<String>,
    /// Sign and submit this many own transactions per second (rewards of 1 to itself) and report
    /// their throughput and finality latency.
    #[arg(long, value_name = "TX_PER_S")]
    pub load: Option<u32>,
    /// Stop after this many seconds [default: run until SIGINT or SIGTERM].
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// With --load and --duration: stop submitting this many seconds before the end, so the last
    /// transactions can finalize.
    #[arg(long, value_name = "S", default_value_t = 2.0)]
    pub drain: f64,
    /// Print the node's status (height, tip, catch-up progress) as one JSON line
    /// `{"status": {...}}` on stdout every this many seconds, before the final report line.
    #[arg(long, value_name = "S")]
    pub status_every: Option<f64>,
}

/// Arguments of `dainet ledger genesis`.
#[derive(Debug, clap::Args)]
pub struct GenesisArgs {
    /// The chain's name, for people. The chain id is the hash of the whole genesis (name, time,
    /// founders, treasury), so two genesis files with one name are two chains.
    #[arg(long, value_name = "NAME")]
    pub chain: String,
    /// A founding validator: its node id as `dainet keygen` prints it, optionally `=NAME`; repeat.
    #[arg(long = "validator", value_name = "NODEID[=NAME]", required = true)]
    pub validators: Vec<String>,
    /// A founding member that does not validate; repeat.
    #[arg(long = "member", value_name = "NODEID[=NAME]")]
    pub members: Vec<String>,
    /// The founder whose key alone may sign rewards (a --validator or --member node id)
    /// [default: none, no rewards on this chain].
    #[arg(long, value_name = "NODEID")]
    pub treasury: Option<String>,
    /// The genesis time, ms since the Unix epoch [default: now].
    #[arg(long, value_name = "MS")]
    pub time_ms: Option<u64>,
    /// The file to write; an existing file is never overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Runs `dainet ledger node`.
pub fn node(args: NodeArgs) -> Result<()> {
    dainet_node::init_logging();
    let key = dainet_node::config::load_key(&args.key)?;
    let genesis = dainet_node::config::load_genesis(&args.genesis)?;
    let listen: SocketAddr = args.listen.parse().map_err(|err| {
        anyhow::anyhow!(
            "bad --listen address: value={:?} reason={err}; expected IP:PORT, e.g. 127.0.0.1:7001",
            args.listen
        )
    })?;
    let peers = args.peers.iter().map(|p| p.parse::<Peer>()).collect::<Result<Vec<_>, _>>()?;
    let mut config = NodeConfig::new(key, genesis, args.dir, listen, peers);
    config.load = args.load.map(LoadConfig::at_rate);
    config.duration = args.duration.map(|s| seconds("--duration", s)).transpose()?;
    config.drain = seconds("--drain", args.drain)?;
    let status_every = args.status_every.map(|s| seconds("--status-every", s)).transpose()?;
    if status_every.is_some_and(|every| every.is_zero()) {
        bail!("bad --status-every: value=0 reason=must be more than 0 seconds");
    }
    let running = dainet_node::start(config)?;
    if let Some(every) = status_every {
        let started = std::time::Instant::now();
        let mut next = started + every;
        while !running.is_finished() {
            // Poll often enough to notice the end promptly; print on schedule.
            std::thread::sleep(Duration::from_millis(50).min(every));
            if std::time::Instant::now() >= next && !running.is_finished() {
                next += every;
                let line = dainet_node::NodeStatus::of(&running.status(), started.elapsed().as_secs_f64());
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{}", serde_json::json!({ "status": line }))?;
                stdout.flush()?;
            }
        }
    }
    let report = running.wait()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(&report)?)?;
    stdout.flush()?;
    Ok(())
}

fn seconds(flag: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!("bad {flag}: value={value} reason=not a non-negative number of seconds"))
}

/// Runs `dainet ledger genesis`.
pub fn genesis(args: GenesisArgs) -> Result<()> {
    if args.chain.trim().is_empty() {
        bail!("bad --chain: the chain name is empty");
    }
    let mut founders = Vec::new();
    for (index, value) in args.validators.iter().enumerate() {
        founders.push(founder(value, true, &format!("validator-{index}"))?);
    }
    for (index, value) in args.members.iter().enumerate() {
        founders.push(founder(value, false, &format!("member-{index}"))?);
    }
    let timestamp_ms = match args.time_ms {
        Some(ms) => ms,
        None => {
            let since = SystemTime::now().duration_since(UNIX_EPOCH).context("the system clock is before 1970")?;
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        }
    };
    let treasury = match &args.treasury {
        None => None,
        Some(value) => {
            let id: NodeId = value.trim().parse().map_err(|err| {
                anyhow::anyhow!("bad --treasury: value={value:?} reason=node id is not 64 hex characters ({err})")
            })?;
            if !founders.iter().any(|f| f.id == id) {
                bail!(
                    "bad --treasury: value={value:?} reason=not a founder; give one of the --validator or --member ids"
                );
            }
            Some(id)
        }
    };
    let genesis = Genesis { name: args.chain.clone(), timestamp_ms, founders, treasury };
    genesis.validate().context("bad genesis")?;
    write_new(&args.out, &genesis.encode())?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", genesis.chain_id().0)?;
    stdout.flush()?;
    eprintln!(
        "wrote the genesis of chain {:?} ({} founders) to {}; the line above is its chain id",
        args.chain,
        genesis.founders.len(),
        args.out.display()
    );
    Ok(())
}

/// Parse `NODEID[=NAME]`.
fn founder(value: &str, validator: bool, default_name: &str) -> Result<Founder> {
    let (id, name) = match value.split_once('=') {
        Some((id, name)) => (id, name.to_string()),
        None => (value, default_name.to_string()),
    };
    let flag = if validator { "--validator" } else { "--member" };
    let id: NodeId = id.trim().parse().map_err(|err| {
        anyhow::anyhow!(
            "bad {flag}: value={value:?} reason=node id is not 64 hex characters ({err}); expected NODEID[=NAME]"
        )
    })?;
    if !id.is_valid_key() {
        bail!("bad {flag}: value={value:?} reason=node id is not a usable ed25519 public key");
    }
    Ok(Founder { id, name, validator })
}

/// Write `bytes` to a new file at `path` and sync it; an existing file is an error.
pub fn write_new(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).with_context(|| {
        format!("{}: cannot create the file (an existing file is never overwritten)", path.display())
    })?;
    file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("{}: cannot write", path.display()))
}
