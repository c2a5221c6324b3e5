//! What a node is told: its key, the genesis, its folder, where it listens, its peers, and the
//! optional load it generates. Also the loaders for the key and genesis files, and the checks
//! that turn a wrong configuration into an error before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use dainet_consensus::validator::Timing;
use dainet_ledger::genesis::Genesis;
use dainet_ledger::identity::{Keypair, NodeId};

use crate::error::NodeError;
use crate::network::ChannelQuotas;

/// The folder, inside a node folder, where Commonware keeps its own storage (simplex's vote
/// journal). The ledger itself is the node folder (`ledger.redb`, `blobs/`).
pub const CONSENSUS_DIR: &str = "consensus";

/// Another validator: its node id and the address it listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its node id (the hex public key `dainet keygen` prints).
    pub node: NodeId,
    /// Its listen address.
    pub addr: SocketAddr,
}

impl FromStr for Peer {
    type Err = NodeError;

    /// Parse `NODEID@IP:PORT`.
    fn from_str(value: &str) -> Result<Peer, NodeError> {
        let bad = |reason: String| NodeError::BadPeer { value: value.to_string(), reason };
        let (node, addr) = value.split_once('@').ok_or_else(|| bad("no '@' between node id and address".into()))?;
        let node: NodeId =
            node.trim().parse().map_err(|err| bad(format!("node id is not 64 hex characters: {err}")))?;
        if !node.is_valid_key() {
            return Err(bad("node id is not a usable ed25519 public key".into()));
        }
        let addr: SocketAddr = addr.trim().parse().map_err(|err| bad(format!("address is not IP:PORT: {err}")))?;
        Ok(Peer { node, addr })
    }
}

/// Load the node's own transactions generate, for benchmarks (see [`crate::load`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadConfig {
    /// Transactions per second to sign and submit.
    pub rate_per_s: u32,
    /// Most submitted transactions not yet finalized; beyond it due transactions are skipped
    /// (and counted), so an overloaded node does not grow its mempool without bound.
    pub max_in_flight: usize,
}

impl LoadConfig {
    /// `rate_per_s` with room for two seconds of backlog (at least 1,000, at most 50,000).
    ///
    /// The bound matters under overload: the mempool replays every waiting transaction after each
    /// finalization and for each proposal, so an unbounded backlog makes every view slower and the
    /// backlog larger still. Skipping (and counting) beyond two seconds keeps an overloaded node
    /// near its best throughput instead of collapsing.
    pub fn at_rate(rate_per_s: u32) -> LoadConfig {
        let two_seconds = usize::try_from(rate_per_s).unwrap_or(usize::MAX).saturating_mul(2);
        LoadConfig { rate_per_s, max_in_flight: two_seconds.clamp(1_000, 50_000) }
    }
}

/// Everything one validator node needs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Its identity: signs votes (as its consensus key) and its own transactions.
    pub key: Keypair,
    /// The chain's genesis; the key must be one of its validators.
    pub genesis: Genesis,
    /// The node folder: the ledger (`ledger.redb`, `blobs/`) and [`CONSENSUS_DIR`].
    pub dir: PathBuf,
    /// Where to listen for peers.
    pub listen: SocketAddr,
    /// The other validators.
    pub peers: Vec<Peer>,
    /// Load to generate, if any.
    pub load: Option<LoadConfig>,
    /// Stop after this long; `None` runs until stopped.
    pub duration: Option<Duration>,
    /// With both `load` and `duration`: stop submitting this long before the end, so what was
    /// submitted can finalize before the node stops.
    pub drain: Duration,
    /// Stop on SIGINT or SIGTERM (the CLI does; in-process tests do not).
    pub stop_on_signals: bool,
    /// Consensus timeouts.
    pub timing: Timing,
    /// Per-peer channel quotas.
    pub quotas: ChannelQuotas,
    /// Threads of the node's async runtime.
    pub worker_threads: usize,
}

