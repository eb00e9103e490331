//! The diffusion side of the CLI: `websr train --model sr3|diwa` and upscaling with a
//! diffusion model (`websr upscale --model diwa-x4 --steps N --seed S`).

use crate::cli_models::{resolve_bytes, TrainArgs};
use crate::{load_training_data, print_report, training_progress, upscale_files};
use anyhow::{bail, Context, Result};
use std::path::Path;
use websr::backend::Backend;
use websr::burn::tensor::Device;
use websr::diffusion::model::YodaSpec;
use websr::diffusion::upscale::upscale_rgb;
use websr::diffusion::{DiffusionKind, DiffusionModel, DiffusionSpec, SampleOptions};
use websr::eval::{evaluate, Report};
use websr::train::diffusion::{DiffusionTrainConfig, DiffusionTrainer};
use websr::train::TrainingRun;
use websr::upscale::finish_picture;

pub fn train(args: TrainArgs) -> Result<()> {
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
    let cfg = DiffusionTrainConfig {
        spec,
        schedule: args.schedule(),
        val_steps: args.val_steps,
    };
    let device = Backend::Cpu.device()?;
    let mut trainer = DiffusionTrainer::new(cfg, &args.out, args.resume, &device)
        .with_context(|| format!("starting the run in {}", args.out.display()))?;
    eprintln!(
        "{} x{}: {} parameters, starting at step {}",
        trainer.cfg.spec.label(),
        args.scale,
        trainer.model.num_params(),
        trainer.state.step
    );
    let val = args.val.as_deref().filter(|p| p.is_dir());
    let (pb, mut report) = training_progress(trainer.cfg.schedule.steps, trainer.state.step);
    trainer.run(&data, val, &mut report)?;
    pb.finish();
    Ok(())
}

/// How a diffusion model samples (`upscale`, `eval`); refused for one-pass models.
#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Diffusion models: DDIM steps (0: every step of the schedule with DDPM). Default 50.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Diffusion models: the seed of the noise; the same seed and steps give the same image.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Diffusion models: DDIM's eta (0 is deterministic given the seed).
    #[arg(long)]
    pub eta: Option<f64>,
    /// Diffusion models: guide sampling with YODA (detail-energy importance map).
    #[arg(long)]
    pub yoda: bool,
}

impl SamplingArgs {
    pub fn options(&self) -> Result<SampleOptions> {
        let eta = self.eta.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&eta) {
            bail!("--eta must lie in [0, 1]");
        }
        Ok(SampleOptions {
            steps: match self.steps.unwrap_or(50) {
                0 => None,
                n => Some(n),
            },
            eta,
            seed: self.seed.unwrap_or(0),
            yoda: self.yoda,
        })
    }

    /// An error when sampling flags are given for a one-pass model.
    pub fn refuse_for(&self, model: &str) -> Result<()> {
        if self.steps.is_some() || self.seed.is_some() || self.eta.is_some() || self.yoda {
            bail!("--steps, --seed, --eta and --yoda are for diffusion models; {model} is not one");
        }
        Ok(())
    }
}

/// Whether `--model` names a diffusion model (shipped or a file).
pub fn is_diffusion(model: &str) -> Result<bool> {
    if model == "bicubic" {
        return Ok(false);
    }
    Ok(DiffusionModel::read_spec(&resolve_bytes(model)?).is_ok())
}

/// The diffusion model a `--model` argument names.
pub fn resolve(model: &str, scale: Option<usize>, device: &Device) -> Result<DiffusionModel> {
    let m = DiffusionModel::from_bytes(&resolve_bytes(model)?, device)
        .with_context(|| format!("model {model}"))?;
    if let Some(s) = scale.filter(|&s| s != m.scale()) {
        bail!("model {model} upscales x{}, not x{s}", m.scale());
    }
    Ok(m)
}

fn describe(opts: &SampleOptions) -> String {
    let steps = match opts.steps {
        Some(n) => format!("{n} DDIM steps (eta {})", opts.eta),
        None => "DDPM, every step".to_string(),
    };
    let yoda = if opts.yoda { ", YODA" } else { "" };
    format!("{steps}, seed {}{yoda}", opts.seed)
}

pub fn upscale(
    input: &Path,
    output: &Path,
    model: &str,
    scale: Option<usize>,
    sampling: &SamplingArgs,
    backend: &str,
) -> Result<()> {
    let device = Backend::parse(backend)?.device()?;
    let m = resolve(model, scale, &device)?;
    let opts = sampling.options()?;
    eprintln!("{} x{}: {}", m.spec.label(), m.scale(), describe(&opts));
    upscale_files(input, output, "steps", |pic, progress| {
        let rgb = upscale_rgb(&m, &pic.rgb, &opts, &device, progress)?;
        Ok(finish_picture(rgb, pic, m.scale()))
    })
}

/// Y-PSNR/SSIM of one diffusion configuration on a benchmark folder.
fn evaluate_sampling(
    m: &DiffusionModel,
    data: &Path,
    opts: &SampleOptions,
    device: &Device,
) -> Result<Report> {
    Ok(evaluate(data, m.scale(), &mut |lr| {
        upscale_rgb(m, lr, opts, device, &mut |_, _| true)
    })?)
}

pub fn eval(
    model: &str,
    data: &Path,
    scale: Option<usize>,
    sampling: &SamplingArgs,
    json: bool,
) -> Result<()> {
    let device = Backend::Cpu.device()?;
    let m = resolve(model, scale, &device)?;
    let opts = sampling.options()?;
    let report = evaluate_sampling(&m, data, &opts, &device)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let title = format!(
            "{model} x{} on {}, {}",
            m.scale(),
            data.display(),
            describe(&opts)
        );
        print_report(&title, &report);
    }
    Ok(())
}
