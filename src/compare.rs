//! `dainet compare`: one metric of several runs on one chart.
//!
//! Reads each run folder's `report.json` and draws the metric per round, a line per run.

use crate::plot::{line_chart, Series};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

/// The per-round metrics a chart can show.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Metric {
    /// Test accuracy.
    Accuracy,
    /// Test loss.
    Loss,
    /// The clients' mean training loss.
    TrainLoss,
    /// Backdoor success rate (backdoor attack runs).
    BackdoorSuccess,
}

impl Metric {
    fn key(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Loss => "loss",
            Metric::TrainLoss => "train_loss",
            Metric::BackdoorSuccess => "backdoor_success",
        }
    }
}

/// Arguments of `dainet compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Run folders written by `dainet simulate`.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The metric to draw.
    #[arg(long, value_enum, default_value = "accuracy")]
    pub metric: Metric,
    /// Line labels, comma-separated, one per run [default: the folder names].
    #[arg(long, value_delimiter = ',')]
    pub labels: Option<Vec<String>>,
    /// Chart title [default: the metric].
    #[arg(long)]
    pub title: Option<String>,
    /// The PNG to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `dainet compare`.
pub fn compare(args: CompareArgs) -> Result<()> {
    if let Some(labels) = &args.labels {
        if labels.len() != args.runs.len() {
            bail!("{} labels for {} runs: give one label per run", labels.len(), args.runs.len());
        }
    }
    let key = args.metric.key();
    let mut series = Vec::new();
    for (i, run) in args.runs.iter().enumerate() {
        let path = run.join("report.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let report: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not a JSON report", path.display()))?;
        let rounds = report["rounds"].as_array().with_context(|| format!("{}: no \"rounds\" list", path.display()))?;
        let points: Vec<(f64, f64)> =
            rounds.iter().filter_map(|r| Some((r["round"].as_f64()?, r[key].as_f64()?))).collect();
        if points.is_empty() {
            bail!("{}: no round has a {key:?} value", path.display());
        }
        let label = match &args.labels {
            Some(labels) => labels[i].clone(),
            None => {
                run.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| run.display().to_string())
            }
        };
        series.push(Series { label, points });
    }
    let title = args.title.clone().unwrap_or_else(|| key.replace('_', " "));
    line_chart(&args.out, &title, "round", key, &series)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
