//! The recording thread's side: turning each closed round into signed transactions, having the
//! simulated validators finalize them, and writing the result into the run's ledger folder.
//!
//! Per round `r`, the coordinator is member `(r − 1) mod V` (the validators take turns, so every
//! one of them signs and proposes); each client is a device of member `k mod V`, registered once
//! at the start. The transactions are [`RoundCommitments::transactions`] (open, a commitment per update
//! folded into the aggregate, the aggregate with the round's test accuracy, test loss, training
//! loss and example count, the privacy spent under DP). The blobs they name are the client's θ_k
//! and θ_r as model files, stored in `ledger/blobs/`; an update's norm is that of θ_k − θ_{r−1}.
//!
//! Keys, genesis and device ids derive from the task seed, so the same run gives the same ledger
//! bytes. They are simulation keys: anyone who knows the seed can sign with them.

use super::blobs::BlobWriter;
use super::{LedgerTotals, RecorderSettings, RoundInput, VALIDATORS};
use crate::run::LedgerEntry;
use anyhow::{bail, Context, Result};
use dainet_agg::robust::squared_distance;
use dainet_consensus::sim::{SimulatedLedger, SimulatedLedgerConfig};
use dainet_core::Params;
use dainet_ledger::blob::DirBlobs;
use dainet_ledger::genesis::{Founder, Genesis};
use dainet_ledger::hash::Digest;
use dainet_ledger::identity::{Keypair, NodeId};
use dainet_ledger::round_record::{deadline_ms, RoundCommitments, UpdateCommitment};
use dainet_ledger::store::RedbStore;
use dainet_ledger::tx::{ChainId, Metric, Transaction, TxBody};
use dainet_ml::model_file::model_bytes;
use dainet_protocol::ClientId;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The ledger of one simulation, driven by the recording thread.
pub(super) struct RoundLedger {
    settings: RecorderSettings,
    ledger: SimulatedLedger,
    members: Vec<Keypair>,
    devices: Vec<NodeId>,
    chain_id: ChainId,
    nonces: Vec<u64>,
    /// The ledger folder's block store, written in `finish`.
    store: RedbStore,
    /// Writes the blobs into the folder's `blobs/` off this thread.
    writer: BlobWriter,
    /// θ_{r−1}, shared with the coordinator's outcome (never copied).
    previous: Arc<Params>,
    /// Wall seconds spent so far (including `blob_s`).
    total_s: f64,
    /// Of which encoding, hashing and writing blobs.
    blob_s: f64,
}

/// A key derived from the task seed for `role` and `index` (simulation only).
fn derived_key(seed: u64, role: &str, index: u64) -> Keypair {
    let mut material = seed.to_le_bytes().to_vec();
    material.extend_from_slice(&index.to_le_bytes());
    Keypair::from_secret_bytes(blake3::derive_key(&format!("dainet simulate {role} key v1"), &material))
}

impl RoundLedger {
    /// Starts [`VALIDATORS`] simulated validators on a genesis derived from the seed and
    /// registers the clients' devices, writing into `store` and `blobs`.
    pub(super) fn start(settings: RecorderSettings, store: RedbStore, blobs: DirBlobs) -> Result<Self> {
        let started = Instant::now();
        let seed = settings.seed;
        let members: Vec<Keypair> = (0..VALIDATORS as u64).map(|i| derived_key(seed, "member", i)).collect();
        let devices: Vec<NodeId> =
            (0..settings.clients as u64).map(|k| derived_key(seed, "device", k).node_id()).collect();
        let chain_id = ChainId::from_name(&format!("dainet-simulate-{seed}"));
        let founders = members
            .iter()
            .enumerate()
            .map(|(i, k)| Founder { id: k.node_id(), name: format!("member-{i}"), validator: true })
            .collect();
        let genesis = Genesis { chain_id, timestamp_ms: 0, founders };
        let config = SimulatedLedgerConfig { seed, ..SimulatedLedgerConfig::default() };
        let ledger = SimulatedLedger::start(genesis, members.clone(), config).context("starting the ledger")?;
        let previous = Arc::clone(&settings.initial);
        let mut recorder = Self {
            settings,
            ledger,
            members,
            devices,
            chain_id,
            nonces: vec![0; VALIDATORS],
            store,
            writer: BlobWriter::start(blobs)?,
            previous,
            total_s: 0.0,
            blob_s: 0.0,
        };
        // Every member registers its devices (client k belongs to member k mod V), all in one
        // submission: any validator's block may carry them.
        let registrations: Vec<Transaction> = (0..recorder.devices.len())
            .map(|k| {
                let member = k % VALIDATORS;
                let body =
                    TxBody::RegisterDevice { device: recorder.devices[k], member: recorder.members[member].node_id() };
                recorder.sign(member, body)
            })
            .collect();
        recorder.submit(0, registrations).context("registering the clients' devices")?;
        recorder.total_s += started.elapsed().as_secs_f64();
        Ok(recorder)
    }

    fn sign(&mut self, member: usize, body: TxBody) -> Transaction {
        self.nonces[member] += 1;
        Transaction::sign(&self.members[member], &self.chain_id, self.nonces[member], body)
    }

