//! The chain: proposing, appending, reopening, and refusing invalid blocks.

mod common;

use common::{Fed, T0};
use dainet_ledger::blob::MemBlobs;
use dainet_ledger::block::{Block, MAX_BLOCK_BYTES};
use dainet_ledger::chain::{check_next, check_next_presigned, BlockFault, Chain, ChainError, DropReason, StoreFault};
use dainet_ledger::hash::Digest;
use dainet_ledger::state::TxRejection;
use dainet_ledger::store::{BlockStore, MemStore, RedbStore};
use dainet_ledger::tx::{Transaction, TxBody, MAX_TX_BYTES};

fn chain_with_rounds(rounds: u64) -> (Fed, Chain<MemStore>, MemBlobs) {
    let mut fed = Fed::new();
    let mut chain = Chain::create(MemStore::new(), fed.genesis.clone()).unwrap();
    let mut blobs = MemBlobs::new();
    fed.run_rounds(&mut chain, &mut blobs, rounds);
    (fed, chain, blobs)
}

#[test]
fn rounds_grow_a_hash_chained_ledger() {
    let (fed, chain, _) = chain_with_rounds(3);
    assert_eq!(chain.head().height, 6);
    let mut prev = fed.genesis.hash();
    for h in 0..=6 {
        let block = chain.block(h).unwrap().unwrap();
        assert_eq!(block.height, h);
        assert_eq!(block.prev_hash, prev);
        assert_eq!(block.tx_root, block.compute_tx_root());
        prev = block.hash();
    }
    assert_eq!(prev, chain.head().hash);
    let state = chain.state();
    assert!(!state.round(3).unwrap().is_open());
    assert_eq!(state.balance(&fed.keys[1].node_id()), 30);
    assert_eq!(chain.block(6).unwrap().unwrap().state_root, state.root());
}

#[test]
fn create_refuses_a_store_that_holds_a_chain() {
    let (fed, chain, _) = chain_with_rounds(0);
    let err = Chain::create(chain.into_store(), fed.genesis.clone()).unwrap_err();
    assert!(matches!(err, ChainError::NotEmpty { found: "genesis" }), "{err}");
}

#[test]
fn create_refuses_an_invalid_genesis() {
    let mut fed = Fed::new();
    fed.genesis.founders.clear();
    assert!(matches!(Chain::create(MemStore::new(), fed.genesis), Err(ChainError::Genesis(_))));
}

/// Issue 5 acceptance: "a transaction with a reused nonce or an unknown signer is rejected".
#[test]
fn propose_drops_reused_nonce_unknown_signer_and_bad_signature_with_reasons() {
    let (mut fed, chain, _) = chain_with_rounds(1);
    let a = fed.keys[0].node_id();
    let good = fed.tx(0, TxBody::Reward { node: a, amount: 1 });
    let reused = Transaction::sign(&fed.keys[0], &fed.chain_id(), good.nonce, TxBody::Reward { node: a, amount: 2 });
    let unknown = Transaction::sign(&fed.outsider, &fed.chain_id(), 1, TxBody::Reward { node: a, amount: 3 });
    let mut forged = fed.tx(1, TxBody::Reward { node: a, amount: 4 });
    forged.signature.0[0] ^= 1;
    let time = chain.head().timestamp_ms;
    let p = chain.propose_block([good.clone(), reused.clone(), unknown.clone(), forged.clone()], time).unwrap();
    assert_eq!(p.block.txs, vec![good.clone()]);
    let reasons: Vec<_> = p.dropped.iter().map(|d| (d.tx_hash, d.reason.clone())).collect();
    assert_eq!(
        reasons,
        vec![
            (
                reused.hash(),
                DropReason::Rejected(TxRejection::BadNonce { signer: a, expected: good.nonce + 1, found: good.nonce })
            ),
            (unknown.hash(), DropReason::Rejected(TxRejection::UnknownSigner { signer: fed.outsider.node_id() })),
            (forged.hash(), DropReason::Rejected(TxRejection::BadSignature { signer: fed.keys[1].node_id() })),
        ]
    );
}

