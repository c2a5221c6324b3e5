//! Load and measurement inside a node, for the ledger benchmark.
//!
//! With `--load RATE`, the node's own member signs [`load_body`] — a `DataUse` record, which any
//! member may sign, as often as it likes (a `Reward` needs the genesis's treasury) — with
//! consecutive nonces and submits them to its own mempool at `RATE` per second. The body is the
//! same for every nonce, so re-signing a nonce after a restart signs the same transaction again,
//! never a second, conflicting one (which would be evidence of a double sign against the node).
//!
//! For every own transaction the generator records when it was handed to the mempool (after
//! signing) and when the node learned that it is in a finalized block *that this node has
//! persisted* (the mempool's completion, sent after `Chain::append` commits to redb). The
//! difference is the transaction's finality latency.
//!
//! The measured window opens when the node's finalized height has grown by twice the number of
//! validators since it started — every validator is connected and has led views, so the
//! connection phase, when views time out and a backlog builds, is not measured — and closes when
//! submission stops, `drain` before the node's end.
//! Throughput is the number of own transactions finalized *inside* the window divided by its
//! length; those that finalize during the drain count toward `committed` and the latencies, not
//! toward the rate. Submission is paced by the clock (`floor(rate × elapsed)` are due), so a node
//! that falls behind does not reduce its offered load; if more than `max_in_flight` are waiting,
//! due transactions are skipped and counted instead of queued.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use commonware_macros::select;
use commonware_runtime::Clock;
use commonware_utils::channel::oneshot;
use commonware_utils::futures::Pool;
use dainet_consensus::application::{Mailbox, StatusHandle};
use dainet_consensus::mempool::{RejectReason, TxOutcome};
use dainet_ledger::identity::Keypair;
use dainet_ledger::state::TxRejection;
use dainet_ledger::store::BlockStore;
use dainet_ledger::tx::{ChainId, Transaction, TxBody};
use serde::Serialize;
use tracing::{info, warn};

use crate::config::LoadConfig;

/// How often the generator submits what is due.
const TICK: Duration = Duration::from_millis(5);
/// How often it checks whether the chain has started to grow.
const PROGRESS_POLL: Duration = Duration::from_millis(20);
/// Rejection reasons logged in full; later ones are only counted.
const LOGGED_REJECTIONS: u64 = 5;

/// Finality latencies, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// The statistics of `micros` (sorted in place); all zero when empty.
    pub fn of_micros(micros: &mut [u64]) -> Latency {
        if micros.is_empty() {
            return Latency::default();
        }
        micros.sort_unstable();
        let ms = |us: u64| us as f64 / 1_000.0;
        let sum: u64 = micros.iter().sum();
        Latency {
            p50: ms(percentile(micros, 50.0)),
            p99: ms(percentile(micros, 99.0)),
            max: ms(micros[micros.len() - 1]),
            mean: ms(sum) / micros.len() as f64,
        }
    }
}

/// The nearest-rank percentile `p` of the sorted, non-empty `sorted`.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What the load generator measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// The transaction body submitted.
    pub body: &'static str,
    /// The offered rate, transactions per second.
    pub rate_tx_per_s: u32,
    /// Seconds from the window's opening (first progress) to the end of submission.
    pub window_s: f64,
    /// Seconds from the node's start until the window opened (connecting, first blocks).
    /// Zero if it never opened.
    pub warmup_s: f64,
    /// Transactions submitted.
    pub submitted: u64,
    /// Of those, finalized by the end (window and drain).
    pub committed: u64,
    /// Of those, finalized inside the window.
    pub committed_in_window: u64,
    /// `committed_in_window / window_s`.
    pub tx_per_s: f64,
    /// Submitted transactions the node dropped (with a logged reason).
    pub rejected: u64,
    /// Submitted transactions still waiting when the node stopped.
    pub pending: u64,
    /// Due transactions not submitted because `max_in_flight` were waiting.
    pub skipped: u64,
    /// Finality latency of the committed transactions.
    pub latency_ms: Latency,
    /// Finality latencies as `[ms, count]` pairs, each latency rounded up to a whole millisecond:
    /// what a benchmark merges across nodes.
    pub latency_histogram_ms: Vec<(u64, u64)>,
}

/// The body the generator signs: a data-use record of the benchmark, the same for every nonce.
pub fn load_body() -> TxBody {
    TxBody::DataUse { dataset_id: "bench".into(), purpose: "load".into(), consent_ref: String::new() }
}

