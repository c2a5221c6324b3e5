//! The synchronous simulated ledger: submissions commit in order, the same calls with the same
//! seed give the same blocks, crashed validators are survived, and a ledger without a quorum
//! answers with an error instead of hanging.

mod common;

use dainet_consensus::error::ConsensusError;
use dainet_consensus::mempool::{RejectReason, TxOutcome};
use dainet_consensus::sim::{SimulatedLedger, SimulatedLedgerConfig};
use dainet_ledger::blob::MemBlobs;
use dainet_ledger::chain::{Chain, ChainError};
use dainet_ledger::genesis::Genesis;
use dainet_ledger::hash::BlockHash;
use dainet_ledger::identity::Keypair;
use dainet_ledger::state::TxRejection;
use dainet_ledger::store::{BlockStore, MemStore, RedbStore};
use dainet_ledger::tx::{Transaction, TxBody};
use dainet_ledger::verify::verify;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn lossy(seed: u64) -> SimulatedLedgerConfig {
    SimulatedLedgerConfig { seed, latency_ms: 20, jitter_ms: 5, success_rate: 0.99, ..Default::default() }
}

/// Run `rounds` submissions of 12 transactions, rotating over the live validators; return every
/// finalized block hash of the chain handed back, and the transactions' heights.
fn run(config: SimulatedLedgerConfig, rounds: u64) -> (Vec<BlockHash>, Vec<u64>) {
    let (genesis, keys, user) = common::genesis(4);
    let live: Vec<usize> = (0..4).filter(|v| !config.down.contains(v)).collect();
    let mut ledger = SimulatedLedger::start(genesis.clone(), keys, config).unwrap();
    let mut heights = Vec::new();
    for round in 0..rounds {
        let txs = common::rewards(&user, &genesis, 1 + round * 12, 12);
        let validator = live[round as usize % live.len()];
        for committed in ledger.submit(validator, txs).unwrap() {
            heights.push(committed.height().unwrap_or_else(|| panic!("not committed: {committed:?}")));
        }
    }
    let finished = ledger.finish().unwrap();
    assert!(finished.agree, "validators disagree");
    let chain = finished.chain;
    let hashes = (0..=chain.head().height).map(|h| chain.block(h).unwrap().unwrap().hash()).collect();
    (hashes, heights)
}

#[test]
fn submissions_commit_in_nonce_order_over_lossy_links() {
    let (hashes, heights) = run(lossy(1), 6);
    assert_eq!(heights.len(), 72);
    assert!(heights.windows(2).all(|w| w[0] <= w[1]), "{heights:?}");
    assert!(*heights.last().unwrap() < hashes.len() as u64);
}

#[test]
fn same_seed_and_calls_give_the_same_blocks() {
    let a = run(lossy(5), 4);
    let b = run(lossy(5), 4);
    assert_eq!(a, b);
    let c = run(lossy(6), 4);
    assert_ne!(a.0, c.0, "another seed, other timings, other block times");
}

#[test]
fn one_validator_down_from_the_start() {
    let config = SimulatedLedgerConfig { down: vec![2], ..lossy(2) };
    let (hashes, heights) = run(config, 6);
    assert_eq!(heights.len(), 72);
    assert!(hashes.len() > 3);
}

#[test]
fn crash_mid_run_is_survived_and_submitting_to_it_fails() {
    let (genesis, keys, user) = common::genesis(4);
    let mut ledger = SimulatedLedger::start(genesis.clone(), keys, lossy(3)).unwrap();
    ledger.submit(0, common::rewards(&user, &genesis, 1, 12)).unwrap();
    ledger.crash(1).unwrap();
    assert!(matches!(
        ledger.submit(1, common::rewards(&user, &genesis, 13, 1)),
        Err(ConsensusError::ValidatorDown { validator: 1 })
    ));
    let out = ledger.submit(2, common::rewards(&user, &genesis, 13, 12)).unwrap();
    assert!(out.iter().all(|c| c.height().is_some()));
    assert!(matches!(ledger.submit(9, vec![]), Err(ConsensusError::NoSuchValidator { validator: 9, .. })));
    let statuses = ledger.statuses().unwrap();
    assert!(statuses[2].height() > statuses[1].height(), "the crashed validator stopped");
    assert!(ledger.finish().unwrap().agree);
}