    /// Stores `params` as a model file blob; returns its hash. Adds the time taken to `blob_s`.
    fn put_model(&mut self, params: &Params, meta: BTreeMap<String, String>) -> Result<Digest> {
        let started = Instant::now();
        let bytes = model_bytes(&self.settings.spec, params, &meta);
        let hash = Digest::of(&bytes);
        // Written by the writer thread, synced once in `finish` before the blocks that name
        // them are written.
        let queued = self.writer.write(hash, bytes);
        self.blob_s += started.elapsed().as_secs_f64();
        queued?;
        Ok(hash)
    }

    /// Records one round and returns where it landed.
    pub(super) fn record(&mut self, input: RoundInput) -> Result<LedgerEntry> {
        let started = Instant::now();
        let RoundInput { round: r, contributors, missing, aggregated, params, mut updates, metrics, privacy } = input;
        let coordinator = (r as usize - 1) % VALIDATORS;
        let mut sampled: Vec<ClientId> = contributors.iter().chain(&missing).copied().collect();
        sampled.sort_unstable();
        let participants: Vec<NodeId> = sampled.iter().map(|&k| self.device(k)).collect::<Result<_>>()?;
        let submitted_ms = self.ledger.now_ms()?;
        let mut commitments = Vec::with_capacity(contributors.len());
        for &k in &contributors {
            let Some((values, examples)) = updates.remove(&k) else {
                bail!("round {r}: client {k} contributed an update the ledger recorder never saw (a bug)");
            };
            let norm = squared_distance(&values, self.previous.values()).sqrt();
            let update = Params::new(self.previous.layout().clone(), values)?;
            let meta = BTreeMap::from([
                ("dainet.round".to_string(), r.to_string()),
                ("dainet.client".to_string(), k.0.to_string()),
            ]);
            let update_hash = self.put_model(&update, meta)?;
            commitments.push(UpdateCommitment { node: self.device(k)?, update_hash, examples, norm });
        }
        let mut aggregate = None;
        if aggregated && !commitments.is_empty() {
            // The same metadata as the run's final `model.safetensors`, so that file's blake3 is
            // the last aggregate's hash.
            let meta = BTreeMap::from([
                ("dainet.round".to_string(), r.to_string()),
                ("dainet.config_fingerprint".to_string(), self.settings.fingerprint.clone()),
            ]);
            let hash = self.put_model(&params, meta)?;
            let metrics = metrics.iter().filter(|(_, v)| v.is_finite()).map(|(n, v)| Metric::new(n, *v)).collect();
            aggregate = Some((hash, metrics));
        }
        let aggregate_hash = aggregate.as_ref().map(|(hash, _)| *hash);
        let record = RoundCommitments {
            round: u64::from(r),
            task: self.settings.task.clone(),
            strategy: self.settings.strategy.clone(),
            deadline_ms: deadline_ms(submitted_ms, self.settings.round_timeout_ms),
            participants,
            updates: commitments,
            aggregate,
            privacy,
        };
        let txs = record.transactions(&self.members[coordinator], &self.chain_id, self.nonces[coordinator] + 1);
        self.nonces[coordinator] += txs.len() as u64;
        let count = txs.len();
        let heights = self.submit(coordinator, txs).with_context(|| format!("recording round {r}"))?;
        let finality_ms = self.ledger.now_ms()?.saturating_sub(submitted_ms);
        self.previous = params;
        let elapsed = started.elapsed().as_secs_f64();
        self.total_s += elapsed;
        Ok(LedgerEntry {
            block: heights.iter().copied().max().unwrap_or(0),
            first_block: heights.iter().copied().min().unwrap_or(0),
            txs: count,
            aggregate_hash: aggregate_hash.map(|h| h.to_hex()),
            ledger_s: elapsed,
            finality_ms,
        })
    }

    /// Has validator `v` finalize `txs`; returns the height of each one's block. A transaction
    /// the ledger rejects is an error: the recorder only writes what the rules allow.
    fn submit(&mut self, v: usize, txs: Vec<Transaction>) -> Result<Vec<u64>> {
        let committed = self.ledger.submit(v, txs)?;
        committed
            .iter()
            .map(|c| {
                c.height().with_context(|| format!("the ledger refused transaction {}: {:?}", c.tx_hash, c.outcome))
            })
            .collect()
    }

    fn device(&self, k: ClientId) -> Result<NodeId> {
        self.devices.get(k.0 as usize).copied().with_context(|| format!("client {k} has no device id (a bug)"))
    }

    /// Stops the validators, syncs the blobs, and writes the longest finalized chain among the
    /// running validators (the one sure to hold every committed round) to the folder's
    /// `ledger.redb` as its validator stored it (the validators checked every block).
    pub(super) fn finish(mut self) -> Result<LedgerTotals> {
        let started = Instant::now();
        let finished = self.ledger.finish().context("stopping the ledger")?;
        if !finished.agree {
            bail!("the simulated validators' chains disagree (a fork): {:?}", finished.statuses);
        }
        let source = finished.chain;
        let sync_started = Instant::now();
        self.writer.finish()?.sync()?;
        self.blob_s += sync_started.elapsed().as_secs_f64();
        let chain = source
            .copy_into(self.store)
            .with_context(|| format!("writing validator {}'s blocks", finished.validator))?;
        self.total_s += started.elapsed().as_secs_f64();
        Ok(LedgerTotals {
            height: chain.head().height,
            seconds: self.total_s,
            blob_seconds: self.blob_s,
            blocking_seconds: 0.0,
        })
    }
}
