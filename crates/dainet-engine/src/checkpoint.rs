//! Checkpoints: the global model after a round, with what a resumed run needs to continue to
//! exactly the model and report an uninterrupted run produces — the round, the settings'
//! fingerprint (a checkpoint resumes only under the settings that wrote it), the metrics so far,
//! the adaptive clipping norm, and the server optimiser's state in a file beside it.
//!
//! A checkpoint is a model file (`dainet predict` loads it) whose metadata carry the rest, and
//! `round-NNNN.server.safetensors` beside it when the strategy has server state. Both carry the
//! model files' content hash ([`dainet_ml::model_file`]), so a damaged checkpoint is refused
//! before a run resumes from it.
//!
//! Reading is two steps: [`decode_checkpoint`] turns bytes into a [`Checkpoint`] (never panics,
//! whatever the bytes), then [`resume_point`] checks it belongs to the run.

use crate::error::EngineError;
use crate::plan::Plan;
use crate::run::{RoundRecord, Start};
use dainet_core::text::{excerpt, shorten, EXCERPT_CHARS};
use dainet_core::Params;
use dainet_ml::model::ModelSpec;
use dainet_ml::model_file::{decode_model, load_tensors, save_model, save_tensors};
use dainet_ml::Evaluation;
use dainet_protocol::RoundOutcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, EngineError>;

/// What a checkpoint remembers besides the model.
#[derive(Serialize, Deserialize)]
pub struct History {
    /// The initial model's evaluation.
    pub initial: Evaluation,
    /// Every closed round's metrics.
    pub rounds: Vec<RoundRecord>,
}

pub(crate) const ROUND_KEY: &str = "dainet.round";
pub(crate) const FINGERPRINT_KEY: &str = "dainet.config_fingerprint";
const HISTORY_KEY: &str = "dainet.history";
const DP_CLIP_KEY: &str = "dainet.dp_clip_norm";

/// The metadata of a model file of `round` (the final model, each recorded aggregate): the same
/// in both, so `model.safetensors`'s blake3 is the last aggregate's hash.
pub fn model_meta(round: u32, fingerprint: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(ROUND_KEY.to_string(), round.to_string()), (FINGERPRINT_KEY.to_string(), fingerprint.to_string())])
}

/// Writes the checkpoint of the round `outcome` closed into `OUT/checkpoints/`; returns its path.
pub fn save_checkpoint(plan: &Plan, history: &History, outcome: &RoundOutcome) -> Result<PathBuf> {
    let dir = plan.settings.output.out.join("checkpoints");
    std::fs::create_dir_all(&dir).map_err(EngineError::io(&dir, "cannot create"))?;
    let history =
        serde_json::to_string(history).map_err(|e| EngineError::Run(format!("cannot encode the history: {e}")))?;
    let mut meta = model_meta(outcome.round, &plan.fingerprint);
    meta.insert(HISTORY_KEY.to_string(), history);
    if let Some(norm) = outcome.dp_clip_norm {
        // Written exactly (shortest round-trip form), so a resume continues the same run.
        meta.insert(DP_CLIP_KEY.to_string(), format!("{norm:?}"));
    }
    let path = dir.join(format!("round-{:04}.safetensors", outcome.round));
    save_model(&path, plan.model.spec(), &outcome.params, &meta)?;
    if let Some(state) = &outcome.server_state {
        save_tensors(&server_state_path(&path), &[("m", &state.0), ("v", &state.1)], &BTreeMap::new())?;
    }
    Ok(path)
}

/// The server-optimiser state file beside a checkpoint.
fn server_state_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("server.safetensors")
}

/// Where a run resumed from a checkpoint starts, and the metrics it has so far.
pub struct ResumePoint {
    /// The round to start from, the model and the strategy's state.
    pub start: Start,
    /// The initial evaluation and the rounds up to the checkpoint's.
    pub history: History,
}

