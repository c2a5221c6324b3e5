//! Trainers keeping what they sent, with `--keep-updates`: each trainer's own store, never the
//! shared ledger folder.
//!
//! In the simulator, trainer `name`'s store is `DIR/<name>/`: a plain update as a model file
//! (`round-NNNN.safetensors`, loadable by `dainet predict`), a SecAgg+ masked input as its
//! words in little-endian (`round-NNNN.masked`). The ledger commits to each by a hash of its
//! values (`dainet_protocol::record`), so `dainet ledger verify --updates DIR` can check every
//! commitment against the stores, and only their owners can prove what they sent.

use anyhow::{Context, Result};
use dainet_core::Params;
use dainet_ml::model_file::save_model;
use dainet_ml::ModelSpec;
use dainet_privacy::secagg::ClientMessage;
use dainet_protocol::{ClientId, ToCoordinator};
use std::collections::BTreeMap;
use std::path::PathBuf;
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
    /// Stores under `dir`, one per client, named `names[k]`.
    pub fn new(dir: PathBuf, spec: ModelSpec, layout: Arc<dainet_core::Layout>, names: Vec<String>) -> Self {
        Self { dir, spec, layout, names }
    }

    /// Trainer `client` keeps `message` if it is an update or a masked input.
    pub fn keep(&mut self, client: ClientId, message: &ToCoordinator) -> Result<()> {
        let name = self.names.get(client.0 as usize).cloned().unwrap_or_else(|| format!("client-{}", client.0));
        let folder = self.dir.join(name);
        match message {
            ToCoordinator::Update { round, update } => {
                std::fs::create_dir_all(&folder).with_context(|| format!("{}: cannot create", folder.display()))?;
                let params = Params::new(self.layout.clone(), update.params.clone())?;
                let meta = BTreeMap::from([
                    ("dainet.round".to_string(), round.to_string()),
                    ("dainet.client".to_string(), client.0.to_string()),
                ]);
                Ok(save_model(&folder.join(format!("round-{round:04}.safetensors")), &self.spec, &params, &meta)?)
            }
            ToCoordinator::SecAgg { round, message: ClientMessage::MaskedInput { input, .. } } => {
                std::fs::create_dir_all(&folder).with_context(|| format!("{}: cannot create", folder.display()))?;
                let bytes: Vec<u8> = input.words().iter().flat_map(|w| w.to_le_bytes()).collect();
                let path = folder.join(format!("round-{round:04}.masked"));
                dainet_core::file::write_whole(&path, &bytes)
                    .with_context(|| format!("{}: cannot write", path.display()))
            }
            _ => Ok(()),
        }
    }
}
