//! A run folder never misleads: `report.json` says what the run is doing from its start, Ctrl-C
//! stops at a round's end with a checkpoint that resumes exactly (its ledger too), a killed run never claims to
//! have finished (nor its ledger to be whole), another run's results are not mixed in, and a
//! full disk leaves nothing partial.

mod common;

use common::{assert_clean_error, dainet, files, s};
use dainet_ledger::chain::Chain;
use dainet_ledger::folder::LedgerDir;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// Starts `dainet simulate` with `args`, stderr piped.
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dainet"))
        .arg("simulate")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads `child`'s stderr until a line contains `needle` (a generous bound: 120 s); returns
/// the reader to keep draining.
fn wait_for_line(child: &mut Child, needle: &str) -> BufReader<std::process::ChildStderr> {
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the run ended before printing {needle:?}");
        if line.contains(needle) {
            return reader;
        }
        assert!(Instant::now() < deadline, "no {needle:?} within 120 s");
    }
}

/// Each round of the run in `dir`'s ledger, with the hash of its aggregate.
fn recorded_rounds(dir: &Path) -> Vec<(u64, Option<String>)> {
    let (store, _) = LedgerDir::open_read_only(dir.join("ledger")).unwrap().into_parts();
    let chain = Chain::open(store).unwrap();
    let rounds = chain.state().rounds();
    rounds.iter().map(|(r, round)| (*r, round.aggregate.as_ref().map(|a| a.aggregate_hash.to_hex()))).collect()
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

#[test]
fn ctrl_c_finishes_the_round_and_writes_a_checkpoint_that_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = spawn(&["--out", s(&out), "--rounds", "1000"]);
    let mut rest = wait_for_line(&mut child, "round   2/");
    assert_eq!(report(&out)["status"], "running", "the report says so from the start");
    signal(&child, libc::SIGINT);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut rest, &mut text).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{text}");
    let r = report(&out);
    assert_eq!(r["status"], "interrupted");
    let rounds = r["rounds"].as_array().unwrap().len() as u32;
    assert!((2..1000).contains(&rounds), "{rounds} rounds");
    let checkpoint = out.join("checkpoints").join(format!("round-{rounds:04}.safetensors"));
    assert!(text.contains(&format!("continue with --resume {}", checkpoint.display())), "{text}");
    // The ledger holds the rounds up to the checkpoint's, and says the run did not finish.
    let verify = dainet(&["ledger", "verify", s(&out.join("ledger"))]);
    assert_eq!(verify.status.code(), Some(1), "{}", String::from_utf8_lossy(&verify.stdout));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("unfinished"));
    assert_eq!(recorded_rounds(&out).len() as u32, rounds);

    // Resumed to three more rounds, it ends where an uninterrupted run of as many rounds does,
    // and continues the interrupted run's ledger to a whole one that verifies.
    let total = (rounds + 3).to_string();
    let o = dainet(&["simulate", "--out", s(&out), "--rounds", &total, "--resume", s(&checkpoint)]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("continuing {} after round {rounds}", out.join("ledger").display())), "{stderr}");
    let whole = dir.path().join("whole");
    let o = dainet(&["simulate", "--out", s(&whole), "--rounds", &total]);
    assert!(o.status.success());
    let model = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(model(&out) == model(&whole), "the resumed run's model differs from the uninterrupted one's");
    let verify = dainet(&["ledger", "verify", s(&out.join("ledger"))]);
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success() && stdout.contains("ledger ok") && !stdout.contains("unfinished"), "{stdout}");
    // Every round is recorded once, with the aggregate the uninterrupted run recorded.
    assert_eq!(recorded_rounds(&out), recorded_rounds(&whole));
    assert_eq!(recorded_rounds(&out).len(), rounds as usize + 3);
    assert_eq!(report(&out)["status"], "finished");
}

#[test]
fn a_second_ctrl_c_stops_at_once_and_the_run_does_not_claim_to_have_finished() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn(&["--out", s(dir.path()), "--rounds", "1000", "--no-ledger"]);
    let _rest = wait_for_line(&mut child, "round   1/");
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGINT);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_ne!(report(dir.path())["status"], "finished");
}

