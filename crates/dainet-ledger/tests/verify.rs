//! `verify` against a stored ledger, untouched and damaged — issue 5's acceptance list:
//! "`dainet ledger verify` finds each of: a flipped byte in a block, a removed block, a changed
//! blob, a transaction with a bad signature (a test for each), and passes on an untouched ledger."

mod common;

use common::{absent, Fed};
use dainet_ledger::blob::{BlobStore, DirBlobs, MemBlobs};
use dainet_ledger::block::Block;
use dainet_ledger::chain::{BlockFault, Chain, StoreFault};
use dainet_ledger::codec::CodecError;
use dainet_ledger::hash::Digest;
use dainet_ledger::state::TxRejection;
use dainet_ledger::store::{BlockStore, MemStore, RedbStore, Tip};
use dainet_ledger::tx::{Transaction, TxBody};
use dainet_ledger::verify::{verify, verify_with_updates, Finding};
use std::collections::BTreeSet;

const ROUNDS: u64 = 3;
const TIP: u64 = 2 * ROUNDS;

fn ledger() -> (Fed, MemStore, MemBlobs) {
    let mut fed = Fed::new();
    let mut chain = Chain::create(MemStore::new(), fed.genesis.clone()).unwrap();
    let mut blobs = MemBlobs::new();
    fed.run_rounds(&mut chain, &mut blobs, ROUNDS);
    (fed, chain.into_store(), blobs)
}

fn block(store: &MemStore, height: u64) -> Block {
    Block::decode(&store.block(height).unwrap().unwrap()).unwrap()
}

/// Rewrite history the way a store holder who controls the disk could: edit block `height`,
/// recompute its tx root, then re-link every block above it and move the tip. Only signatures
/// (and state replay) can then tell.
fn rewrite(store: &mut MemStore, height: u64, edit: impl FnOnce(&mut Block)) {
    let mut b = block(store, height);
    edit(&mut b);
    b.tx_root = b.compute_tx_root();
    let mut prev = b.hash();
    store.put_raw(height, b.encode(), None);
    let tip = store.tip().unwrap();
    for h in height + 1..=TIP {
        let mut above = block(store, h);
        above.prev_hash = prev;
        prev = above.hash();
        store.put_raw(h, above.encode(), tip);
    }
    store.put_raw(TIP, block(store, TIP).encode(), Some(Tip { height: TIP, hash: prev }));
}

/// The block height a finding is about, where it names one.
fn located_at(finding: &Finding) -> Option<u64> {
    match finding {
        Finding::Stored(StoreFault::MissingBlock { height })
        | Finding::Stored(StoreFault::UndecodableBlock { height, .. })
        | Finding::Block(
            BlockFault::WrongParent { height, .. }
            | BlockFault::TimestampRegression { height, .. }
            | BlockFault::TooLarge { height, .. }
            | BlockFault::TxRootMismatch { height, .. }
            | BlockFault::BadSignature { height, .. }
            | BlockFault::RejectedTx { height, .. }
            | BlockFault::StateRootMismatch { height, .. },
        )
        | Finding::MissingBlob { height, .. }
        | Finding::BlobMismatch { height, .. } => Some(*height),
        Finding::Block(BlockFault::WrongHeight { expected, .. }) => Some(*expected),
        _ => None,
    }
}

#[test]
fn untouched_ledger_passes() {
    let (_, store, blobs) = ledger();
    let report = verify(&store, &blobs);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.blocks_checked, TIP + 1);
    assert_eq!(report.txs_checked, ROUNDS * (4 + 7));
    assert_eq!(report.blobs_checked, ROUNDS, "one aggregate per round");
    assert_eq!(report.updates_unchecked, ROUNDS * 3, "three update commitments per round, their owners' to check");
    assert_eq!(report.state_verified_through, Some(TIP));
    assert_eq!(report.tip.unwrap().height, TIP);
    assert_eq!(verify(&store, &blobs), report, "deterministic");
}

