//! The checkpoint decoder against arbitrary and mutated bytes (issue 11), and the resumed-run
//! metadata behind its content hash.
//!
//! A checkpoint is a model file whose metadata carry the round, the settings' fingerprint, the
//! history (JSON) and the adaptive clipping norm. The content hash refuses nearly every mutated
//! file before its metadata are read, so `checkpoint_metadata` also feeds arbitrary and mutated
//! metadata *behind a valid hash*, as a file written by a buggy or hostile writer would be.
//!
//! The property tests run in the normal suite. The `long_run_*` tests are ignored by default;
//! each feeds its decoder 10^6 inputs (`DAINET_HAMMER_INPUTS` changes it):
//! `cargo test --release -p dainet-engine --test decoders -- --ignored --nocapture`.
//! The harness is `dainet_hammer` (crates/dainet-hammer).

use dainet_engine::checkpoint::{decode_checkpoint, model_meta};
use dainet_hammer::{arbitrary_bytes, long_run, mutated};
use dainet_ml::model_file::model_bytes;
use dainet_ml::ModelSpec;
use proptest::prelude::*;
use std::path::Path;

const HISTORY: &str = r#"{"initial":{"accuracy":0.1,"loss":2.302585,"examples":2000},"rounds":[]}"#;

/// The bytes of a checkpoint of `spec` after `round`, with these history and clip-norm texts.
fn checkpoint(spec: &str, round: u32, history: &str, clip: Option<&str>) -> Vec<u8> {
    let spec: ModelSpec = spec.parse().unwrap();
    let mut meta = model_meta(round, "0123456789abcdef");
    meta.insert("dainet.history".into(), history.into());
    if let Some(clip) = clip {
        meta.insert("dainet.dp_clip_norm".into(), clip.into());
    }
    model_bytes(&spec, &spec.build().init(u64::from(round)), &meta)
}

fn seeds() -> Vec<Vec<u8>> {
    vec![checkpoint("mlp:6-4-3", 2, HISTORY, None), checkpoint("mlp:3-2", 7, HISTORY, Some("0.75"))]
}

/// A checkpoint file: what is accepted has the metadata its writer put there.
fn checkpoint_file(bytes: &[u8]) -> bool {
    decode_checkpoint(Path::new("round-0002.safetensors"), bytes)
        .map(|c| assert_eq!(c.fingerprint, "0123456789abcdef"))
        .is_ok()
}

/// Metadata behind a valid content hash: the input is the history text (then, after a NUL, the
/// clipping norm text).
fn checkpoint_metadata(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let (history, clip) = match text.split_once('\0') {
        Some((h, c)) => (h, Some(c)),
        None => (&*text, None),
    };
    let file = checkpoint("mlp:3-2", 1, history, clip);
    decode_checkpoint(Path::new("round-0001.safetensors"), &file)
        .map(|c| assert!(c.dp_clip_norm.is_none_or(|n| n.is_finite() && n > 0.0)))
        .is_ok()
}

fn metadata_seeds() -> Vec<Vec<u8>> {
    vec![HISTORY.as_bytes().to_vec(), format!("{HISTORY}\u{0}0.5").into_bytes()]
}

#[test]
fn the_seeds_are_valid() {
    assert!(seeds().iter().all(|b| checkpoint_file(b)));
    assert!(metadata_seeds().iter().all(|b| checkpoint_metadata(b)));
}

#[test]
fn a_damaged_checkpoint_names_the_file_and_says_it_is_damaged() {
    let mut bad = seeds()[0].clone();
    let at = bad.len() - 5;
    bad[at] ^= 0x10;
    let e = decode_checkpoint(Path::new("runs/a/checkpoints/round-0002.safetensors"), &bad).err().unwrap();
    let text = e.to_string();
    assert!(text.starts_with("runs/a/checkpoints/round-0002.safetensors: the file is damaged"), "{text}");
}

#[test]
fn a_bad_clip_norm_is_refused() {
    for clip in ["NaN", "-1", "inf", "0", "x"] {
        let file = checkpoint("mlp:3-2", 1, HISTORY, Some(clip));
        let e = decode_checkpoint(Path::new("c"), &file).err().unwrap().to_string();
        assert!(e.contains("dainet.dp_clip_norm"), "{clip}: {e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn checkpoints_never_panic(bytes in prop_oneof![arbitrary_bytes(), mutated(seeds())]) {
        checkpoint_file(&bytes);
    }

    #[test]
    fn checkpoint_metadata_never_panics(bytes in prop_oneof![arbitrary_bytes(), mutated(metadata_seeds())]) {
        checkpoint_metadata(&bytes);
    }
}

#[test]
#[ignore = "long run: cargo test --release -p dainet-engine --test decoders -- --ignored --nocapture"]
fn long_run_checkpoint_file() {
    long_run("engine-checkpoint-file", &seeds(), checkpoint_file);
}

#[test]
#[ignore = "long run: cargo test --release -p dainet-engine --test decoders -- --ignored --nocapture"]
fn long_run_checkpoint_metadata() {
    long_run("engine-checkpoint-metadata", &metadata_seeds(), checkpoint_metadata);
}