/// Kills a run with SIGKILL once it printed `needle`; whatever the moment, the folder never
/// says the run finished unless it did, and its ledger never verifies as whole unless the run
/// finished.
fn kill_after(needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn(&["--out", s(dir.path()), "--rounds", "30"]);
    let _rest = wait_for_line(&mut child, needle);
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let finished = report(dir.path())["status"] == "finished";
    let ledger = dir.path().join("ledger");
    if ledger.exists() {
        let o = dainet(&["ledger", "verify", s(&ledger)]);
        let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        if finished && o.status.success() {
            // The run wrote everything; killed after its report, the ledger may still carry
            // its mark (checked below).
        } else {
            // Problems found (1), or a folder too incomplete to open (2): either way it says why,
            // and never `ledger ok`. A run killed between making the folder and marking it
            // leaves a folder that is not a ledger yet.
            assert!(matches!(o.status.code(), Some(1 | 2)), "an unfinished run's ledger verified: {text}");
            assert!(!text.contains("ledger ok"), "{text}");
            let says_why = text.contains("unfinished: the run writing this ledger stopped before its end")
                || (o.status.code() == Some(2) && text.contains("not a ledger folder"));
            assert!(says_why, "{text}");
            let show = dainet(&["ledger", "show", s(&ledger)]);
            if show.status.success() {
                assert!(String::from_utf8_lossy(&show.stdout).contains("UNFINISHED"));
            }
        }
    }
    // A SIGKILL may stop a write half-way and leave its temporary file (never the file it was
    // to become): only a run that fails cleanly promises no `.tmp` (the full-disk test).
}

#[test]
fn a_run_killed_at_its_start_never_claims_to_have_finished() {
    kill_after("ledger: 4 simulated validators");
}

#[test]
fn a_run_killed_mid_way_never_claims_to_have_finished() {
    kill_after("round  10/");
}

#[test]
fn a_run_killed_after_its_last_round_never_claims_to_have_finished() {
    kill_after("round  30/");
}

#[test]
fn a_rerun_into_a_finished_folder_is_refused_unless_it_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let first = dainet(&["simulate", "--out", s(dir.path()), "--rounds", "2", "--checkpoint-every", "1"]);
    assert!(first.status.success());
    let before = std::fs::read(dir.path().join("report.json")).unwrap();
    let o = dainet(&["simulate", "--out", s(dir.path()), "--rounds", "2", "--seed", "2"]);
    assert_clean_error(&o, "holds another run's results");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--overwrite"));
    assert_eq!(std::fs::read(dir.path().join("report.json")).unwrap(), before, "the first run's report changed");
    // With --overwrite the old run's files go first: no checkpoint of seed 1 beside seed 2.
    let o = dainet(&["simulate", "--out", s(dir.path()), "--rounds", "2", "--seed", "2", "--overwrite"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(report(dir.path())["seed"], 2);
    assert!(!dir.path().join("checkpoints").exists());
    assert!(dainet(&["ledger", "verify", s(&dir.path().join("ledger"))]).status.success());
    // --overwrite and --resume contradict each other.
    let o = dainet(&["simulate", "--out", s(dir.path()), "--overwrite", "--resume", "x.safetensors"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_full_disk_fails_the_run_cleanly_and_leaves_nothing_partial() {
    let dir = tempfile::tempdir().unwrap();
    // Files may grow to 300 KB at most: the first 800 KB model file cannot be written. With
    // SIGXFSZ ignored, the write fails with EFBIG as on a full disk.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dainet"));
    cmd.args(["simulate", "--out", s(dir.path()), "--rounds", "4", "--checkpoint-every", "2"]);
    // SAFETY: between fork and exec only async-signal-safe calls (setrlimit, signal).
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 300_000, rlim_max: 300_000 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("error: ") && last.contains("File too large"), "{err}");
    let r = report(dir.path());
    assert_eq!(r["status"], "failed");
    assert!(r["error"].as_str().unwrap().contains("File too large"), "{r}");
    let left = files(dir.path());
    assert!(left.iter().all(|f| f.extension().is_none_or(|e| e != "tmp")), "partial files: {left:?}");
    assert!(!dir.path().join("ledger").exists(), "a failed run left its ledger");
    assert!(!dir.path().join("model.safetensors").exists());
}

#[test]
fn resume_continues_only_its_own_run_and_marks_the_ledger_it_does_not_extend() {
    let dir = tempfile::tempdir().unwrap();
    let o = dainet(&["simulate", "--out", s(dir.path()), "--rounds", "2", "--checkpoint-every", "1"]);
    assert!(o.status.success());
    let checkpoint = dir.path().join("checkpoints").join("round-0001.safetensors");
    // A folder that holds a run with other settings is not where this checkpoint continues.
    let other = tempfile::tempdir().unwrap();
    assert!(dainet(&["simulate", "--out", s(other.path()), "--rounds", "2", "--seed", "2"]).status.success());
    let o = dainet(&["simulate", "--out", s(other.path()), "--rounds", "3", "--resume", s(&checkpoint)]);
    assert_clean_error(&o, "a run with other settings");
    // In its own folder it continues; the ledger there went past the checkpoint (it holds rounds
    // 1 and 2), so it is not continued, and says so.
    let o = dainet(&["simulate", "--out", s(dir.path()), "--rounds", "3", "--resume", s(&checkpoint)]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("records rounds up to 2, the checkpoint is at round 1"), "{stderr}");
    assert_eq!(report(dir.path())["status"], "finished");
    let verify = dainet(&["ledger", "verify", s(&dir.path().join("ledger"))]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("unfinished"));
}
