//! Training the wavelet models: Adam, L1 loss, cosine learning-rate decay, checkpoints that a
//! run can resume from, and periodic validation on a benchmark folder.

pub mod data;
pub mod diffusion;

use crate::error::{Result, WebSrError};
use crate::eval::{evaluate, Report};
use crate::models::{ModelSpec, SrModel};
use crate::upscale::run_model;
use crate::weights;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;
use data::TrainingSet;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The optimisation schedule every training run shares (flattened into its `config.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Schedule {
    pub steps: usize,
    pub batch: usize,
    /// HR patch side; LR patches are `patch / scale`.
    pub patch: usize,
    /// Peak learning rate (Adam), decayed by a cosine to `lr_min` at the last step.
    pub lr: f64,
    pub lr_min: f64,
    pub seed: u64,
    pub checkpoint_every: usize,
    pub validate_every: usize,
}

impl Schedule {
    /// The learning rate of a step: cosine decay from `lr` to `lr_min` over the run.
    pub fn lr_at(&self, step: usize) -> f64 {
        cosine_lr(self.lr, self.lr_min, self.steps, step)
    }

    /// The random source of a step's batch (and noise): [`step_rng`] of this run's seed.
    pub fn step_rng(&self, step: usize) -> StdRng {
        step_rng(self.seed, step)
    }
}

/// The random source of one training step, seeded by (seed, step): a resumed run, or a client
/// redoing a round, sees the same batches it would have seen.
pub fn step_rng(seed: u64, step: usize) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9) ^ step as u64)
}

/// Hyper-parameters of one training run (also written to the checkpoint folder).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub spec: ModelSpec,
    #[serde(flatten)]
    pub schedule: Schedule,
    /// SHA-256 of the subset manifest the run trains on (`websr train --subset`); a resumed run
    /// must be given the same manifest. `None`: all of the training images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset_sha256: Option<String>,
}

/// Where a run stands, saved next to its checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainState {
    pub step: usize,
    pub last_loss: f64,
    pub best_val_psnr: Option<f64>,
    pub history: Vec<ValPoint>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValPoint {
    pub step: usize,
    pub psnr_y: f64,
    pub ssim_y: f64,
}

/// What the trainer reports after each step.
pub struct StepInfo {
    pub step: usize,
    pub steps: usize,
    pub loss: f64,
    pub lr: f64,
    pub validation: Option<Report>,
}

/// Cosine decay from `lr` at step 0 to `lr_min` at step `steps`.
fn cosine_lr(lr: f64, lr_min: f64, steps: usize, step: usize) -> f64 {
    let t = step as f64 / steps.max(1) as f64;
    lr_min + 0.5 * (lr - lr_min) * (1.0 + (std::f64::consts::PI * t).cos())
}

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

/// Loads the resumable part of a run from its checkpoint folder: the module with its parameter
/// ids (burnpack), the optimizer moments keyed by them, and the state.
pub(crate) fn load_resumable<M: ModuleSnapshot>(
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

/// A training run with checkpoints: the wavelet [`Trainer`] and the diffusion one share the
/// schedule of steps, validation, best weights and checkpoints ([`TrainingRun::run`]).
pub trait TrainingRun {
    /// One optimisation step on a batch; returns the loss.
    fn step(&mut self, data: &TrainingSet) -> f64;
    /// Y-PSNR/SSIM on a benchmark folder.
    fn validate(&mut self, dir: &Path) -> Result<Report>;
    /// Writes the current weights as the run's best.
    fn save_best(&self) -> Result<()>;
    /// Writes the model, optimizer and state (atomically, file by file).
    fn checkpoint(&self) -> Result<()>;
    fn state(&mut self) -> &mut TrainState;
    fn schedule(&self) -> &Schedule;

    /// Runs until the last step, validating and checkpointing on schedule. `on_step` sees every
    /// step and may stop the run early by returning `false` (a checkpoint is written first).
    fn run(
        &mut self,
        data: &TrainingSet,
        val_dir: Option<&Path>,
        on_step: &mut dyn FnMut(&StepInfo) -> bool,
    ) -> Result<()>
    where
        Self: Sized,
    {
        run_loop(self, data, val_dir, on_step)
    }
}

/// [`TrainingRun::run`].
fn run_loop(
    run: &mut impl TrainingRun,
    data: &TrainingSet,
    val_dir: Option<&Path>,
    on_step: &mut dyn FnMut(&StepInfo) -> bool,
) -> Result<()> {
    let Schedule {
        steps,
        validate_every,
        checkpoint_every,
        ..
    } = *run.schedule();
    while run.state().step < steps {
        let loss = run.step(data);
        let step = run.state().step;
        let done = step == steps;
        let mut validation = None;
        if let Some(dir) = val_dir {
            if step.is_multiple_of(validate_every.max(1)) || done {
                let report = run.validate(dir)?;
                let state = run.state();
                state.history.push(ValPoint {
                    step,
                    psnr_y: report.mean.psnr_y,
                    ssim_y: report.mean.ssim_y,
                });
                if state.best_val_psnr.is_none_or(|b| report.mean.psnr_y > b) {
                    state.best_val_psnr = Some(report.mean.psnr_y);
                    run.save_best()?;
                }
                validation = Some(report);
            }
        }
        let keep_going = on_step(&StepInfo {
            step,
            steps,
            loss,
            lr: run.schedule().lr_at(step - 1),
            validation,
        });
        if step.is_multiple_of(checkpoint_every.max(1)) || done || !keep_going {
            run.checkpoint()?;
        }
        if !keep_going {
            break;
        }
    }
    Ok(())
}

/// A training run: model, optimizer and state, with checkpoints in `dir`.
pub struct Trainer {
    pub cfg: TrainConfig,
    pub model: SrModel,
    optim: ModuleOptimizer,
    pub state: TrainState,
    device: Device,
    dir: PathBuf,
}

impl Trainer {
    /// Starts a new run, or resumes the one in `dir` when it has a checkpoint and `resume` is set.
    /// `init_from` starts from existing weights (fine-tuning) instead of random ones.
    pub fn new(
        cfg: TrainConfig,
        dir: &Path,
        resume: bool,
        init_from: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| WebSrError::io(dir, e))?;
        let paths = CheckpointPaths::new(dir);
        let device = device.clone().autodiff();
        let optim = AdamConfig::new().init();
        let (model, optim, state) = if resume && paths.state.exists() {
            let saved: TrainConfig = read_json(&paths.config)?;
            if saved.spec != cfg.spec {
                return Err(WebSrError::Invalid(format!(
                    "checkpoint in {} is for {:?}, not {:?}",
                    dir.display(),
                    saved.spec,
                    cfg.spec
                )));
            }
            if saved.subset_sha256 != cfg.subset_sha256 {
                let show = |s: &Option<String>| {
                    s.as_ref().map_or("all training images".to_string(), |h| {
                        format!("subset sha256 {h}")
                    })
                };
                return Err(WebSrError::Invalid(format!(
                    "checkpoint in {} was trained on {}, but this run is given {}; resume with \
                     the same --subset",
                    dir.display(),
                    show(&saved.subset_sha256),
                    show(&cfg.subset_sha256)
                )));
            }
            let mut model = SrModel::init(cfg.spec.clone(), &device)?;
            let (optim, state) = load_resumable(&mut model.net, optim, &paths)?;
            // The new config may extend the number of steps; everything else comes from it too.
            (model, optim, state)
        } else {
            let mut model = match init_from {
                Some(p) => weights::load(p, &device)?,
                None => SrModel::init_seeded(cfg.spec.clone(), &device, cfg.schedule.seed)?,
            };
            // Shallower initial weights of the same network grow into the requested depth.
            let same_but_depth = ModelSpec {
                body_layers: cfg.spec.body_layers,
                ..model.spec.clone()
            } == cfg.spec;
            if same_but_depth && model.spec.body_layers < cfg.spec.body_layers {
                model = model.deepened(cfg.spec.body_layers)?;
            }
            if model.spec != cfg.spec {
                return Err(WebSrError::Invalid(format!(
                    "initial weights are for {:?}, not the requested {:?} (only the number of \
                     body layers may grow)",
                    model.spec, cfg.spec
                )));
            }
            (model, optim, TrainState::default())
        };
        write_json(&paths.config, &cfg)?;
        Ok(Self {
            cfg,
            model,
            optim,
            state,
            device,
            dir: dir.to_path_buf(),
        })
    }

    /// A copy of the model without autodiff, for inference.
    pub fn inference_model(&self) -> SrModel {
        SrModel {
            spec: self.model.spec.clone(),
            net: self.model.net.valid(),
        }
    }
}

impl TrainingRun for Trainer {
    /// One optimisation step on a batch; returns the L1 loss.
    fn step(&mut self, data: &TrainingSet) -> f64 {
        let step = self.state.step;
        let schedule = &self.cfg.schedule;
        let mut rng = schedule.step_rng(step);
        let s = self.cfg.spec.scale;
        let (lr_t, hr_t) = data
            .batch(&mut rng, schedule.batch, schedule.patch, s)
            .to_tensors(&self.device);
        let sr = self.model.net.forward(lr_t);
        let loss = (sr - hr_t).abs().mean();
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        let grads = GradientsParams::from_grads(loss.backward(), &self.model.net);
        let lr = schedule.lr_at(step);
        let net = self.model.net.clone();
        self.model.net = self.optim.step(lr, net, grads);
        self.state.step += 1;
        self.state.last_loss = loss_value;
        loss_value
    }

    /// Y-PSNR/SSIM on a benchmark folder.
    fn validate(&mut self, dir: &Path) -> Result<Report> {
        let model = self.inference_model();
        let device = self.device.clone().inner();
        evaluate(dir, model.scale(), &mut |lr| {
            Ok(run_model(&model, lr, &device))
        })
    }

    fn save_best(&self) -> Result<()> {
        weights::save(
            &self.inference_model(),
            CheckpointPaths::new(&self.dir).best,
        )
    }

    /// Writes the model, optimizer and state (atomically, file by file).
    fn checkpoint(&self) -> Result<()> {
        let paths = CheckpointPaths::new(&self.dir);
        weights::save(&self.inference_model(), &paths.model)?;
        save_resumable(&self.model.net, &self.optim, &self.state, &paths)
    }

    fn state(&mut self) -> &mut TrainState {
        &mut self.state
    }

    fn schedule(&self) -> &Schedule {
        &self.cfg.schedule
    }
}
