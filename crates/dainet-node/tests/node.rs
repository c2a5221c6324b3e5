//! Validator nodes on real loopback sockets, in this process (each node owns a Commonware tokio
//! runtime on its own thread): restart from the ledger folder, a garbled ledger on disk, and
//! garbage from the network. The process-level end-to-end test and the benchmark live in the
//! `dainet` crate (`tests/ledger_node.rs`, `dainet bench ledger`).
// These tests drive real nodes on real sockets and wait on the real clock.
#![allow(clippy::disallowed_methods)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use commonware_p2p::{Recipients, Sender as _};
use commonware_runtime::{tokio as cw_tokio, Clock as _, Runner as _};
use dainet_consensus::types::{consensus_key, public_key};
use dainet_consensus::wire::{TAG_BLOCK, TAG_REQUEST};
use dainet_ledger::block::Block;
use dainet_ledger::chain::Chain;
use dainet_ledger::folder::LedgerDir;
use dainet_ledger::genesis::{Founder, Genesis};
use dainet_ledger::identity::Keypair;
use dainet_ledger::store::BlockStore;
use dainet_ledger::tx::{Transaction, TxBody};
use dainet_node::network::{start_network, ChannelQuotas};
use dainet_node::{LoadConfig, NodeConfig, NodeError, NodeReport, Peer, RunningNode};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// The network tests start several nodes each; on a small machine they run one at a time.
static NETWORK: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    NETWORK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `n` validators with keys, a genesis, loopback addresses and node folders.
struct Validators {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    keys: Vec<Keypair>,
    genesis: Genesis,
    addrs: Vec<SocketAddr>,
}

impl Validators {
    fn new(n: usize, name: &str) -> Validators {
        let tmp = tempfile::tempdir().unwrap();
        let keys: Vec<Keypair> =
            (0..n).map(|i| Keypair::generate(&mut ChaCha20Rng::seed_from_u64(1_000 + i as u64))).collect();
        let founders =
            keys.iter().enumerate().map(|(i, k)| Founder { id: k.node_id(), name: format!("v{i}"), validator: true });
        let genesis = Genesis { name: name.into(), timestamp_ms: 0, founders: founders.collect(), treasury: None };
        let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        Validators { root: tmp.path().to_path_buf(), _tmp: tmp, keys, genesis, addrs }
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.root.join(format!("node-{i}"))
    }

    fn config(&self, i: usize, load: Option<u32>) -> NodeConfig {
        let peers = (0..self.keys.len())
            .filter(|&j| j != i)
            .map(|j| Peer { node: self.keys[j].node_id(), addr: self.addrs[j] })
            .collect();
        let mut config = NodeConfig::new(self.keys[i].clone(), self.genesis.clone(), self.dir(i), self.addrs[i], peers);
        config.load = load.map(LoadConfig::at_rate);
        config.stop_on_signals = false;
        config
    }

    fn start(&self, i: usize, load: Option<u32>) -> RunningNode {
        dainet_node::start(self.config(i, load)).unwrap()
    }

    /// Every node folder holds the same block at the lowest tip height, and verifies.
    fn assert_agree_and_verify(&self, nodes: &[usize]) -> u64 {
        let mut tips = Vec::new();
        for &i in nodes {
            let ledger = LedgerDir::open(self.dir(i)).unwrap();
            let report = ledger.verify();
            assert!(report.is_ok(), "node {i}: {report}");
            tips.push(ledger.store().tip().unwrap().unwrap().height);
        }
        let common = *tips.iter().min().unwrap();
        let hashes: Vec<_> = nodes
            .iter()
            .map(|&i| {
                let ledger = LedgerDir::open(self.dir(i)).unwrap();
                Block::decode(&ledger.store().block(common).unwrap().unwrap()).unwrap().hash()
            })
            .collect();
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "chains differ at height {common}: {hashes:?}");
        common
    }
}

/// Poll `done` every 50 ms until it holds or `limit` passes; returns whether it held.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

