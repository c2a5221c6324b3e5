//! Model files: parameters as safetensors, readable by PyTorch, candle and burn.
//!
//! Each tensor of the [`Layout`](dainet_core::Layout) is stored under its name as `F32` with
//! its shape. The header metadata holds `dainet.model` (the [`ModelSpec`] text, so a file
//! alone is enough to rebuild the model), `dainet.format` (`2`), `dainet.blake3` (the content
//! hash, below), and whatever string pairs the caller adds (round, config fingerprint, metrics
//! of a checkpoint).
//!
//! # Content hash
//!
//! Every file this module writes carries `dainet.blake3`, the hex blake3 of its content: the
//! domain tag `dainet.safetensors.v2`, then each metadata pair but the hash itself in key order,
//! then each tensor in name order (its name, dtype, shape and data bytes), every string and byte
//! run preceded by its length as a little-endian `u64`. Reading recomputes it and refuses a file
//! whose hash differs ([`ModelFileError::Damaged`]): a flipped bit in a weight, a metric or the
//! model spec is caught before anything uses it. The hash covers what the file *says*, not how
//! its JSON header is spelled, so header whitespace is not part of it.
//!
//! Files without a hash (format `1`, written before hashes existed) are refused with
//! [`ModelFileError::Unverifiable`], which says to write them again: there is no way to tell an
//! old file from a damaged new one whose hash key was hit, and resuming or serving a damaged
//! model silently is what the hash is for.
//!
//! Decoding never panics and never allocates more than a small multiple of the input:
//! [`decode_model`] and [`decode_tensors`] take bytes already in memory, and the
//! `safetensors` crate checks the header length against the input before parsing it.
//!
//! Files are written to a temporary name in the same folder and renamed into place, so a
//! crash leaves either the old file or the new one, never a torn one.
//!
//! The header is written here, not by `safetensors::serialize`, because that takes its
//! metadata as a `HashMap` and so orders the header differently in every process; ours
//! sorts every key, so the same model gives the same bytes. Reading goes through the
//! `safetensors` crate, which validates the header and offsets.

use crate::model::{ModelSpec, ModelSpecError};
// The parser's message may quote a header value whole (serde's `unknown variant …`).
use dainet_core::text::{excerpt, shorten, EXCERPT_CHARS};
use dainet_core::Params;
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MODEL_KEY: &str = "dainet.model";
const FORMAT_KEY: &str = "dainet.format";
/// Format 2: format 1 plus the content hash.
const FORMAT: &str = "2";
const HASH_KEY: &str = "dainet.blake3";
/// The domain tag that starts the hashed content.
const HASH_DOMAIN: &[u8] = b"dainet.safetensors.v2";

/// An error reading or writing a model file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelFileError {
    /// The file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause (in the message, not repeated as a source).
        cause: std::io::Error,
    },
    /// The file is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The file lacks dainet's model metadata or has a bad spec.
    #[error("{path}: {reason}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// The content hash does not match: the file changed after it was written.
    #[error("{path}: the file is damaged: {reason}; it changed after dainet wrote it (a disk fault, a cut copy, an edit) — use an intact copy or write it again")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// The file carries no content hash, so it cannot be checked.
    #[error("{path}: {reason}")]
    Unverifiable {
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// A tensor is missing or has the wrong type or shape.
    #[error("{path}: tensor {name}: {reason}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// A model file's contents.
#[derive(Debug, Clone)]
pub struct ModelFile {
    /// The architecture.
    pub spec: ModelSpec,
    /// The parameters, in the layout of `spec.build()`.
    pub params: Params,
    /// Extra metadata pairs (without the `dainet.model` and `dainet.format` keys).
    pub metadata: BTreeMap<String, String>,
}

/// Writes `params` of a `spec` model to `path` with extra `metadata`, atomically.
pub fn save_model(
    path: &Path,
    spec: &ModelSpec,
    params: &Params,
    metadata: &BTreeMap<String, String>,
) -> Result<(), ModelFileError> {
    let (tensors, meta) = model_tensors(spec, params, metadata);
    write_safetensors(path, &tensors, &meta)
}

/// The bytes [`save_model`] would write: a model file in memory, e.g. for a content-addressed
/// blob store, where its blake3 is its name. [`load_model`] reads them back from a file.
pub fn model_bytes(spec: &ModelSpec, params: &Params, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let (tensors, meta) = model_tensors(spec, params, metadata);
    encode_safetensors(&tensors, &meta)
}

/// A tensor to write: its name, shape and values.
type NamedTensor<'a> = (&'a str, &'a [usize], &'a [f32]);

