//! `dainet bench ledger-share`: what recording a simulation in the ledger costs, measured the
//! only way that counts every cost (the recording thread's CPU taken from training included):
//! the same run with and without the ledger, in one process, alternating, `--repeat` times each.
//!
//! The run is `dainet simulate`'s, from the same flags and `--config` file (nothing is written
//! but the ledger folders, under a temporary directory). The JSON line gives each variant's
//! wall times, their medians, and `share` = (median with − median without) / median with: the
//! ledger's share of the run's time.

use super::{loadavg, median};
use crate::config::{resolve, ConfigPatch};
use anyhow::{Context, Result};
use dainet_engine::record::{execute_recorded, LedgerStart};
use dainet_engine::{execute, plan, RoundRecord, Start};
use dainet_protocol::RoundOutcome;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `dainet bench ledger-share`.
#[derive(Debug, clap::Args)]
pub struct LedgerShareArgs {
    /// Runs of each variant (the medians are compared).
    #[arg(long, value_parser = super::bounds::count32(1, 100), default_value_t = 3)]
    pub repeat: u32,
    /// TOML file of `simulate` settings; the flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: ConfigPatch,
}

/// Runs the comparison and prints its JSON line on stdout.
pub fn ledger_share(args: LedgerShareArgs) -> Result<()> {
    let loadavg_at_start = loadavg();
    let settings = resolve(args.config.as_deref(), args.flags)?;
    anyhow::ensure!(args.repeat > 0, "--repeat must be at least 1");
    let plan = plan(settings)?;
    let c = &plan.settings.task;
    let scratch = tempfile::tempdir().context("cannot create a temporary directory for the ledgers")?;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let (mut blocks, mut recording_s, mut blocking_s, mut blob_s) = (0, Vec::new(), Vec::new(), Vec::new());
    let mut final_accuracy = (0.0, 0.0);
    for i in 0..args.repeat {
        let started = Instant::now();
        let mut accuracy = 0.0;
        execute(&plan, Start::fresh(plan.model.init(c.seed)), |record, _| {
            accuracy = record.accuracy;
            Ok(())
        })?;
        without.push(started.elapsed().as_secs_f64());
        final_accuracy.0 = accuracy;

        let started = Instant::now();
        let dir = scratch.path().join(format!("ledger-{i}"));
        let on_round = |record: &RoundRecord, _: &RoundOutcome| {
            accuracy = record.accuracy;
            Ok(())
        };
        let run = execute_recorded(
            &plan,
            Start::fresh(plan.model.init(c.seed)),
            Some((&dir, LedgerStart::Fresh)),
            None,
            on_round,
        )?;
        let (_, totals) = run.ledger.context("the run recorded a ledger")?;
        with.push(started.elapsed().as_secs_f64());
        final_accuracy.1 = accuracy;
        blocks = totals.height;
        recording_s.push(totals.seconds);
        blocking_s.push(totals.blocking_seconds);
        blob_s.push(totals.blob_seconds);
        eprintln!(
            "run {}/{}: without the ledger {:.3} s, with it {:.3} s ({} blocks)",
            i + 1,
            args.repeat,
            without[i as usize],
            with[i as usize],
            blocks
        );
    }
    // The ledger never changes training: both variants must end at the same accuracy.
    anyhow::ensure!(
        final_accuracy.0 == final_accuracy.1,
        "the runs with and without the ledger ended at different accuracies ({} vs {}): a bug",
        final_accuracy.0,
        final_accuracy.1
    );
    let (median_with, median_without) = (median(with.clone()), median(without.clone()));
    let line = serde_json::json!({
        "bench": "ledger-share",
        "model": plan.model.spec().to_string(),
        "rounds": c.rounds,
        "epochs": c.epochs,
        "clients_per_round": c.clients_per_round(plan.partition.num_clients()),
        "repeat": args.repeat,
        "threads": rayon::current_num_threads(),
        "with_s": with,
        "without_s": without,
        "median_with_s": median_with,
        "median_without_s": median_without,
        "share": (median_with - median_without) / median_with,
        "blocks": blocks,
        "median_recording_s": median(recording_s),
        "median_blocking_s": median(blocking_s),
        "median_blob_s": median(blob_s),
        "final_accuracy": final_accuracy.0,
        "loadavg_at_start": loadavg_at_start,
        "loadavg_at_end": loadavg(),
    });
    println!("{line}");
    Ok(())
}
