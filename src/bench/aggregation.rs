//! `dainet bench aggregation`: how fast updates are combined.
//!
//! Three steps are timed on the same `updates` vectors of `params` f32 values, each best of
//! `repeat`:
//! - **aggregation** (`fedavg_*`): FedAvg folds updates already checked on arrival into its
//!   f64 accumulator (batches of 8, one pass over the accumulator each) and writes the mean;
//!   shown next to a memory copy of the same bytes with the same threads (`memcpy_gb_s`, the
//!   ceiling for a pass that must read every update once) and on one thread;
//! - **validation** (`validate_*`): the NaN/Inf and length check that refuses bad updates
//!   before aggregation;
//! - **the coordinator's path** (`coordinator_path_*`): owned updates validated and pushed one
//!   by one, folded in batches, then dropped.
//!
//! Median and trimmed mean (β = 0.2) run on the same input, in parallel over coordinates.
//! Inputs come from a seeded stream, so every run aggregates the same numbers.

use anyhow::Result;
use dainet_agg::{robust, Checked, FedAvg};
use dainet_core::SplitMix64;
use std::time::Instant;

/// Arguments of `dainet bench aggregation`.
#[derive(Debug, clap::Args)]
pub struct AggregationArgs {
    /// Updates per round.
    #[arg(long, value_parser = super::bounds::count(1, 100_000), default_value_t = 100)]
    pub updates: usize,
    /// Parameters per update.
    #[arg(long, value_parser = super::bounds::count(1, 1 << 28), default_value_t = 10_000_000)]
    pub params: usize,
    /// Repetitions; the best time of each is reported.
    #[arg(long, value_parser = super::bounds::count(1, 1_000), default_value_t = 3)]
    pub repeat: usize,
}

fn best_of(repeat: usize, mut f: impl FnMut()) -> f64 {
    (0..repeat.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Runs the benchmark and prints its JSON line.
pub fn aggregation(args: AggregationArgs) -> Result<()> {
    let (n, d) = (args.updates, args.params);
    let mut g = SplitMix64::new(7);
    let updates: Vec<Vec<f32>> = (0..n).map(|_| (0..d).map(|_| g.next_f64() as f32 - 0.5).collect()).collect();
    let refs: Vec<&[f32]> = updates.iter().map(Vec::as_slice).collect();
    let bytes = (n * d * 4) as f64;

    // The ceiling: copy every update once into one destination buffer, with as many threads
    // as FedAvg uses (blocks of coordinates in parallel), and on one thread for reference.
    let mut dst = vec![0.0f32; d];
    let copy_1t_s = best_of(args.repeat, || {
        for u in &refs {
            dst.copy_from_slice(u);
            std::hint::black_box(&mut dst);
        }
    });
    let copy_s = best_of(args.repeat, || {
        use rayon::prelude::*;
        for u in &refs {
            dst.par_chunks_mut(1 << 16).zip(u.par_chunks(1 << 16)).for_each(|(a, b)| a.copy_from_slice(b));
            std::hint::black_box(&mut dst);
        }
    });
    // Validation: the NaN/Inf and length check every update passes on arrival, before
    // aggregation.
    let validate_s = best_of(args.repeat, || {
        for u in &refs {
            std::hint::black_box(Checked::new(u, d).expect("finite updates of the right length"));
        }
    });
    let checked: Vec<(Checked<'_>, f64)> =
        refs.iter().map(|u| (Checked::new(u, d).expect("finite updates of the right length"), 80.0)).collect();
    // Aggregation: FedAvg folds the checked updates (in batches, one pass over its f64
    // accumulator per batch) and writes the mean. Accumulator and output are reused between
    // repetitions, as the coordinator reuses them between rounds.
    let mut checksum = 0.0;
    let mut fedavg_s = f64::INFINITY;
    let (mut buffer, mut mean) = (Vec::new(), Vec::new());
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        let mut avg = FedAvg::new_in(std::mem::take(&mut buffer), d);
        avg.add_checked(&checked).expect("checked updates of the right length");
        buffer = avg.finish_into(&mut mean).expect("not empty");
        fedavg_s = fedavg_s.min(t.elapsed().as_secs_f64());
        checksum = mean[0];
    }
    // The coordinator's path end to end: each owned update validated on arrival and pushed
    // (folded in batches of 8, then dropped).
    let mut pushed_s = f64::INFINITY;
    for _ in 0..args.repeat.max(1) {
        let mut owned: Vec<Vec<f32>> = updates.clone();
        let t = Instant::now();
        let mut avg = FedAvg::new_in(std::mem::take(&mut buffer), d);
        for u in owned.drain(..) {
            avg.push(u, 80.0).expect("finite updates of the right length");
        }
        buffer = avg.finish_into(&mut mean).expect("not empty");
        pushed_s = pushed_s.min(t.elapsed().as_secs_f64());
    }
    let median_s = best_of(args.repeat, || {
        std::hint::black_box(robust::median(&refs).expect("valid input"));
    });
    let trimmed_s = best_of(args.repeat, || {
        std::hint::black_box(robust::trimmed_mean(&refs, 0.2).expect("valid input"));
    });
    let line = serde_json::json!({
        "benchmark": "aggregation",
        "updates": n,
        "params": d,
        "update_bytes_total": bytes,
        "memcpy_gb_s": bytes / copy_s / 1e9,
        "memcpy_one_thread_gb_s": bytes / copy_1t_s / 1e9,
        "fedavg_s": fedavg_s,
        "fedavg_gb_s": bytes / fedavg_s / 1e9,
        "fedavg_share_of_memcpy": copy_s / fedavg_s,
        "validate_s": validate_s,
        "validate_gb_s": bytes / validate_s / 1e9,
        "coordinator_path_s": pushed_s,
        "coordinator_path_gb_s": bytes / pushed_s / 1e9,
        "median_s": median_s,
        "trimmed_mean_s": trimmed_s,
        "threads": rayon::current_num_threads(),
        "repeat": args.repeat,
        "checksum": checksum,
        "loadavg": super::loadavg(),
    });
    println!("{line}");
    Ok(())
}