/// The named tensors of `params` and the metadata with the model spec added.
fn model_tensors<'a>(
    spec: &ModelSpec,
    params: &'a Params,
    metadata: &BTreeMap<String, String>,
) -> (Vec<NamedTensor<'a>>, BTreeMap<String, String>) {
    let layout = params.layout();
    let tensors = layout
        .tensors()
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), t.shape.as_slice(), &params.values()[layout.range(i)]))
        .collect();
    let mut meta = metadata.clone();
    meta.insert(MODEL_KEY.into(), spec.to_string());
    (tensors, meta)
}

/// Writes named one-dimensional `f32` tensors (e.g. optimiser state) to `path`, atomically,
/// in the same deterministic format as model files.
pub fn save_tensors(
    path: &Path,
    tensors: &[(&str, &[f32])],
    metadata: &BTreeMap<String, String>,
) -> Result<(), ModelFileError> {
    let lens: Vec<[usize; 1]> = tensors.iter().map(|(_, v)| [v.len()]).collect();
    let list: Vec<(&str, &[usize], &[f32])> =
        tensors.iter().zip(&lens).map(|((name, v), len)| (*name, len.as_slice(), *v)).collect();
    write_safetensors(path, &list, metadata)
}

/// Named flat tensors and string metadata, as [`load_tensors`] returns them.
pub type TensorsAndMetadata = (BTreeMap<String, Vec<f32>>, BTreeMap<String, String>);

/// Reads every `F32` tensor of a safetensors file written by [`save_tensors`] (flattened) and
/// its metadata (without the format and hash keys), checking its content hash.
pub fn load_tensors(path: &Path) -> Result<TensorsAndMetadata, ModelFileError> {
    let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io { path: path.into(), cause: source })?;
    decode_tensors(path, &bytes)
}

/// [`load_tensors`] of a file already in memory; `path` names it in errors. Never panics.
pub fn decode_tensors(path: &Path, bytes: &[u8]) -> Result<TensorsAndMetadata, ModelFileError> {
    let (file, metadata) = open_checked(path, bytes)?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        if view.dtype() != Dtype::F32 {
            let reason = format!("dtype {:?}, expected F32", view.dtype());
            return Err(ModelFileError::Tensor { path: path.into(), name, reason });
        }
        tensors.insert(name, f32s(view.data()));
    }
    Ok((tensors, metadata))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// The safetensors writer shared by models and other tensors: sorted header, 8-byte aligned
/// data, written to a temporary file, synced, and renamed into place.
fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<(), ModelFileError> {
    let data = encode_safetensors(tensors, metadata);
    // Whole or not at all: a crash never leaves a torn file, a failed write no temporary one.
    dainet_core::file::write_whole(path, &data)
        .map_err(|source| ModelFileError::Io { path: path.to_path_buf(), cause: source })
}