#[test]
fn without_quorum_submit_times_out_in_bounded_virtual_time() {
    let (genesis, keys, user) = common::genesis(4);
    let config = SimulatedLedgerConfig { down: vec![2, 3], submit_timeout_ms: 5_000, ..lossy(4) };
    let mut ledger = SimulatedLedger::start(genesis.clone(), keys, config).unwrap();
    let before = ledger.now_ms().unwrap();
    let err = ledger.submit(0, common::rewards(&user, &genesis, 1, 3)).unwrap_err();
    let ConsensusError::Timeout { validator: 0, pending: 3, waited_ms } = err else { panic!("{err}") };
    assert!((5_000..5_100).contains(&waited_ms), "{waited_ms}");
    assert_eq!(ledger.now_ms().unwrap(), before + waited_ms, "time moves only while a call runs");
    let statuses = ledger.statuses().unwrap();
    assert!(statuses.iter().all(|s| s.height() == 0), "nothing may finalize without a quorum");
}

#[test]
fn bad_transactions_are_rejected_with_the_ledger_reason() {
    let (genesis, keys, user) = common::genesis(4);
    let mut ledger = SimulatedLedger::start(genesis.clone(), keys, lossy(8)).unwrap();
    ledger.submit(0, common::rewards(&user, &genesis, 1, 2)).unwrap();
    let stranger = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(4242));
    let unknown =
        Transaction::sign(&stranger, &genesis.chain_id(), 1, TxBody::Reward { node: user.node_id(), amount: 1 });
    let mut forged = common::rewards(&user, &genesis, 3, 1).remove(0);
    forged.nonce = 3;
    forged.body = TxBody::Reward { node: user.node_id(), amount: 1_000_000 };
    let stale = common::rewards(&user, &genesis, 1, 1).remove(0);
    let out = ledger.submit(3, vec![stale, unknown, forged]).unwrap();
    let reasons: Vec<_> = out
        .iter()
        .map(|c| match &c.outcome {
            TxOutcome::Rejected(RejectReason::Ledger(reason)) => reason.clone(),
            other => panic!("expected a rejection: {other:?}"),
        })
        .collect();
    assert!(matches!(reasons[0], TxRejection::BadNonce { expected: 3, found: 1, .. }), "{:?}", reasons[0]);
    assert!(matches!(reasons[1], TxRejection::UnknownSigner { .. }), "{:?}", reasons[1]);
    assert!(matches!(reasons[2], TxRejection::BadSignature { .. }), "{:?}", reasons[2]);
    // The ledger goes on.
    let out = ledger.submit(3, common::rewards(&user, &genesis, 3, 1)).unwrap();
    assert!(out[0].height().is_some());
}

#[test]
fn bad_inputs_to_start_are_errors() {
    let (genesis, keys, _) = common::genesis(4);
    let err = SimulatedLedger::start(genesis.clone(), keys[..3].to_vec(), SimulatedLedgerConfig::default()).err();
    assert!(matches!(err, Some(ConsensusError::KeyCount { validators: 4, keys: 3 })), "{err:?}");
    let stranger = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(1));
    let mut wrong = keys.clone();
    wrong[2] = stranger;
    let err = SimulatedLedger::start(genesis.clone(), wrong, SimulatedLedgerConfig::default()).err();
    assert!(matches!(err, Some(ConsensusError::NotAValidator { index: 2, .. })), "{err:?}");
    let config = SimulatedLedgerConfig { success_rate: 1.5, ..Default::default() };
    let err = SimulatedLedger::start(genesis, keys, config).err();
    assert!(matches!(err, Some(ConsensusError::Config { field: "success_rate", .. })), "{err:?}");
}

