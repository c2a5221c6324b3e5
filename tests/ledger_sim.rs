//! `dainet simulate` records every round in a ledger of 4 simulated validators: the ledger lands
//! in the run folder, `report.json` points into it, and `dainet ledger verify` proves every
//! aggregate and update commitment against the stored blobs.

mod common;

use common::{dainet, s};
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

#[test]
fn fifty_rounds_are_recorded_and_every_commitment_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let report = simulate(dir.path(), "50", &[]);
    let ledger = dir.path().join("ledger");

    // `dainet ledger verify` passes and says it checked every round's commitments.
    let out = dainet(&["ledger", "verify", s(&ledger)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("ledger ok"), "{text}");

    // Every round: its aggregate hash is the blake3 of the stored global model, and each of its
    // update commitments is the blake3 of a stored blob; report.json names the blocks.
    let folder = LedgerDir::open(&ledger).unwrap();
    let (store, blobs) = folder.into_parts();
    let chain = Chain::open(store).unwrap();
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
            let bytes = blobs.get(&update.update_hash).unwrap().expect("update blob stored");
            assert_eq!(Digest::of(&bytes), update.update_hash);
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

    // Change one stored update and verify finds it.
    let victim = chain.state().round(7).unwrap().updates.values().next().unwrap().update_hash;
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
    let out = dainet(&["simulate", "--out", s(dir.path()), "--rounds", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a ledger folder"));
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "mine");
    // A previous run's ledger is replaced.
    simulate(dir.path(), "1", &["--no-ledger"]);
    std::fs::remove_dir_all(dir.path().join("ledger")).unwrap();
    simulate(dir.path(), "1", &[]);
    simulate(dir.path(), "2", &[]);
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
    // Secure aggregation is not recorded, so it cannot be compared: refused with the reason.
    let out = dainet(&["bench", "ledger-share", "--rounds", "1", "--secagg", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not record --secagg runs"));
}
