//! Resolving `--model` arguments and the `train` / `models` subcommands' plumbing.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use websr::burn::tensor::Device;
use websr::train::Schedule;
use websr::zoo::{default_dir, read_verified, Manifest};
use websr::SrModel;

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
    /// Validation folder (skipped when missing).
    #[arg(long, default_value = "../shared/data/set5")]
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

/// `None` means the bicubic baseline.
/// The training folders of `--data` (repeatable), or `<data_root>/t91` and `<data_root>/bsd200`
/// when none is given; a missing folder is an error that names it.
pub fn training_dirs(data: &[PathBuf], data_root: &std::path::Path) -> Result<Vec<PathBuf>> {
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

/// The weight file a `--model` argument names: a shipped model (checked against the manifest's
/// SHA-256) or a .safetensors path.
pub fn resolve_bytes(name: &str) -> Result<Vec<u8>> {
    if name.ends_with(".safetensors") || PathBuf::from(name).is_file() {
        return std::fs::read(name).with_context(|| format!("reading {name}"));
    }
    let dir = default_dir();
    let manifest = Manifest::load(&dir)?;
    let Some(entry) = manifest.find(name) else {
        let names: Vec<&str> = manifest.models.iter().map(|m| m.name.as_str()).collect();
        bail!("no shipped model '{name}' (shipped: {})", names.join(", "));
    };
    Ok(read_verified(&dir, entry)?)
}

/// The name of the shipped default model for `scale`.
pub fn default_model(scale: usize) -> Result<String> {
    let manifest = Manifest::load(&default_dir())?;
    Ok(manifest.default_for(scale)?.name.clone())
}

/// The model a `--model` argument names; `None` for "bicubic".
pub fn resolve(name: &str, scale: Option<usize>, device: &Device) -> Result<Option<SrModel>> {
    if name == "bicubic" {
        return Ok(None);
    }
    let bytes = resolve_bytes(name)?;
    let model =
        websr::weights::from_bytes(&bytes, device).with_context(|| format!("model {name}"))?;
    if let Some(s) = scale {
        if s != model.scale() {
            bail!("model {name} upscales x{}, not x{s}", model.scale());
        }
    }
    Ok(Some(model))
}

pub fn list() -> Result<()> {
    let dir = default_dir();
    let manifest = Manifest::load(&dir)?;
    println!(
        "{:<18} {:<11} {:>5} {:>10} {:>16} {:>16}  description",
        "name", "arch", "scale", "size", "Set5 PSNR/SSIM", "Set14 PSNR/SSIM"
    );
    let fmt = |s: Option<[f64; 2]>| s.map_or("-".to_string(), |[p, q]| format!("{p:.2}/{q:.4}"));
    for m in &manifest.models {
        println!(
            "{:<18} {:<11} {:>5} {:>9}K {:>16} {:>16}  {}",
            format!("{}{}", m.name, if m.default { " *" } else { "" }),
            m.arch,
            format!("x{}", m.scale),
            m.bytes / 1024,
            fmt(m.set5),
            fmt(m.set14),
            m.description
        );
    }
    println!("* the default at its scale (websr upscale without --model)");
    Ok(())
}
