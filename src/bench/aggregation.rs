//! `dainet bench aggregation`: how fast updates are combined.
//!
//! FedAvg folds `updates` vectors of `params` f32 values into its f64 accumulator, one at a
//! time, as the coordinator does. Its throughput (bytes of updates read per second) is shown
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
    let mut checksum = 0.0;
    let fedavg_s = best_of(args.repeat, || {
        let mut mean = FedAvg::new(d);
        for u in &refs {
            mean.add(u, 80.0).expect("finite updates of the right length");
        }
        checksum = mean.finish().expect("not empty")[0];
    });
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
