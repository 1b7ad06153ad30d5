//! Resumable checkpoints: the model in Hugging Face layout, the optimiser's moments and the
//! progress so far, swapped in as a whole so a crash never leaves a half-written checkpoint.
//!
//! ```text
//! {out}/checkpoint/        the latest complete checkpoint
//!     config.json model.safetensors tokenizer.json preprocessor_config.json
//!     optimizer.safetensors state.json
//! {out}/checkpoint.partial the one being written (discarded if a run dies mid-write)
//! {out}/checkpoint.old     the previous one, for the instant between the two renames
//! ```

use std::path::{Path, PathBuf};

use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::data::files::write_atomic;
use crate::model::Llava;

use super::error::{Result, TrainError};
use super::optim::AdamW;

const CURRENT: &str = "checkpoint";
const PARTIAL: &str = "checkpoint.partial";
const OLD: &str = "checkpoint.old";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STATE_FILE: &str = "state.json";

/// Mean loss over a window of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    /// Steps completed at the end of the window.
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Mean loss per answer token of each family in the window.
    #[serde(default)]
    pub per_family: Vec<(String, f64)>,
}

/// A held-out accuracy measurement during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    pub step: usize,
    /// Training wall time when it was taken.
    pub seconds: f64,
    /// `(family, accuracy)` in family order.
    pub accuracy: Vec<(String, f64)>,
}

/// Progress of a run: what a resumed run continues from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps completed.
    pub step: usize,
    /// Training wall time so far, summed over resumed runs.
    pub seconds: f64,
    /// Model init / data-order seed and world seed, checked on resume.
    pub seed: u64,
    pub world_seed: u64,
    pub batch: usize,
    pub history: Vec<LossPoint>,
    pub evals: Vec<EvalPoint>,
}

fn fail(path: &Path, reason: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Writes a checkpoint of `llava`, `optimizer` and `state` under `out`, replacing the previous.
pub fn save_checkpoint(
    out: &Path,
    llava: &Llava,
    optimizer: &AdamW,
    state: &TrainState,
) -> Result<()> {
    let partial = out.join(PARTIAL);
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| fail(&partial, e))?;
    }
    std::fs::create_dir_all(&partial).map_err(|e| fail(&partial, e))?;
    llava.save(&partial)?;
    optimizer.save(&partial.join(OPTIMIZER_FILE))?;
    let json = serde_json::to_string_pretty(state).map_err(|e| fail(&partial, e))?;
    write_atomic(&partial.join(STATE_FILE), json.as_bytes()).map_err(|e| fail(&partial, e))?;

    let current = out.join(CURRENT);
    let old = out.join(OLD);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| fail(&old, e))?;
    }
    if current.exists() {
        std::fs::rename(&current, &old).map_err(|e| fail(&current, e))?;
    }
    std::fs::rename(&partial, &current).map_err(|e| fail(&partial, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| fail(&old, e))?;
    }
    Ok(())
}

/// The latest complete checkpoint folder under `out`, if any.
pub fn latest_checkpoint(out: &Path) -> Option<PathBuf> {
    [CURRENT, OLD]
        .iter()
        .map(|name| out.join(name))
        .find(|dir| dir.join(STATE_FILE).is_file())
}

/// Loads the latest checkpoint under `out` into `varmap` and `optimizer`; `None` if there is none.
pub fn load_checkpoint(
    out: &Path,
    varmap: &mut VarMap,
    optimizer: &mut AdamW,
) -> Result<Option<TrainState>> {
    let Some(dir) = latest_checkpoint(out) else {
        return Ok(None);
    };
    let state_path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| fail(&state_path, e))?;
    let state: TrainState = serde_json::from_str(&text).map_err(|e| fail(&state_path, e))?;
    let weights = dir.join(crate::model::checkpoint::SINGLE_FILE);
    varmap.load(&weights).map_err(|e| fail(&weights, e))?;
    optimizer.load(&dir.join(OPTIMIZER_FILE))?;
    Ok(Some(state))
}

/// Removes the checkpoint folders under `out` (after a run completed).
pub fn remove_checkpoints(out: &Path) -> Result<()> {
    for name in [CURRENT, PARTIAL, OLD] {
        let dir = out.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| fail(&dir, e))?;
        }
    }
    Ok(())
}
