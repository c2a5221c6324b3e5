//! Recording a simulation's rounds in the ledger: every accepted update, every aggregate, the
//! metrics and the privacy spent, finalized by simulated validators and written to the run's
//! `ledger/` folder with the blobs the commitments name.
//!
//! What is recorded, per round `r` with coordinator member `(r − 1) mod V` (the validators take
//! turns, so every one of them signs and proposes):
//! - `OpenRound` naming the sampled clients (each a device of member `k mod V`, registered once
//!   at the start);
//! - a `CommitUpdate` per update folded into the aggregate: the blake3 of the update as a model
//!   file (the client's θ_k, stored in `ledger/blobs/`), its example count and the L2 norm of
//!   θ_k − θ_{r−1};
//! - `CommitAggregate` with the blake3 of θ_r as a model file (stored too) and the round's test
//!   accuracy, test loss, training loss and example count;
//! - `PrivacySpend` (ε, δ so far) when differential privacy is on.
//!
//! Keys, genesis and device ids derive from the task seed, so the same run gives the same ledger
//! bytes. They are simulation keys: anyone who knows the seed can sign with them.

use crate::plan::Plan;
use crate::run::LedgerEntry;
use anyhow::{bail, Context, Result};
use dainet_consensus::sim::{SimulatedLedger, SimulatedLedgerConfig};
use dainet_core::Params;
use dainet_ledger::blob::{BlobError, DirBlobs};
use dainet_ledger::chain::Chain;
use dainet_ledger::folder::LedgerDir;
use dainet_ledger::genesis::{Founder, Genesis};
use dainet_ledger::hash::Digest;
use dainet_ledger::identity::{Keypair, NodeId};
use dainet_ledger::store::RedbStore;
use dainet_ledger::tx::{ChainId, Metric, Transaction, TxBody};
use dainet_ml::model_file::model_bytes;
use dainet_ml::ModelSpec;
use dainet_protocol::round::{RoundOutcome, Update};
use dainet_protocol::ClientId;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// How many validators a simulation's ledger runs.
pub const VALIDATORS: usize = 4;

/// What a finished ledger recording amounted to.
#[derive(Clone, Copy, Debug)]
pub struct LedgerTotals {
    /// The last block's height.
    pub height: u64,
    /// Wall seconds spent recording over the whole run: blobs, signing, consensus, the store.
    pub seconds: f64,
    /// Of which encoding, hashing, writing and syncing the blobs.
    pub blob_seconds: f64,
}

/// The updates the coordinator received in the open round, as the simulator's tap saw them.
#[derive(Default)]
pub struct ReceivedUpdates {
    /// By (round, client): the parameters and example count of the first update received, the
    /// one the coordinator judges (a second one from the same client is a duplicate).
    updates: BTreeMap<(u32, ClientId), (Vec<f32>, u64)>,
}

/// Records each round of a simulation through [`VALIDATORS`] simulated validators.
pub struct LedgerRecorder {
    dir: PathBuf,
    spec: ModelSpec,
    /// The run's config fingerprint, in every aggregate's metadata as in `model.safetensors`.
    fingerprint: String,
    ledger: SimulatedLedger,
    members: Vec<Keypair>,
    devices: Vec<NodeId>,
    chain_id: ChainId,
    nonces: Vec<u64>,
    /// The ledger folder's block store, written in `finish`.
    store: RedbStore,
    /// Writes the blobs into the folder's `blobs/` off the training thread.
    writer: BlobWriter,
    received: Rc<RefCell<ReceivedUpdates>>,
    /// θ_{r−1}, shared with the coordinator's outcome (never copied).
    previous: Arc<Params>,
    task: String,
    strategy: String,
    deadline_slack_ms: u64,
    /// Wall seconds spent in the ledger so far (including `blob_s`).
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

impl LedgerRecorder {
    /// A fresh ledger in `dir` (replacing one a previous run left there) for the clients of
    /// `plan`, with `initial` as θ_0. Registers the clients' devices before returning.
    pub fn start(dir: &Path, plan: &Plan, initial: &Params) -> Result<Self> {
        let c = &plan.config;
        let (seed, clients) = (c.seed, plan.partition.num_clients());
        let started = Instant::now();
        if dir.exists() {
            // Replace only what a previous run wrote: a ledger folder, never anything else.
            if LedgerDir::open(dir).is_err() {
                bail!("{}: exists and is not a ledger folder; move it away or pass --no-ledger", dir.display());
            }
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("{}: cannot replace the previous run's ledger", dir.display()))?;
        }
        let (store, blobs) = LedgerDir::create(dir)?.into_parts();
        let members: Vec<Keypair> = (0..VALIDATORS as u64).map(|i| derived_key(seed, "member", i)).collect();
        let devices: Vec<NodeId> = (0..clients as u64).map(|k| derived_key(seed, "device", k).node_id()).collect();
        let chain_id = ChainId::from_name(&format!("dainet-simulate-{seed}"));
        let founders = members
            .iter()
            .enumerate()
            .map(|(i, k)| Founder { id: k.node_id(), name: format!("member-{i}"), validator: true })
            .collect();
        let genesis = Genesis { chain_id, timestamp_ms: 0, founders };
        let config = SimulatedLedgerConfig { seed, ..SimulatedLedgerConfig::default() };
        let ledger = SimulatedLedger::start(genesis, members.clone(), config).context("starting the ledger")?;
        let mut recorder = Self {
            dir: dir.to_path_buf(),
            spec: plan.model.spec().clone(),
            fingerprint: c.fingerprint(),
            ledger,
            members,
            devices,
            chain_id,
            nonces: vec![0; VALIDATORS],
            store,
            writer: BlobWriter::start(blobs)?,
            received: Rc::default(),
            previous: Arc::new(initial.clone()),
            task: format!("{:?} {}", c.dataset, plan.model.spec()).to_lowercase(),
            strategy: c.strategy.clone(),
            deadline_slack_ms: c.round_timeout_ms.unwrap_or(0).saturating_add(60_000),
            total_s: 0.0,
            blob_s: 0.0,
        };
        for v in 0..VALIDATORS {
            let txs: Vec<Transaction> = (v..clients)
                .step_by(VALIDATORS)
                .map(|k| {
                    let body =
                        TxBody::RegisterDevice { device: recorder.devices[k], member: recorder.members[v].node_id() };
                    recorder.sign(v, body)
                })
                .collect();
            recorder.submit(v, txs).context("registering the clients' devices")?;
        }
        recorder.total_s += started.elapsed().as_secs_f64();
        Ok(recorder)
    }

