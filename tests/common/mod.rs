//! What the end-to-end tests of the `dainet` binary share: running it, and judging a clean failure.

// Each test binary uses its own subset.
#![allow(dead_code)]

pub mod validators;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the built `dainet` with `args` and waits for it.
pub fn dainet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dainet")).args(args).output().expect("dainet runs")
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts a clean failure: exit code 2, one `error:` line naming `needle`, no panic.
pub fn assert_clean_error(out: &Output, needle: &str) {
    let stderr = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(needle), "error should name {needle:?}: {stderr}");
}

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}