fn heights(nodes: &[&RunningNode]) -> Vec<u64> {
    nodes.iter().map(|n| n.status().height()).collect()
}

#[test]
fn restarted_node_reopens_at_its_persisted_height_and_catches_up() {
    let _serial = serial();
    let v = Validators::new(4, "restart");
    let a = v.start(0, Some(40));
    let b = v.start(1, None);
    let c = v.start(2, None);
    let d = v.start(3, Some(40));
    assert!(
        wait_until(Duration::from_secs(20), || heights(&[&a, &b, &c, &d]).iter().all(|&h| h >= 30)),
        "the four nodes did not finalize 30 blocks: {:?}",
        heights(&[&a, &b, &c, &d])
    );

    // Stop node 3 gracefully; what it reports is what its folder holds.
    let stopped: NodeReport = d.stop().unwrap();
    assert!(stopped.height >= 30, "{stopped:?}");
    assert!(stopped.load.as_ref().unwrap().committed > 0, "{stopped:?}");
    {
        let (store, _) = LedgerDir::open(v.dir(3)).unwrap().into_parts();
        let chain = Chain::open(store).unwrap();
        assert_eq!(chain.head().height, stopped.height);
        assert_eq!(chain.head().hash.to_string(), stopped.tip);
    }

    // The other three are a quorum and keep going.
    let target = stopped.height + 20;
    assert!(
        wait_until(Duration::from_secs(30), || heights(&[&a, &b, &c]).iter().all(|&h| h >= target)),
        "three of four did not go on: {:?} target={target}",
        heights(&[&a, &b, &c])
    );

    // Restarted, node 3 starts from its folder at the height it stopped at, then catches up.
    let d = v.start(3, Some(40));
    let reopened = d.status().height();
    assert!(reopened >= stopped.height, "reopened below its persisted height: {reopened} < {}", stopped.height);
    let others_at_restart = *heights(&[&a, &b, &c]).iter().max().unwrap();
    assert!(others_at_restart > reopened + 10, "others did not move on: {others_at_restart} vs {reopened}");
    assert!(
        wait_until(Duration::from_secs(30), || d.status().height() >= others_at_restart + 5),
        "the restarted node did not catch up: height={} others_at_restart={others_at_restart}",
        d.status().height()
    );
    // Wait until its load generator (which opens once the node has finalized 8 blocks) has had
    // a transaction of its own finalized.
    assert!(
        wait_until(Duration::from_secs(30), || d.status().submissions_committed > 0),
        "the restarted node's own transactions never finalized: {:?}",
        d.status().last_error
    );

    let restarted = d.stop().unwrap();
    let reports: Vec<NodeReport> = [a, b, c].into_iter().map(|n| n.stop().unwrap()).collect();
    assert_eq!(restarted.start_height, stopped.height);
    assert!(restarted.blocks_finalized > 10, "{restarted:?}");
    let load = restarted.load.as_ref().unwrap();
    assert!(load.committed > 0, "its own transactions after the restart: {load:?}");
    for report in reports.iter().chain([&restarted]) {
        assert_eq!(report.finality_errors, 0, "{report:?}");
    }
    let common = v.assert_agree_and_verify(&[0, 1, 2, 3]);
    assert!(common >= others_at_restart, "common height {common} below {others_at_restart}");
}

/// A body any member may sign (a reward needs the treasury, which these genesis files do not name).
fn data_use() -> TxBody {
    TxBody::DataUse { dataset_id: "node-tests".into(), purpose: "a block to store".into(), consent_ref: String::new() }
}

/// A one-validator ledger folder with blocks 1..=3 (one data-use record each), built with the
/// library.
fn ledger_with_three_blocks(v: &Validators) -> Vec<Vec<u8>> {
    let (store, _) = LedgerDir::create(v.dir(0)).unwrap().into_parts();
    let mut chain = Chain::create(store, v.genesis.clone()).unwrap();
    let key = &v.keys[0];
    for nonce in 1..=3u64 {
        let tx = Transaction::sign(key, &v.genesis.chain_id(), nonce, data_use());
        let proposal = chain.propose_block([tx], 1_000 * nonce).unwrap();
        chain.append(proposal.block).unwrap();
    }
    (0..=3).map(|h| chain.store().block(h).unwrap().unwrap()).collect()
}

