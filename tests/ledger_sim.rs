//! `dainet simulate` records every round in a ledger of 4 simulated validators: the ledger lands
//! in the run folder, `report.json` points into it, and `dainet ledger verify` proves every
//! aggregate against the stored blobs and, given the trainers' own stores, every update
//! commitment.

mod common;

use common::{dainet, files, s};
use dainet_ledger::blob::BlobStore;
use dainet_ledger::chain::Chain;
use dainet_ledger::folder::LedgerDir;
use dainet_ledger::hash::Digest;
use dainet_ledger::tx::TxBody;
use std::path::Path;

fn simulate(out: &Path, rounds: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["simulate", "--out", s(out), "--rounds", rounds];
    args.extend_from_slice(extra);
    let o = dainet(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

/// Total bytes of the files under `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        total += if path.is_dir() { folder_bytes(&path) } else { std::fs::metadata(&path).unwrap().len() };
    }
    total
}

/// Each round's `OpenRound` is in a lower block than the round's first `CommitUpdate`.
fn assert_rounds_open_before_their_commitments<S: dainet_ledger::store::BlockStore>(chain: &Chain<S>) {
    let mut opened = std::collections::BTreeMap::new();
    let mut first_commit = std::collections::BTreeMap::new();
    for height in 1..=chain.head().height {
        for tx in chain.block(height).unwrap().unwrap().txs {
            match tx.body {
                TxBody::OpenRound { round, .. } => {
                    opened.insert(round, height);
                }
                TxBody::CommitUpdate { round, .. } => {
                    first_commit.entry(round).or_insert(height);
                }
                _ => {}
            }
        }
    }
    assert!(!first_commit.is_empty());
    for (round, commit) in first_commit {
        let open = opened[&round];
        assert!(open < commit, "round {round}: opened in block {open}, first commitment in block {commit}");
    }
}

#[test]
fn fifty_rounds_are_recorded_and_every_commitment_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let report = simulate(dir.path(), "50", &[]);
    let ledger = dir.path().join("ledger");

    // `dainet ledger verify` passes; it checks the aggregates and only counts the update
    // commitments: the shared folder holds no trainer's update.
    let out = dainet(&["ledger", "verify", s(&ledger)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("ledger ok"), "{text}");
    assert!(text.contains("500 commitments not checked"), "{text}");
    // The whole run folder stays small (the ledger used to hold every client's model).
    let bytes = folder_bytes(dir.path());
    assert!(bytes < 50 << 20, "the default run wrote {bytes} bytes");

    // Every round: its aggregate hash is the blake3 of the stored global model, and its update
    // commitments name no blob of the shared folder; report.json names the blocks.
    let folder = LedgerDir::open(&ledger).unwrap();
    let (store, blobs) = folder.into_parts();
    let chain = Chain::open(store).unwrap();
    assert_rounds_open_before_their_commitments(&chain);
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 50);
    let mut updates = 0;
    for (i, r) in rounds.iter().enumerate() {
        let round = chain.state().round(i as u64 + 1).unwrap_or_else(|| panic!("round {} not in the ledger", i + 1));
        let aggregate = round.aggregate.as_ref().expect("every round aggregated");
        let stored = blobs.get(&aggregate.aggregate_hash).unwrap().expect("aggregate blob stored");
        assert_eq!(Digest::of(&stored), aggregate.aggregate_hash);
        assert_eq!(r["ledger"]["aggregate_hash"].as_str().unwrap(), aggregate.aggregate_hash.to_hex());
        assert_eq!(aggregate.participants.len(), 10);
        for update in round.updates.values() {
            assert!(blobs.get(&update.update_hash).unwrap().is_none(), "an update is in the shared folder");
            assert!(f64::from_bits(update.norm_bits) > 0.0);
            updates += 1;
        }
        assert!(r["ledger"]["finality_ms"].as_u64().unwrap() > 0, "round {}: {}", i + 1, r["ledger"]);
        let block = r["ledger"]["block"].as_u64().unwrap();
        let holds_aggregate = chain
            .block(block)
            .unwrap()
            .unwrap()
            .txs
            .iter()
            .any(|tx| matches!(&tx.body, TxBody::CommitAggregate { round, .. } if *round == i as u64 + 1));
        assert!(holds_aggregate, "report.json says round {} is in block {block}", i + 1);
    }
    assert_eq!(updates, 500);

    // The run's final model is the last aggregate, byte for byte.
    let model = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    assert_eq!(Digest::of(&model).to_hex(), rounds[49]["ledger"]["aggregate_hash"].as_str().unwrap());
    assert_eq!(report["ledger"]["validators"], 4);
    assert!(report["ledger"]["height"].as_u64().unwrap() >= 4);

    // Change one stored aggregate and verify finds it.
    let victim = chain.state().round(7).unwrap().aggregate.as_ref().unwrap().aggregate_hash;
    // The store is locked while open.
    drop(chain);
    let path = ledger.join("blobs").join(victim.to_hex());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let out = dainet(&["ledger", "verify", s(&ledger)]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("blob mismatch: height="));
}