    /// The buffer the simulator's update tap fills (see [`dainet_sim::Simulator::with_update_tap`]).
    pub fn received(&self) -> Rc<RefCell<ReceivedUpdates>> {
        self.received.clone()
    }

    fn sign(&mut self, member: usize, body: TxBody) -> Transaction {
        self.nonces[member] += 1;
        Transaction::sign(&self.members[member], &self.chain_id, self.nonces[member], body)
    }

    /// Stores `params` as a model file blob; returns its hash. Adds the time taken to `blob_s`.
    fn put_model(&mut self, params: &Params, meta: BTreeMap<String, String>) -> Result<Digest> {
        let started = Instant::now();
        let bytes = model_bytes(&self.spec, params, &meta);
        let hash = Digest::of(&bytes);
        // Written by the writer thread, synced once in `finish` before the blocks that name
        // them are written.
        let queued = self.writer.write(hash, bytes);
        self.blob_s += started.elapsed().as_secs_f64();
        queued?;
        Ok(hash)
    }

    /// Records round `outcome` (with `epsilon` spent so far at `delta`, under DP) and returns
    /// where it landed.
    pub fn record(
        &mut self,
        outcome: &RoundOutcome,
        metrics: &[(&str, f64)],
        privacy: Option<(f64, f64)>,
    ) -> Result<LedgerEntry> {
        let started = Instant::now();
        let r = outcome.round;
        let coordinator = (r as usize - 1) % VALIDATORS;
        let mut received = self.received.borrow_mut().take_round(r);
        let mut sampled: Vec<ClientId> = outcome.contributors.iter().chain(&outcome.missing).copied().collect();
        sampled.sort_unstable();
        let participants: Vec<NodeId> = sampled.iter().map(|&k| self.device(k)).collect::<Result<_>>()?;
        let deadline_ms = self.ledger.now_ms()?.saturating_add(self.deadline_slack_ms);
        let mut txs = vec![self.sign(
            coordinator,
            TxBody::OpenRound {
                round: u64::from(r),
                task: self.task.clone(),
                participants,
                strategy: self.strategy.clone(),
                deadline_ms,
            },
        )];
        let mut committed = Vec::new();
        for &k in &outcome.contributors {
            let Some((values, examples)) = received.remove(&k) else {
                bail!("round {r}: client {k} contributed an update the ledger recorder never saw (a bug)");
            };
            let norm = values.iter().zip(self.previous.values()).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>();
            let params = Params::new(self.previous.layout().clone(), values)?;
            let meta = BTreeMap::from([
                ("dainet.round".to_string(), r.to_string()),
                ("dainet.client".to_string(), k.0.to_string()),
            ]);
            let update_hash = self.put_model(&params, meta)?;
            let node = self.device(k)?;
            committed.push(node);
            txs.push(self.sign(
                coordinator,
                TxBody::CommitUpdate {
                    round: u64::from(r),
                    node,
                    update_hash,
                    examples,
                    norm_bits: norm.sqrt().to_bits(),
                },
            ));
        }
        let mut aggregate_hash = None;
        if outcome.aggregated && !committed.is_empty() {
            // The same metadata as the run's final `model.safetensors`, so that file's blake3 is
            // the last aggregate's hash.
            let meta = BTreeMap::from([
                ("dainet.round".to_string(), r.to_string()),
                ("dainet.config_fingerprint".to_string(), self.fingerprint.clone()),
            ]);
            let hash = self.put_model(&outcome.params, meta)?;
            aggregate_hash = Some(hash);
            let metrics = metrics.iter().filter(|(_, v)| v.is_finite()).map(|(n, v)| Metric::new(*n, *v)).collect();
            txs.push(self.sign(
                coordinator,
                TxBody::CommitAggregate { round: u64::from(r), aggregate_hash: hash, participants: committed, metrics },
            ));
        }
        if let Some((epsilon, delta)) = privacy {
            txs.push(self.sign(
                coordinator,
                TxBody::PrivacySpend {
                    round: u64::from(r),
                    epsilon_bits: epsilon.to_bits(),
                    delta_bits: delta.to_bits(),
                },
            ));
        }
        let count = txs.len();
        let heights = self.submit(coordinator, txs).with_context(|| format!("recording round {r}"))?;
        self.previous = Arc::clone(&outcome.params);
        let elapsed = started.elapsed().as_secs_f64();
        self.total_s += elapsed;
        Ok(LedgerEntry {
            block: heights.iter().copied().max().unwrap_or(0),
            first_block: heights.iter().copied().min().unwrap_or(0),
            txs: count,
            aggregate_hash: aggregate_hash.map(|h| h.to_hex()),
            ledger_s: elapsed,
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

    /// Stops the validators, syncs the blobs, and writes the first running validator's finalized
    /// chain to `ledger/ledger.redb` (re-checking every block as it is appended).
    pub fn finish(mut self) -> Result<LedgerTotals> {
        let started = Instant::now();
        let finished = self.ledger.finish().context("stopping the ledger")?;
        if !finished.agree {
            bail!("the simulated validators' chains disagree (a fork): {:?}", finished.statuses);
        }
        let source = finished.chain;
        let sync_started = Instant::now();
        self.writer.finish()?.sync()?;
        self.blob_s += sync_started.elapsed().as_secs_f64();
        let mut chain = Chain::create(self.store, source.genesis().clone())?;
        let blocks = (1..=source.head().height)
            .map(|height| {
                source.block(height)?.with_context(|| format!("validator {}: no block {height}", finished.validator))
            })
            .collect::<Result<Vec<_>>>()?;
        chain.append_all(blocks).with_context(|| format!("{}: writing the blocks", self.dir.display()))?;
        self.total_s += started.elapsed().as_secs_f64();
        Ok(LedgerTotals { height: chain.head().height, seconds: self.total_s, blob_seconds: self.blob_s })
    }
}

/// A thread that writes blobs in the order given, so writing (slow page-cache copies on some
/// machines) overlaps the next round's training instead of adding to it. The queue holds at most
/// [`BlobWriter::QUEUE`] blobs, so memory stays bounded when the disk is slower than training.
struct BlobWriter {
    queue: Option<std::sync::mpsc::SyncSender<(Digest, Vec<u8>)>>,
    thread: Option<std::thread::JoinHandle<Result<DirBlobs, BlobError>>>,
}

impl BlobWriter {
    /// Blobs waiting at most: about two rounds of updates.
    const QUEUE: usize = 24;

    fn start(mut blobs: DirBlobs) -> Result<Self> {
        let (queue, incoming) = std::sync::mpsc::sync_channel::<(Digest, Vec<u8>)>(Self::QUEUE);
        let thread = std::thread::Builder::new()
            .name("dainet-blob-writer".into())
            .spawn(move || {
                for (hash, bytes) in incoming {
                    blobs.put_unsynced_hashed(&hash, &bytes)?;
                }
                Ok(blobs)
            })
            .context("cannot start the blob writer thread")?;
        Ok(Self { queue: Some(queue), thread: Some(thread) })
    }

    /// Queues `bytes`, whose blake3 is `hash`; fails if the writer stopped on an error (which
    /// `finish` returns).
    fn write(&mut self, hash: Digest, bytes: Vec<u8>) -> Result<()> {
        let sent = self.queue.as_ref().map(|q| q.send((hash, bytes)).is_ok()).unwrap_or(false);
        if !sent {
            // The writer stopped early: report why.
            self.finish()?;
            bail!("the blob writer stopped");
        }
        Ok(())
    }

    /// Waits for every queued blob to be written; returns the store, or the first write error.
    fn finish(&mut self) -> Result<DirBlobs> {
        drop(self.queue.take());
        let thread = self.thread.take().context("the blob writer already finished")?;
        let blobs = thread.join().map_err(|_| anyhow::anyhow!("the blob writer panicked"))??;
        Ok(blobs)
    }
}

impl ReceivedUpdates {
    /// Keeps `update` of `client` for `round`, unless one from that client for that round came
    /// first.
    pub fn keep(&mut self, round: u32, client: ClientId, update: &Update) {
        self.updates.entry((round, client)).or_insert_with(|| (update.params.clone(), update.num_examples));
    }

    /// The updates received for `round`, by client; forgets those of `round` and earlier.
    fn take_round(&mut self, round: u32) -> BTreeMap<ClientId, (Vec<f32>, u64)> {
        let later = self.updates.split_off(&(round + 1, ClientId(0)));
        let upto = std::mem::replace(&mut self.updates, later);
        upto.into_iter().filter(|((r, _), _)| *r == round).map(|((_, k), v)| (k, v)).collect()
    }
}