#[test]
fn untouched_redb_ledger_with_dir_blobs_passes() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = Fed::new();
    let mut blobs = DirBlobs::open(dir.path().join("blobs")).unwrap();
    let store = RedbStore::open(dir.path().join("ledger.redb")).unwrap();
    let mut chain = Chain::create(store, fed.genesis.clone()).unwrap();
    fed.run_rounds(&mut chain, &mut blobs, ROUNDS);
    let report = verify(chain.store(), &blobs);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.blobs_checked, ROUNDS);
}

/// Acceptance: a flipped byte in a block — at every byte position of a middle block and of the
/// last block (whose only witness is the store's tip).
#[test]
fn flipped_byte_in_a_block_is_found_at_every_position() {
    let (_, store, blobs) = ledger();
    for height in [3, TIP] {
        let len = store.block(height).unwrap().unwrap().len();
        for at in 0..len {
            let mut damaged = store.clone();
            damaged.block_bytes_mut(height).unwrap()[at] ^= 0x01;
            let report = verify(&damaged, &blobs);
            assert!(!report.is_ok(), "height={height} byte={at} went unnoticed");
            // The damage is pinned to the block itself, the link above it, or the tip.
            let pinned = report.findings.iter().any(|f| match located_at(f) {
                Some(h) => h == height || h == height + 1,
                None => matches!(f, Finding::Stored(StoreFault::TipMismatch { .. })),
            });
            assert!(pinned, "height={height} byte={at}: {report}");
        }
    }
}

#[test]
fn flipped_signature_byte_is_reported_as_a_bad_signature() {
    let (_, mut store, blobs) = ledger();
    let bytes = store.block_bytes_mut(3).unwrap();
    let last = bytes.len() - 1; // the last transaction's signature ends the block
    bytes[last] ^= 0x01;
    let report = verify(&store, &blobs);
    assert!(
        report.findings.iter().any(|f| matches!(f, Finding::Block(BlockFault::BadSignature { height: 3, .. }))),
        "{report}"
    );
    assert!(
        report.findings.iter().any(|f| matches!(f, Finding::Block(BlockFault::TxRootMismatch { height: 3, .. }))),
        "{report}"
    );
}