#[test]
fn trainers_keep_their_own_updates_and_verify_checks_every_commitment_against_them() {
    let dir = tempfile::tempdir().unwrap();
    simulate(dir.path(), "4", &["--keep-updates"]);
    let (ledger, clients) = (dir.path().join("ledger"), dir.path().join("clients"));
    let kept = files(&clients);
    assert_eq!(kept.len(), 40, "10 updates a round, each kept by its trainer");
    // No file of the shared ledger folder is any trainer's update.
    let kept_bytes: std::collections::BTreeSet<Vec<u8>> = kept.iter().map(|p| std::fs::read(p).unwrap()).collect();
    for file in files(&ledger) {
        assert!(!kept_bytes.contains(&std::fs::read(&file).unwrap()), "{} is a trainer's update", file.display());
    }
    let out = dainet(&["ledger", "verify", s(&ledger), "--updates", s(&clients)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("40 commitments checked against 40 files"), "{text}");
    // A kept update that is not what was committed is found.
    let victim = &kept[0];
    let mut model = dainet_ml::model_file::load_model(victim).unwrap();
    model.params.values_mut()[0] += 1.0;
    dainet_ml::model_file::save_model(victim, &model.spec, &model.params, &model.metadata).unwrap();
    let out = dainet(&["ledger", "verify", s(&ledger), "--updates", s(&clients)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("update not in the owners' stores"));
}

#[test]
fn secure_aggregation_runs_are_recorded_with_their_masked_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let report = simulate(dir.path(), "3", &["--secagg", "true", "--keep-updates"]);
    let (ledger, clients) = (dir.path().join("ledger"), dir.path().join("clients"));
    assert_eq!(report["ledger"]["validators"], 4);
    let out = dainet(&["ledger", "verify", s(&ledger), "--updates", s(&clients)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("30 commitments checked against 30 files"), "{text}");
    assert!(files(&clients).iter().all(|p| p.extension().unwrap() == "masked"), "trainers keep what they sent");
    let chain = Chain::open(LedgerDir::open(&ledger).unwrap().into_parts().0).unwrap();
    assert_rounds_open_before_their_commitments(&chain);
    let round = chain.state().round(3).unwrap();
    assert_eq!(round.aggregate.as_ref().unwrap().participants.len(), 10);
}

#[test]
fn the_rounds_privacy_spends_add_up_to_the_final_epsilon() {
    let dir = tempfile::tempdir().unwrap();
    let report = simulate(dir.path(), "6", &["--dp-noise-multiplier", "1.0", "--dp-clip-norm", "0.5"]);
    let chain = Chain::open(LedgerDir::open(dir.path().join("ledger")).unwrap().into_parts().0).unwrap();
    let mut total = 0.0;
    for r in 1..=6 {
        let round = chain.state().round(r).unwrap();
        assert_eq!(round.privacy.len(), 1, "one spend per round");
        // One client's norm and example count stay off the shared record under DP.
        assert!(round.updates.values().all(|u| u.norm_bits == 0.0f64.to_bits() && u.examples == 0));
        let spent = f64::from_bits(round.privacy[0].epsilon_bits);
        let reported = report["rounds"][r as usize - 1]["epsilon_round"].as_f64().unwrap();
        assert_eq!(spent, reported);
        total += spent;
    }
    let final_epsilon = report["final_epsilon"].as_f64().unwrap();
    assert!((total - final_epsilon).abs() < 1e-9, "spends sum to {total}, the run reports ε = {final_epsilon}");
}

#[test]
fn the_same_seed_gives_the_same_ledger_and_no_ledger_writes_none() {
    let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    simulate(a.path(), "3", &[]);
    // The ledger is recorded beside training: with one training thread instead of two, the
    // threads interleave differently, and the ledger must not change.
    let one_thread = std::process::Command::new(env!("CARGO_BIN_EXE_dainet"))
        .args(["simulate", "--out", s(b.path()), "--rounds", "3"])
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(one_thread.status.success(), "{}", String::from_utf8_lossy(&one_thread.stderr));
    let export = |d: &Path| {
        let o = dainet(&["ledger", "export", s(&d.join("ledger")), "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    assert!(export(a.path()) == export(b.path()), "two runs with one seed wrote different ledgers");
    let report = simulate(c.path(), "2", &["--no-ledger"]);
    assert!(!c.path().join("ledger").exists());
    assert!(report["ledger"].is_null());
    assert!(report["rounds"][0].get("ledger").is_none());
}

#[test]
fn a_ledger_folder_that_is_not_a_ledger_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("ledger").join("notes.txt");
    std::fs::create_dir_all(precious.parent().unwrap()).unwrap();
    std::fs::write(&precious, "mine").unwrap();
    // Not even with --overwrite, which replaces a previous run's results.
    for extra in [&[][..], &["--overwrite"][..]] {
        let mut args = vec!["simulate", "--out", s(dir.path()), "--rounds", "1"];
        args.extend_from_slice(extra);
        let out = dainet(&args);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a ledger folder") || err.contains("holds another run's results"), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "mine");
    // A previous run's ledger is replaced with --overwrite.
    std::fs::remove_dir_all(dir.path().join("ledger")).unwrap();
    simulate(dir.path(), "1", &[]);
    simulate(dir.path(), "2", &["--overwrite"]);
    assert!(dainet(&["ledger", "verify", s(&dir.path().join("ledger"))]).status.success());
}

/// `dainet bench ledger-share` runs the same simulation with and without the ledger and prints
/// one JSON line; both variants must end at the same accuracy (the ledger never changes
/// training). Only the shape is checked here: timings belong to the benchmark, not to tests.
#[test]
fn bench_ledger_share_prints_both_variants_in_one_json_line() {
    let out = dainet(&["bench", "ledger-share", "--repeat", "2", "--rounds", "2", "--clients", "20"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["bench"], "ledger-share");
    assert_eq!(line["with_s"].as_array().unwrap().len(), 2);
    assert_eq!(line["without_s"].as_array().unwrap().len(), 2);
    assert!(line["share"].as_f64().unwrap().is_finite(), "{line}");
    assert!(line["blocks"].as_u64().unwrap() >= 2, "{line}");
    assert!(line["final_accuracy"].as_f64().unwrap() > 0.1, "{line}");
}
