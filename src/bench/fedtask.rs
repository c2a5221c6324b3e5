//! `dainet bench fedtask` runs `shared/bench/fedtask-v1.md` exactly: the same code path as
//! `simulate` (same coordinator, simulator, kernels), with the spec's settings and nothing
//! written to disk, and prints the spec's report fields that a process can measure itself.

use super::loadavg;
use anyhow::Result;
use dainet_engine::config::{ModelKind, PartitionKind, Settings, SimulationConfig, TaskConfig};
use dainet_engine::run::rounds_to;
use dainet_engine::{execute, plan, Start};
use std::time::Instant;

/// fedtask-v1's two models.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FedtaskModel {
    /// MLP 784-200-200-10 (199,210 parameters).
    #[value(name = "2nn")]
    TwoNn,
    /// Logistic regression 784-10 (7,850 parameters).
    Lr,
}

/// fedtask-v1's two partitions.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FedtaskPartition {
    /// IID, 80 examples per client.
    Iid,
    /// Pathological non-IID: 200 shards of 40, 2 per client.
    Noniid,
}

/// Arguments of `dainet bench fedtask`.
#[derive(Debug, clap::Args)]
pub struct FedtaskArgs {
    /// The model.
    #[arg(long, value_enum, default_value = "2nn")]
    pub model: FedtaskModel,
    /// The partition.
    #[arg(long, value_enum, default_value = "iid")]
    pub partition: FedtaskPartition,
    /// Rounds R.
    #[arg(long, value_parser = super::bounds::count32(1, 100_000), default_value_t = 50)]
    pub rounds: u32,
}

/// Runs fedtask-v1 and prints its JSON line on stdout.
pub fn fedtask(args: FedtaskArgs, process_start: Instant) -> Result<()> {
    let loadavg_at_start = loadavg();
    let task = TaskConfig {
        model: match args.model {
            FedtaskModel::TwoNn => ModelKind::Mlp,
            FedtaskModel::Lr => ModelKind::Lr,
        },
        hidden: vec![200, 200],
        rounds: args.rounds,
        ..TaskConfig::default()
    };
    let simulation = SimulationConfig {
        partition: match args.partition {
            FedtaskPartition::Iid => PartitionKind::Iid,
            FedtaskPartition::Noniid => PartitionKind::Shards,
        },
        shards_per_client: 2,
        ..SimulationConfig::default()
    };
    let plan = plan(Settings { task, simulation, ..Settings::default() })?;
    let params = plan.model.init(plan.settings.task.seed);
    let initial = plan.evaluate(params.values());
    let wall_setup_s = process_start.elapsed().as_secs_f64();
    let rounds_start = Instant::now();
    let mut records = Vec::new();
    execute(&plan, Start::fresh(params), |record, _| {
        records.push(record.clone());
        Ok(())
    })?;
    let wall_rounds_s = rounds_start.elapsed().as_secs_f64();
    let round_wall_s: Vec<f64> = records.iter().map(|r| r.wall_s).collect();
    let median = Some(super::median(round_wall_s.clone())).filter(|m| m.is_finite());
    let last = records.last();
    let line = serde_json::json!({
        "framework": "dainet",
        "version": env!("CARGO_PKG_VERSION"),
        "versions": dainet_engine::versions(),
        "partition": match args.partition { FedtaskPartition::Iid => "iid", FedtaskPartition::Noniid => "noniid" },
        "model": match args.model { FedtaskModel::TwoNn => "2nn", FedtaskModel::Lr => "lr" },
        "rounds": args.rounds,
        "accuracy_initial": initial.accuracy,
        "loss_initial": initial.loss,
        "accuracy_per_round": records.iter().map(|r| r.accuracy).collect::<Vec<_>>(),
        "loss_per_round": records.iter().map(|r| r.loss).collect::<Vec<_>>(),
        "final_accuracy": last.map(|r| r.accuracy),
        "final_loss": last.map(|r| r.loss),
        "rounds_to_90": rounds_to(&records, 0.90),
        "rounds_to_95": rounds_to(&records, 0.95),
        "wall_in_process_s": process_start.elapsed().as_secs_f64(),
        "wall_setup_s": wall_setup_s,
        "wall_rounds_s": wall_rounds_s,
        "round_wall_s": round_wall_s,
        "round_wall_median_s": median,
        "peak_rss_bytes": dainet_engine::peak_rss_bytes(),
        "threads": rayon::current_num_threads(),
        "update_param_bytes": 4 * plan.model.layout().len(),
        "loadavg_at_start": loadavg_at_start,
        "loadavg_at_end": loadavg(),
        "note": "in-process timings; clients of a round train in parallel on rayon's pool (threads above); \
                 wall_total_s (spawn to exit) must be measured outside the process",
    });
    println!("{line}");
    Ok(())
}
