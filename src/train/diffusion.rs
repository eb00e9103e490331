//! Training the diffusion models (SR3, DiWa, either with YODA's masked loss) with the wavelet
//! models' pipeline: the same random crops and LR degradation, Adam with cosine decay,
//! checkpoints and resume, and periodic validation, here by sampling the benchmark folder with
//! a few deterministic DDIM steps.

use super::checkpoint::{resume_or_start, save_resumable, CheckpointPaths, RunConfig};
use super::data::TrainingSet;
use super::step::descend;
use super::{Schedule, TrainState, TrainingRun};
use crate::diffusion::{DiffusionModel, DiffusionSpec, SampleOptions};
use crate::error::{Result, WebSrError};
use crate::eval::{evaluate_model_files, Report};
use crate::model::Model;
use crate::upscale::UpscaleOptions;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Hyper-parameters of one diffusion training run (written to the checkpoint folder).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DiffusionTrainConfig {
    pub spec: DiffusionSpec,
    /// Its patch side must be a multiple of [`DiffusionSpec::hr_multiple`] and of the scale.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// DDIM steps (eta 0, seed 0) of the validation samples.
    pub val_steps: usize,
}

impl DiffusionTrainConfig {
    pub fn validate(&self) -> Result<()> {
        self.spec.validate()?;
        let m = self.spec.hr_multiple();
        let s = self.spec.scale;
        let patch = self.schedule.patch;
        if patch == 0 || !patch.is_multiple_of(m) || !patch.is_multiple_of(s) {
            return Err(WebSrError::Invalid(format!(
                "the patch side must be a multiple of {m} and of the scale {s}, got {patch}"
            )));
        }
        if self.schedule.batch == 0 || self.val_steps == 0 {
            return Err(WebSrError::Invalid(
                "batch and validation steps must be positive".into(),
            ));
        }
        Ok(())
    }

    fn validation_options(&self) -> SampleOptions {
        SampleOptions {
            steps: Some(self.val_steps),
            eta: 0.0,
            seed: 0,
            yoda: self.spec.yoda.is_some(),
        }
    }
}

impl RunConfig for DiffusionTrainConfig {
    fn resume_conflict(&self, saved: &Self) -> Option<String> {
        (saved.spec != self.spec).then(|| {
            format!(
                "is for {}, not {}",
                serde_json::to_string(&saved.spec).expect("serialisable"),
                serde_json::to_string(&self.spec).expect("serialisable"),
            )
        })
    }
}

/// A diffusion training run, with checkpoints in `dir` (the same files as [`super::Trainer`]'s).
pub struct DiffusionTrainer {
    pub cfg: DiffusionTrainConfig,
    pub model: DiffusionModel,
    optim: ModuleOptimizer,
    pub state: TrainState,
    device: Device,
    dir: PathBuf,
}

impl DiffusionTrainer {
    /// Starts a new run, or resumes the one in `dir` when it has a checkpoint and `resume` is set.
    pub fn new(
        cfg: DiffusionTrainConfig,
        dir: &Path,
        resume: bool,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let device = device.clone().autodiff();
        let (model, optim, state) = resume_or_start(
            dir,
            &cfg,
            resume,
            |model: &mut DiffusionModel| &mut model.net,
            || DiffusionModel::init(cfg.spec.clone(), &device),
            || DiffusionModel::init_seeded(cfg.spec.clone(), &device, cfg.schedule.seed),
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

    /// A copy of the model without autodiff, for sampling.
    pub fn inference_model(&self) -> DiffusionModel {
        self.model.with_net(self.model.net.valid())
    }
}

impl TrainingRun for DiffusionTrainer {
    /// One optimisation step on a batch; returns the loss.
    fn step(&mut self, data: &TrainingSet) -> f64 {
        let step = self.state.step;
        let schedule = &self.cfg.schedule;
        let mut rng = schedule.step_rng(step);
        let (lr_t, hr_t) = data
            .batch(
                &mut rng,
                schedule.batch,
                schedule.patch,
                self.cfg.spec.scale,
            )
            .to_tensors(&self.device);
        let loss = self.model.loss(lr_t, hr_t, &mut rng);
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        descend(
            &mut self.model.net,
            &mut self.optim,
            loss,
            schedule.lr_at(step),
        );
        self.state.record_step(loss_value);
        loss_value
    }

    /// Y-PSNR/SSIM of DDIM samples on the validation images.
    fn validate(&mut self, files: &[PathBuf]) -> Result<Report> {
        let model = Model::Diffusion(self.inference_model());
        let device = self.device.clone().inner();
        let opts = UpscaleOptions {
            sampling: self.cfg.validation_options(),
            ..UpscaleOptions::default()
        };
        evaluate_model_files(files, &model, &opts, &device)
    }

    fn save_best(&self) -> Result<()> {
        self.inference_model()
            .save(CheckpointPaths::new(&self.dir).best)
    }

    /// Writes the model, optimizer and state.
    fn checkpoint(&self) -> Result<()> {
        let paths = CheckpointPaths::new(&self.dir);
        self.inference_model().save(&paths.model)?;
        save_resumable(&self.model.net, &self.optim, &self.state, &paths)
    }

    fn state(&mut self) -> &mut TrainState {
        &mut self.state
    }

    fn schedule(&self) -> &Schedule {
        &self.cfg.schedule
    }
}
