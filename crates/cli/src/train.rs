//! `websr train`: a one-pass wavelet model (`--arch`) or a diffusion model (`--model`) on
//! image folders (default: the 291 set under ../shared/data) or a pruned subset, with
//! checkpoints, exact resume and validation.

use crate::progress::bar;
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use websr::device::Backend;
use websr::diffusion::model::{PredictorSpec, YodaSpec};
use websr::diffusion::{DiffusionKind, DiffusionSpec};
use websr::eval::image_files;
use websr::models::{Arch, ModelSpec};
use websr::train::data::{split_holdout, TrainingSet};
use websr::train::diffusion::{predictor_residual_rms, DiffusionTrainConfig, DiffusionTrainer};
use websr::train::{
    read_json, CheckpointPaths, Schedule, StepInfo, TrainConfig, TrainDegradation, Trainer,
    TrainingRun,
};

/// Arguments of `websr train`.
#[derive(Args)]
pub struct TrainArgs {
    /// dwsr, dwsr-dwa, dwa-direct or wavelr.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    pub arch: Option<String>,
    /// A diffusion model instead: sr3 or diwa (see also --yoda, --unet-width, --val-steps).
    #[arg(long)]
    pub model: Option<String>,
    /// Diffusion: train with YODA's masked loss (detail-energy importance map).
    #[arg(long, requires = "model")]
    pub yoda: bool,
    /// Diffusion (DiWa): also train the initial predictor with its own L1 error.
    #[arg(long, requires = "model")]
    pub predictor_l1: bool,
    /// Diffusion (DiWa): the initial predictor is this trained one-pass model, frozen (its
    /// weights go into the new model); the diffusion learns only its residual.
    #[arg(long, requires = "model", conflicts_with = "predictor_l1")]
    pub predictor: Option<PathBuf>,
    /// Diffusion with --predictor: diffuse K times the residual (default: K so the residual's
    /// RMS on the training set is 0.5, the level of an image in [-1, 1]).
    #[arg(long, requires = "predictor")]
    pub residual_scale: Option<f64>,
    /// Diffusion: the U-Net's base width C (levels 1, 2, 2 x C).
    #[arg(long, requires = "model")]
    pub unet_width: Option<usize>,
    /// Diffusion: DDIM steps of the validation samples.
    #[arg(long, default_value_t = 10)]
    pub val_steps: usize,
    #[arg(long, default_value_t = 4)]
    pub scale: usize,
    /// Body width (default: the architecture's published value).
    #[arg(long)]
    pub features: Option<usize>,
    /// Body depth (default: the architecture's published value).
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long, default_value_t = 20000)]
    pub steps: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// HR patch side in pixels.
    #[arg(long, default_value_t = 64)]
    pub patch: usize,
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-6)]
    pub lr_min: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Training image folders (repeatable); default: <data-root>/t91 and <data-root>/bsd200.
    #[arg(long)]
    pub data: Vec<PathBuf>,
    #[arg(long, default_value = "../shared/data")]
    pub data_root: PathBuf,
    /// Train only on the sub-images of this subset manifest (`websr prune`) instead of --data.
    #[arg(long, conflicts_with = "data")]
    pub subset: Option<PathBuf>,
    /// Validate on this many training images held out from training (the last ones of the last
    /// --data folder, by name: BSD200's last by default). 0 turns validation off.
    #[arg(long, default_value_t = 10, conflicts_with = "val")]
    pub holdout: usize,
    /// Validate on this folder instead of a held-out slice (never a test set you report).
    #[arg(long)]
    pub val: Option<PathBuf>,
    /// Checkpoint folder.
    #[arg(short, long)]
    pub out: PathBuf,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Start from these weights instead of random ones. Weights of the same network with fewer
    /// body layers are first deepened by identity layers (Net2DeeperNet: same output).
    #[arg(long)]
    pub init: Option<PathBuf>,
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = 1000)]
    pub validate_every: usize,
    /// Train on degraded inputs instead of clean bicubic ones: "photo" (blur, noise and JPEG,
    /// twice, in random order: the `photo` model); validation then uses the photo test inputs.
    #[arg(long, conflicts_with = "model")]
    pub degrade: Option<String>,
}

