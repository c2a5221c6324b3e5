//! `dainet bench robustness`: which rule holds under which attack.
//!
//! Runs every strategy against no attack and each attack at 20% Byzantine clients, on the
//! bundled MNIST with the MLP 784-200-200-10 and 100 clients, for an IID and a
//! Dirichlet(0.5) partition. 20 clients are sampled per round (C = 0.2) so that Bulyan's
//! n ≥ 4f + 3 holds for the expected f = 4. Robust rules tolerate `f = 4` per round; the
//! number of Byzantine clients actually sampled varies around it, as it would in a real
//! federation. Writes `robustness.md` (the table), `report.json` (every run's final numbers
//! and settings) into `--out`, and prints one JSON line.

use anyhow::{Context, Result};
use dainet_engine::config::{AttackKind, PartitionKind, Settings, SimulationConfig, TaskConfig};
use dainet_engine::{execute, plan, Start};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `dainet bench robustness`.
#[derive(Debug, clap::Args)]
pub struct RobustnessArgs {
    /// Rounds per run.
    #[arg(long, value_parser = super::bounds::count32(1, 100_000), default_value_t = 30)]
    pub rounds: u32,
    /// Fraction of Byzantine clients.
    #[arg(long, value_parser = super::bounds::fraction, default_value_t = 0.2)]
    pub byzantine: f64,
    /// Only these strategies (comma-separated) [default: all].
    #[arg(long, value_delimiter = ',')]
    pub strategies: Option<Vec<String>>,
    /// Output folder.
    #[arg(long, default_value = "runs/robustness")]
    pub out: PathBuf,
}

/// A strategy of the table: a name and what it changes in the config.
struct Entry {
    label: &'static str,
    strategy: &'static str,
    clip_norm: Option<f64>,
    bucket_size: Option<usize>,
}

const fn entry(label: &'static str, strategy: &'static str) -> Entry {
    Entry { label, strategy, clip_norm: None, bucket_size: None }
}

const ENTRIES: &[Entry] = &[
    entry("fedavg", "fedavg"),
    entry("fedavgm", "fedavgm"),
    entry("fedprox", "fedprox"),
    entry("fedadam", "fedadam"),
    entry("fedyogi", "fedyogi"),
    entry("fedadagrad", "fedadagrad"),
    entry("median", "median"),
    entry("trimmed-mean", "trimmed-mean"),
    entry("krum", "krum"),
    entry("multi-krum", "multi-krum"),
    entry("bulyan", "bulyan"),
    entry("centered-clipping", "centered-clipping"),
    Entry { label: "fedavg+clip(1)", strategy: "fedavg", clip_norm: Some(1.0), bucket_size: None },
    Entry { label: "median+bucketing(2)", strategy: "median", clip_norm: None, bucket_size: Some(2) },
];

const ATTACKS: &[Option<AttackKind>] = &[
    None,
    Some(AttackKind::SignFlip),
    Some(AttackKind::Gaussian),
    Some(AttackKind::LabelFlip),
    Some(AttackKind::Alie),
    Some(AttackKind::Ipm),
    Some(AttackKind::Backdoor),
];

fn attack_name(a: Option<AttackKind>) -> &'static str {
    match a {
        None => "none",
        Some(AttackKind::SignFlip) => "sign-flip",
        Some(AttackKind::Gaussian) => "gaussian",
        Some(AttackKind::LabelFlip) => "label-flip",
        Some(AttackKind::Alie) => "alie",
        Some(AttackKind::Ipm) => "ipm",
        Some(AttackKind::Backdoor) => "backdoor",
    }
}

/// The final numbers of one run.
#[derive(serde::Serialize)]
struct Cell {
    strategy: &'static str,
    attack: &'static str,
    partition: &'static str,
    final_accuracy: f64,
    backdoor_success: Option<f64>,
    rounds_not_aggregated: usize,
    wall_s: f64,
}