/// Issue 5 acceptance, at the block level: a block carrying a reused-nonce or unknown-signer
/// transaction is refused as a whole, and the chain is unchanged.
#[test]
fn append_refuses_blocks_with_rejected_transactions() {
    let (mut fed, mut chain, _) = chain_with_rounds(1);
    let a = fed.keys[0].node_id();
    let first = fed.tx(0, TxBody::Reward { node: a, amount: 1 });
    let head = chain.head();
    let unknown = Transaction::sign(&fed.outsider, &fed.chain_id(), 1, TxBody::Reward { node: a, amount: 1 });
    for (bad, want_index) in [(vec![first.clone(), first.clone()], 1), (vec![unknown], 0)] {
        // Build the block by hand, as a faulty or malicious proposer would.
        let mut block = Block {
            height: head.height + 1,
            prev_hash: head.hash,
            tx_root: Digest::ZERO,
            state_root: chain.state().root(),
            timestamp_ms: head.timestamp_ms,
            txs: bad,
        };
        block.tx_root = block.compute_tx_root();
        let err = chain.append(block).unwrap_err();
        assert!(matches!(err, ChainError::Block(BlockFault::RejectedTx { index, .. }) if index == want_index), "{err}");
        assert_eq!(chain.head(), head);
        assert_eq!(chain.store().tip().unwrap().unwrap().hash, head.hash);
    }
}

#[test]
fn append_refuses_blocks_that_break_each_rule() {
    let (mut fed, mut chain, _) = chain_with_rounds(1);
    let tx = fed.tx(0, TxBody::Reward { node: fed.keys[1].node_id(), amount: 5 });
    let head = chain.head();
    let good = chain.propose_block([tx], head.timestamp_ms + 10).unwrap().block;
    let state_root = chain.state().root();
    let broken = |edit: &dyn Fn(&mut Block)| {
        let mut b = good.clone();
        edit(&mut b);
        b
    };
    let cases = [
        ("height", broken(&|b| b.height += 1)),
        ("parent", broken(&|b| b.prev_hash.0[0] ^= 1)),
        ("timestamp", broken(&|b| b.timestamp_ms = head.timestamp_ms - 1)),
        ("tx_root", broken(&|b| b.tx_root.0[0] ^= 1)),
        ("state_root", broken(&|b| b.state_root = state_root)),
    ];
    for (name, b) in cases {
        let err = chain.append(b).unwrap_err();
        let ok = match name {
            "height" => matches!(err, ChainError::Block(BlockFault::WrongHeight { .. })),
            "parent" => matches!(err, ChainError::Block(BlockFault::WrongParent { .. })),
            "timestamp" => matches!(err, ChainError::Block(BlockFault::TimestampRegression { .. })),
            "tx_root" => matches!(err, ChainError::Block(BlockFault::TxRootMismatch { .. })),
            _ => matches!(err, ChainError::Block(BlockFault::StateRootMismatch { .. })),
        };
        assert!(ok, "{name}: {err}");
        assert_eq!(chain.head(), head, "{name}: chain moved");
    }
    chain.append(good).unwrap();
    assert_eq!(chain.head().height, head.height + 1);
}

#[test]
fn propose_refuses_a_timestamp_before_the_head() {
    let (_, chain, _) = chain_with_rounds(1);
    let t = chain.head().timestamp_ms;
    assert!(matches!(chain.propose_block([], t - 1), Err(ChainError::Block(BlockFault::TimestampRegression { .. }))));
    assert!(chain.propose_block([], t).is_ok());
}

#[test]
fn a_second_replica_accepts_the_proposers_blocks_and_agrees() {
    let (fed, chain, _) = chain_with_rounds(2);
    let mut replica = Chain::create(MemStore::new(), fed.genesis.clone()).unwrap();
    for h in 1..=chain.head().height {
        let block = chain.block(h).unwrap().unwrap();
        // Over the wire: bytes in, decode, verify, append.
        let block = Block::decode(&block.encode()).unwrap();
        replica.verify_block(&block).unwrap();
        replica.append(block).unwrap();
    }
    assert_eq!(replica.head(), chain.head());
    assert_eq!(replica.state(), chain.state());
}