/// Transaction gossip: every submission goes through validator 0, yet it need not wait for
/// validator 0's turn to lead, since every validator's mempool holds it. Without gossip this
/// run finalizes 3.9 blocks per call (four leaders take turns); with it, 2.1.
#[test]
fn gossip_commits_a_submission_without_waiting_for_its_validators_turn() {
    let (genesis, keys, user) = common::genesis(4);
    let mut ledger = SimulatedLedger::start(genesis.clone(), keys, lossy(9)).unwrap();
    let calls = 24;
    for call in 0..calls {
        let out = ledger.submit(0, common::rewards(&user, &genesis, 1 + call * 12, 12)).unwrap();
        assert!(out.iter().all(|c| c.height().is_some()), "not committed: {out:?}");
    }
    let statuses = ledger.statuses().unwrap();
    let per_call = statuses[0].height() as f64 / calls as f64;
    assert!(per_call < 3.0, "blocks finalized per submit call: {per_call:.2}");
    assert!(statuses[0].gossip_sent >= calls, "gossip batches sent: {}", statuses[0].gossip_sent);
    for (i, s) in statuses.iter().enumerate().skip(1) {
        assert!(s.gossip_received > 0, "validator {i} received no gossip");
        assert_eq!(s.gossip_sent, 0, "validator {i} gossiped what it did not get from a client");
        assert_eq!(s.rejected_messages, 0, "validator {i}: {:?}", s.last_error);
        assert_eq!(s.rejected_blocks, 0, "validator {i}: {:?}", s.last_error);
    }
    let finished = ledger.finish().unwrap();
    assert!(finished.agree);
    let expected: u64 = (1..=calls * 12).sum();
    assert_eq!(finished.chain.state().balance(&user.node_id()), expected, "every transaction applied once");
}

/// An idle ledger grows about one empty block per `empty_block_interval` instead of one per vote
/// round trip, and a submission still goes into the next block at once.
#[test]
fn idle_validators_pace_empty_blocks_and_submissions_are_not_delayed() {
    let height_after_idle = |interval_ms: u64| {
        let (genesis, keys, user) = common::genesis(4);
        let mut config = SimulatedLedgerConfig { seed: 3, ..Default::default() };
        config.application.empty_block_interval = std::time::Duration::from_millis(interval_ms);
        let mut ledger = SimulatedLedger::start(genesis.clone(), keys, config).unwrap();
        ledger.submit(0, common::rewards(&user, &genesis, 1, 1)).unwrap();
        let start = ledger.statuses().unwrap()[0].height();
        ledger.idle(10_000).unwrap();
        let grown = ledger.statuses().unwrap()[0].height() - start;
        // A submission into a ledger that is holding back an empty proposal commits in far less
        // than the interval.
        let before = ledger.now_ms().unwrap();
        let committed = ledger.submit(1, common::rewards(&user, &genesis, 2, 1)).unwrap();
        assert!(committed[0].height().is_some(), "{committed:?}");
        let waited = ledger.now_ms().unwrap() - before;
        assert!(ledger.finish().unwrap().agree);
        (grown, waited)
    };
    let (paced, waited) = height_after_idle(500);
    assert!((10..=25).contains(&paced), "10 s idle at one empty block per 500 ms grew {paced}");
    assert!(waited < 250, "a submission waited {waited} ms of virtual time");
    let (unpaced, _) = height_after_idle(0);
    assert!(unpaced > 5 * paced, "without pacing 10 s idle grew {unpaced}, with it {paced}");
}

/// Device registrations as the simulator's recorder makes them: validator `m` registers
/// `per_member` new devices, signed with its nonces `first..`. Device keys derive from `tag`.
fn registrations(keys: &[Keypair], genesis: &Genesis, tag: u64, first: u64, per_member: u64) -> Vec<Transaction> {
    let mut txs = Vec::new();
    for (m, key) in keys.iter().enumerate() {
        for i in 0..per_member {
            let seed = 10_000 * tag + 100 * m as u64 + i;
            let device = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(seed)).node_id();
            let body = TxBody::RegisterDevice { device, member: key.node_id() };
            txs.push(Transaction::sign(key, &genesis.chain_id(), first + i, body));
        }
    }
    txs
}