/// Runs the grid and writes the table.
pub fn robustness(args: RobustnessArgs) -> Result<()> {
    let started = Instant::now();
    let entries: Vec<&Entry> = ENTRIES
        .iter()
        .filter(|e| args.strategies.as_ref().is_none_or(|only| only.iter().any(|s| s == e.label)))
        .collect();
    let partitions = [("iid", PartitionKind::Iid), ("dirichlet(0.5)", PartitionKind::Dirichlet)];
    let total = entries.len() * ATTACKS.len() * partitions.len();
    let mut cells = Vec::with_capacity(total);
    for (pname, partition) in partitions {
        for e in &entries {
            for &attack in ATTACKS {
                let task = TaskConfig {
                    fraction: 0.2,
                    rounds: args.rounds,
                    strategy: e.strategy.into(),
                    prox_mu: if e.strategy == "fedprox" { 0.01 } else { 0.0 },
                    clip_norm: e.clip_norm,
                    bucket_size: e.bucket_size,
                    robust_f: Some((args.byzantine * 20.0).floor() as usize),
                    ..TaskConfig::default()
                };
                let simulation = SimulationConfig {
                    clients: 100,
                    partition,
                    dirichlet_alpha: 0.5,
                    byzantine: if attack.is_some() { args.byzantine } else { 0.0 },
                    attack,
                    ..SimulationConfig::default()
                };
                let t = Instant::now();
                let plan = plan(Settings { task, simulation, ..Settings::default() })
                    .with_context(|| format!("{} under {}", e.label, attack_name(attack)))?;
                let params = plan.model.init(plan.settings.task.seed);
                let mut last = None;
                let mut skipped = 0;
                execute(&plan, Start::fresh(params), |record, _| {
                    skipped += usize::from(!record.aggregated);
                    last = Some(record.clone());
                    Ok(())
                })?;
                let last = last.expect("at least one round ran");
                let cell = Cell {
                    strategy: e.label,
                    attack: attack_name(attack),
                    partition: pname,
                    final_accuracy: last.accuracy,
                    backdoor_success: last.backdoor_success,
                    rounds_not_aggregated: skipped,
                    wall_s: t.elapsed().as_secs_f64(),
                };
                eprintln!(
                    "[{:>3}/{total}] {pname:<14} {:<20} {:<10} acc {:.4}{}",
                    cells.len() + 1,
                    cell.strategy,
                    cell.attack,
                    cell.final_accuracy,
                    cell.backdoor_success.map(|b| format!("  backdoor {b:.4}")).unwrap_or_default()
                );
                cells.push(cell);
            }
        }
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("{}: cannot create", args.out.display()))?;
    let table = markdown(&cells, &entries, args.rounds, args.byzantine);
    let md = args.out.join("robustness.md");
    std::fs::write(&md, &table).with_context(|| format!("{}: cannot write", md.display()))?;
    let report = serde_json::json!({
        "benchmark": "robustness",
        "rounds": args.rounds,
        "byzantine": args.byzantine,
        "clients": 100,
        "clients_per_round": 20,
        "robust_f": (args.byzantine * 20.0).floor(),
        "model": "mlp:784-200-200-10",
        "versions": dainet_engine::versions(),
        "runs": cells,
    });
    let json = args.out.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("{}: cannot write", json.display()))?;
    let line = serde_json::json!({
        "benchmark": "robustness",
        "runs": total,
        "wall_s": started.elapsed().as_secs_f64(),
        "table": md,
        "report": json,
    });
    println!("{line}");
    Ok(())
}

/// One table per partition: a row per strategy, a column per attack (final accuracy; for the
/// backdoor, accuracy / backdoor success rate). `*` marks runs with rounds the rule could not
/// aggregate.
fn markdown(cells: &[Cell], entries: &[&Entry], rounds: u32, byzantine: f64) -> String {
    let mut out = format!(
        "Final test accuracy after {rounds} rounds; {}% Byzantine clients; MNIST, MLP 784-200-200-10, \
         100 clients, 20 per round, robust f = {}. Backdoor column: accuracy / backdoor success rate. \
         `*`: some rounds could not be aggregated.\n",
        (byzantine * 100.0).round(),
        (byzantine * 20.0).floor()
    );
    for partition in ["iid", "dirichlet(0.5)"] {
        let _ = write!(out, "\n### {partition}\n\n| strategy |");
        for &a in ATTACKS {
            let _ = write!(out, " {} |", attack_name(a));
        }
        out += "\n|---|";
        out += &"---|".repeat(ATTACKS.len());
        out += "\n";
        for e in entries {
            let _ = write!(out, "| {} |", e.label);
            for &a in ATTACKS {
                let cell = cells
                    .iter()
                    .find(|c| c.strategy == e.label && c.partition == partition && c.attack == attack_name(a));
                let text = match cell {
                    Some(c) => {
                        let star = if c.rounds_not_aggregated > 0 { "*" } else { "" };
                        match c.backdoor_success {
                            Some(b) => format!("{:.3} / {:.3}{star}", c.final_accuracy, b),
                            None => format!("{:.3}{star}", c.final_accuracy),
                        }
                    }
                    None => "—".into(),
                };
                let _ = write!(out, " {text} |");
            }
            out += "\n";
        }
    }
    out
}