/// The bytes of a safetensors file holding `tensors`: deterministic (sorted header keys, no
/// timestamps), so equal inputs give equal bytes and equal hashes.
fn encode_safetensors(tensors: &[NamedTensor<'_>], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, shape, values) in tensors {
        let end = offset + values.len() * 4;
        header.insert(
            name.to_string(),
            serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut info = metadata.clone();
    info.remove(HASH_KEY);
    info.insert(FORMAT_KEY.into(), FORMAT.into());
    // The hash takes the tensors in name order, whatever order the file stores them in.
    let bytes: Vec<_> = tensors.iter().map(|(_, _, values)| dainet_core::codec::le_bytes(values)).collect();
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| tensors[a].0.cmp(tensors[b].0));
    let hash = content_hash(&info, order.iter().map(|&i| (tensors[i].0, "F32", tensors[i].1, bytes[i].as_ref())));
    info.insert(HASH_KEY.into(), hash);
    header.insert("__metadata__".into(), serde_json::json!(info));
    // serde_json's map is a BTreeMap (no preserve_order feature): keys come out sorted.
    let mut head = serde_json::to_vec(&header).expect("a map of strings serialises");
    // The data starts 8-byte aligned, padded with spaces as the format allows.
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let mut data = Vec::with_capacity(8 + head.len() + offset);
    data.extend_from_slice(&(head.len() as u64).to_le_bytes());
    data.extend_from_slice(&head);
    for tensor in &bytes {
        data.extend_from_slice(tensor);
    }
    data
}

/// The content hash of a file with these metadata pairs (the hash key excluded by the caller)
/// and these tensors `(name, dtype, shape, data)`, given in name order; see the module doc.
fn content_hash<'a>(
    metadata: &BTreeMap<String, String>,
    tensors: impl Iterator<Item = (&'a str, &'a str, &'a [usize], &'a [u8])>,
) -> String {
    let mut hasher = blake3::Hasher::new();
    let mut put = |bytes: &[u8]| {
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    put(HASH_DOMAIN);
    for (key, value) in metadata {
        put(key.as_bytes());
        put(value.as_bytes());
    }
    for (name, dtype, shape, data) in tensors {
        put(name.as_bytes());
        put(dtype.as_bytes());
        let dims: Vec<u8> = shape.iter().flat_map(|&d| (d as u64).to_le_bytes()).collect();
        put(&dims);
        put(data);
    }
    hasher.finalize().to_hex().to_string()
}

/// Parses safetensors `bytes` read from `path` and checks its content hash: the tensors and the
/// metadata (without the hash and format keys).
fn open_checked<'b>(
    path: &Path,
    bytes: &'b [u8],
) -> Result<(SafeTensors<'b>, BTreeMap<String, String>), ModelFileError> {
    let format = |e: safetensors::SafeTensorError| ModelFileError::Format {
        path: path.into(),
        reason: shorten(&e.to_string(), 4 * EXCERPT_CHARS),
    };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(format)?;
    let file = SafeTensors::deserialize(bytes).map_err(format)?;
    let mut metadata: BTreeMap<String, String> = meta.metadata().clone().unwrap_or_default().into_iter().collect();
    let unverifiable = |reason: String| ModelFileError::Unverifiable { path: path.into(), reason };
    match metadata.get(FORMAT_KEY).map(String::as_str) {
        Some(FORMAT) => {}
        Some("1") | None if !metadata.contains_key(HASH_KEY) => {
            return Err(unverifiable(format!(
                "no content hash ({HASH_KEY:?}): written by an older dainet (format 1) or not by dainet, so it cannot \
                 be checked for damage; write it again with this dainet (re-run the simulation that made it)"
            )))
        }
        Some(other) if other.parse::<u32>().is_ok_and(|v| v > 2) => {
            return Err(unverifiable(format!(
                "{FORMAT_KEY} {} is newer than this dainet reads ({FORMAT}); use a newer dainet",
                excerpt(other)
            )))
        }
        _ => {
            return Err(ModelFileError::Damaged {
                path: path.into(),
                reason: format!(
                    "{FORMAT_KEY} is {}, expected {FORMAT:?}",
                    metadata.get(FORMAT_KEY).map_or("missing".to_string(), |v| excerpt(v).to_string())
                ),
            })
        }
    }
    let Some(stored) = metadata.remove(HASH_KEY) else {
        return Err(ModelFileError::Damaged {
            path: path.into(),
            reason: format!("format {FORMAT} without its content hash ({HASH_KEY:?})"),
        });
    };
    let mut tensors = file.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let dtypes: Vec<String> = tensors.iter().map(|(_, view)| format!("{:?}", view.dtype())).collect();
    let computed = content_hash(
        &metadata,
        tensors
            .iter()
            .zip(&dtypes)
            .map(|((name, view), dtype)| (name.as_str(), dtype.as_str(), view.shape(), view.data())),
    );
    if stored != computed {
        return Err(ModelFileError::Damaged {
            path: path.into(),
            reason: format!("its content hash is {computed}, the file says {}", excerpt(&stored)),
        });
    }
    metadata.remove(FORMAT_KEY);
    Ok((file, metadata))
}