#[test]
fn garbled_ledger_on_disk_is_refused_naming_the_height_and_nothing_is_lost() {
    let v = Validators::new(1, "garbled");
    let original = ledger_with_three_blocks(&v);
    let block = |h: usize| Block::decode(&original[h]).unwrap();

    // Truncate block 2 in the store (keeping the tip at block 3).
    {
        let mut ledger = LedgerDir::open(v.dir(0)).unwrap();
        let store = ledger.store_mut();
        store.put_block(2, &block(2).hash(), &original[2][..original[2].len() / 2]).unwrap();
        store.put_block(3, &block(3).hash(), &original[3]).unwrap();
    }
    let err = dainet_node::start(v.config(0, None)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, NodeError::BadLedger { .. }), "{text}");
    assert!(text.contains("height=2") && text.contains("undecodable block"), "{text}");
    assert!(text.contains("dainet ledger verify"), "{text}");
    assert!(!v.dir(0).join("consensus").exists(), "the node started something");
    {
        let ledger = LedgerDir::open(v.dir(0)).unwrap();
        for h in [0u64, 1, 3] {
            assert_eq!(ledger.store().block(h).unwrap().unwrap(), original[h as usize], "block {h} changed");
        }
        assert_eq!(ledger.store().tip().unwrap().unwrap().height, 3);
    }

    // A block that decodes but was altered (its time moved): the replay names the height too.
    {
        let mut ledger = LedgerDir::open(v.dir(0)).unwrap();
        let mut altered = block(2);
        altered.timestamp_ms += 1;
        let store = ledger.store_mut();
        store.put_block(2, &altered.hash(), &altered.encode()).unwrap();
        store.put_block(3, &block(3).hash(), &original[3]).unwrap();
    }
    let err = dainet_node::start(v.config(0, None)).unwrap_err();
    assert!(matches!(err, NodeError::BadLedger { .. }), "{err}");
    assert!(err.to_string().contains("height=3"), "block 3 no longer links to block 2: {err}");

    // Put block 2 back: the ledger replays to its tip, and the node then refuses only for what
    // this hand-made folder lacks, a vote journal for its three finalized blocks.
    {
        let mut ledger = LedgerDir::open(v.dir(0)).unwrap();
        let store = ledger.store_mut();
        store.put_block(2, &block(2).hash(), &original[2]).unwrap();
        store.put_block(3, &block(3).hash(), &original[3]).unwrap();
    }
    let err = dainet_node::start(v.config(0, None)).unwrap_err();
    assert!(matches!(err, NodeError::LedgerWithoutJournal { height: 3, .. }), "{err}");
    assert!(!v.dir(0).join("consensus").exists(), "the node started something");
}

#[test]
fn a_ledger_of_another_genesis_is_refused() {
    let v = Validators::new(1, "mine");
    ledger_with_three_blocks(&v);
    let mut config = v.config(0, None);
    config.genesis.name = "theirs".into();
    let err = dainet_node::start(config).unwrap_err();
    assert!(matches!(err, NodeError::GenesisMismatch { .. }), "{err}");
    assert!(err.to_string().contains("use a new --dir"), "{err}");
}

