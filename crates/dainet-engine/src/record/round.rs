//! The recording thread's side: turning the coordinator's ledger records into signed
//! transactions, having the simulated validators finalize them, and writing the result into
//! the run's ledger folder.
//!
//! Which records a round writes, and when, is the coordinator's decision
//! (`dainet_protocol::record`). This module maps them: a client is a device of member
//! `k mod V`, registered once at the start; round `r`'s records are signed by its coordinator,
//! member `(r − 1) mod V` (the validators take turns, so every one of them signs and proposes);
//! an aggregate's hash is that of θ_r as a model file, stored in `ledger/blobs/` with the
//! metadata of the run's `model.safetensors` (so that file's `b3sum` is the last aggregate's
//! hash), and its metrics are the round's evaluation. Update values never reach this folder:
//! a commitment is a hash, and the update stays with the trainer that made it.
//!
//! Keys, genesis and device ids derive from the task seed, so the same run gives the same ledger
//! bytes. They are simulation keys: anyone who knows the seed can sign with them.

use super::blobs::BlobWriter;
use super::{Batch, LedgerStart, LedgerTotals, RecorderSettings, VALIDATORS};
use super::{LedgerContext, Result};
use crate::checkpoint::model_meta;
use crate::error::EngineError;
use crate::run::LedgerEntry;
use dainet_consensus::sim::{SimulatedLedger, SimulatedLedgerConfig};
use dainet_core::Params;
use dainet_ledger::blob::DirBlobs;
use dainet_ledger::chain::Chain;
use dainet_ledger::genesis::{Founder, Genesis};
use dainet_ledger::hash::Digest;
use dainet_ledger::identity::{Keypair, NodeId};
use dainet_ledger::round_record::deadline_ms;
use dainet_ledger::store::{BlockStore, RedbStore};
use dainet_ledger::tx::{ChainId, Metric, Transaction, TxBody};
use dainet_ml::model_file::model_bytes;
use dainet_protocol::{ClientId, LedgerRecord};
use std::collections::BTreeMap;

/// The ledger of one simulation, driven by the recording thread.
pub(super) struct RoundLedger {
    settings: RecorderSettings,
    ledger: SimulatedLedger,
    members: Vec<Keypair>,
    devices: Vec<NodeId>,
    chain_id: ChainId,
    nonces: Vec<u64>,
    /// Where `finish` writes the blocks: the folder's empty store, or the stored chain a
    /// resumed run continues.
    target: Target,
    /// Writes the blobs into the folder's `blobs/` off this thread.
    writer: BlobWriter,
    /// Where each round's transactions landed so far.
    entries: BTreeMap<u32, LedgerEntry>,
    /// Wall seconds spent so far (including `blob_s`).
    total_s: f64,
    /// Of which encoding, hashing and writing blobs.
    blob_s: f64,
}

/// Where the finalized blocks go.
enum Target {
    /// An empty store: the whole chain is written.
    Empty(RedbStore),
    /// The chain an interrupted run stored: the blocks above its head are appended.
    Continue(Box<Chain<RedbStore>>),
}

/// The members' keys, the clients' device ids and the genesis a simulation with task seed
/// `seed` and `clients` clients records under (derived from the seed: simulation keys).
fn identities(seed: u64, clients: usize) -> (Vec<Keypair>, Vec<NodeId>, Genesis) {
    let members: Vec<Keypair> = (0..VALIDATORS as u64).map(|i| derived_key(seed, "member", i)).collect();
    let devices = (0..clients as u64).map(|k| derived_key(seed, "device", k).node_id()).collect();
    let founders = members
        .iter()
        .enumerate()
        .map(|(i, k)| Founder { id: k.node_id(), name: format!("member-{i}"), validator: true })
        .collect();
    let genesis = Genesis { name: format!("dainet-simulate-{seed}"), timestamp_ms: 0, founders, treasury: None };
    (members, devices, genesis)
}

/// Checks that `chain` is the ledger of a simulation with task seed `seed` recorded up to
/// round `round` and no further, so a run resumed after `round` can continue it.
pub(super) fn check_continues<S: BlockStore>(
    chain: &Chain<S>,
    seed: u64,
    round: u32,
) -> std::result::Result<(), String> {
    let (_, _, genesis) = identities(seed, 0);
    if chain.genesis() != &genesis {
        return Err("it was recorded by a run with another seed".into());
    }
    match chain.state().rounds().keys().next_back() {
        Some(&last) if last == u64::from(round) => Ok(()),
        Some(&last) => Err(format!("it records rounds up to {last}, the checkpoint is at round {round}")),
        None => Err(format!("it records no round, the checkpoint is at round {round}")),
    }
}

/// A key derived from the task seed for `role` and `index` (simulation only).
fn derived_key(seed: u64, role: &str, index: u64) -> Keypair {
    let mut material = seed.to_le_bytes().to_vec();
    material.extend_from_slice(&index.to_le_bytes());
    Keypair::from_secret_bytes(blake3::derive_key(&format!("dainet simulate {role} key v1"), &material))
}

