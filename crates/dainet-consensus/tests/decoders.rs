//! The block channel's decoder ([`WireMessage::decode`]) against arbitrary and mutated bytes
//! (issue 11): blocks, block requests, transaction batches and catch-up ranges from a peer.
//!
//! The property tests run in the normal suite. `long_run_block_channel` is ignored by default;
//! it feeds the decoder 10^6 inputs (`DAINET_HAMMER_INPUTS` changes it):
//! `cargo test --release -p dainet-consensus --test decoders -- --ignored --nocapture`.
//! The harness is `dainet_hammer` (crates/dainet-hammer).

use dainet_consensus::wire::WireMessage;
use dainet_hammer::{arbitrary_bytes, long_run, mutated};
use dainet_ledger::chain::genesis_block;
use dainet_ledger::genesis::{Founder, Genesis};
use dainet_ledger::hash::Digest;
use dainet_ledger::identity::Keypair;
use dainet_ledger::tx::{Transaction, TxBody};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn seeds() -> Vec<Vec<u8>> {
    let kp = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(5));
    let genesis = Genesis {
        name: "wire".into(),
        timestamp_ms: 0,
        founders: vec![Founder { id: kp.node_id(), name: "a".into(), validator: true }],
        treasury: None,
    };
    let chain = genesis.chain_id();
    let txs: Vec<Transaction> = (1..=3)
        .map(|nonce| Transaction::sign(&kp, &chain, nonce, TxBody::Reward { node: kp.node_id(), amount: nonce }))
        .collect();
    let block = genesis_block(&genesis);
    [
        WireMessage::Block(block.clone()),
        WireMessage::Request(Digest::of(b"x")),
        WireMessage::Transactions(txs),
        WireMessage::HeadersRequest { end: Digest::of(b"x"), above: 3, max: 64 },
        WireMessage::Headers(vec![block.header(); 2]),
        WireMessage::BlocksRequest(vec![Digest::of(b"x"), Digest::of(b"y")]),
        WireMessage::Blocks(vec![block]),
    ]
    .iter()
    .map(WireMessage::encode)
    .collect()
}

/// What is accepted re-encodes to the same bytes.
fn block_channel(bytes: &[u8]) -> bool {
    WireMessage::decode(bytes).map(|m| assert_eq!(m.encode(), bytes, "a message re-encodes differently")).is_ok()
}

#[test]
fn the_seeds_are_valid() {
    assert!(seeds().iter().all(|b| block_channel(b)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn block_channel_messages_never_panic(bytes in prop_oneof![arbitrary_bytes(), mutated(seeds())]) {
        block_channel(&bytes);
    }
}

#[test]
#[ignore = "long run: cargo test --release -p dainet-consensus --test decoders -- --ignored --nocapture"]
fn long_run_block_channel() {
    long_run("consensus-block-channel", &seeds(), block_channel);
}