#[test]
fn garbage_from_the_network_is_rejected_and_the_nodes_keep_finalizing() {
    let _serial = serial();
    let v = Validators::new(4, "garbage");
    let nodes: Vec<RunningNode> = (0..3).map(|i| v.start(i, Some(20))).collect();
    let refs: Vec<&RunningNode> = nodes.iter().collect();
    assert!(
        wait_until(Duration::from_secs(20), || heights(&refs).iter().all(|&h| h >= 10)),
        "three of four did not finalize: {:?}",
        heights(&refs)
    );

    // Unauthenticated garbage on the listen port: the handshake fails, the connection closes.
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    for len in [0usize, 1, 7, 64, 1_000, 70_000] {
        if let Ok(mut stream) = TcpStream::connect_timeout(&v.addrs[0], Duration::from_secs(1)) {
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            let _ = std::io::Write::write_all(&mut stream, &bytes);
        }
    }

    // An authenticated validator (the fourth key) that sends garbled and truncated blocks,
    // malformed requests and noise on the block channel.
    let good_block = {
        let key = &v.keys[3];
        let tx = Transaction::sign(key, &v.genesis.chain_id(), 1, data_use());
        let (store, _) = LedgerDir::create(v.root.join("scratch")).unwrap().into_parts();
        let chain = Chain::create(store, v.genesis.clone()).unwrap();
        chain.propose_block([tx], 1).unwrap().block.encode()
    };
    let rogue_key = consensus_key(&v.keys[3]);
    let peers: Vec<_> = (0..4).map(|i| (public_key(&v.keys[i].node_id()).unwrap(), v.addrs[i])).collect();
    let genesis = v.genesis.clone();
    let listen = v.addrs[3];
    let storage = v.root.join("rogue");
    let rogue = std::thread::spawn(move || {
        let runtime = cw_tokio::Config::new().with_storage_directory(storage);
        cw_tokio::Runner::new(runtime).start(|context| async move {
            let mut network =
                start_network(&context, rogue_key, listen, &peers, &genesis, 4, ChannelQuotas::default()).unwrap();
            let mut garbage: Vec<Vec<u8>> = vec![
                vec![],
                vec![9, 1, 2, 3],
                vec![TAG_REQUEST, 1, 2],
                [&[TAG_BLOCK][..], &good_block[..good_block.len() / 2]].concat(),
                [&[TAG_BLOCK][..], &good_block[..good_block.len() - 1]].concat(),
            ];
            let mut flipped = [&[TAG_BLOCK][..], &good_block[..]].concat();
            let last = flipped.len() - 1;
            flipped[last] ^= 0xff; // a signature byte: decodes, but the body no longer matches
            garbage.push(flipped);
            // Six seconds of garbage, and on until every honest node has been sent some: on a
            // loaded machine the rogue may connect to one peer long after the others (a
            // generous bound of 60 s).
            let mut reached = std::collections::BTreeSet::new();
            let (start, hard_deadline) = (context.current(), context.current() + Duration::from_secs(60));
            while (context.current() < start + Duration::from_secs(6) || reached.len() < 3)
                && context.current() < hard_deadline
            {
                for message in &garbage {
                    reached.extend(network.channels.blocks.0.send(Recipients::All, message.clone(), false));
                }
                context.sleep(Duration::from_millis(100)).await;
            }
            reached.len()
        })
    });
    let reached = rogue.join().unwrap();
    assert_eq!(reached, 3, "the rogue never reached every honest node");

    let after_garbage = heights(&refs);
    assert!(
        wait_until(Duration::from_secs(20), || heights(&refs).iter().zip(&after_garbage).all(|(h, a)| *h >= a + 10)),
        "the nodes stopped finalizing after the garbage: before={after_garbage:?} now={:?}",
        heights(&refs)
    );
    let statuses: Vec<_> = nodes.iter().map(RunningNode::status).collect();
    let reports: Vec<NodeReport> = nodes.into_iter().map(|n| n.stop().unwrap()).collect();
    for (status, report) in statuses.iter().zip(&reports) {
        assert!(report.rejected_messages > 0, "garbage was not counted: {report:?}");
        assert!(status.last_error.is_some(), "no reason recorded: {status:?}");
        assert_eq!(report.finality_errors, 0, "{report:?}");
        assert!(report.load.as_ref().unwrap().committed > 0, "{report:?}");
    }
    v.assert_agree_and_verify(&[0, 1, 2]);
}