impl RoundLedger {
    /// Starts [`VALIDATORS`] simulated validators writing into `store` and `blobs`: on a genesis
    /// derived from the seed, registering the clients' devices, if `from` is fresh; or, for a run
    /// resumed after `round`, on the chain the interrupted run stored (recorded up to `round`,
    /// see [`check_continues`]), the members' nonces going on from the chain's.
    pub(super) fn start(
        settings: RecorderSettings,
        store: RedbStore,
        blobs: DirBlobs,
        from: LedgerStart,
    ) -> Result<Self> {
        let started = crate::wall_clock();
        let (members, devices, genesis) = identities(settings.seed, settings.clients);
        let config = SimulatedLedgerConfig { seed: settings.seed, ..SimulatedLedgerConfig::default() };
        let (ledger, nonces, target) = match from {
            LedgerStart::Fresh => {
                let ledger = SimulatedLedger::start(genesis.clone(), members.clone(), config)
                    .ledger(|| "starting the ledger".into())?;
                (ledger, vec![0; VALIDATORS], Target::Empty(store))
            }
            LedgerStart::After(round) => {
                let chain = Chain::open(store).ledger(|| "opening the interrupted run's ledger".into())?;
                check_continues(&chain, settings.seed, round)
                    .map_err(|why| EngineError::ledger("continuing the interrupted run's ledger", why))?;
                // The next transaction of a signer carries its next nonce; `sign` increments first.
                let nonces = members.iter().map(|m| chain.state().next_nonce(&m.node_id()).saturating_sub(1)).collect();
                let ledger = SimulatedLedger::resume(&chain, members.clone(), config)
                    .ledger(|| "restarting the validators".into())?;
                (ledger, nonces, Target::Continue(Box::new(chain)))
            }
        };
        let mut recorder = Self {
            settings,
            ledger,
            members,
            devices,
            chain_id: genesis.chain_id(),
            nonces,
            target,
            writer: BlobWriter::start(blobs)?,
            entries: BTreeMap::new(),
            total_s: 0.0,
            blob_s: 0.0,
        };
        if from == LedgerStart::Fresh {
            // Every member registers its devices (client k belongs to member k mod V), all in one
            // submission: any validator's block may carry them.
            let registrations: Vec<Transaction> = (0..recorder.devices.len())
                .map(|k| {
                    let member = k % VALIDATORS;
                    let device = recorder.devices[k];
                    let body = TxBody::RegisterDevice { device, member: recorder.members[member].node_id() };
                    recorder.sign(member, body)
                })
                .collect();
            recorder
                .submit(0, registrations)
                .map_err(|e| EngineError::ledger("registering the clients' devices", e))?;
        }
        recorder.total_s += started.elapsed().as_secs_f64();
        Ok(recorder)
    }

    fn sign(&mut self, member: usize, body: TxBody) -> Transaction {
        self.nonces[member] += 1;
        Transaction::sign(&self.members[member], &self.chain_id, self.nonces[member], body)
    }

    /// Stores `params` as a model file blob; returns its hash. Adds the time taken to `blob_s`.
    fn put_model(&mut self, params: &Params, meta: BTreeMap<String, String>) -> Result<Digest> {
        let started = crate::wall_clock();
        let bytes = model_bytes(&self.settings.spec, params, &meta);
        let hash = Digest::of(&bytes);
        // Written by the writer thread, synced once in `finish` before the blocks that name
        // them are written.
        let queued = self.writer.write(hash, bytes);
        self.blob_s += started.elapsed().as_secs_f64();
        queued?;
        Ok(hash)
    }

    /// Round `r`'s coordinator: member `(r − 1) mod V`.
    fn coordinator(round: u32) -> usize {
        (round.max(1) as usize - 1) % VALIDATORS
    }

    /// The transaction of one record, signed by its round's coordinator.
    fn transaction(&mut self, record: LedgerRecord, submitted_ms: u64, batch: &Batch) -> Result<(u32, Transaction)> {
        let round = record.round();
        let body = match record {
            LedgerRecord::OpenRound { round, participants } => TxBody::OpenRound {
                round: u64::from(round),
                task: self.settings.task.clone(),
                participants: participants.iter().map(|&k| self.device(k)).collect::<Result<_>>()?,
                strategy: self.settings.strategy.clone(),
                deadline_ms: deadline_ms(submitted_ms, self.settings.round_timeout_ms),
            },
            LedgerRecord::Update { round, client, hash, examples, norm } => TxBody::CommitUpdate {
                round: u64::from(round),
                node: self.device(client)?,
                update_hash: Digest(hash),
                examples,
                norm_bits: norm.to_bits(),
            },
            LedgerRecord::Aggregate { round, params, contributors } => {
                // The same metadata as the run's final `model.safetensors`, so that file's blake3
                // is the last aggregate's hash.
                let meta = model_meta(round, &self.settings.fingerprint);
                let aggregate_hash = self.put_model(&params, meta)?;
                let metrics = batch
                    .metrics
                    .get(&round)
                    .map(|m| m.iter().filter(|(_, v)| v.is_finite()).map(|(n, v)| Metric::new(n, *v)).collect())
                    .unwrap_or_default();
                self.entries.entry(round).or_default().aggregate_hash = Some(aggregate_hash.to_hex());
                TxBody::CommitAggregate {
                    round: u64::from(round),
                    aggregate_hash,
                    participants: contributors.iter().map(|&k| self.device(k)).collect::<Result<_>>()?,
                    metrics,
                }
            }
            LedgerRecord::PrivacySpend { round, epsilon, delta } => TxBody::PrivacySpend {
                round: u64::from(round),
                epsilon_bits: epsilon.to_bits(),
                delta_bits: delta.to_bits(),
            },
        };
        Ok((round, self.sign(Self::coordinator(round), body)))
    }

