//! `dainet bench aggregation`: how fast updates are combined.
//!
//! FedAvg takes `updates` vectors of `params` f32 values as the coordinator does (owned,
//! validated on arrival, folded into its f64 accumulator in batches). Its throughput (bytes of updates read per second) is shown
//! next to a plain memory copy of the same bytes measured in the same run with the same
//! threads, the ceiling for a pass that must read every update once (and a one-thread copy
//! for reference). Median and trimmed mean (β = 0.2) run on the same
//! input, in parallel over coordinates. Inputs are built from a seeded stream, so every run
//! aggregates the same numbers.

use anyhow::Result;
use dainet_agg::{robust, FedAvg};
use dainet_core::SplitMix64;
use std::time::Instant;

/// Arguments of `dainet bench aggregation`.
#[derive(Debug, clap::Args)]
pub struct AggregationArgs {
    /// Updates per round.
    #[arg(long, default_value_t = 100)]
    pub updates: usize,
    /// Parameters per update.
    #[arg(long, default_value_t = 10_000_000)]
    pub params: usize,
    /// Repetitions; the best time of each is reported.
    #[arg(long, default_value_t = 3)]
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
    // Validation alone: the NaN/Inf and length check every update passes on arrival.
    let validate_s = best_of(args.repeat, || {
        for u in &refs {
            dainet_agg::check_update(u, d).expect("finite updates of the right length");
        }
    });
    // FedAvg takes the updates as the coordinator does: owned, validated on arrival, folded
    // in batches. Each repetition gets the same updates back.
    // The accumulator is reused between repetitions, as the coordinator reuses it between
    // rounds; the best repetition is a steady-state round.
    let mut checksum = 0.0;
    let mut owned: Vec<Vec<f32>> = updates.clone();
    let mut fedavg_s = f64::INFINITY;
    let mut buffer = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let t = Instant::now();
        let mut mean = FedAvg::new_in(std::mem::take(&mut buffer), d);
        for u in owned.drain(..) {
            mean.push(u, 80.0).expect("finite updates of the right length");
        }
        let (result, spare) = mean.finish_keeping_buffer().expect("not empty");
        fedavg_s = fedavg_s.min(t.elapsed().as_secs_f64());
        buffer = spare;
        checksum = result[0];
        owned = updates.clone();
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
        "validate_gb_s": bytes / validate_s / 1e9,
        "fold_only_gb_s_derived": bytes / (fedavg_s - validate_s).max(1e-9) / 1e9,
        "fold_only_share_of_memcpy_derived": copy_s / (fedavg_s - validate_s).max(1e-9),
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