/// A first run: 8 device registrations (nonces 1, 2 of each validator) and 6 rewards.
fn first_run(seed: u64) -> (Genesis, Vec<Keypair>, Keypair, Chain<MemStore>) {
    let (genesis, keys, user) = common::genesis(4);
    let mut ledger = SimulatedLedger::start(genesis.clone(), keys.clone(), lossy(seed)).unwrap();
    let out = ledger.submit(0, registrations(&keys, &genesis, 1, 1, 2)).unwrap();
    assert!(out.iter().all(|c| c.height().is_some()), "{out:?}");
    let out = ledger.submit(1, common::rewards(&user, &genesis, 1, 6)).unwrap();
    assert!(out.iter().all(|c| c.height().is_some()), "{out:?}");
    let finished = ledger.finish().unwrap();
    assert!(finished.agree);
    (genesis, keys, user, finished.chain)
}

/// Resume `stored` and continue every nonce: 8 more registrations (nonces 3, 4) and 6 rewards
/// (7..=12). Returns the resumed chain and the virtual time once the resumed ledger was ready.
fn resumed_run<S: BlockStore>(
    stored: &Chain<S>,
    keys: &[Keypair],
    user: &Keypair,
    seed: u64,
) -> (Chain<MemStore>, u64) {
    let genesis = stored.genesis().clone();
    let mut ledger = SimulatedLedger::resume(stored, keys.to_vec(), lossy(seed)).unwrap();
    let started_ms = ledger.now_ms().unwrap();
    let statuses = ledger.statuses().unwrap();
    assert!(statuses.iter().all(|s| s.tip() == Some(stored.head().hash)), "every validator starts on the head");
    let mut out = ledger.submit(2, registrations(keys, &genesis, 2, 3, 2)).unwrap();
    out.extend(ledger.submit(3, common::rewards(user, &genesis, 7, 6)).unwrap());
    for committed in &out {
        let height = committed.height().unwrap_or_else(|| panic!("not committed: {committed:?}"));
        assert!(height > stored.head().height, "{committed:?}");
    }
    let finished = ledger.finish().unwrap();
    assert!(finished.agree);
    (finished.chain, started_ms)
}

fn block_bytes<S: BlockStore>(chain: &Chain<S>) -> Vec<Vec<u8>> {
    (0..=chain.head().height).map(|h| chain.store().block(h).unwrap().unwrap()).collect()
}