/// A checkpoint file's contents, as [`decode_checkpoint`] reads them.
pub struct Checkpoint {
    /// The round it was written after.
    pub round: u32,
    /// The fingerprint of the settings that wrote it.
    pub fingerprint: String,
    /// The model's architecture.
    pub spec: ModelSpec,
    /// The model after `round`.
    pub params: Params,
    /// The metrics up to `round`.
    pub history: History,
    /// The adaptive DP clipping norm for the next round, if the run adapts it.
    pub dp_clip_norm: Option<f64>,
}

/// Reads a checkpoint file's bytes (`path` names it in errors): a model file, its content hash
/// checked, whose metadata hold the round, the fingerprint and the history. Never panics.
pub fn decode_checkpoint(path: &Path, bytes: &[u8]) -> Result<Checkpoint> {
    let refuse = |reason: String| EngineError::Checkpoint { path: path.to_path_buf(), reason };
    let file = decode_model(path, bytes)?;
    let get =
        |key: &str| file.metadata.get(key).ok_or_else(|| refuse(format!("not a checkpoint (no {key:?} metadata)")));
    let round: u32 = get(ROUND_KEY)?.parse().map_err(|e| refuse(format!("bad {ROUND_KEY:?}: {e}")))?;
    let fingerprint = get(FINGERPRINT_KEY)?.clone();
    let history: History = serde_json::from_str(get(HISTORY_KEY)?).map_err(|e| {
        refuse(format!("corrupt {HISTORY_KEY:?} metadata: {}", shorten(&e.to_string(), 4 * EXCERPT_CHARS)))
    })?;
    let dp_clip_norm = match file.metadata.get(DP_CLIP_KEY) {
        Some(text) => Some(
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| refuse(format!("bad {DP_CLIP_KEY:?}: {} is not a positive number", excerpt(text))))?,
        ),
        None => None,
    };
    Ok(Checkpoint { round, fingerprint, spec: file.spec, params: file.params, history, dp_clip_norm })
}

/// Loads the checkpoint at `path` and checks it belongs to `plan`'s run and can continue it.
pub fn resume_point(plan: &Plan, path: &Path) -> Result<ResumePoint> {
    let refuse = |reason: String| EngineError::Checkpoint { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(EngineError::io(path, "cannot read the checkpoint"))?;
    let checkpoint = decode_checkpoint(path, &bytes)?;
    let round = checkpoint.round;
    if checkpoint.fingerprint != plan.fingerprint {
        return Err(refuse(
            "this checkpoint was written with other settings; resume with the settings of the run that wrote it \
             (only --rounds, --out and --checkpoint-every may change)"
                .into(),
        ));
    }
    if &checkpoint.spec != plan.model.spec() {
        return Err(refuse(format!(
            "the checkpoint holds a {} model, this run trains {}",
            checkpoint.spec,
            plan.model.spec()
        )));
    }
    if round >= plan.settings.task.rounds {
        return Err(refuse(format!("the checkpoint is already at round {round}; raise --rounds above it to continue")));
    }
    let state_path = server_state_path(path);
    let server_state = if state_path.exists() {
        let (mut tensors, _) = load_tensors(&state_path)?;
        let (Some(m), Some(v)) = (tensors.remove("m"), tensors.remove("v")) else {
            return Err(EngineError::Checkpoint { path: state_path, reason: "no server state tensors m and v".into() });
        };
        if m.len() != checkpoint.params.len() || v.len() != checkpoint.params.len() {
            return Err(EngineError::Checkpoint {
                path: state_path,
                reason: format!(
                    "server state tensors of {} and {} values, the model has {} parameters",
                    m.len(),
                    v.len(),
                    checkpoint.params.len()
                ),
            });
        }
        Some((m, v))
    } else if plan.strategy.server.has_state() {
        return Err(refuse(format!(
            "the server optimiser's state ({}) is missing beside this checkpoint; without it the run would not \
             continue as the original",
            state_path.display()
        )));
    } else {
        None
    };
    let start = Start {
        params: checkpoint.params,
        first_round: round + 1,
        server_state,
        dp_clip_norm: checkpoint.dp_clip_norm,
    };
    Ok(ResumePoint { start, history: checkpoint.history })
}
