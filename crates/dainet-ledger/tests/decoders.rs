//! Every decoder of the ledger against arbitrary and mutated bytes (issue 11): transactions,
//! blocks, genesis records and files, key files.
//!
//! The property tests run in the normal suite (a few hundred cases each). The `long_run_*`
//! tests are ignored by default; each feeds its decoder 10^6 inputs (`DAINET_HAMMER_INPUTS`
//! changes it) and fails if any panics:
//! `cargo test --release -p dainet-ledger --test decoders -- --ignored --nocapture`.
//! The harness is `dainet_hammer` (crates/dainet-hammer).

mod common;

use common::Fed;
use dainet_hammer::{arbitrary_bytes, long_run, mutated};
use dainet_ledger::blob::MemBlobs;
use dainet_ledger::block::Block;
use dainet_ledger::chain::Chain;
use dainet_ledger::genesis::Genesis;
use dainet_ledger::identity::Keypair;
use dainet_ledger::store::{BlockStore, MemStore};
use dainet_ledger::tx::Transaction;
use proptest::prelude::*;
use std::sync::OnceLock;

/// Valid encodings of every record, from a small federation's two rounds.
struct Seeds {
    txs: Vec<Vec<u8>>,
    blocks: Vec<Vec<u8>>,
    genesis: Vec<Vec<u8>>,
    keys: Vec<Vec<u8>>,
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut fed = Fed::new();
        let mut chain = Chain::create(MemStore::new(), fed.genesis.clone()).unwrap();
        fed.run_rounds(&mut chain, &mut MemBlobs::new(), 2);
        let height = chain.head().height;
        let blocks: Vec<Vec<u8>> = (1..=height).map(|h| chain.store().block(h).unwrap().unwrap()).collect();
        let txs = (1..=height).flat_map(|h| chain.block(h).unwrap().unwrap().txs).map(|t| t.encode()).collect();
        let key = &fed.keys[0];
        let hex: String = key.secret_bytes().iter().map(|b| format!("{b:02x}")).collect();
        let keys = vec![format!("{hex}\n").into_bytes(), key.secret_bytes().to_vec()];
        Seeds { txs, blocks, genesis: vec![fed.genesis.encode()], keys }
    })
}

/// The transaction decoder: what it accepts re-encodes to the same bytes.
fn tx(bytes: &[u8]) -> bool {
    Transaction::decode(bytes).map(|t| assert_eq!(t.encode(), bytes, "a transaction re-encodes differently")).is_ok()
}

fn block(bytes: &[u8]) -> bool {
    Block::decode(bytes).map(|b| assert_eq!(b.encode(), bytes, "a block re-encodes differently")).is_ok()
}

/// A genesis file as `dainet ledger node` reads it: decode, then its rules.
fn genesis_file(bytes: &[u8]) -> bool {
    match Genesis::decode(bytes) {
        Ok(g) => {
            assert_eq!(g.encode(), bytes, "a genesis re-encodes differently");
            g.validate().is_ok()
        }
        Err(_) => false,
    }
}

/// A key file: what it accepts names the same identity as the key it re-saves.
fn key_file(bytes: &[u8]) -> bool {
    Keypair::decode_key_file(bytes)
        .map(|k| {
            let again = Keypair::decode_key_file(&k.secret_bytes()).expect("32 raw bytes are a key file");
            assert_eq!(again.node_id(), k.node_id());
        })
        .is_ok()
}

#[test]
fn the_seeds_are_valid() {
    let s = seeds();
    assert!(s.txs.len() >= 4 && s.blocks.len() >= 2, "too few seeds to mutate");
    assert!(s.txs.iter().all(|b| tx(b)) && s.blocks.iter().all(|b| block(b)));
    assert!(s.genesis.iter().all(|b| genesis_file(b)) && s.keys.iter().all(|b| key_file(b)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn transactions_never_panic(bytes in prop_oneof![arbitrary_bytes(), mutated(seeds().txs.clone())]) {
        tx(&bytes);
    }

    #[test]
    fn blocks_never_panic(bytes in prop_oneof![arbitrary_bytes(), mutated(seeds().blocks.clone())]) {
        block(&bytes);
    }

    #[test]
    fn genesis_files_never_panic(bytes in prop_oneof![arbitrary_bytes(), mutated(seeds().genesis.clone())]) {
        genesis_file(&bytes);
    }

    #[test]
    fn key_files_never_panic(bytes in prop_oneof![arbitrary_bytes(), mutated(seeds().keys.clone())]) {
        key_file(&bytes);
    }

    /// A flipped bit anywhere in a transaction is refused or changes what it says: the
    /// encoding is canonical, so no two byte strings name one transaction.
    #[test]
    fn a_flipped_bit_never_decodes_to_the_same_transaction(which in 0usize..64, at in any::<usize>(), bit in 0u8..8) {
        let txs = &seeds().txs;
        let good = &txs[which % txs.len()];
        let mut bad = good.clone();
        bad[at % good.len()] ^= 1 << bit;
        if let Ok(t) = Transaction::decode(&bad) {
            prop_assert_ne!(t, Transaction::decode(good).unwrap());
        }
    }
}

#[test]
fn an_oversized_key_file_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.key");
    std::fs::write(&path, vec![b' '; dainet_ledger::identity::MAX_KEY_FILE_BYTES + 1]).unwrap();
    let e = Keypair::load(&path).unwrap_err().to_string();
    assert!(e.contains("longer than 4096 bytes"), "{e}");
}

#[test]
#[ignore = "long run: cargo test --release -p dainet-ledger --test decoders -- --ignored --nocapture"]
fn long_run_transaction() {
    long_run("ledger-transaction", &seeds().txs, tx);
}

#[test]
#[ignore = "long run: cargo test --release -p dainet-ledger --test decoders -- --ignored --nocapture"]
fn long_run_block() {
    long_run("ledger-block", &seeds().blocks, block);
}

#[test]
#[ignore = "long run: cargo test --release -p dainet-ledger --test decoders -- --ignored --nocapture"]
fn long_run_genesis_file() {
    long_run("ledger-genesis-file", &seeds().genesis, genesis_file);
}

#[test]
#[ignore = "long run: cargo test --release -p dainet-ledger --test decoders -- --ignored --nocapture"]
fn long_run_key_file() {
    long_run("ledger-key-file", &seeds().keys, key_file);
}
