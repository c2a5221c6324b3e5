//! `dainet bench …`: benchmarks that print one JSON line on stdout.

mod aggregation;
mod fedtask;
mod ledger;
mod ledger_share;
mod robustness;
mod secagg;

use anyhow::Result;
use std::time::Instant;

/// The benchmarks.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// The fedtask-v1 FedAvg benchmark (MNIST, 100 clients, C = 0.1, E = 1, B = 10, lr 0.05).
    Fedtask(fedtask::FedtaskArgs),
    /// Every strategy against every attack at 20% Byzantine clients, IID and Dirichlet(0.5).
    Robustness(robustness::RobustnessArgs),
    /// Aggregation throughput: FedAvg as GB/s next to a memory copy, median and trimmed mean.
    Aggregation(aggregation::AggregationArgs),
    /// What SecAgg+ costs: a training round with and without it, and per-client cost as n grows.
    Secagg(secagg::SecaggArgs),
    /// Ledger throughput and finality latency: validator processes on loopback under load.
    Ledger(ledger::LedgerArgs),
    /// The ledger's share of a simulation's time: the same run with and without it.
    LedgerShare(Box<ledger_share::LedgerShareArgs>),
}

/// Runs a benchmark.
pub fn bench(command: BenchCommand, process_start: Instant) -> Result<()> {
    match command {
        BenchCommand::Fedtask(args) => fedtask::fedtask(args, process_start),
        BenchCommand::Robustness(args) => robustness::robustness(args),
        BenchCommand::Aggregation(args) => aggregation::aggregation(args),
        BenchCommand::Secagg(args) => secagg::secagg(args),
        BenchCommand::Ledger(args) => ledger::ledger(args),
        BenchCommand::LedgerShare(args) => ledger_share::ledger_share(*args),
    }
}

/// The median of `v` (NaN when empty), the statistic benchmarks report over repeated runs.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The 1, 5 and 15 minute load averages, to say whether the machine was busy.
fn loadavg() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Parsers that bound the benchmarks' numeric flags: clap checks each flag's range before a
/// benchmark runs, and its error names the flag, the range and the value given.
pub(crate) mod bounds {
    use clap::builder::RangedU64ValueParser;

    /// A count (`usize`) in `lo..=hi`.
    pub fn count(lo: u64, hi: u64) -> RangedU64ValueParser<usize> {
        RangedU64ValueParser::<usize>::new().range(lo..=hi)
    }

    /// A count (`u32`) in `lo..=hi`.
    pub fn count32(lo: u64, hi: u64) -> RangedU64ValueParser<u32> {
        RangedU64ValueParser::<u32>::new().range(lo..=hi)
    }

    fn float_in(text: &str, lo: f64, hi: f64, open_hi: bool) -> Result<f64, String> {
        let v: f64 = text.trim().parse().map_err(|e| format!("{e}"))?;
        let inside = lo <= v && if open_hi { v < hi } else { v <= hi };
        if inside {
            Ok(v)
        } else {
            Err(format!("{v} is not in [{lo}, {hi}{}", if open_hi { ")" } else { "]" }))
        }
    }

    /// Seconds in `[0, 3600]`.
    pub fn seconds(text: &str) -> Result<f64, String> {
        float_in(text, 0.0, 3600.0, false)
    }

    /// A fraction in `[0, 1)`.
    pub fn fraction(text: &str) -> Result<f64, String> {
        float_in(text, 0.0, 1.0, true)
    }
}
