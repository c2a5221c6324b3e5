//! Every decoder of dainet-ml against arbitrary and mutated bytes (issue 11): IDX files (plain
//! and gzip), CSV files (labelled, features only, with a client column), model files and plain
//! tensor files (safetensors with a content hash).
//!
//! The property tests run in the normal suite (a few hundred cases each). The `long_run_*`
//! tests are ignored by default; each feeds its decoder 10^6 inputs (`DAINET_HAMMER_INPUTS`
//! changes it) and fails if any panics:
//! `cargo test --release -p dainet-ml --test decoders -- --ignored --nocapture`.
//! The harness is `dainet_hammer` (crates/dainet-hammer).

use dainet_hammer::{arbitrary_bytes, long_run, mutate, mutated, Rng};
use dainet_ml::data::csv::{decode_csv, load_csv_features, ColumnRef, CsvOptions, HeaderMode};
use dainet_ml::data::idx::read_idx_bytes;
use dainet_ml::model_file::{decode_model, decode_tensors, model_bytes, save_tensors, ModelFile, ModelFileError};
use dainet_ml::ModelSpec;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

const NAME: &str = "input";

fn idx_seeds() -> Vec<Vec<u8>> {
    let images: Vec<u8> = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2].into_iter().chain(0..12).collect();
    let labels: Vec<u8> = vec![0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 9];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&images).unwrap();
    vec![images.clone(), labels, gz.finish().unwrap()]
}

/// An IDX file: what is accepted holds exactly as many bytes as its dimensions say.
fn idx(bytes: &[u8]) -> bool {
    read_idx_bytes(Path::new(NAME), bytes)
        .map(|a| assert_eq!(a.data.len(), a.dims.iter().product::<usize>(), "dims {:?}", a.dims))
        .is_ok()
}

fn csv_seeds() -> Vec<Vec<u8>> {
    [
        "x1,x2,label\n0.5,1,0\n-2e3,3.25,1\n",
        "\u{feff}a,\"b, quoted\",client,label\r\n1,2,alice,0\r\n4,5,bob,1\r\n\r\n",
        "1,2,3\n4,5,6\n",
        "f,\"g\"\"h\",y\n\"1\",2,3.0\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// A CSV file read three ways (label last, a client column by name, features only): what is
/// accepted is a rectangle of finite features with labels below the class count.
fn csv(bytes: &[u8]) -> bool {
    let by_name = CsvOptions { client_column: Some(ColumnRef::Name("client".into())), ..CsvOptions::default() };
    let absent =
        CsvOptions { header: HeaderMode::Absent, label_column: Some(ColumnRef::Index(0)), ..CsvOptions::default() };
    let mut accepted = false;
    for opts in [CsvOptions::default(), by_name, absent] {
        if let Ok(data) = decode_csv(Path::new(NAME), bytes, &opts) {
            let d = data.dataset;
            assert_eq!(d.features().len(), d.len() * d.dim());
            assert!(d.features().iter().all(|v| v.is_finite()));
            assert!(d.labels().iter().all(|&l| (l as usize) < d.num_classes()));
            accepted = true;
        }
    }
    accepted
}

fn model_seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        ["mlp:6-4-3", "mlp:3-2", "cnn:1x4x4-2"]
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let spec: ModelSpec = spec.parse().unwrap();
                let meta = BTreeMap::from([("dainet.round".to_string(), i.to_string())]);
                model_bytes(&spec, &spec.build().init(i as u64), &meta)
            })
            .collect()
    })
}

/// A model file: what is accepted re-encodes to a file that decodes to the same model.
fn model(bytes: &[u8]) -> bool {
    decode_model(Path::new(NAME), bytes)
        .map(|m| {
            let again = decode_model(Path::new(NAME), &model_bytes(&m.spec, &m.params, &m.metadata)).unwrap();
            assert_same(&m, &again);
        })
        .is_ok()
}

fn assert_same(a: &ModelFile, b: &ModelFile) {
    assert_eq!(a.spec, b.spec);
    assert_eq!(a.metadata, b.metadata);
    let bits = |m: &ModelFile| m.params.values().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(a), bits(b));
}

fn tensor_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.safetensors");
    save_tensors(&path, &[("m", &[1.0, -2.0, 0.5]), ("v", &[0.25, 4.0, 0.0])], &BTreeMap::new()).unwrap();
    vec![std::fs::read(&path).unwrap()]
}

fn tensors(bytes: &[u8]) -> bool {
    decode_tensors(Path::new(NAME), bytes).is_ok()
}

