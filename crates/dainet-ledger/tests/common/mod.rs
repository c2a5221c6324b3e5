//! A small federation for the integration tests: three founding members, rounds in which each
//! commits an update and the first aggregates, blobs stored alongside.
#![allow(dead_code)]

use dainet_ledger::blob::BlobStore;
use dainet_ledger::chain::Chain;
use dainet_ledger::genesis::{Founder, Genesis};
use dainet_ledger::hash::Digest;
use dainet_ledger::identity::Keypair;
use dainet_ledger::store::BlockStore;
use dainet_ledger::tx::{ChainId, Metric, Transaction, TxBody};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub const T0: u64 = 1_700_000_000_000;

pub struct Fed {
    pub keys: Vec<Keypair>,
    pub outsider: Keypair,
    pub genesis: Genesis,
    nonces: Vec<u64>,
}

impl Fed {
    pub fn new() -> Fed {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate(&mut rng)).collect();
        let outsider = Keypair::generate(&mut rng);
        let founders = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Founder { id: k.node_id(), name: format!("org{i}"), validator: true })
            .collect();
        let treasury = Some(keys[0].node_id());
        let genesis = Genesis { name: "dainet-test".into(), timestamp_ms: T0, founders, treasury };
        Fed { keys, outsider, genesis, nonces: vec![0; 3] }
    }

    pub fn chain_id(&self) -> ChainId {
        self.genesis.chain_id()
    }

    /// Sign `body` as member `who` with its next nonce.
    pub fn tx(&mut self, who: usize, body: TxBody) -> Transaction {
        self.nonces[who] += 1;
        Transaction::sign(&self.keys[who], &self.genesis.chain_id(), self.nonces[who], body)
    }

    /// Append one block of `txs`, asserting every one was included.
    pub fn append<S: BlockStore>(chain: &mut Chain<S>, txs: Vec<Transaction>, time_ms: u64) {
        let n = txs.len();
        let proposal = chain.propose_block(txs, time_ms).unwrap();
        assert!(proposal.dropped.is_empty(), "{:?}", proposal.dropped);
        assert_eq!(proposal.block.txs.len(), n);
        chain.append(proposal.block).unwrap();
    }

    /// Run `rounds` training rounds, two blocks each (updates; aggregate and rewards), storing
    /// every update and aggregate blob.
    pub fn run_rounds<S: BlockStore, B: BlobStore + ?Sized>(
        &mut self,
        chain: &mut Chain<S>,
        blobs: &mut B,
        rounds: u64,
    ) {
        let ids: Vec<_> = self.keys.iter().map(Keypair::node_id).collect();
        for round in 1..=rounds {
            let time = chain.head().timestamp_ms + 1_000;
            let mut txs = vec![self.tx(
                0,
                TxBody::OpenRound {
                    round,
                    task: "mnist-2nn".into(),
                    participants: ids.clone(),
                    strategy: "fedavg".into(),
                    deadline_ms: time + 60_000,
                },
            )];
            for (i, id) in ids.iter().enumerate() {
                let blob = format!("update round={round} node={i}").into_bytes();
                let update_hash = blobs.put(&blob).unwrap();
                txs.push(self.tx(
                    i,
                    TxBody::CommitUpdate {
                        round,
                        node: *id,
                        update_hash,
                        examples: 600,
                        norm_bits: (1.0 + i as f64).to_bits(),
                    },
                ));
            }
            Self::append(chain, txs, time);
            let aggregate_hash = blobs.put(format!("global model round={round}").as_bytes()).unwrap();
            let mut txs = vec![self.tx(
                0,
                TxBody::CommitAggregate {
                    round,
                    aggregate_hash,
                    participants: ids.clone(),
                    metrics: vec![Metric::new("accuracy", 0.5 + round as f64 / 100.0)],
                },
            )];
            for id in &ids {
                txs.push(self.tx(0, TxBody::Contribution { round, node: *id, score: 333_333 }));
                txs.push(self.tx(0, TxBody::Reward { node: *id, amount: 10 }));
            }
            Self::append(chain, txs, time + 500);
        }
    }
}

/// A digest no blob has.
pub fn absent() -> Digest {
    Digest::of(b"absent")
}