/// Sign and submit `config.rate_per_s` own transactions per second to `mailbox` and measure them
/// (see the module docs), until `finish` fires. Submission starts once the finalized height
/// reaches `open_at_height` and stops at `submit_until` (if set) or at `finish`.
#[allow(clippy::too_many_arguments)]
pub async fn generate<E: Clock, B: BlockStore + Send + 'static>(
    context: E,
    mailbox: Mailbox<B>,
    status: StatusHandle,
    key: Keypair,
    chain_id: ChainId,
    first_nonce: u64,
    config: LoadConfig,
    open_at_height: u64,
    submit_until: Option<Instant>,
    mut finish: oneshot::Receiver<()>,
) -> LoadReport {
    // The node owns the runtime, so reading the real clock is what measuring means here.
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now;
    let started = now();
    let mut report = LoadReport { body: load_body().kind(), rate_tx_per_s: config.rate_per_s, ..LoadReport::default() };

    // Wait until the validators are connected and finalizing.
    loop {
        if status.height() >= open_at_height {
            break;
        }
        select! {
            _ = &mut finish => return report,
            _ = context.sleep(PROGRESS_POLL) => {},
        }
    }
    let window_start = now();
    report.warmup_s = (window_start - started).as_secs_f64();
    info!(target: "dainet_node", warmup_s = report.warmup_s, rate = config.rate_per_s, "load started");

    let mut nonce = first_nonce;
    let mut pool: Pool<'static, (Instant, Result<TxOutcome, oneshot::error::RecvError>)> = Pool::default();
    let mut latencies_us: Vec<u64> = Vec::new();
    let mut window_end: Option<Instant> = None;
    let mut next_tick = context.current() + TICK;
    let rate = f64::from(config.rate_per_s);
    loop {
        select! {
            _ = &mut finish => break,
            done = pool.next_completed() => {
                let finished_at = now();
                let (submitted_at, outcome) = done;
                match outcome {
                    Ok(TxOutcome::Committed(inclusion)) => {
                        if report.committed == 0 {
                            info!(target: "dainet_node", height = inclusion.height, "load: first transaction finalized");
                        }
                        report.committed += 1;
                        if window_end.is_none_or(|end| finished_at <= end) {
                            report.committed_in_window += 1;
                        }
                        let us = u64::try_from((finished_at - submitted_at).as_micros()).unwrap_or(u64::MAX);
                        latencies_us.push(us);
                    }
                    Ok(TxOutcome::Rejected(reason)) => {
                        report.rejected += 1;
                        // A stale nonce means the chain moved past what the node had persisted
                        // when it started (its own block finalized by the others while it was
                        // down): continue from the nonce the ledger expects.
                        if let RejectReason::Ledger(TxRejection::BadNonce { expected, found, .. }) = &reason {
                            if found < expected {
                                nonce = nonce.max(*expected);
                            }
                        }
                        if report.rejected <= LOGGED_REJECTIONS {
                            warn!(target: "dainet_node", %reason, "own transaction rejected");
                        }
                    }
                    Err(_) => report.rejected += 1,
                }
            },
            _ = context.sleep_until(next_tick) => {
                next_tick = context.current() + TICK;
                let tick_at = now();
                if window_end.is_none() && submit_until.is_some_and(|until| tick_at >= until) {
                    window_end = Some(tick_at);
                }
                let offered = (rate * (tick_at - window_start).as_secs_f64()).floor() as u64;
                let due = if window_end.is_some() { 0 } else { offered.saturating_sub(report.submitted + report.skipped) };
                let room = config.max_in_flight.saturating_sub(pool.len()) as u64;
                let send = due.min(room);
                report.skipped += due - send;
                for _ in 0..send {
                    let tx = Transaction::sign(&key, &chain_id, nonce, load_body());
                    nonce += 1;
                    let submitted_at = now();
                    let receiver = mailbox.submit(tx);
                    pool.push(async move { (submitted_at, receiver.await) });
                    report.submitted += 1;
                }
            },
        }
    }
    let window_end = window_end.unwrap_or_else(now);
    report.window_s = window_end.saturating_duration_since(window_start).as_secs_f64();
    report.pending = pool.len() as u64;
    if report.window_s > 0.0 {
        report.tx_per_s = report.committed_in_window as f64 / report.window_s;
    }
    let mut histogram: BTreeMap<u64, u64> = BTreeMap::new();
    for &us in &latencies_us {
        *histogram.entry(us.div_ceil(1_000)).or_insert(0) += 1;
    }
    report.latency_histogram_ms = histogram.into_iter().collect();
    report.latency_ms = Latency::of_micros(&mut latencies_us);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50);
        assert_eq!(percentile(&sorted, 99.0), 99);
        assert_eq!(percentile(&sorted, 100.0), 100);
        assert_eq!(percentile(&[7], 50.0), 7);
        let mut us = vec![3_000, 1_000, 2_000];
        let l = Latency::of_micros(&mut us);
        assert_eq!((l.p50, l.p99, l.max, l.mean), (2.0, 3.0, 3.0, 2.0));
        assert_eq!(Latency::of_micros(&mut []), Latency::default());
    }
}
