//! Training the wavelet models: Adam, L1 loss, cosine learning-rate decay, checkpoints that a
//! run can resume from, and periodic validation on a benchmark folder.
//!
//! The parts every trainer shares: [`Schedule`] and the run loop ([`TrainingRun::run`]) here,
//! the checkpoint folder and resuming in `checkpoint`, one optimisation step in `step`. The
//! diffusion trainer is in [`diffusion`]; the federated client trains with the same step.

mod checkpoint;
pub mod data;
pub mod diffusion;
pub(crate) mod step;

pub use checkpoint::{read_json, CheckpointPaths};

pub use crate::degrade::TrainDegradation;

use crate::degrade::second_order;
use crate::error::{Result, WebSrError};
use crate::eval::{evaluate_inputs, Report};
use crate::models::{ModelSpec, SrModel};
use crate::upscale::run_model;
use crate::weights;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use checkpoint::{resume_or_start, save_resumable, RunConfig};
use data::TrainingSet;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use step::l1_step;

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
    /// How LR inputs are made from the HR patches; absent: the clean bicubic task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degradation: Option<TrainDegradation>,
}

impl RunConfig for TrainConfig {
    fn resume_conflict(&self, saved: &Self) -> Option<String> {
        if saved.spec != self.spec {
            return Some(format!("is for {:?}, not {:?}", saved.spec, self.spec));
        }
        if saved.degradation != self.degradation {
            return Some(format!(
                "was trained with degradation {:?}, but this run asks for {:?}",
                saved.degradation, self.degradation
            ));
        }
        if saved.subset_sha256 != self.subset_sha256 {
            let show = |s: &Option<String>| {
                s.as_ref().map_or("all training images".to_string(), |h| {
                    format!("subset sha256 {h}")
                })
            };
            return Some(format!(
                "was trained on {}, but this run is given {}; resume with the same --subset",
                show(&saved.subset_sha256),
                show(&self.subset_sha256)
            ));
        }
        None
    }
}

/// Where a run stands, saved next to its checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainState {
    pub step: usize,
    pub last_loss: f64,
    pub best_val_psnr: Option<f64>,
    pub history: Vec<ValPoint>,
}

impl TrainState {
    /// Counts a finished step and its loss.
    fn record_step(&mut self, loss: f64) {
        self.step += 1;
        self.last_loss = loss;
    }
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

/// A training run with checkpoints: the wavelet [`Trainer`] and the diffusion one share the
/// schedule of steps, validation, best weights and checkpoints ([`TrainingRun::run`]).
pub trait TrainingRun {
    /// One optimisation step on a batch; returns the loss.
    fn step(&mut self, data: &TrainingSet) -> f64;
    /// Y-PSNR/SSIM on the validation images.
    fn validate(&mut self, files: &[PathBuf]) -> Result<Report>;
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
        val: Option<&[PathBuf]>,
        on_step: &mut dyn FnMut(&StepInfo) -> bool,
    ) -> Result<()>
    where
        Self: Sized,
    {
        run_loop(self, data, val, on_step)
    }
}

/// [`TrainingRun::run`].
fn run_loop(
    run: &mut impl TrainingRun,
    data: &TrainingSet,
    val: Option<&[PathBuf]>,
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
        if let Some(files) = val {
            if step.is_multiple_of(validate_every.max(1)) || done {
                let report = run.validate(files)?;
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
        let device = device.clone().autodiff();
        let (model, optim, state) = resume_or_start(
            dir,
            &cfg,
            resume,
            |model: &mut SrModel| &mut model.net,
            || SrModel::init(cfg.spec.clone(), &device),
            || initial_model(&cfg, init_from, &device),
        )?;
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

/// The model a new run starts from: `init_from`'s weights (fine-tuning; shallower ones grow into
/// the configured depth) or seeded random ones.
fn initial_model(cfg: &TrainConfig, init_from: Option<&Path>, device: &Device) -> Result<SrModel> {
    let mut model = match init_from {
        Some(p) => weights::load(p, device)?,
        None => SrModel::init_seeded(cfg.spec.clone(), device, cfg.schedule.seed)?,
    };
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
    Ok(model)
}

impl TrainingRun for Trainer {
    /// One optimisation step on a batch; returns the L1 loss.
    fn step(&mut self, data: &TrainingSet) -> f64 {
        let step = self.state.step;
        let schedule = &self.cfg.schedule;
        let mut rng = schedule.step_rng(step);
        let scale = self.cfg.spec.scale;
        let batch = match self.cfg.degradation {
            None => data.batch(&mut rng, schedule.batch, schedule.patch, scale),
            Some(TrainDegradation::Photo) => data
                .batch_with(
                    &mut rng,
                    schedule.batch,
                    schedule.patch,
                    scale,
                    &mut |_, hr, rng| second_order(hr, scale, rng),
                )
                .expect("patches are cut at a multiple of the scale"),
        }
        .to_tensors(&self.device);
        let lr = schedule.lr_at(step);
        let loss = l1_step(&mut self.model.net, &mut self.optim, batch, lr, |_| None);
        let loss_value = loss.into_scalar::<f32>() as f64;
        self.state.record_step(loss_value);
        loss_value
    }

    /// Y-PSNR/SSIM on the validation images.
    fn validate(&mut self, files: &[PathBuf]) -> Result<Report> {
        let model = self.inference_model();
        let device = self.device.clone().inner();
        evaluate_inputs(files, model.scale(), self.cfg.degradation, &mut |lr| {
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