impl NodeConfig {
    /// A configuration with the defaults: no load, no duration, a 2 s drain, signals honoured,
    /// default timing and quotas, 2 runtime threads.
    pub fn new(key: Keypair, genesis: Genesis, dir: PathBuf, listen: SocketAddr, peers: Vec<Peer>) -> NodeConfig {
        NodeConfig {
            key,
            genesis,
            dir,
            listen,
            peers,
            load: None,
            duration: None,
            drain: Duration::from_secs(2),
            stop_on_signals: true,
            timing: Timing::default(),
            quotas: ChannelQuotas::default(),
            worker_threads: 2,
        }
    }

    /// Where Commonware's storage lives: `DIR/consensus`.
    pub fn consensus_dir(&self) -> PathBuf {
        self.dir.join(CONSENSUS_DIR)
    }

    /// Check everything that can be checked without touching the disk or the network: the key is
    /// a genesis validator, every peer is another validator listed once, the numbers make sense.
    pub fn validate(&self) -> Result<(), NodeError> {
        let validators: Vec<NodeId> = self.genesis.founders.iter().filter(|f| f.validator).map(|f| f.id).collect();
        let me = self.key.node_id();
        if !validators.contains(&me) {
            return Err(NodeError::NotAValidator { node: me, validators: validators.len() });
        }
        let mut seen = vec![me];
        for peer in &self.peers {
            if !validators.contains(&peer.node) {
                return Err(NodeError::PeerNotAValidator { node: peer.node });
            }
            if seen.contains(&peer.node) {
                return Err(NodeError::DuplicatePeer { node: peer.node });
            }
            seen.push(peer.node);
        }
        if let Some(load) = self.load {
            if load.rate_per_s == 0 {
                return Err(NodeError::Config { field: "load", reason: "rate must be at least 1 tx/s".into() });
            }
        }
        if let (Some(_), Some(duration)) = (self.load, self.duration) {
            if duration <= self.drain {
                return Err(NodeError::Config {
                    field: "duration",
                    reason: format!(
                        "must exceed the drain time so that load can run: duration_ms={} drain_ms={}",
                        duration.as_millis(),
                        self.drain.as_millis()
                    ),
                });
            }
        }
        if self.worker_threads == 0 {
            return Err(NodeError::Config { field: "worker_threads", reason: "must be at least 1".into() });
        }
        self.timing.validate()?;
        Ok(())
    }
}

/// Read a key file written by `dainet keygen` ([`Keypair::load`]), refusing one that users
/// other than its owner may read (keygen writes mode 0600).
pub fn load_key(path: &Path) -> Result<Keypair, NodeError> {
    let key = Keypair::load(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = std::fs::metadata(path)
            .map_err(|source| dainet_ledger::identity::IdentityError::Io { path: path.to_path_buf(), source })?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(NodeError::KeyExposed { path: path.to_path_buf(), mode });
        }
    }
    Ok(key)
}

