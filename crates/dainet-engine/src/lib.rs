//! Run a federation: [`config`] (the settings, split by who owns them) → [`plan`](mod@plan) (data, model,
//! partition, strategy, the round protocol's settings, every check) → [`run`] (the rounds,
//! driven by the simulator over the sans-IO coordinator and trainers) → [`record`] (the
//! coordinator's ledger records finalized by simulated validators, and each trainer's own
//! store) → [`checkpoint`] and [`simulation`] (the run folder: report, model, checkpoints,
//! status).
//!
//! The protocol's decisions are `dainet-protocol`'s; this crate wires them to data, a ledger
//! and files. It prints nothing: drivers (the `dainet` binary, benchmarks, tests) watch a run
//! through [`run::RunObserver`] and [`simulation::SimulationProgress`].

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod plan;
pub mod record;
pub mod run;
pub mod simulation;

pub use config::Settings;
pub use error::EngineError;
pub use plan::{plan, Plan};
pub use run::{execute, execute_observed, RoundRecord, RunObserver, Start};
pub use simulation::{Simulation, SimulationProgress};

/// Versions of dainet and the crates whose arithmetic shapes results.
pub fn versions() -> serde_json::Value {
    serde_json::json!({
        "dainet": env!("CARGO_PKG_VERSION"),
        "matrixmultiply": "0.3.11",
        "rayon": "1.12.0",
        "safetensors": "0.8.0",
    })
}

/// The peak resident set size of this process, from getrusage.
pub fn peak_rss_bytes() -> Option<u64> {
    // SAFETY: getrusage only writes the struct we pass, which is zero-initialised and owned.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0).then_some(usage)
    }?;
    // Linux reports kilobytes.
    u64::try_from(usage.ru_maxrss).ok().map(|kb| kb * 1024)
}

/// The wall clock, read only to report how long things took (a round's `wall_s`, the ledger's
/// seconds): nothing the engine decides depends on it.
#[allow(clippy::disallowed_methods)]
pub(crate) fn wall_clock() -> std::time::Instant {
    std::time::Instant::now()
}
