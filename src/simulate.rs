//! `dainet simulate`: train a federation in one process and write the run's folder (what the
//! folder holds and guarantees: `dainet_engine::simulation`). This module parses the
//! arguments, prints progress and draws the charts.

use crate::config::{resolve, ConfigPatch};
use crate::plot::{line_chart, Series};
use anyhow::Result;
use dainet_engine::checkpoint::History;
use dainet_engine::record::{LedgerStart, VALIDATORS};
use dainet_engine::simulation::LedgerPlan;
use dainet_engine::{plan, EngineError, RoundRecord, Simulation, SimulationProgress};
use dainet_protocol::{Finish, RoundOutcome};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// Arguments of `dainet simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// TOML file of settings (keys as the flags below, with underscores); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue from a checkpoint written by --checkpoint-every or by an interrupted run (same
    /// settings required).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Replace the results of another run in the output folder (they are removed first).
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,
    #[command(flatten)]
    pub flags: ConfigPatch,
}

/// Runs `dainet simulate`.
pub fn simulate(args: SimulateArgs) -> Result<()> {
    let settings = resolve(args.config.as_deref(), args.flags)?;
    let plan = plan(settings)?;
    let simulation = Simulation::prepare(plan, args.resume.as_deref(), args.overwrite)?;
    let (plan, rounds) = (simulation.plan(), simulation.plan().settings.task.rounds);
    eprintln!("{}", plan.summary());
    let first_round = simulation.first_round();
    if first_round == 1 {
        let initial = &simulation.history().initial;
        eprintln!("round   0/{rounds}  acc {:.4}  loss {:.4}", initial.accuracy, initial.loss);
    } else {
        eprintln!("resuming after round {} of {rounds}", first_round - 1);
    }
    crate::interrupt::install();
    let out = plan.settings.output.out.clone();
    let ledger = out.join("ledger");
    match simulation.ledger() {
        LedgerPlan::Off => {}
        LedgerPlan::Record(LedgerStart::Fresh) => {
            eprintln!("ledger: {VALIDATORS} simulated validators, recording to {}", ledger.display())
        }
        LedgerPlan::Record(LedgerStart::After(after_round)) => eprintln!(
            "ledger: {VALIDATORS} simulated validators, continuing {} after round {after_round}",
            ledger.display()
        ),
        LedgerPlan::NotContinued(why) => eprintln!(
            "ledger: not recorded: this resumed run cannot continue the interrupted run's ledger ({why}); it stays \
             marked unfinished. Pass --no-ledger to silence this"
        ),
    }
    let bar = ProgressBar::new(u64::from(rounds)).with_position(u64::from(first_round - 1));
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} rounds, eta {eta}").expect("valid template"));
    let finished = simulation.run(&mut Progress { bar: &bar, rounds });
    bar.finish_and_clear();
    let finished = finished?;
    if let Some(ledger) = &finished.ledger {
        eprintln!(
            "ledger: {} blocks; {:.3} s of recording beside training, of which {:.3} s made training wait \
             ({:.1}% of the round time)",
            ledger.totals.height,
            ledger.totals.seconds,
            ledger.totals.blocking_seconds,
            100.0 * ledger.share_of_round_time,
        );
    }
    let rounds_run = &finished.history.rounds;
    let sum = |f: fn(&RoundRecord) -> u64| rounds_run.iter().map(f).sum::<u64>();
    eprintln!(
        "network: {:.1} MB sent in {} messages over {:.1} s of virtual time; {} lost, {} updates cut by the deadline",
        sum(|r| r.network.bytes_to_trainers + r.network.bytes_to_coordinator) as f64 / 1e6,
        sum(|r| r.network.messages),
        sum(|r| r.network.round_ms) as f64 / 1e3,
        sum(|r| r.network.lost),
        sum(|r| r.network.cut_by_deadline),
    );
    let last = finished.history.rounds.last().map_or(finished.history.initial.accuracy, |r| r.accuracy);
    eprintln!("final accuracy {last:.4}; wrote {}", out.display());
    Ok(())
}

/// The progress bar, a line per round, and the charts.
struct Progress<'a> {
    bar: &'a ProgressBar,
    rounds: u32,
}

impl SimulationProgress for Progress<'_> {
    fn round(&mut self, record: &RoundRecord, outcome: &RoundOutcome) {
        self.bar.suspend(|| {
            eprintln!("{}", round_line(record, self.rounds));
            if let Some(Finish::PrivacyBudget { budget, would_reach }) = &outcome.finish {
                eprintln!(
                    "stopped: one more round would exceed the privacy budget ε = {budget} (it would reach \
                     {would_reach:.4})"
                );
            }
        });
        self.bar.inc(1);
    }

    fn stop_requested(&self) -> bool {
        crate::interrupt::requested()
    }

    fn write_results(&mut self, out: &Path, history: &History) -> Result<(), EngineError> {
        write_plots(out, history).map_err(|e| EngineError::Observer(e.into()))
    }
}

/// One progress line: round, accuracy, loss, seconds, and what went wrong if anything did.
fn round_line(r: &RoundRecord, rounds: u32) -> String {
    // Under secure aggregation the clients' training losses are not revealed.
    let train_loss = if r.train_loss.is_finite() { format!("{:.4}", r.train_loss) } else { "-".into() };
    let mut line = format!(
        "round {:>3}/{rounds}  acc {:.4}  loss {:.4}  train_loss {train_loss}  {:.3} s",
        r.round, r.accuracy, r.loss, r.wall_s
    );
    if let Some(b) = r.backdoor_success {
        line += &format!("  backdoor {b:.4}");
    }
    if let Some(e) = r.epsilon {
        line += &format!("  ε {e:.3}");
    }
    let f = &r.faults;
    if f.byzantine + f.stragglers + f.dropouts > 0 {
        line += &format!("  [byzantine {} stragglers {} dropouts {}]", f.byzantine, f.stragglers, f.dropouts);
    }
    let n = &r.network;
    if n.lost + n.cut_by_deadline + n.to_crashed > 0 {
        line += &format!(
            "  [network: {} lost, {} cut by the deadline after {} ms]",
            n.lost + n.to_crashed,
            n.cut_by_deadline,
            n.round_ms
        );
    }
    // Answers that arrive after their round closed are late, not bad: say so apart.
    let late = r.rejected.get("late").copied().unwrap_or(0);
    let refused: u32 = r.rejected.values().sum::<u32>() - late;
    if refused > 0 {
        line += &format!("  refused {refused}");
    }
    if late > 0 {
        line += &format!("  late {late}");
    }
    if let Some(why) = &r.not_aggregated_because {
        line += &format!("  NOT AGGREGATED: {why}");
    }
    line
}

fn write_plots(out: &Path, h: &History) -> Result<()> {
    let points = |f: fn(&RoundRecord) -> f64, initial: f64| -> Vec<(f64, f64)> {
        std::iter::once((0.0, initial)).chain(h.rounds.iter().map(|r| (f64::from(r.round), f(r)))).collect()
    };
    let acc = Series { label: "test accuracy".into(), points: points(|r| r.accuracy, h.initial.accuracy) };
    line_chart(&out.join("accuracy.png"), "Test accuracy per round", "round", "accuracy", &[acc])?;
    let test_loss = Series { label: "test loss".into(), points: points(|r| r.loss, h.initial.loss) };
    let train_loss = Series {
        label: "train loss (clients)".into(),
        points: h.rounds.iter().map(|r| (f64::from(r.round), r.train_loss)).collect(),
    };
    line_chart(&out.join("loss.png"), "Loss per round", "round", "cross-entropy", &[test_loss, train_loss])
}
