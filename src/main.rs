//! The `dainet` command line: `simulate`, `bench fedtask`, `predict`, `keygen` and `ledger`.

mod bench;
mod compare;
mod config;
mod interrupt;
mod keygen;
mod ledger;
mod node;
mod plot;
mod predict;
mod simulate;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Instant;

/// Train one model together without sharing raw data.
#[derive(Debug, Parser)]
#[command(name = "dainet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a federation in one process and write a run folder (report, plots, model).
    Simulate(Box<simulate::SimulateArgs>),
    /// Run a benchmark and print one JSON line.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Classify rows with a saved model.
    Predict(predict::PredictArgs),
    /// Draw one metric of several runs on one chart.
    Compare(compare::CompareArgs),
    /// Make a new node identity: an ed25519 key file; prints the node id.
    Keygen(keygen::KeygenArgs),
    /// Ledger folders and validators: show, verify, export; make a genesis; run a node.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
}

fn main() -> ExitCode {
    let process_start = Instant::now();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate::simulate(*args),
        Command::Bench(command) => bench::bench(command, process_start),
        Command::Predict(args) => predict::predict(args),
        Command::Compare(args) => compare::compare(args),
        Command::Keygen(args) => keygen::keygen(args),
        // `ledger verify` exits 1 when it finds problems, so `ledger` returns its exit code.
        Command::Ledger(command) => match ledger::ledger(command) {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if matches!(e.downcast_ref(), Some(dainet_engine::EngineError::Interrupted { .. })) => {
            eprintln!("{e}");
            ExitCode::from(130)
        }
        Err(e) => {
            // A closed pipe (e.g. `dainet predict … | head`) is not a failure.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
