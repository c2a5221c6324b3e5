//! The wire and disk formats, pinned: these hashes change only when a format changes, and a
//! format change is a decision (bump the version byte, regenerate here) — the commonware
//! conformance practice. Also: decoders never panic on arbitrary bytes.

mod common;

use common::Fed;
use dainet_ledger::blob::MemBlobs;
use dainet_ledger::block::{Block, BLOCK_VERSION};
use dainet_ledger::chain::Chain;
use dainet_ledger::genesis::{Genesis, GENESIS_VERSION};
use dainet_ledger::hash::Digest;
use dainet_ledger::store::{BlockStore, MemStore};
use dainet_ledger::tx::{Transaction, TX_VERSION};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn pinned_chain() -> Chain<MemStore> {
    let mut fed = Fed::new();
    let mut chain = Chain::create(MemStore::new(), fed.genesis.clone()).unwrap();
    fed.run_rounds(&mut chain, &mut MemBlobs::new(), 2);
    chain
}

#[test]
fn formats_are_pinned() {
    let chain = pinned_chain();
    let block = chain.block(3).unwrap().unwrap();
    let got = [
        ("genesis", Digest::of(&chain.genesis().encode()).to_hex()),
        ("transaction", Digest::of(&block.txs[1].encode()).to_hex()),
        ("block", Digest::of(&block.encode()).to_hex()),
        ("block hash", block.hash().to_hex()),
        ("state root", chain.state().root().to_hex()),
    ];
    let want = [
        ("genesis", "02c3902d097c603217c4f3251c584588aca799aeeb3f9179785b6305db9802b5"),
        ("transaction", "7d122aea8135e4e6ec67836e2a934fba55f0d4b505378ee9711589fe58633391"),
        ("block", "27378f15089ccd2484f05f6ab41770e18c59117dd56fd6dfa4f2edb892520cd0"),
        ("block hash", "0aeb577e11abd74288797a35477629b2e9f17b08e2b6ace4f0bb7d13284b0046"),
        ("state root", "969a64f998c786c05264ebe1a0cbb3519ec8f787d7dcf6b18aba89baf0d07579"),
    ];
    for ((name, got), (_, want)) in got.iter().zip(want) {
        assert_eq!(got, want, "{name} format changed: bump its version byte and re-pin");
    }
}

#[test]
fn decoders_never_panic_on_arbitrary_bytes() {
    let chain = pinned_chain();
    let samples = [
        (TX_VERSION, chain.block(1).unwrap().unwrap().txs[0].encode()),
        (BLOCK_VERSION, chain.store().block(3).unwrap().unwrap()),
        (GENESIS_VERSION, chain.genesis().encode()),
    ];
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for _ in 0..3_000 {
        for (version, valid) in &samples {
            // Random bytes behind a valid version byte, and a valid record with random edits.
            let mut noise = vec![0u8; (rng.next_u32() % 512) as usize + 1];
            rng.fill_bytes(&mut noise);
            noise[0] = *version;
            let mut edited = valid.clone();
            for _ in 0..1 + rng.next_u32() % 4 {
                let at = rng.next_u32() as usize % edited.len();
                edited[at] = rng.next_u32() as u8;
            }
            edited.truncate(1 + rng.next_u32() as usize % edited.len());
            for bytes in [&noise, &edited] {
                if let Ok(t) = Transaction::decode(bytes) {
                    assert_eq!(&t.encode(), bytes);
                }
                if let Ok(b) = Block::decode(bytes) {
                    assert_eq!(&b.encode(), bytes);
                }
                if let Ok(g) = Genesis::decode(bytes) {
                    assert_eq!(&g.encode(), bytes);
                }
            }
        }
    }
}