/// `resume` continues a stored chain: the stored blocks unchanged, new ones on its head at later
/// times, nonces continued; appended to the store the chain came from, the whole ledger
/// reopens and passes the auditor. (With simplex's floor left at block 0 instead of the head,
/// every first proposal builds below the finalized tip, is declined, and the submission times
/// out: checked by hand.)
#[test]
fn resume_continues_a_stored_chain_and_the_store_takes_the_new_blocks() {
    let (genesis, keys, user, first) = first_run(21);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let mut stored = first.copy_into(RedbStore::open(&path).unwrap()).unwrap();
    let base = stored.head();
    assert!(base.height > 0);

    let (resumed, started_ms) = resumed_run(&stored, &keys, &user, 22);
    // The clock starts at the head's time; connecting the validators takes some virtual ms.
    assert!((base.timestamp_ms..base.timestamp_ms + 1_000).contains(&started_ms), "{started_ms} {base:?}");
    assert!(resumed.head().height > base.height);
    let (old, new) = (block_bytes(&first), block_bytes(&resumed));
    assert_eq!(new[..old.len()], old[..], "blocks 0..=h unchanged");
    let next = resumed.block(base.height + 1).unwrap().unwrap();
    assert_eq!(next.prev_hash, base.hash);
    assert!(next.timestamp_ms >= base.timestamp_ms);
    let state = resumed.state();
    assert_eq!(state.balance(&user.node_id()), (1..=12).sum::<u64>(), "all 12 rewards, once");
    for key in &keys {
        assert_eq!(state.next_nonce(&key.node_id()), 5, "4 registrations each");
    }
    let devices = registrations(&keys, &genesis, 1, 1, 2).into_iter().chain(registrations(&keys, &genesis, 2, 3, 2));
    for tx in devices {
        let TxBody::RegisterDevice { device, member } = tx.body else { unreachable!() };
        assert_eq!(state.device_owner(&device), Some(&member));
    }

    // Written back: the store now holds the resumed chain, durably, and it audits clean.
    assert_eq!(stored.extend_from(&resumed).unwrap(), resumed.head());
    drop(stored);
    let store = RedbStore::open(&path).unwrap();
    let report = verify(&store, &MemBlobs::new());
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.blocks_checked, resumed.head().height + 1);
    let reopened = Chain::open(store).unwrap();
    assert_eq!(reopened.head(), resumed.head());
    assert_eq!(block_bytes(&reopened), new);
}

/// The same stored chain, keys, seed and calls resume to the same blocks, byte for byte.
#[test]
fn resuming_twice_gives_the_same_blocks() {
    let (_, keys, user, first) = first_run(31);
    let (a, _) = resumed_run(&first, &keys, &user, 32);
    let (b, _) = resumed_run(&first, &keys, &user, 32);
    assert_eq!(a.head(), b.head());
    assert_eq!(block_bytes(&a), block_bytes(&b));
}

/// Keys that are not the stored chain's genesis validators are a typed error, not a panic.
#[test]
fn resuming_with_keys_of_other_validators_is_an_error() {
    let (_, keys, user, first) = first_run(41);
    let strangers: Vec<Keypair> = (0..4).map(|i| Keypair::generate(&mut ChaCha20Rng::seed_from_u64(500 + i))).collect();
    let err = SimulatedLedger::resume(&first, strangers, SimulatedLedgerConfig::default()).err();
    assert!(matches!(err, Some(ConsensusError::NotAValidator { index: 0, .. })), "{err:?}");
    let mut with_user = keys.clone();
    with_user[3] = user;
    let err = SimulatedLedger::resume(&first, with_user, SimulatedLedgerConfig::default()).err();
    assert!(matches!(err, Some(ConsensusError::NotAValidator { index: 3, .. })), "a member, not a validator: {err:?}");
    let err = SimulatedLedger::resume(&first, keys[1..].to_vec(), SimulatedLedgerConfig::default()).err();
    assert!(matches!(err, Some(ConsensusError::KeyCount { validators: 4, keys: 3 })), "{err:?}");
}

/// A resumed chain is appended only to a store whose chain it continues: one whose blocks
/// diverge from it (another run of the same genesis) or reach beyond it is refused, unchanged.
#[test]
fn resumed_blocks_are_refused_by_a_store_they_do_not_continue() {
    let (_, keys, user, first) = first_run(51);
    let (resumed, _) = resumed_run(&first, &keys, &user, 52);

    let (_, _, _, other_run) = first_run(53);
    let mut other = other_run.copy_into(MemStore::new()).unwrap();
    let head = other.head();
    let err = other.extend_from(&resumed).unwrap_err();
    assert!(matches!(err, ChainError::Diverged { .. }), "{err}");
    assert!(err.to_string().contains("does not continue"), "{err}");
    assert_eq!(other.head(), head, "nothing appended");

    let mut ahead = first.copy_into(MemStore::new()).unwrap();
    ahead.extend_from(&resumed).unwrap();
    let err = ahead.extend_from(&first).unwrap_err();
    assert!(matches!(err, ChainError::Shorter { .. }), "{err}");
    assert_eq!(ahead.head(), resumed.head());
}