#[test]
fn the_seeds_are_valid() {
    assert!(idx_seeds().iter().all(|b| idx(b)));
    assert!(csv_seeds().iter().all(|b| csv(b)));
    assert!(model_seeds().iter().all(|b| model(b)));
    assert!(tensor_seeds().iter().all(|b| tensors(b)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn idx_files_never_panic(bytes in prop_oneof![arbitrary_bytes(), mutated(idx_seeds())]) {
        idx(&bytes);
    }

    #[test]
    fn csv_files_never_panic(bytes in prop_oneof![arbitrary_bytes(), mutated(csv_seeds())]) {
        csv(&bytes);
    }

    #[test]
    fn model_files_never_panic(bytes in prop_oneof![arbitrary_bytes(), mutated(model_seeds().clone())]) {
        model(&bytes);
    }

    #[test]
    fn tensor_files_never_panic(bytes in prop_oneof![arbitrary_bytes(), mutated(tensor_seeds())]) {
        tensors(&bytes);
    }

    /// The content hash: a mutated model file is refused, or it says exactly what the original
    /// said (the edit hit only JSON spacing).
    #[test]
    fn a_mutated_model_file_is_refused_or_unchanged(which in 0usize..3, seed in any::<u64>()) {
        let good = &model_seeds()[which];
        let bad = mutate(&mut Rng::new(seed), good, good);
        if let Ok(m) = decode_model(Path::new(NAME), &bad) {
            assert_same(&m, &decode_model(Path::new(NAME), good).unwrap());
        }
    }
}

#[test]
fn a_flipped_weight_is_refused_as_damage_naming_the_file() {
    let good = &model_seeds()[0];
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 1;
    let e = decode_model(Path::new("runs/x/model.safetensors"), &bad).unwrap_err();
    assert!(matches!(e, ModelFileError::Damaged { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.starts_with("runs/x/model.safetensors: the file is damaged"), "{text}");
}

#[test]
fn a_file_without_a_content_hash_is_refused_with_what_to_do() {
    // A format-1 file, as dainet wrote before content hashes: the same header without the hash.
    let good = String::from_utf8_lossy(&model_seeds()[1]).into_owned();
    let start = good.find("\"dainet.blake3\":\"").unwrap();
    let end = start + good[start..].find("\",").unwrap() + 2;
    let header_len = u64::from_le_bytes(model_seeds()[1][..8].try_into().unwrap()) as usize;
    let mut header = format!("{}{}", &good[8..start], &good[end..8 + header_len])
        .replace("\"dainet.format\":\"2\"", "\"dainet.format\":\"1\"");
    header = header.trim_end().to_string();
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut old = (header.len() as u64).to_le_bytes().to_vec();
    old.extend_from_slice(header.as_bytes());
    old.extend_from_slice(&model_seeds()[1][8 + header_len..]);
    let e = decode_model(Path::new("old.safetensors"), &old).unwrap_err();
    assert!(matches!(e, ModelFileError::Unverifiable { .. }), "{e:?}");
    assert!(e.to_string().contains("write it again"), "{e}");
}

#[test]
fn a_huge_csv_cell_is_quoted_as_a_short_excerpt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let cell = "x".repeat(5_000_000);
    std::fs::write(&path, format!("1,2\n{cell},3\n")).unwrap();
    let e = load_csv_features(&path, &CsvOptions { header: HeaderMode::Absent, ..CsvOptions::default() })
        .unwrap_err()
        .to_string();
    assert!(e.len() < 300, "{} bytes: {}", e.len(), &e[..300]);
    assert!(e.contains("… (5000000 bytes)"), "{e}");
}

#[test]
#[ignore = "long run: cargo test --release -p dainet-ml --test decoders -- --ignored --nocapture"]
fn long_run_idx() {
    long_run("ml-idx", &idx_seeds(), idx);
}

#[test]
#[ignore = "long run: cargo test --release -p dainet-ml --test decoders -- --ignored --nocapture"]
fn long_run_csv() {
    long_run("ml-csv", &csv_seeds(), csv);
}

#[test]
#[ignore = "long run: cargo test --release -p dainet-ml --test decoders -- --ignored --nocapture"]
fn long_run_model_file() {
    long_run("ml-model-file", model_seeds(), model);
}

#[test]
#[ignore = "long run: cargo test --release -p dainet-ml --test decoders -- --ignored --nocapture"]
fn long_run_tensor_file() {
    long_run("ml-tensor-file", &tensor_seeds(), tensors);
}