    /// Records one batch of records (a round's commitments and the next round's opening) in
    /// one submission.
    pub(super) fn record(&mut self, batch: Batch) -> Result<()> {
        let started = crate::wall_clock();
        let submitted_ms = self.ledger.now_ms().ledger(|| "reading the ledger's clock".into())?;
        // The round whose commitments the batch carries (else the one it opens).
        let Some(main_round) = batch
            .records
            .iter()
            .filter(|r| !matches!(r, LedgerRecord::OpenRound { .. }))
            .chain(&batch.records)
            .map(LedgerRecord::round)
            .next()
        else {
            return Ok(());
        };
        let mut rounds = Vec::with_capacity(batch.records.len());
        let mut txs = Vec::with_capacity(batch.records.len());
        for record in batch.records.clone() {
            let (round, tx) = self.transaction(record, submitted_ms, &batch)?;
            rounds.push(round);
            txs.push(tx);
        }
        let submitter = Self::coordinator(main_round);
        let heights =
            self.submit(submitter, txs).map_err(|e| EngineError::ledger(format!("recording round {main_round}"), e))?;
        let finality_ms =
            self.ledger.now_ms().ledger(|| "reading the ledger's clock".into())?.saturating_sub(submitted_ms);
        for (round, height) in rounds.into_iter().zip(heights) {
            let entry = self.entries.entry(round).or_default();
            entry.block = entry.block.max(height);
            entry.first_block = if entry.txs == 0 { height } else { entry.first_block.min(height) };
            entry.txs += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let entry = self.entries.entry(main_round).or_default();
        entry.finality_ms = finality_ms;
        entry.ledger_s += elapsed;
        self.total_s += elapsed;
        Ok(())
    }

    /// Has validator `v` finalize `txs`; returns the height of each one's block. A transaction
    /// the ledger rejects is an error: the recorder only writes what the rules allow.
    fn submit(&mut self, v: usize, txs: Vec<Transaction>) -> Result<Vec<u64>> {
        let committed = self.ledger.submit(v, txs).ledger(|| "submitting".into())?;
        committed
            .iter()
            .map(|c| {
                c.height().ok_or_else(|| {
                    EngineError::ledger(
                        "submitting",
                        format!("the ledger refused transaction {}: {:?}", c.tx_hash, c.outcome),
                    )
                })
            })
            .collect()
    }

    fn device(&self, k: ClientId) -> Result<NodeId> {
        match self.devices.get(k.0 as usize) {
            Some(id) => Ok(*id),
            None => Err(EngineError::ledger("recording", format!("client {k} has no device id (a bug)"))),
        }
    }

    /// Stops the validators, syncs the blobs, and writes the longest finalized chain among the
    /// running validators (the one sure to hold every committed round) to the folder's
    /// `ledger.redb` as its validator stored it (the validators checked every block). Returns
    /// where each round landed and the totals.
    pub(super) fn finish(mut self) -> Result<super::Recorded> {
        let started = crate::wall_clock();
        let finished = self.ledger.finish().ledger(|| "stopping the ledger".into())?;
        if !finished.agree {
            let statuses = format!("{:?}", finished.statuses);
            return Err(EngineError::ledger("the simulated validators' chains disagree (a fork)", statuses));
        }
        let source = finished.chain;
        let sync_started = crate::wall_clock();
        self.writer.finish()?.sync().ledger(|| "syncing the blobs".into())?;
        self.blob_s += sync_started.elapsed().as_secs_f64();
        let writing = || format!("writing validator {}'s blocks", finished.validator);
        let head = match self.target {
            Target::Empty(store) => source.copy_into(store).ledger(writing)?.head(),
            Target::Continue(mut chain) => chain.extend_from(&source).ledger(writing)?,
        };
        self.total_s += started.elapsed().as_secs_f64();
        let totals = LedgerTotals {
            height: head.height,
            seconds: self.total_s,
            blob_seconds: self.blob_s,
            blocking_seconds: 0.0,
        };
        Ok((self.entries, totals))
    }
}