/// Read a genesis file (the bytes of [`Genesis::encode`]) and check its rules.
///
/// At most one byte more than a genesis may hold is read, so an oversized file is refused
/// ([`Genesis::decode`]'s size check) without being read whole.
pub fn load_genesis(path: &Path) -> Result<Genesis, NodeError> {
    use std::io::Read;
    let limit = dainet_ledger::genesis::MAX_GENESIS_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit).read_to_end(&mut bytes))
        .map_err(|source| NodeError::GenesisIo { path: path.to_path_buf(), source })?;
    let genesis =
        Genesis::decode(&bytes).map_err(|source| NodeError::NotAGenesis { path: path.to_path_buf(), source })?;
    genesis.validate().map_err(|source| NodeError::InvalidGenesis { path: path.to_path_buf(), source })?;
    Ok(genesis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dainet_ledger::genesis::Founder;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn key(seed: u64) -> Keypair {
        Keypair::generate(&mut ChaCha20Rng::seed_from_u64(seed))
    }

    fn genesis(validators: &[&Keypair], members: &[&Keypair]) -> Genesis {
        let mut founders: Vec<Founder> =
            validators.iter().map(|k| Founder { id: k.node_id(), name: "v".into(), validator: true }).collect();
        founders.extend(members.iter().map(|k| Founder { id: k.node_id(), name: "m".into(), validator: false }));
        Genesis { name: "config".into(), timestamp_ms: 0, founders, treasury: None }
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:7000".parse().unwrap()
    }

    #[test]
    fn peer_parses_and_names_what_is_wrong() {
        let id = key(1).node_id();
        let peer: Peer = format!("{id}@127.0.0.1:7001").parse().unwrap();
        assert_eq!(peer, Peer { node: id, addr: "127.0.0.1:7001".parse().unwrap() });
        for (value, needle) in [
            (format!("{id}"), "no '@'"),
            ("abc@127.0.0.1:1".to_string(), "64 hex"),
            (format!("{}@127.0.0.1:1", "ff".repeat(32)), "ed25519"),
            (format!("{id}@localhost"), "IP:PORT"),
            (format!("{id}@127.0.0.1:99999"), "IP:PORT"),
        ] {
            let err = value.parse::<Peer>().unwrap_err().to_string();
            assert!(err.contains(needle), "{value}: {err}");
            assert!(err.contains("expected NODEID@IP:PORT"), "{err}");
        }
    }

    #[test]
    fn validate_refuses_non_validators_and_bad_peers() {
        let (a, b, c, m) = (key(1), key(2), key(3), key(4));
        let g = genesis(&[&a, &b, &c], &[&m]);
        let peer = |k: &Keypair| Peer { node: k.node_id(), addr: addr() };
        let config = |k: &Keypair, peers: Vec<Peer>| NodeConfig::new(k.clone(), g.clone(), "x".into(), addr(), peers);

        config(&a, vec![peer(&b), peer(&c)]).validate().unwrap();
        let err = config(&m, vec![peer(&a)]).validate().unwrap_err();
        assert!(matches!(err, NodeError::NotAValidator { validators: 3, .. }), "{err}");
        assert!(err.to_string().contains("not a validator"), "{err}");
        let err = config(&a, vec![peer(&m)]).validate().unwrap_err();
        assert!(matches!(err, NodeError::PeerNotAValidator { node } if node == m.node_id()), "{err}");
        let err = config(&a, vec![peer(&b), peer(&b)]).validate().unwrap_err();
        assert!(matches!(err, NodeError::DuplicatePeer { .. }), "{err}");
        let err = config(&a, vec![peer(&a)]).validate().unwrap_err();
        assert!(matches!(err, NodeError::DuplicatePeer { .. }), "{err}");

        let mut loaded = config(&a, vec![]);
        loaded.load = Some(LoadConfig::at_rate(100));
        loaded.duration = Some(Duration::from_secs(1));
        let err = loaded.validate().unwrap_err();
        assert!(matches!(err, NodeError::Config { field: "duration", .. }), "{err}");
        loaded.load = Some(LoadConfig::at_rate(0));
        loaded.duration = Some(Duration::from_secs(5));
        assert!(matches!(loaded.validate(), Err(NodeError::Config { field: "load", .. })));
    }

    #[test]
    fn genesis_file_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.genesis");
        assert!(matches!(load_genesis(&missing), Err(NodeError::GenesisIo { .. })));
        let garbage = tmp.path().join("garbage.genesis");
        std::fs::write(&garbage, b"\x01not a genesis").unwrap();
        let err = load_genesis(&garbage).unwrap_err();
        assert!(matches!(err, NodeError::NotAGenesis { .. }), "{err}");
        assert!(err.to_string().contains("garbage.genesis"), "{err}");
        let good = tmp.path().join("good.genesis");
        let g = genesis(&[&key(1)], &[]);
        std::fs::write(&good, g.encode()).unwrap();
        assert_eq!(load_genesis(&good).unwrap(), g);
        let err = load_key(&good).unwrap_err();
        assert!(matches!(err, NodeError::Key(_)), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("node.key");
        let k = key(3);
        k.save(&path).unwrap();
        assert_eq!(load_key(&path).unwrap().node_id(), k.node_id());
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load_key(&path).unwrap_err();
            assert!(matches!(err, NodeError::KeyExposed { mode: m, .. } if m == mode), "{err}");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_key(&path).is_ok(), "owner-only read is fine");
    }
}
