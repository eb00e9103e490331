//! Training the diffusion models (SR3, DiWa, either with YODA's masked loss) with the wavelet
//! models' pipeline: the same random crops and LR degradation, Adam with cosine decay,
//! checkpoints and resume, and periodic validation, here by sampling the benchmark folder with
//! a few deterministic DDIM steps.

use super::checkpoint::{resume_or_start, save_resumable, CheckpointPaths, RunConfig};
use super::data::TrainingSet;
use super::step::descend;
use super::{Schedule, TrainState, TrainingRun};
use crate::diffusion::model::PredictorSpec;
use crate::diffusion::{DiffusionModel, DiffusionSpec, SampleOptions};
use crate::error::{Result, WebSrError};
use crate::eval::{evaluate_model_files, Report};
use crate::model::Model;
use crate::models::SrModel;
use crate::upscale::UpscaleOptions;
use crate::wavelet::dwt;
use crate::weights;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use rand::SeedableRng;
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
            ..SampleOptions::default()
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

/// The root-mean-square of `DWT(HR) - DWT(predictor(LR))` (images in `[-1, 1]`) over `batches`
/// training batches drawn with `seed`: what a frozen predictor leaves for the diffusion, from
/// which a run picks its `residual_scale`. Deterministic for a given set and seed.
pub fn predictor_residual_rms(
    predictor: &SrModel,
    data: &TrainingSet,
    batch: usize,
    patch: usize,
    batches: usize,
    seed: u64,
) -> f64 {
    let device = predictor.device();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sum = 0.0;
    for _ in 0..batches.max(1) {
        let (lr, hr) = data
            .batch(&mut rng, batch, patch, predictor.scale())
            .to_tensors(&device);
        let signed = |x: Tensor<4>| dwt(x.mul_scalar(2.0).sub_scalar(1.0));
        let residual = signed(hr) - signed(predictor.forward(lr));
        sum += residual.powf_scalar(2.0).mean().into_scalar::<f32>() as f64;
    }
    (sum / batches.max(1) as f64).sqrt()
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
    /// A DiWa whose spec has a [`PredictorSpec::Frozen`] predictor starts a new run from
    /// `frozen_predictor`'s weights (a resumed run has them in its checkpoint).
    pub fn new(
        cfg: DiffusionTrainConfig,
        dir: &Path,
        resume: bool,
        frozen_predictor: Option<&Path>,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate()?;
        let device = device.clone().autodiff();
        let new_model = || match (&cfg.spec.predictor, frozen_predictor) {
            (Some(PredictorSpec::Frozen { one_pass }), Some(path)) => {
                let predictor = weights::load(path, &device)?;
                if &predictor.spec != one_pass {
                    return Err(WebSrError::Invalid(format!(
                        "{} is a {:?}, the spec names {:?}",
                        path.display(),
                        predictor.spec,
                        one_pass
                    )));
                }
                DiffusionModel::on_frozen_predictor(
                    cfg.spec.clone(),
                    predictor,
                    &device,
                    cfg.schedule.seed,
                )
            }
            (Some(PredictorSpec::Frozen { .. }), None) => Err(WebSrError::Invalid(
                "a new run on a frozen predictor needs the predictor's weights".into(),
            )),
            _ => DiffusionModel::init_seeded(cfg.spec.clone(), &device, cfg.schedule.seed),
        };
        let (model, optim, state) = resume_or_start(
            dir,
            &cfg,
            resume,
            |model: &mut DiffusionModel| &mut model.net,
            || DiffusionModel::init(cfg.spec.clone(), &device),
            new_model,
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
