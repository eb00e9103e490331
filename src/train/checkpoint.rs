//! A run's checkpoint folder: its files, writing and reading them, and [`resume_or_start`],
//! the one way every trainer begins a run.

use super::step::optimizer;
use super::TrainState;
use crate::error::{Result, WebSrError};
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File names inside a checkpoint folder.
pub struct CheckpointPaths {
    /// The trained weights in the shipping format.
    pub model: PathBuf,
    /// The same weights as a burnpack, which keeps the parameter ids that the optimizer state
    /// is keyed by (safetensors does not), so a resumed run continues its Adam moments.
    pub model_state: PathBuf,
    pub best: PathBuf,
    pub optimizer: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
}

impl CheckpointPaths {
    pub fn new(dir: &Path) -> Self {
        Self {
            model: dir.join("last.safetensors"),
            model_state: dir.join("model.bpk"),
            best: dir.join("best.safetensors"),
            optimizer: dir.join("optimizer.bpk"),
            state: dir.join("state.json"),
            config: dir.join("config.json"),
        }
    }
}

pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    std::fs::write(&tmp, text).map_err(|e| WebSrError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| WebSrError::io(path, e))
}

/// Reads one of the run's JSON files (config, state).
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| WebSrError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| WebSrError::Invalid(format!("{}: {e}", path.display())))
}

/// A trainer's hyper-parameters, as written to its checkpoint folder.
pub(crate) trait RunConfig: Serialize + for<'de> Deserialize<'de> {
    /// Why a checkpoint saved under `saved` cannot go on under this config (completing
    /// "checkpoint in DIR ..."), or `None` when it can.
    fn resume_conflict(&self, saved: &Self) -> Option<String>;
}

/// Begins the run in `dir` (created if need be) with a fresh Adam optimizer: it continues the
/// checkpoint there when `resume` is set and there is one, otherwise it starts `new_model()`.
/// A checkpoint is loaded into `blank_model()` (any weights: the checkpoint replaces them)
/// through `net`, which picks out the trained network. Either way `cfg` becomes the folder's
/// config: a resumed run may extend the number of steps.
pub(crate) fn resume_or_start<C: RunConfig, M, N: ModuleSnapshot>(
    dir: &Path,
    cfg: &C,
    resume: bool,
    net: impl FnOnce(&mut M) -> &mut N,
    blank_model: impl FnOnce() -> Result<M>,
    new_model: impl FnOnce() -> Result<M>,
) -> Result<(M, ModuleOptimizer, TrainState)> {
    std::fs::create_dir_all(dir).map_err(|e| WebSrError::io(dir, e))?;
    let paths = CheckpointPaths::new(dir);
    let optim = optimizer();
    let begun = if resume && paths.state.exists() {
        let saved: C = read_json(&paths.config)?;
        if let Some(conflict) = cfg.resume_conflict(&saved) {
            return Err(WebSrError::Invalid(format!(
                "checkpoint in {} {conflict}",
                dir.display()
            )));
        }
        let mut model = blank_model()?;
        let (optim, state) = load_resumable(net(&mut model), optim, &paths)?;
        (model, optim, state)
    } else {
        (new_model()?, optim, TrainState::default())
    };
    write_json(&paths.config, cfg)?;
    Ok(begun)
}

/// Loads the resumable part of a run from its checkpoint folder: the module with its parameter
/// ids (burnpack), the optimizer moments keyed by them, and the state.
fn load_resumable<M: ModuleSnapshot>(
    net: &mut M,
    optim: ModuleOptimizer,
    paths: &CheckpointPaths,
) -> Result<(ModuleOptimizer, TrainState)> {
    let mut store = BurnpackStore::from_file(&paths.model_state)
        .validate(true)
        .allow_partial(false);
    net.load_from(&mut store)
        .map_err(|e| WebSrError::Invalid(format!("model state: {e}")))?;
    let optim = optim
        .load(&paths.optimizer)
        .map_err(|e| WebSrError::Invalid(format!("optimizer state: {e}")))?;
    Ok((optim, read_json(&paths.state)?))
}

/// Writes what [`load_resumable`] reads (the shipping-format weights are the caller's).
pub(crate) fn save_resumable<M: ModuleSnapshot>(
    net: &M,
    optim: &ModuleOptimizer,
    state: &TrainState,
    paths: &CheckpointPaths,
) -> Result<()> {
    let mut store = BurnpackStore::from_file(&paths.model_state).overwrite(true);
    net.save_into(&mut store)
        .map_err(|e| WebSrError::Invalid(format!("saving model state: {e}")))?;
    optim
        .save(&paths.optimizer)
        .map_err(|e| WebSrError::Invalid(format!("saving optimizer: {e}")))?;
    write_json(&paths.state, state)
}
