//! End-to-end tests of the `dainet` binary: outputs, determinism, resume, prediction and
//! the error a user sees for each kind of bad input.

mod common;

use common::{assert_clean_error, dainet, s};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dainet_env(args: &[&str], key: &str, value: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dainet")).args(args).env(key, value).output().expect("dainet runs")
}

/// `dainet simulate` on an IDX images file and an IDX labels file.
fn simulate_idx(images: &Path, labels: &Path) -> Output {
    dainet(&["simulate", "--dataset", "idx", "--images", s(images), "--labels", s(labels)])
}

fn mnist(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist").join(file)
}

fn simulate_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["simulate", "--out", out, "--rounds", "3"];
    v.extend_from_slice(extra);
    v
}

#[test]
fn simulate_writes_the_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dainet(&simulate_args(s(dir.path()), &[]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["report.json", "accuracy.png", "loss.png", "model.safetensors"] {
        assert!(dir.path().join(f).metadata().unwrap().len() > 1000, "{f}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    let counts = report["label_counts"].as_array().unwrap();
    assert_eq!(counts.len(), 100);
    let total: u64 = counts.iter().flat_map(|c| c.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 8000);
    assert_eq!(report["rounds"].as_array().unwrap().len(), 3);
    // fedtask-v1's IID 2NN curve, rounds 1-3.
    let acc: Vec<f64> = report["rounds"].as_array().unwrap().iter().map(|r| r["accuracy"].as_f64().unwrap()).collect();
    for (got, want) in acc.iter().zip([0.4315, 0.6165, 0.7010]) {
        assert!((got - want).abs() <= 0.005, "{acc:?}");
    }
    assert_eq!(report["seed"], 1);
    assert!(report["versions"]["dainet"].is_string());
}

#[test]
fn same_seed_gives_identical_model_bytes_on_one_and_two_threads() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = ["--partition", "dirichlet", "--momentum", "0.5", "--carry-momentum", "true"];
    assert!(dainet_env(&simulate_args(s(a.path()), &args), "RAYON_NUM_THREADS", "1").status.success());
    assert!(dainet_env(&simulate_args(s(b.path()), &args), "RAYON_NUM_THREADS", "2").status.success());
    let (ma, mb) = (
        std::fs::read(a.path().join("model.safetensors")).unwrap(),
        std::fs::read(b.path().join("model.safetensors")).unwrap(),
    );
    assert_eq!(ma, mb);
    // And a different seed gives a different model.
    let c = tempfile::tempdir().unwrap();
    assert!(dainet(&simulate_args(s(c.path()), &[&args[..], &["--seed", "2"]].concat())).status.success());
    assert!(ma != std::fs::read(c.path().join("model.safetensors")).unwrap(), "seed 2 gave seed 1's model");
}

#[test]
fn resume_reaches_the_uninterrupted_result() {
    let (full, part, resumed) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let run = |out: &Path, rounds: &str, extra: &[&str]| {
        let mut args = vec!["simulate", "--out", s(out), "--rounds", rounds, "--checkpoint-every", "2"];
        args.extend_from_slice(extra);
        let o = dainet(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(full.path(), "5", &[]);
    run(part.path(), "2", &[]);
    let ckpt = part.path().join("checkpoints/round-0002.safetensors");
    run(resumed.path(), "5", &["--resume", s(&ckpt)]);
    let model = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(model(full.path()) == model(resumed.path()), "resumed model differs from the uninterrupted one");
    let rounds = |d: &Path| -> Vec<(f64, f64)> {
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("report.json")).unwrap()).unwrap();
        r["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x["accuracy"].as_f64().unwrap(), x["loss"].as_f64().unwrap()))
            .collect()
    };
    assert_eq!(rounds(full.path()), rounds(resumed.path()));
    assert_eq!(rounds(full.path()).len(), 5);
    // A checkpoint refuses other settings.
    let other = tempfile::tempdir().unwrap();
    let o = dainet(&["simulate", "--out", s(other.path()), "--rounds", "5", "--lr", "0.1", "--resume", s(&ckpt)]);
    assert_clean_error(&o, "other settings");
}

#[test]
fn predict_classifies_idx_and_csv_rows() {
    let dir = tempfile::tempdir().unwrap();
    assert!(dainet(&simulate_args(s(dir.path()), &["--model", "lr"])).status.success());
    let model = dir.path().join("model.safetensors");
    let out =
        dainet(&["predict", "--model", s(&model), "--input", s(&mnist("mnist10k-images-idx3-ubyte.gz")), "--probs"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10_000);
    let fields: Vec<&str> = lines[0].split('\t').collect();
    assert_eq!(fields[0], "0");
    assert!(fields[1].parse::<u32>().unwrap() < 10);
    let p: f64 = fields[2].split(' ').map(|v| v.parse::<f64>().unwrap()).sum();
    assert!((p - 1.0).abs() < 1e-4, "probabilities sum to {p}");
    // CSV with a label column: accuracy is reported.
    let csv = dir.path().join("rows.csv");
    let row = |label: u32, v: f32| format!("{label},{}\n", vec![format!("{v}"); 784].join(","));
    std::fs::write(&csv, format!("{}{}", row(1, 0.0), row(3, 0.5))).unwrap();
    let out = dainet(&["predict", "--model", s(&model), "--input", s(&csv), "--label-column", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("accuracy"));
    // Features only (a header, no label), and a file of the wrong width.
    let features = dir.path().join("features.csv");
    let header: Vec<String> = (0..784).map(|i| format!("px{i}")).collect();
    std::fs::write(&features, format!("{}\n{}\n", header.join(","), vec!["0.25"; 784].join(","))).unwrap();
    let out = dainet(&["predict", "--model", s(&model), "--input", s(&features)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
    let narrow = write_csv(dir.path(), "narrow.csv", "0.1,0.2\n");
    let o = dainet(&["predict", "--model", s(&model), "--input", s(&narrow)]);
    assert_clean_error(&o, "narrow.csv");
}

#[test]
fn bench_fedtask_prints_one_json_line() {
    let out = dainet(&["bench", "fedtask", "--model", "lr", "--partition", "noniid", "--rounds", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["accuracy_initial"], 0.1045);
    assert_eq!(v["accuracy_per_round"].as_array().unwrap().len(), 2);
    assert_eq!(v["update_param_bytes"], 31_400);
    for key in
        ["wall_in_process_s", "wall_setup_s", "wall_rounds_s", "round_wall_median_s", "peak_rss_bytes", "threads"]
    {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key}: {}", v[key]);
    }
}

// Bad input: one clear error line naming the file or key, exit code 2, never a panic.

#[test]
fn missing_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope-images.gz");
    let o = simulate_idx(&missing, &mnist("mnist10k-labels-idx1-ubyte.gz"));
    assert_clean_error(&o, "nope-images.gz");
}

#[test]
fn truncated_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(mnist("mnist10k-labels-idx1-ubyte.gz")).unwrap();
    let gz = plain_idx_labels(&bytes);
    let cut = dir.path().join("cut-labels.idx");
    std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
    let o = simulate_idx(&mnist("mnist10k-images-idx3-ubyte.gz"), &cut);
    assert_clean_error(&o, "cut-labels.idx");
}

#[test]
fn corrupt_gzip_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(mnist("mnist10k-labels-idx1-ubyte.gz")).unwrap();
    let n = bytes.len();
    bytes[n / 2..].iter_mut().for_each(|b| *b = !*b);
    let bad = dir.path().join("bad-labels.gz");
    std::fs::write(&bad, &bytes).unwrap();
    let o = simulate_idx(&mnist("mnist10k-images-idx3-ubyte.gz"), &bad);
    assert_clean_error(&o, "bad-labels.gz");
}

#[test]
fn wrong_idx_magic() {
    // The images file given as labels: a valid IDX file with the wrong magic for the role.
    let o = simulate_idx(&mnist("mnist10k-images-idx3-ubyte.gz"), &mnist("mnist10k-images-idx3-ubyte.gz"));
    assert_clean_error(&o, "magic");
}

fn write_csv(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn csv_with_a_non_numeric_cell() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_csv(dir.path(), "cells.csv", "a,b,label\n1,2,0\n3,x7,1\n5,6,0\n");
    let o = dainet(&["simulate", "--dataset", "csv", "--csv", s(&p), "--clients", "1"]);
    assert_clean_error(&o, "cells.csv");
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 3"));
}

#[test]
fn csv_with_a_ragged_row() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_csv(dir.path(), "ragged.csv", "1,2,0\n3,4,1\n5,0\n");
    let o = dainet(&["simulate", "--dataset", "csv", "--csv", s(&p), "--clients", "1"]);
    assert_clean_error(&o, "ragged.csv");
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 3"));
}

#[test]
fn unknown_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_csv(dir.path(), "run.toml", "rounds = 2\nlearning_rate = 0.1\n");
    let o = dainet(&["simulate", "--config", s(&p)]);
    assert_clean_error(&o, "learning_rate");
    assert!(String::from_utf8_lossy(&o.stderr).contains("run.toml"));
}

#[test]
fn slow_clients_past_the_deadline_are_reported_as_cut() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--slow-clients", "0.2", "--slowdown", "10", "--round-timeout-ms", "500", "--no-ledger"];
    let out = dainet(&simulate_args(s(dir.path()), &args));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("slow clients 0.2 (10x slower)"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    let rounds = report["rounds"].as_array().unwrap();
    let cut: u64 = rounds.iter().map(|r| r["network"]["cut_by_deadline"].as_u64().unwrap()).sum();
    let missing: u64 = rounds.iter().map(|r| r["missing"].as_u64().unwrap()).sum();
    // A slow client's round trip takes 10 x 100 ms: every slow client sampled is cut, and
    // only they are.
    assert!(cut > 0, "{report}");
    assert_eq!(cut, missing);
    assert!(rounds.iter().all(|r| r["network"]["round_ms"].as_u64() <= Some(500)));
    assert!(stderr.contains(&format!("{cut} updates cut by the deadline")), "{stderr}");
}

#[test]
fn a_lossy_network_still_closes_its_rounds() {
    let dir = tempfile::tempdir().unwrap();
    let out = dainet(&simulate_args(s(dir.path()), &["--loss", "0.2", "--round-timeout-ms", "1000", "--no-ledger"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    let lost: u64 = rounds.iter().map(|r| r["network"]["lost"].as_u64().unwrap()).sum();
    assert!(lost > 0, "{report}");
}

#[test]
fn network_settings_out_of_range() {
    assert_clean_error(&dainet(&["simulate", "--loss", "1.5"]), "network.loss");
    assert_clean_error(&dainet(&["simulate", "--slowdown", "0.5"]), "network.slowdown");
    assert_clean_error(&dainet(&["simulate", "--bandwidth-mbit", "0"]), "network.bandwidth_mbit");
}

#[test]
fn batch_size_zero() {
    assert_clean_error(&dainet(&["simulate", "--batch-size", "0"]), "batch_size");
}

/// issue 11: `--batch-size 4294967295` aborted the process on a 13 TB allocation and
/// `--batch-size 18446744073709551615` panicked; both are settings out of range.
#[test]
fn batch_size_beyond_any_mini_batch() {
    for huge in ["4294967295", "18446744073709551615"] {
        let o = dainet(&["simulate", "--batch-size", huge, "--rounds", "1"]);
        assert_clean_error(&o, &format!("batch_size = {huge} is outside [1, 1048576]"));
    }
    // Past usize: clap refuses it while parsing, with its usual usage lines and exit code 2.
    let o = dainet(&["simulate", "--batch-size", "18446744073709551616"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--batch-size") && !err.contains("panicked"), "{err}");
}

/// issue 11: a 50 MB config value was echoed whole, and a cause printed twice.
#[test]
fn errors_quote_a_short_excerpt_and_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("big.toml");
    std::fs::write(&config, format!("rounds = \"{}\"\n", "x".repeat(50_000_000))).unwrap();
    let o = dainet(&["simulate", "--config", s(&config)]);
    assert_clean_error(&o, "big.toml: line 1");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.len() < 1024 && err.contains("… (50000000 bytes)"), "{} bytes: {}", err.len(), &err[..200]);
    let key = dir.path().join("k.key");
    assert!(dainet(&["keygen", "--out", s(&key)]).status.success());
    let missing = dir.path().join("missing.genesis");
    let node = dir.path().join("node");
    let args =
        ["ledger", "node", "--key", s(&key), "--genesis", s(&missing), "--dir", s(&node), "--listen", "127.0.0.1:1"];
    let o = dainet(&args);
    assert_clean_error(&o, "missing.genesis");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn bench_numbers_are_bounded_by_their_flags() {
    for (args, flag) in [
        (&["bench", "aggregation", "--updates", "0"][..], "--updates"),
        (&["bench", "aggregation", "--params", "18446744073709551615"][..], "--params"),
        (&["bench", "secagg", "--clients", "100,0"][..], "--clients"),
        (&["bench", "robustness", "--byzantine", "1.5"][..], "--byzantine"),
        (&["bench", "ledger", "--duration", "1e300"][..], "--duration"),
    ] {
        let o = dainet(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag) && !err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn predict_refuses_a_model_with_non_finite_weights() {
    use dainet_ml::model_file::save_model;
    use dainet_ml::ModelSpec;
    let dir = tempfile::tempdir().unwrap();
    let spec: ModelSpec = "mlp:784-10".parse().unwrap();
    let params = spec.build().init(1);
    let mut values = params.values().to_vec();
    values[17] = f32::NAN;
    let nan = dainet_core::Params::new(params.layout().clone(), values).unwrap();
    let model = dir.path().join("model.safetensors");
    save_model(&model, &spec, &nan, &Default::default()).unwrap();
    let o = dainet(&["predict", "--model", s(&model), "--input", s(&mnist("mnist10k-images-idx3-ubyte.gz"))]);
    assert_clean_error(&o, "1 of the model's 7850 weights are not finite numbers");
    assert!(o.stdout.is_empty(), "no class is printed for a NaN model");
}

#[test]
fn resume_from_a_damaged_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = dainet(&["simulate", "--out", s(dir.path()), "--rounds", "1", "--model", "lr", "--checkpoint-every", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ckpt = dir.path().join("checkpoints/round-0001.safetensors");
    let mut bytes = std::fs::read(&ckpt).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    std::fs::write(&ckpt, &bytes).unwrap();
    let resumed = tempfile::tempdir().unwrap();
    let o = dainet(&["simulate", "--out", s(resumed.path()), "--rounds", "2", "--model", "lr", "--resume", s(&ckpt)]);
    assert_clean_error(&o, "round-0001.safetensors: the file is damaged");
}

#[test]
fn fraction_outside_zero_one() {
    assert_clean_error(&dainet(&["simulate", "--fraction", "1.5"]), "fraction");
    assert_clean_error(&dainet(&["simulate", "--fraction", "0"]), "fraction");
}

#[test]
fn more_clients_than_examples() {
    assert_clean_error(&dainet(&["simulate", "--clients", "9000"]), "9000");
}

#[test]
fn cnn_on_tabular_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_csv(dir.path(), "t.csv", "1,2,0\n3,4,1\n5,6,0\n7,8,1\n9,1,0\n");
    assert_clean_error(
        &dainet(&["simulate", "--dataset", "csv", "--csv", s(&p), "--clients", "2", "--model", "cnn"]),
        "cnn",
    );
}

#[test]
fn predict_with_a_corrupt_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_csv(dir.path(), "model.safetensors", "not a model");
    let o = dainet(&["predict", "--model", s(&p), "--input", s(&mnist("mnist10k-images-idx3-ubyte.gz"))]);
    assert_clean_error(&o, "model.safetensors");
}

/// A gzip IDX labels file re-encoded as a plain one (read with dainet-ml's reader).
fn plain_idx_labels(bytes: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.gz");
    std::fs::write(&p, bytes).unwrap();
    let array = dainet_ml::data::idx::read_idx(&p).unwrap();
    let mut out = vec![0, 0, 8, 1];
    out.extend_from_slice(&(array.dims[0] as u32).to_be_bytes());
    out.extend_from_slice(&array.data);
    out
}

#[test]
fn every_example_config_runs() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut ran = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let config = entry.unwrap().path();
        if config.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dainet(&["simulate", "--config", s(&config), "--rounds", "2", "--out", s(dir.path())]);
        assert!(out.status.success(), "{}: {}", config.display(), String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
        assert_eq!(report["rounds"].as_array().unwrap().len(), 2, "{}", config.display());
        ran += 1;
    }
    assert_eq!(ran, 2, "examples/ holds two configs");
}

// Strategies, attacks and faults (issue 3).

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn an_attack_run_reports_faults_and_backdoor_success() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--fraction", "0.2", "--byzantine", "0.2", "--attack", "backdoor", "--strategy", "median"];
    let out = dainet(&simulate_args(s(dir.path()), &args));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = report(dir.path());
    let rounds = r["rounds"].as_array().unwrap();
    assert!(rounds.iter().all(|x| x["backdoor_success"].as_f64().is_some()));
    let byzantine: u64 = rounds.iter().map(|x| x["faults"]["byzantine"].as_u64().unwrap()).sum();
    assert!(byzantine > 0, "20 of 100 clients are Byzantine; some must be sampled in 3 rounds of 20");
}

#[test]
fn stragglers_and_dropouts_are_counted_and_rounds_still_close() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--epochs", "3", "--stragglers", "0.5", "--dropouts", "0.3", "--round-timeout-ms", "500"];
    let out = dainet(&simulate_args(s(dir.path()), &args));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = report(dir.path());
    let rounds = r["rounds"].as_array().unwrap();
    let sum = |k: &str| rounds.iter().map(|x| x["faults"][k].as_u64().unwrap()).sum::<u64>();
    assert!(sum("stragglers") > 0 && sum("dropouts") > 0);
    // Dropouts make the round wait for its deadline: 500 ms of virtual time each.
    assert_eq!(rounds.iter().map(|x| x["virtual_ms"].as_u64().unwrap()).collect::<Vec<_>>(), vec![500, 1000, 1500]);
    for x in rounds {
        assert_eq!(x["contributors"].as_u64().unwrap() + x["missing"].as_u64().unwrap(), 10);
    }
}

#[test]
fn fedadam_resumes_with_its_server_state() {
    let (full, part, resumed) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let run = |out: &Path, rounds: &str, extra: &[&str]| {
        let mut args = vec!["simulate", "--out", s(out), "--rounds", rounds, "--checkpoint-every", "2"];
        args.extend_from_slice(&["--strategy", "fedadam", "--lr", "0.1"]);
        args.extend_from_slice(extra);
        let o = dainet(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(full.path(), "4", &[]);
    run(part.path(), "2", &[]);
    let ckpt = part.path().join("checkpoints/round-0002.safetensors");
    assert!(part.path().join("checkpoints/round-0002.server.safetensors").exists());
    run(resumed.path(), "4", &["--resume", s(&ckpt)]);
    let model = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(model(full.path()) == model(resumed.path()), "resumed FedAdam run differs");
}

#[test]
fn strategy_settings_that_cannot_work_are_refused_before_training() {
    // Bulyan with f = 2 needs 11 updates a round; C = 0.1 samples 10.
    let o = dainet(&["simulate", "--strategy", "bulyan", "--byzantine", "0.2", "--attack", "alie"]);
    assert_clean_error(&o, "needs at least 11 updates");
    assert_clean_error(&dainet(&["simulate", "--strategy", "fedsgd"]), "fedsgd");
    // More updates required than clients sampled: refused before any folder is written.
    let out = tempfile::tempdir().unwrap();
    let o = dainet(&["simulate", "--min-updates", "20", "--out", s(&out.path().join("run"))]);
    assert_clean_error(&o, "min_updates = 20 is more than the 10 clients sampled per round");
    assert!(!out.path().join("run").exists(), "a refused run created its folder");
    assert_clean_error(&dainet(&["simulate", "--strategy", "fedprox"]), "prox-mu");
    assert_clean_error(&dainet(&["simulate", "--byzantine", "0.2"]), "attack");
    assert_clean_error(&dainet(&["simulate", "--attack", "ipm"]), "byzantine");
    assert_clean_error(&dainet(&["simulate", "--trim-beta", "0.5", "--strategy", "trimmed-mean"]), "beta");
    assert_clean_error(&dainet(&["simulate", "--dropouts", "1.5"]), "dropouts");
}

#[test]
fn carried_client_momentum_changes_the_run_and_needs_momentum() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // 10 clients, all sampled every round: from round 2 on, carried momentum matters.
    let base = ["--clients", "10", "--fraction", "1", "--momentum", "0.9", "--strategy", "centered-clipping"];
    assert!(dainet(&simulate_args(s(a.path()), &base)).status.success());
    let carried = [&base[..], &["--carry-momentum", "true"]].concat();
    assert!(dainet(&simulate_args(s(b.path()), &carried)).status.success());
    let acc = |d: &Path| {
        report(d)["rounds"].as_array().unwrap().iter().map(|r| r["loss"].as_f64().unwrap()).collect::<Vec<_>>()
    };
    let (la, lb) = (acc(a.path()), acc(b.path()));
    assert_eq!(la[0], lb[0], "round 1 starts every client from zero momentum either way");
    assert_ne!(la[2], lb[2], "by round 3 the carried momentum changes the model");
    assert_clean_error(&dainet(&["simulate", "--carry-momentum", "true"]), "momentum");
}

#[test]
fn synthetic_data_trains_per_device() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--dataset", "synthetic", "--partition", "natural", "--model", "lr", "--fraction", "0.34"];
    let out = dainet(&simulate_args(s(dir.path()), &args));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = report(dir.path());
    assert_eq!(r["clients"], 30);
    assert_eq!(r["client_names"][0], "device-00");
    assert_eq!(r["model"], "mlp:60-10");
}

#[test]
fn compare_draws_several_runs() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert!(dainet(&simulate_args(s(a.path()), &["--model", "lr"])).status.success());
    assert!(dainet(&simulate_args(s(b.path()), &["--model", "lr", "--lr", "0.1"])).status.success());
    let png = a.path().join("cmp.png");
    let o = dainet(&[
        "compare",
        s(a.path()),
        s(b.path()),
        "--metric",
        "loss",
        "--labels",
        "lr 0.05,lr 0.1",
        "--out",
        s(&png),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    assert_clean_error(&dainet(&["compare", s(a.path()), "--labels", "x,y", "--out", s(&png)]), "labels");
}

#[test]
fn updates_beyond_the_norm_bound_are_refused_counted_and_rounds_go_on() {
    let dir = tempfile::tempdir().unwrap();
    // Every honest change of a round is far longer than 1e-6: all refused, nothing aggregated,
    // the run still finishes and the report counts the refusals by reason.
    let out = dainet(&simulate_args(s(dir.path()), &["--max-update-norm", "0.000001", "--round-timeout-ms", "300"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = report(dir.path());
    for x in r["rounds"].as_array().unwrap() {
        assert_eq!(x["rejected"]["norm_too_large"], 10);
        assert_eq!(x["aggregated"], false);
    }
    assert_eq!(r["final_accuracy"], r["initial"]["accuracy"]);
}

// Differential privacy (issue 4).

#[test]
fn a_dp_run_reports_epsilon_per_round_and_stops_at_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let out = dainet(&[
        "simulate",
        "--out",
        s(dir.path()),
        "--rounds",
        "50",
        "--dp-noise-multiplier",
        "1.0",
        "--dp-clip-norm",
        "0.5",
        "--dp-epsilon",
        "3",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("privacy budget"));
    let r = report(dir.path());
    let rounds = r["rounds"].as_array().unwrap();
    assert!(!rounds.is_empty() && rounds.len() < 50, "stopped early: {} rounds", rounds.len());
    let eps: Vec<f64> = rounds.iter().map(|x| x["epsilon"].as_f64().unwrap()).collect();
    assert!(eps.windows(2).all(|w| w[1] > w[0]), "ε grows every round: {eps:?}");
    assert!(*eps.last().unwrap() <= 3.0);
    let tight: Vec<f64> = rounds.iter().map(|x| x["epsilon_tight"].as_f64().unwrap()).collect();
    assert!(tight.iter().zip(&eps).all(|(t, e)| t <= e));
    assert_eq!(r["final_epsilon"], rounds.last().unwrap()["epsilon"]);
    // A budget too small for even one round is refused before training.
    let o = dainet(&["simulate", "--dp-noise-multiplier", "0.5", "--dp-epsilon", "0.01"]);
    assert_clean_error(&o, "budget");
}

#[test]
fn dp_settings_that_cannot_work_are_refused() {
    assert_clean_error(&dainet(&["simulate", "--dp-epsilon", "3"]), "dp-noise-multiplier");
    let o = dainet(&["simulate", "--dp-noise-multiplier", "1", "--strategy", "median"]);
    assert_clean_error(&o, "mean-based");
    assert_clean_error(&dainet(&["simulate", "--dp-noise-multiplier", "1", "--dp-delta", "2"]), "dp_delta");
}

#[test]
fn adaptive_clipping_adapts_and_resumes_exactly() {
    let (full, part, resumed) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dp = ["--dp-noise-multiplier", "0.3", "--dp-clip-norm", "5", "--dp-adaptive-clip", "true"];
    let run = |out: &Path, rounds: &str, extra: &[&str]| {
        let mut args = vec!["simulate", "--out", s(out), "--rounds", rounds, "--checkpoint-every", "2"];
        args.extend_from_slice(&dp);
        args.extend_from_slice(extra);
        let o = dainet(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(full.path(), "4", &[]);
    let norms: Vec<f64> =
        report(full.path())["rounds"].as_array().unwrap().iter().map(|x| x["dp_clip_norm"].as_f64().unwrap()).collect();
    // Changes of one MNIST round are far below 5: C shrinks toward their median.
    assert!(norms.windows(2).all(|w| w[1] < w[0]) && norms[0] < 5.0, "{norms:?}");
    run(part.path(), "2", &[]);
    run(resumed.path(), "4", &["--resume", s(&part.path().join("checkpoints/round-0002.safetensors"))]);
    let model = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(model(full.path()) == model(resumed.path()), "resumed DP run differs");
    let eps = |d: &Path| report(d)["final_epsilon"].as_f64().unwrap();
    assert_eq!(eps(full.path()), eps(resumed.path()));
}

// Secure aggregation (issue 4).

#[test]
fn secagg_rounds_match_plaintext_fedavg_closely() {
    let (plain, secure) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert!(dainet(&simulate_args(s(plain.path()), &[])).status.success());
    let o = dainet(&simulate_args(s(secure.path()), &["--secagg", "true"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (a, b) = (report(plain.path()), report(secure.path()));
    for (x, y) in a["rounds"].as_array().unwrap().iter().zip(b["rounds"].as_array().unwrap()) {
        // Quantisation (step 2/65535 per value, stochastic rounding) moves accuracy by a few
        // test images at most.
        let (pa, sa) = (x["accuracy"].as_f64().unwrap(), y["accuracy"].as_f64().unwrap());
        assert!((pa - sa).abs() <= 0.005, "plain {pa} vs secure {sa}");
        assert_eq!(y["contributors"], 10);
    }
    // The request and the readiness, then four SecAgg stages: five round trips of 2 x 50 ms.
    assert_eq!(b["rounds"][0]["virtual_ms"], 500);
    assert_eq!(a["rounds"][0]["virtual_ms"], 100);
}

#[test]
fn secagg_survives_dropouts_after_masking_and_composes_with_dp() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--secagg",
        "true",
        "--dropout-after-masking",
        "0.2",
        "--dp-noise-multiplier",
        "0.5",
        "--dp-noise",
        "distributed",
    ];
    let o = dainet(&simulate_args(s(dir.path()), &args));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = report(dir.path());
    for x in r["rounds"].as_array().unwrap() {
        assert!(x["epsilon"].as_f64().unwrap() > 0.0);
        // Clients that drop after masking are still in the sum: their self-masks are rebuilt
        // from their neighbours' shares. A round whose dropouts exceed n − t says why.
        if x["aggregated"] == true {
            assert_eq!(x["contributors"], 10);
        } else {
            let why = x["not_aggregated_because"].as_str().unwrap();
            assert!(why.starts_with("secure aggregation failed"), "{x}");
        }
    }
    assert!(
        r["rounds"].as_array().unwrap().iter().any(|x| x["virtual_ms"].as_u64().unwrap() % 500 != 0),
        "some stage waited for a dropped client"
    );
    assert_clean_error(&dainet(&["simulate", "--secagg", "true", "--strategy", "median"]), "mean-based");
    assert_clean_error(&dainet(&["simulate", "--dropout-after-masking", "0.1"]), "secagg");
}