/// Reads a model file written by [`save_model`], checking its content hash.
pub fn load_model(path: &Path) -> Result<ModelFile, ModelFileError> {
    let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io { path: path.into(), cause: source })?;
    decode_model(path, &bytes)
}

/// [`load_model`] of a file already in memory; `path` names it in errors. Never panics, and
/// allocates the model only once its size matches the tensor bytes the input holds.
pub fn decode_model(path: &Path, bytes: &[u8]) -> Result<ModelFile, ModelFileError> {
    let (tensors, mut metadata) = open_checked(path, bytes)?;
    let meta_err = |reason: String| ModelFileError::Metadata { path: path.into(), reason };
    let spec_text = metadata
        .remove(MODEL_KEY)
        .ok_or_else(|| meta_err(format!("no {MODEL_KEY:?} metadata: not a dainet model file")))?;
    let spec: ModelSpec = spec_text.parse().map_err(|e: ModelSpecError| meta_err(e.to_string()))?;
    // Check the sizes before building: a header may name a model far larger than the file.
    let stored: usize = tensors.tensors().iter().map(|(_, t)| t.data().len()).sum();
    let expected = spec.num_params().unwrap_or(usize::MAX);
    if stored != expected.saturating_mul(4) {
        return Err(meta_err(format!(
            "the file holds {stored} bytes of tensors, a {spec} model needs {expected} parameters"
        )));
    }
    let model = spec.build();
    let layout = model.layout().clone();
    let mut values = Vec::with_capacity(layout.len());
    for t in layout.tensors() {
        let terr = |reason: String| ModelFileError::Tensor { path: path.into(), name: t.name.clone(), reason };
        let view = tensors.tensor(&t.name).map_err(|e| terr(e.to_string()))?;
        if view.dtype() != Dtype::F32 {
            return Err(terr(format!("dtype {:?}, expected F32", view.dtype())));
        }
        if view.shape() != t.shape.as_slice() {
            return Err(terr(format!("shape {:?}, expected {:?}", view.shape(), t.shape)));
        }
        values.extend(f32s(view.data()));
    }
    let params = Params::new(layout, values).map_err(|e| meta_err(e.to_string()))?;
    Ok(ModelFile { spec, params, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_bits_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let spec: ModelSpec = "mlp:6-4-3".parse().unwrap();
        let params = spec.build().init(9);
        let meta = BTreeMap::from([("round".to_string(), "7".to_string())]);
        save_model(&path, &spec, &params, &meta).unwrap();
        let file = load_model(&path).unwrap();
        assert_eq!(file.spec, spec);
        assert_eq!(file.params, params);
        assert_eq!(file.metadata, meta);
    }

    #[test]
    fn model_bytes_are_the_bytes_save_model_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let spec: ModelSpec = "mlp:6-4-3".parse().unwrap();
        let params = spec.build().init(3);
        let meta = BTreeMap::from([("dainet.round".to_string(), "2".to_string())]);
        save_model(&path, &spec, &params, &meta).unwrap();
        assert_eq!(model_bytes(&spec, &params, &meta), std::fs::read(&path).unwrap());
        let other = spec.build().init(4);
        assert_ne!(model_bytes(&spec, &other, &meta), model_bytes(&spec, &params, &meta));
    }

    #[test]
    fn plain_tensors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.safetensors");
        let (m, v) = (vec![1.0f32, -2.0], vec![0.5f32, 0.25]);
        save_tensors(&path, &[("m", &m), ("v", &v)], &BTreeMap::new()).unwrap();
        let (tensors, _) = load_tensors(&path).unwrap();
        assert_eq!(tensors["m"], m);
        assert_eq!(tensors["v"], v);
    }

    #[test]
    fn the_same_model_gives_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let spec: ModelSpec = "mlp:5-3".parse().unwrap();
        let params = spec.build().init(1);
        let meta: BTreeMap<String, String> = (0..20).map(|i| (format!("key{i}"), format!("v{i}"))).collect();
        let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
        save_model(&a, &spec, &params, &meta).unwrap();
        save_model(&b, &spec, &params, &meta).unwrap();
        let bytes = std::fs::read(&a).unwrap();
        assert!(bytes == std::fs::read(&b).unwrap());
        // Header length is 8-byte aligned and the data follows it.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        assert_eq!(bytes.len(), 8 + n + 4 * params.len());
    }

    #[test]
    fn every_truncation_and_random_corruption_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let spec: ModelSpec = "mlp:3-2".parse().unwrap();
        let params = spec.build().init(1);
        save_model(&path, &spec, &params, &BTreeMap::new()).unwrap();
        let good = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad.safetensors");
        for len in 0..good.len() {
            std::fs::write(&bad, &good[..len]).unwrap();
            assert!(load_model(&bad).is_err(), "truncated to {len} bytes");
        }
        let mut g = dainet_core::SplitMix64::new(5);
        for _ in 0..2000 {
            let mut bytes = good.clone();
            for _ in 0..1 + g.next_u64() % 4 {
                let i = (g.next_u64() % bytes.len() as u64) as usize;
                bytes[i] = g.next_u64() as u8;
            }
            std::fs::write(&bad, &bytes).unwrap();
            // Ok (a flipped weight is still a model) or Err, never a panic.
            let _ = load_model(&bad);
        }
    }

    #[test]
    fn a_header_naming_a_huge_model_is_refused_before_allocating() {
        let spec: ModelSpec = "mlp:3-2".parse().unwrap();
        let params = spec.build().init(1);
        // The tensors of mlp:3-2 under a header (and a valid content hash) that says mlp:9-2,
        // as a buggy or hostile writer could make.
        let (tensors, mut meta) = model_tensors(&spec, &params, &BTreeMap::new());
        meta.insert(MODEL_KEY.into(), "mlp:9-2".into());
        let bytes = encode_safetensors(&tensors, &meta);
        let e = decode_model(Path::new("m.safetensors"), &bytes).unwrap_err().to_string();
        assert!(e.contains("needs 20 parameters"), "{e}");
    }

    #[test]
    fn an_edited_header_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let spec: ModelSpec = "mlp:3-2".parse().unwrap();
        save_model(&path, &spec, &spec.build().init(1), &BTreeMap::new()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        // Same length, so the JSON stays valid: mlp:3-2 -> mlp:9-2.
        let at = bytes.windows(7).position(|w| w == b"mlp:3-2").unwrap();
        bytes[at + 4] = b'9';
        std::fs::write(&path, &bytes).unwrap();
        let e = load_model(&path).unwrap_err();
        assert!(matches!(e, ModelFileError::Damaged { .. }), "{e}");
    }

    #[test]
    fn corrupt_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, b"\x08\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
        assert!(matches!(load_model(&path), Err(ModelFileError::Format { .. } | ModelFileError::Metadata { .. })));
        std::fs::write(&path, b"garbage").unwrap();
        let e = load_model(&path).unwrap_err();
        assert!(e.to_string().contains("m.safetensors"), "{e}");
        assert!(matches!(load_model(&dir.path().join("missing")), Err(ModelFileError::Io { .. })));
    }
}
