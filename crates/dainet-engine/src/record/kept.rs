//! Trainers keeping what they sent, with `--keep-updates`: each trainer's own store, never the
//! shared ledger folder.
//!
//! In the simulator, trainer `name`'s store is `DIR/<name>/`: a plain update as a model file
//! (`round-NNNN.safetensors`, loadable by `dainet predict`), a SecAgg+ masked input as its
//! words in little-endian (`round-NNNN.masked`). The ledger commits to each by a hash of its
//! values (`dainet_protocol::record`), so `dainet ledger verify --updates DIR` can check every
//! commitment against the stores, and only their owners can prove what they sent.

use crate::checkpoint::ROUND_KEY;
use crate::error::EngineError;
use crate::plan::Plan;
use dainet_core::Params;
use dainet_ledger::hash::Digest;
use dainet_ml::model_file::{load_model, save_model};
use dainet_ml::ModelSpec;
use dainet_privacy::secagg::ClientMessage;
use dainet_protocol::record::{masked_input_digest, update_digest};
use dainet_protocol::{ClientId, ToCoordinator};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The trainers' own stores of a simulation. See the module docs.
pub struct KeptUpdates {
    dir: PathBuf,
    spec: ModelSpec,
    layout: Arc<dainet_core::Layout>,
    /// Client k's name (its folder).
    names: Vec<String>,
}

impl KeptUpdates {
    /// Stores under `dir`, one per client of `plan`, each named as [`Plan::client_name`] says.
    pub fn new(dir: PathBuf, plan: &Plan) -> Self {
        let names = (0..plan.partition.num_clients()).map(|k| plan.client_name(k)).collect();
        Self { dir, spec: plan.model.spec().clone(), layout: plan.model.layout().clone(), names }
    }

    /// Trainer `client` keeps `message` if it is an update or a masked input.
    pub fn keep(&mut self, client: ClientId, message: &ToCoordinator) -> Result<(), EngineError> {
        let Some(name) = self.names.get(client.0 as usize) else {
            return Err(EngineError::Data(format!("client {client} is not a client of this run (a bug)")));
        };
        let folder = self.dir.join(name);
        match message {
            ToCoordinator::Update { round, update } => {
                std::fs::create_dir_all(&folder).map_err(EngineError::io(&folder, "cannot create"))?;
                let params = Params::new(self.layout.clone(), update.params.clone()).map_err(EngineError::data)?;
                let meta = BTreeMap::from([
                    (ROUND_KEY.to_string(), round.to_string()),
                    ("dainet.client".to_string(), client.0.to_string()),
                ]);
                Ok(save_model(&folder.join(format!("round-{round:04}.safetensors")), &self.spec, &params, &meta)?)
            }
            ToCoordinator::SecAgg { round, message: ClientMessage::MaskedInput { input, .. } } => {
                std::fs::create_dir_all(&folder).map_err(EngineError::io(&folder, "cannot create"))?;
                let bytes: Vec<u8> = input.words().iter().flat_map(|w| w.to_le_bytes()).collect();
                let path = folder.join(format!("round-{round:04}.masked"));
                dainet_core::file::write_whole(&path, &bytes).map_err(EngineError::io(&path, "cannot write"))
            }
            _ => Ok(()),
        }
    }
}

/// The round and commitment of every update a trainer kept under `dir` (the stores
/// [`KeptUpdates`] writes, or any folder of such files): `*.safetensors` models by their values
/// (their round from the `dainet.round` metadata), `*.masked` masked inputs by their words
/// (their round from the name, `round-NNNN.masked`), hashed as the coordinator committed to them
/// (`dainet_protocol::record`). Returns them and the number of files read. Symbolic links are
/// not followed.
pub fn kept_commitments(dir: &Path) -> Result<(BTreeSet<(u64, Digest)>, usize), EngineError> {
    let mut held = BTreeSet::new();
    let mut files = 0;
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder).map_err(EngineError::io(&folder, "cannot read"))?;
        for entry in entries {
            let entry = entry.map_err(EngineError::io(&folder, "cannot read"))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(EngineError::io(&path, "cannot read"))?;
            if kind.is_dir() {
                folders.push(path);
                continue;
            }
            let refuse = |reason: String| EngineError::Data(format!("{}: {reason}", path.display()));
            let bad_round = || refuse("no round in its name or metadata".into());
            let (round, hash) = match path.extension().and_then(|e| e.to_str()) {
                // The update's values in its model's layout order, as the coordinator hashed them.
                Some("safetensors") => {
                    let model = load_model(&path)?;
                    let round = model.metadata.get(ROUND_KEY).and_then(|r| r.parse().ok()).ok_or_else(bad_round)?;
                    (round, update_digest(model.params.values()))
                }
                Some("masked") => {
                    let round = path
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .and_then(|s| s.strip_prefix("round-"))
                        .and_then(|r| r.parse().ok())
                        .ok_or_else(bad_round)?;
                    let bytes = std::fs::read(&path).map_err(EngineError::io(&path, "cannot read"))?;
                    if bytes.len() % 4 != 0 {
                        return Err(refuse(format!("{} bytes is not a whole number of 32-bit words", bytes.len())));
                    }
                    let words: Vec<u32> =
                        bytes.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
                    (round, masked_input_digest(&words))
                }
                _ => continue,
            };
            held.insert((round, Digest(hash)));
            files += 1;
        }
    }
    Ok((held, files))
}
