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
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes joined by ": " (anyhow's `{:#}`), but each cause only if the text so
/// far does not already say it: an error type whose message includes its source (`"…: {source}"`
/// with a `source` field, or `"{0}"` with `#[from]`) would otherwise print its cause twice.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    /// What `#[error("… reason={source}")]` with a `source` field derives: the cause in the
    /// message and as the source.
    #[derive(Debug)]
    struct Repeats {
        source: std::io::Error,
    }

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read the genesis file: reason={}", self.source)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Repeats { source: io }).context("dainet ledger node");
        assert_eq!(format!("{e:#}").matches("no such file").count(), 2, "anyhow's own chain repeats it");
        assert_eq!(error_text(&e), "dainet ledger node: cannot read the genesis file: reason=no such file");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_text(&plain), "outer: inner");
    }
}