impl TrainArgs {
    /// The optimisation schedule these flags describe (both kinds of model share it).
    pub fn schedule(&self) -> Schedule {
        Schedule {
            steps: self.steps,
            batch: self.batch,
            patch: self.patch,
            lr: self.lr,
            lr_min: self.lr_min,
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
            validate_every: self.validate_every,
        }
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    match args.arch.clone() {
        Some(arch) => train_one_pass(args, &arch),
        None => train_diffusion(args),
    }
}

/// A one-pass wavelet model.
fn train_one_pass(args: TrainArgs, arch: &str) -> Result<()> {
    let arch = Arch::parse(arch)?;
    let mut spec = ModelSpec::default_for(arch, args.scale);
    if let Some(f) = args.features {
        spec.features = f;
    }
    if let Some(l) = args.layers {
        spec.body_layers = l;
    }
    let (data, subset_sha256) = load_training_data(&args)?;
    let degradation = args
        .degrade
        .as_deref()
        .map(TrainDegradation::parse)
        .transpose()?;
    let cfg = TrainConfig {
        spec,
        schedule: args.schedule(),
        subset_sha256,
        degradation,
    };
    let device = Backend::Cpu.device()?;
    let mut trainer = Trainer::new(cfg, &args.out, args.resume, args.init.as_deref(), &device)?;
    let params = trainer.model.num_params();
    drive(&mut trainer, &data, &args, arch.name(), params)
}

/// A diffusion model: SR3 or DiWa, optionally with YODA.
fn train_diffusion(args: TrainArgs) -> Result<()> {
    let kind = DiffusionKind::parse(args.model.as_deref().expect("--model or --arch"))?;
    if args.init.is_some() || args.features.is_some() || args.layers.is_some() {
        bail!("--init, --features and --layers are for the wavelet models (--arch)");
    }
    let mut spec = DiffusionSpec::default_for(kind, args.scale);
    if let Some(width) = args.unet_width {
        spec.unet.inner_channels = width;
    }
    if args.yoda {
        spec.yoda = Some(YodaSpec::default());
    }
    spec.predictor_l1 = args.predictor_l1;
    if args.subset.is_some() {
        bail!("--subset is not supported for diffusion training yet");
    }
    let (data, _) = load_training_data(&args)?;
    let device = Backend::Cpu.device()?;
    if let Some(path) = &args.predictor {
        if kind != DiffusionKind::DiWa {
            bail!("--predictor is for DiWa (--model diwa)");
        }
        let predictor = websr::weights::load(path, &device)
            .with_context(|| format!("reading the predictor {}", path.display()))?;
        if predictor.scale() != args.scale {
            bail!(
                "{} is x{}, training x{}",
                path.display(),
                predictor.scale(),
                args.scale
            );
        }
        // A resumed run keeps the scale it started with: re-measured, it would differ in the
        // last digits on another build (float rounding) and the checkpoint would not match.
        let config = CheckpointPaths::new(&args.out).config;
        let saved = match args.resume && config.exists() {
            true => Some(
                read_json::<DiffusionTrainConfig>(&config)?
                    .spec
                    .residual_scale,
            ),
            false => None,
        };
        spec.residual_scale = match args.residual_scale.or(saved) {
            Some(k) => k,
            None => {
                let rms = predictor_residual_rms(&predictor, &data, 16, args.patch, 16, 0);
                eprintln!("the predictor's residual RMS on 16 training batches: {rms:.4}");
                0.5 / rms
            }
        };
        spec.predictor = Some(PredictorSpec::Frozen {
            one_pass: predictor.spec.clone(),
        });
    }
    let cfg = DiffusionTrainConfig {
        spec,
        schedule: args.schedule(),
        val_steps: args.val_steps,
    };
    let mut trainer = DiffusionTrainer::new(
        cfg,
        &args.out,
        args.resume,
        args.predictor.as_deref(),
        &device,
    )
    .with_context(|| format!("starting the run in {}", args.out.display()))?;
    let (label, params) = (trainer.cfg.spec.label(), trainer.model.num_params());
    drive(&mut trainer, &data, &args, &label, params)
}

/// Runs a trainer of either kind to the end of its schedule with a progress bar, validating on
/// `--val` or the held-out slice ([`validation_files`]).
fn drive(
    trainer: &mut impl TrainingRun,
    data: &TrainingSet,
    args: &TrainArgs,
    label: &str,
    params: usize,
) -> Result<()> {
    let (steps, first) = (trainer.schedule().steps, trainer.state().step);
    eprintln!(
        "{label} x{}: {params} parameters, starting at step {first}",
        args.scale
    );
    let validation = validation_files(args)?;
    match (&args.val, validation.len()) {
        (_, 0) => eprintln!("no validation"),
        (Some(dir), n) => eprintln!("validating on {n} images of {}", dir.display()),
        (None, n) => eprintln!("validating on {n} held-out training images (not trained on)"),
    }
    let (pb, mut report) = training_progress(steps, first);
    let val = (!validation.is_empty()).then_some(&validation[..]);
    trainer.run(data, val, &mut report)?;
    pb.finish();
    Ok(())
}

/// The training images of `--data` or `--subset`, and the subset manifest's SHA-256 if any.
fn load_training_data(args: &TrainArgs) -> Result<(TrainingSet, Option<String>)> {
    if let Some(subset) = &args.subset {
        let bytes =
            std::fs::read(subset).with_context(|| format!("reading {}", subset.display()))?;
        let manifest = websr::prune::SubsetManifest::read(subset)?;
        if manifest.scorer.scale != args.scale {
            eprintln!(
                "note: the subset was scored at x{}, this run trains x{}",
                manifest.scorer.scale, args.scale
            );
        }
        eprintln!(
            "loading the subset {} ({} sub-images of {} images)",
            subset.display(),
            manifest.samples.len(),
            manifest.files().len()
        );
        let data = TrainingSet::load_subset(&manifest)?;
        eprintln!("{} images", data.len());
        return Ok((data, Some(websr::weights::sha256_hex(&bytes))));
    }
    let dirs = training_dirs(&args.data, &args.data_root)?;
    eprintln!("loading training images from {dirs:?}");
    let (train, _) = split_holdout(&dirs, holdout(args))?;
    let data = TrainingSet::load_files(train)?;
    eprintln!("{} images", data.len());
    Ok((data, None))
}

/// How many training images to hold out: none when validating on `--val` instead.
fn holdout(args: &TrainArgs) -> usize {
    if args.val.is_some() {
        0
    } else {
        args.holdout
    }
}

/// The validation images: `--val`'s folder, or the held-out slice of the training folders
/// (none for a subset run without `--val`: its images are chosen by the subset).
fn validation_files(args: &TrainArgs) -> Result<Vec<PathBuf>> {
    if let Some(dir) = &args.val {
        return Ok(image_files(dir)?);
    }
    if args.subset.is_some() || args.holdout == 0 {
        return Ok(Vec::new());
    }
    let dirs = training_dirs(&args.data, &args.data_root)?;
    Ok(split_holdout(&dirs, args.holdout)?.1)
}

/// A progress bar from step `first` of `steps`, and the per-step callback that moves it: a
/// smoothed loss, the learning rate, and a line per validation.
fn training_progress(steps: usize, first: usize) -> (ProgressBar, impl FnMut(&StepInfo) -> bool) {
    let pb = bar(
        steps as u64,
        "[{elapsed_precise}] [{bar:30}] {pos}/{len} {msg} ETA {eta}",
    );
    pb.set_position(first as u64);
    let started = std::time::Instant::now();
    let mut smooth = None::<f64>;
    let bar = pb.clone();
    let report = move |info: &StepInfo| {
        let s = smooth.map_or(info.loss, |s| 0.98 * s + 0.02 * info.loss);
        smooth = Some(s);
        bar.set_position(info.step as u64);
        bar.set_message(format!("loss {s:.5} lr {:.2e}", info.lr));
        if let Some(r) = &info.validation {
            let per_step = started.elapsed().as_secs_f64() / (info.step - first) as f64;
            bar.suspend(|| {
                eprintln!(
                    "step {}: val PSNR-Y {:.3} dB, SSIM-Y {:.4} ({:.0} ms/step)",
                    info.step,
                    r.mean.psnr_y,
                    r.mean.ssim_y,
                    per_step * 1000.0
                )
            });
        }
        true
    };
    (pb, report)
}

/// The training folders of `--data` (repeatable), or `<data_root>/t91` and `<data_root>/bsd200`
/// when none is given; a missing folder is an error that names it.
pub fn training_dirs(data: &[PathBuf], data_root: &Path) -> Result<Vec<PathBuf>> {
    let dirs = if data.is_empty() {
        websr::train::data::default_dirs(data_root)
    } else {
        data.to_vec()
    };
    if let Some(missing) = dirs.iter().find(|d| !d.is_dir()) {
        bail!("training folder {} does not exist", missing.display());
    }
    Ok(dirs)
}