#[test]
fn append_all_commits_every_block_in_one_step_or_none() {
    let (fed, chain, _) = chain_with_rounds(3);
    let blocks: Vec<Block> = (1..=chain.head().height).map(|h| chain.block(h).unwrap().unwrap()).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");

    // One bad block in the middle: nothing is written, the chain does not move.
    let mut replica = Chain::create(RedbStore::open(&path).unwrap(), fed.genesis.clone()).unwrap();
    let mut bad = blocks.clone();
    bad[3].state_root.0[0] ^= 1;
    let err = replica.append_all(bad).unwrap_err();
    assert!(matches!(err, ChainError::Block(BlockFault::StateRootMismatch { height: 4, .. })), "{err}");
    assert_eq!(replica.head().height, 0);
    assert_eq!(replica.store().tip().unwrap().unwrap().height, 0);

    // All good: the same head, state and stored bytes as appending one by one.
    let head = replica.append_all(blocks).unwrap();
    assert_eq!(head, chain.head());
    assert_eq!(replica.state(), chain.state());
    drop(replica);
    let reopened = Chain::open(RedbStore::open(&path).unwrap()).unwrap();
    assert_eq!(reopened.head(), chain.head());
    for h in 0..=chain.head().height {
        assert_eq!(reopened.store().block(h).unwrap(), chain.store().block(h).unwrap(), "block {h}");
    }
}

#[test]
fn append_checked_keeps_the_cheap_rules() {
    let (fed, chain, _) = chain_with_rounds(1);
    let block1 = chain.block(1).unwrap().unwrap();
    let block2 = chain.block(2).unwrap().unwrap();
    let mut replica = Chain::create(MemStore::new(), fed.genesis.clone()).unwrap();
    let genesis_state = replica.state().clone();
    let state1 = dainet_ledger::chain::check_next(replica.state(), &replica.head(), &block1).unwrap();
    // Out of order, or with a state that is not the block's: refused, nothing moves.
    let err = replica.append_checked(block2.clone(), state1.clone()).unwrap_err();
    assert!(matches!(err, ChainError::Block(BlockFault::WrongHeight { expected: 1, found: 2 })), "{err}");
    let err = replica.append_checked(block1.clone(), genesis_state).unwrap_err();
    assert!(matches!(err, ChainError::Block(BlockFault::StateRootMismatch { height: 1, .. })), "{err}");
    assert_eq!(replica.head().height, 0);
    // As checked: appended, and the chain continues as the original.
    replica.append_checked(block1, state1).unwrap();
    replica.append(block2).unwrap();
    assert_eq!(replica.head(), chain.head());
    assert_eq!(replica.state(), chain.state());
}

#[test]
fn open_replays_to_the_same_state() {
    let (_, chain, _) = chain_with_rounds(3);
    let (head, root) = (chain.head(), chain.state().root());
    let reopened = Chain::open(chain.into_store()).unwrap();
    assert_eq!(reopened.head(), head);
    assert_eq!(reopened.state().root(), root);
}

#[test]
fn open_refuses_a_corrupted_store() {
    let (_, chain, _) = chain_with_rounds(2);
    let mut store = chain.into_store();
    store.block_bytes_mut(3).unwrap()[40] ^= 0x01;
    assert!(Chain::open(store.clone()).is_err());
    store.block_bytes_mut(3).unwrap()[40] ^= 0x01;
    store.remove_block(2);
    assert!(matches!(Chain::open(store), Err(ChainError::Stored(StoreFault::MissingBlock { height: 2 }))));
}

#[test]
fn redb_chain_survives_reopen_and_keeps_appending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let mut fed = Fed::new();
    let (head, root) = {
        let mut chain = Chain::create(RedbStore::open(&path).unwrap(), fed.genesis.clone()).unwrap();
        let mut blobs = MemBlobs::new();
        fed.run_rounds(&mut chain, &mut blobs, 2);
        (chain.head(), chain.state().root())
    };
    let mut chain = Chain::open(RedbStore::open(&path).unwrap()).unwrap();
    assert_eq!(chain.head(), head);
    assert_eq!(chain.state().root(), root);
    let tx = fed.tx(0, TxBody::Reward { node: fed.keys[2].node_id(), amount: 1 });
    Fed::append(&mut chain, vec![tx], head.timestamp_ms + 1);
    drop(chain);
    let chain = Chain::open(RedbStore::open(&path).unwrap()).unwrap();
    assert_eq!(chain.head().height, head.height + 1);
}