#[test]
fn flipped_byte_in_a_redb_file_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.redb");
    let mut fed = Fed::new();
    let mut blobs = MemBlobs::new();
    {
        let mut chain = Chain::create(RedbStore::open(&path).unwrap(), fed.genesis.clone()).unwrap();
        fed.run_rounds(&mut chain, &mut blobs, ROUNDS);
    }
    {
        // Damage the stored block through redb itself, as a disk error under its checksums would not.
        use redb::ReadableTable;
        let db = redb::Database::create(&path).unwrap();
        let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("blocks");
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            let mut bytes = t.get(2).unwrap().unwrap().value().to_vec();
            bytes[50] ^= 0x80;
            t.insert(2, bytes.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    let report = verify(&store, &blobs);
    assert!(!report.is_ok());
    assert!(report.findings.iter().any(|f| matches!(located_at(f), Some(2 | 3))), "{report}");
    assert!(Chain::open(store).is_err(), "open refuses it too");
}

/// Acceptance: a removed block.
#[test]
fn removed_block_is_found() {
    let (_, store, blobs) = ledger();
    for height in [0, 3, TIP] {
        let mut damaged = store.clone();
        damaged.remove_block(height);
        let report = verify(&damaged, &blobs);
        assert!(
            report.findings.contains(&Finding::Stored(StoreFault::MissingBlock { height })),
            "height={height}: {report}"
        );
        // Everything else is still checked.
        assert_eq!(report.blocks_checked, TIP, "height={height}");
    }
}

/// Acceptance: a changed aggregate blob is found; update commitments are checked against the
/// owners' stores (the shared blob store need not hold them).
#[test]
fn changed_blob_is_found() {
    let (_, store, blobs) = ledger();
    // Block 1 holds round 1's OpenRound and its three CommitUpdates.
    let update_hash = block(&store, 1).txs[1].body.referenced_blob().unwrap();
    let mut without_updates = blobs.clone();
    without_updates.remove(&update_hash);
    let report = verify(&store, &without_updates);
    assert!(report.is_ok(), "updates are not the shared store's to hold: {report}");
    assert_eq!((report.updates_checked, report.updates_unchecked), (0, ROUNDS * 3), "{report}");
    // Given the owners' updates, a commitment to one they do not hold is found.
    let held: BTreeSet<(u64, Digest)> = (1..=store.tip().unwrap().unwrap().height)
        .flat_map(|h| block(&store, h).txs)
        .filter_map(|tx| match tx.body {
            TxBody::CommitUpdate { round, update_hash, .. } => Some((round, update_hash)),
            _ => None,
        })
        .collect();
    // The right update for another round does not count.
    let shifted: BTreeSet<(u64, Digest)> = held.iter().map(|&(r, h)| (r + 1, h)).collect();
    let report = verify_with_updates(&store, &without_updates, Some(&shifted));
    assert_eq!(report.findings.len(), 9, "{report}");
    assert!(verify_with_updates(&store, &without_updates, Some(&held)).is_ok());
    let mut missing_one = held.clone();
    missing_one.remove(&(1, update_hash));
    let report = verify_with_updates(&store, &without_updates, Some(&missing_one));
    assert_eq!(report.findings, vec![Finding::MissingUpdate { height: 1, index: 1, hash: update_hash }], "{report}");
    assert_eq!((report.updates_checked, report.updates_unchecked), (ROUNDS * 3, 0));

    // The same through a folder of blob files: change one byte of a global model.
    let dir = tempfile::tempdir().unwrap();
    let mut dir_blobs = DirBlobs::open(dir.path()).unwrap();
    let mut fed = Fed::new();
    let mut chain = Chain::create(MemStore::new(), fed.genesis.clone()).unwrap();
    fed.run_rounds(&mut chain, &mut dir_blobs, 1);
    let aggregate_hash = block(chain.store(), 2).txs[0].body.referenced_blob().unwrap();
    assert!(matches!(block(chain.store(), 2).txs[0].body, TxBody::CommitAggregate { .. }));
    let path = dir_blobs.path_of(&aggregate_hash);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let report = verify(chain.store(), &dir_blobs);
    assert!(
        matches!(report.findings.as_slice(), [Finding::BlobMismatch { height: 2, index: 0, hash, .. }] if *hash == aggregate_hash),
        "{report}"
    );
}

#[test]
fn missing_blob_is_found() {
    let (_, store, mut blobs) = ledger();
    let hash = block(&store, 4).txs[0].body.referenced_blob().unwrap();
    blobs.remove(&hash);
    let report = verify(&store, &blobs);
    assert_eq!(report.findings, vec![Finding::MissingBlob { height: 4, index: 0, hash }]);
    assert!(!MemBlobs::new().contains(&absent()).unwrap());
}

/// Acceptance: a transaction with a bad signature — even when whoever holds the store rewrote
/// every hash above it so that links, roots and the tip are consistent again.
#[test]
fn transaction_with_bad_signature_is_found() {
    let (fed, mut store, blobs) = ledger();
    rewrite(&mut store, 3, |b| {
        // Same body, so the state is unchanged; a signature over something else.
        let tx = &mut b.txs[2];
        tx.signature = fed.keys[0].sign(b"something else");
    });
    let tx = block(&store, 3).txs[2].clone();
    let report = verify(&store, &blobs);
    assert_eq!(
        report.findings,
        vec![Finding::Block(BlockFault::BadSignature { height: 3, index: 2, tx_hash: tx.hash(), signer: tx.signer })],
        "{report}"
    );
    assert_eq!(report.state_verified_through, Some(TIP), "one bad signature does not stop replay");
}

/// Issue 5 acceptance, on disk: a block carrying a replayed (reused-nonce) transaction or one
/// from an unknown signer is found by replay.
#[test]
fn reused_nonce_and_unknown_signer_in_a_stored_block_are_found() {
    let (fed, store, blobs) = ledger();
    let original = block(&store, 3);
    let (replayed, index) = (original.txs[0].clone(), original.txs.len());
    let mut damaged = store.clone();
    rewrite(&mut damaged, 3, |b| b.txs.push(replayed.clone()));
    let report = verify(&damaged, &blobs);
    assert!(
        report.findings.iter().any(|f| matches!(
            f,
            Finding::Block(BlockFault::RejectedTx { height: 3, index: i, reason: TxRejection::BadNonce { .. }, .. }) if *i == index
        )),
        "{report}"
    );

    let stranger = Transaction::sign(
        &fed.outsider,
        &fed.chain_id(),
        1,
        TxBody::Reward { node: fed.outsider.node_id(), amount: 1_000_000 },
    );
    let mut damaged = store.clone();
    rewrite(&mut damaged, 5, |b| b.txs.insert(0, stranger.clone()));
    let report = verify(&damaged, &blobs);
    assert!(
        report.findings.iter().any(|f| matches!(
            f,
            Finding::Block(BlockFault::RejectedTx {
                height: 5,
                index: 0,
                reason: TxRejection::UnknownSigner { .. },
                ..
            })
        )),
        "{report}"
    );
}

#[test]
fn a_changed_state_root_is_found_and_stops_replay() {
    let (_, mut store, blobs) = ledger();
    rewrite(&mut store, 4, |b| b.state_root.0[0] ^= 1);
    let report = verify(&store, &blobs);
    assert!(
        matches!(report.findings.as_slice(), [Finding::Block(BlockFault::StateRootMismatch { height: 4, .. })]),
        "{report}"
    );
    assert_eq!(report.state_verified_through, Some(3));
}

#[test]
fn tip_and_extra_blocks_are_checked() {
    let (_, store, blobs) = ledger();
    // A tip that names the wrong hash.
    let mut damaged = store.clone();
    let last = damaged.block(TIP).unwrap().unwrap();
    damaged.put_raw(TIP, last.clone(), Some(Tip { height: TIP, hash: Digest::ZERO }));
    let report = verify(&damaged, &blobs);
    assert!(
        matches!(report.findings.as_slice(), [Finding::Stored(StoreFault::TipMismatch { height: TIP, .. })]),
        "{report}"
    );
    // A block stored above the tip.
    let mut damaged = store.clone();
    let tip = damaged.tip().unwrap();
    damaged.put_raw(TIP + 1, last, tip);
    let report = verify(&damaged, &blobs);
    assert!(report.findings.contains(&Finding::BeyondTip { height: TIP + 1, tip: TIP }), "{report}");
}

#[test]
fn garbage_records_are_findings_not_panics() {
    let (_, store, blobs) = ledger();
    assert_eq!(verify(&MemStore::new(), &blobs).findings, vec![Finding::NoGenesis]);

    let mut damaged = MemStore::new();
    damaged.put_genesis(b"\x01garbage").unwrap();
    let report = verify(&damaged, &blobs);
    assert!(matches!(report.findings.as_slice(), [Finding::UndecodableGenesis(_)]), "{report}");

    let mut damaged = store.clone();
    let bytes = damaged.block_bytes_mut(2).unwrap();
    bytes.truncate(bytes.len() / 2);
    let report = verify(&damaged, &blobs);
    assert!(
        report.findings.contains(&Finding::Stored(StoreFault::UndecodableBlock {
            height: 2,
            source: CodecError::Truncated { record: "block", bytes: bytes_len(&damaged, 2) }
        })),
        "{report}"
    );
    // Above the hole: no link to check, but signatures, roots and blobs still are.
    assert_eq!(report.blocks_checked, TIP);
    assert_eq!(report.state_verified_through, Some(1));
}

fn bytes_len(store: &MemStore, height: u64) -> usize {
    store.block(height).unwrap().unwrap().len()
}