#[test]
fn a_full_block_leaves_the_rest_for_the_next() {
    let (mut fed, chain, _) = chain_with_rounds(0);
    let filler = "x".repeat(MAX_TX_BYTES - 300);
    let n = MAX_BLOCK_BYTES / (MAX_TX_BYTES - 300) + 2;
    let txs: Vec<_> = (0..n)
        .map(|_| {
            let body = TxBody::DataUse { dataset_id: filler.clone(), purpose: "p".into(), consent_ref: "c".into() };
            fed.tx(0, body)
        })
        .collect();
    let p = chain.propose_block(txs, T0).unwrap();
    assert!(p.block.encode().len() <= MAX_BLOCK_BYTES);
    assert!(!p.dropped.is_empty());
    assert!(p.dropped.iter().all(|d| d.reason == DropReason::BlockFull));
    assert_eq!(p.block.txs.len() + p.dropped.len(), n);
}

/// `check_next_presigned` skips only the signatures it is told were checked: a forged
/// transaction the caller did not vouch for is still caught, and one it did vouch for is
/// trusted (which is why only a mempool that verified the exact bytes may vouch).
#[test]
fn presigned_skips_only_the_transactions_named() {
    let (mut fed, chain, _) = chain_with_rounds(1);
    let a = fed.keys[0].node_id();
    let good = fed.tx(0, TxBody::Reward { node: a, amount: 1 });
    let mut forged = fed.tx(0, TxBody::Reward { node: a, amount: 2 });
    forged.signature.0[0] ^= 1;
    let head = chain.head();
    let mut block = Block {
        height: head.height + 1,
        prev_hash: head.hash,
        tx_root: Digest::ZERO,
        state_root: Digest::ZERO,
        timestamp_ms: head.timestamp_ms,
        txs: vec![good.clone(), forged.clone()],
    };
    block.tx_root = block.compute_tx_root();
    let mut replay = chain.state().clone();
    for tx in &block.txs {
        replay.apply_presigned(tx, block.timestamp_ms).unwrap();
    }
    block.state_root = replay.root();
    let state = chain.state();

    let only_good = |h: &dainet_ledger::hash::TxHash| *h == good.hash();
    let err = check_next_presigned(state, &head, &block, Some(&only_good)).unwrap_err();
    assert!(matches!(err, ChainError::Block(BlockFault::BadSignature { index: 1, .. })), "{err}");
    let err = check_next(state, &head, &block).unwrap_err();
    assert!(matches!(err, ChainError::Block(BlockFault::BadSignature { index: 1, .. })), "{err}");
    let both = |h: &dainet_ledger::hash::TxHash| *h == good.hash() || *h == forged.hash();
    let after = check_next_presigned(state, &head, &block, Some(&both)).unwrap();
    assert_eq!(after.root(), block.state_root);
}

/// `copy_into` writes the same bytes: the copy opens (replaying every rule) to the same head and
/// state, and refuses a store that already holds a chain.
#[test]
fn copy_into_writes_the_same_chain_byte_for_byte() {
    let (_, chain, _) = chain_with_rounds(3);
    let copy = chain.copy_into(MemStore::new()).unwrap();
    assert_eq!(copy.head(), chain.head());
    for height in 0..=chain.head().height {
        assert_eq!(copy.store().block(height).unwrap(), chain.store().block(height).unwrap(), "height={height}");
    }
    let reopened = Chain::open(copy.into_store()).unwrap();
    assert_eq!(reopened.head(), chain.head());
    assert_eq!(reopened.state().root(), chain.state().root());
    let full = chain.copy_into(MemStore::new()).unwrap().into_store();
    assert!(matches!(chain.copy_into(full), Err(ChainError::NotEmpty { .. })));
}

/// `extend_from` appends what another chain holds above this head (checked, in one step, so it
/// survives a reopen), and refuses, changing nothing, a chain that is shorter or holds another
/// block at this head's height.
#[test]
fn extend_from_appends_a_continuation_and_refuses_other_chains() {
    let (fed, longer, _) = chain_with_rounds(3);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let mut stored = Chain::create(RedbStore::open(&path).unwrap(), fed.genesis.clone()).unwrap();
    stored.append_all((1..=2).map(|h| longer.block(h).unwrap().unwrap())).unwrap();

    // Shorter: block 0 only.
    let shorter = Chain::create(MemStore::new(), fed.genesis.clone()).unwrap();
    let err = stored.extend_from(&shorter).unwrap_err();
    assert!(matches!(err, ChainError::Shorter { height: 2, other_height: 0 }), "{err}");

    // Forked: another block 3 on the same block 2; `longer` does not continue it.
    let mut forked = stored.copy_into(MemStore::new()).unwrap();
    let signer = &fed.keys[2];
    let nonce = forked.state().next_nonce(&signer.node_id());
    let body = TxBody::DataUse { dataset_id: "fork".into(), purpose: "p".into(), consent_ref: "c".into() };
    let tx = Transaction::sign(signer, &fed.chain_id(), nonce, body);
    let time = forked.head().timestamp_ms;
    Fed::append(&mut forked, vec![tx], time);
    let fork_head = forked.head();
    let err = forked.extend_from(&longer).unwrap_err();
    let longer3 = longer.block(3).unwrap().unwrap().hash();
    assert!(
        matches!(err, ChainError::Diverged { height: 3, head, other } if head == fork_head.hash && other == longer3),
        "{err}"
    );
    assert_eq!(forked.head(), fork_head, "nothing appended");
    // Nor does the fork continue `longer`, nor a chain of another genesis anything.
    assert!(matches!(longer.copy_into(MemStore::new()).unwrap().extend_from(&forked), Err(ChainError::Shorter { .. })));
    let mut other_genesis = fed.genesis.clone();
    other_genesis.timestamp_ms += 1;
    let mut other = Chain::create(MemStore::new(), other_genesis).unwrap();
    assert!(matches!(other.extend_from(&longer), Err(ChainError::Diverged { height: 0, .. })));

    // The continuation: blocks 3..=6 appended, durably; again, nothing more to append.
    assert_eq!(stored.extend_from(&longer).unwrap(), longer.head());
    assert_eq!(stored.extend_from(&longer).unwrap(), longer.head());
    assert_eq!(stored.state(), longer.state());
    drop(stored);
    let reopened = Chain::open(RedbStore::open(&path).unwrap()).unwrap();
    assert_eq!(reopened.head(), longer.head());
    for h in 0..=longer.head().height {
        assert_eq!(reopened.store().block(h).unwrap(), longer.store().block(h).unwrap(), "block {h}");
    }
}

#[test]
fn export_lists_the_genesis_and_every_block_and_names_what_it_cannot_read() {
    let (_, chain, _) = chain_with_rounds(2);
    let doc = dainet_ledger::export::export(chain.store()).unwrap();
    assert_eq!(doc.block_count() as u64, chain.head().height + 1);
    let json = serde_json::to_value(&doc).unwrap();
    assert_eq!(json["format"], "dainet-ledger-export");
    assert_eq!(json["tip"]["hash"], chain.head().hash.to_string());
    assert_eq!(json["genesis"]["hash"], chain.genesis().hash().to_string());
    // The same store gives the same bytes.
    let again = serde_json::to_string(&dainet_ledger::export::export(chain.store()).unwrap()).unwrap();
    assert_eq!(serde_json::to_string(&doc).unwrap(), again);
    // A store without a genesis says so.
    let empty = dainet_ledger::export::export(&MemStore::new()).map(|_| ()).unwrap_err();
    assert!(matches!(empty, dainet_ledger::export::ExportError::NoGenesis), "{empty}");
}
