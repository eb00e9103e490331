//! `websr distill`: LD3M (issue #19), a training set distilled into K synthetic HR patches that
//! a DiWa model generates from optimised codes (`websr::distill`). Writes the synthetic patches,
//! the real patches they started from (the "K random real patches" control), an overview image
//! (real over synthetic, the first ten) and a JSON record.

use crate::models::{diffusion_from_bytes, resolve_bytes};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use websr::device::Backend;
use websr::distill::{frozen, DistillConfig, Distiller};
use websr::image::{Picture, Planar};
use websr::train::data::{split_holdout, TrainingSet};
use websr::weights::sha256_hex;

#[derive(clap::Args)]
pub struct DistillArgs {
    /// The generator: a DiWa model (shipped name or .safetensors file).
    #[arg(long, default_value = "diwa-wavelr-x4")]
    generator: String,
    /// K, the number of synthetic patches.
    #[arg(long, default_value_t = 10)]
    images: usize,
    /// HR patch side in pixels.
    #[arg(long, default_value_t = 96)]
    patch: usize,
    /// Optimisation steps (each updates one chunk of --batch codes).
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Synthetic patches per iteration.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Real patches per iteration.
    #[arg(long, default_value_t = 64)]
    real_batch: usize,
    /// SGD learning rate of the codes.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// SGD momentum (LD3M's 0.5).
    #[arg(long, default_value_t = 0.5)]
    momentum: f64,
    /// Generator DDIM steps (default: the model's own default).
    #[arg(long)]
    steps: Option<usize>,
    /// Generator strength, the fraction of the schedule walked (default: the model's own).
    #[arg(long)]
    strength: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Training image folders (repeatable); default: <data-root>/t91 and <data-root>/bsd200.
    #[arg(long)]
    data: Vec<PathBuf>,
    /// The last --holdout images (of the last folder) are left out: they are the validation
    /// images of `websr train`.
    #[arg(long, default_value = "../shared/data")]
    data_root: PathBuf,
    #[arg(long, default_value_t = 10)]
    holdout: usize,
    /// Output folder (must not exist or be empty): synthetic/, real/ and distill.json.
    #[arg(short, long)]
    out: PathBuf,
}

#[derive(Serialize)]
struct Record<'a> {
    format: &'static str,
    generator: &'a str,
    generator_sha256: String,
    config: &'a DistillConfig,
    /// Mean DM loss per block of iterations.
    loss_curve: Vec<f64>,
    /// DM loss of all patches under one fixed embedder, real batch and noise.
    fixed_loss_before: f64,
    fixed_loss_after: f64,
    seconds: f64,
}

pub fn run(args: DistillArgs) -> Result<()> {
    prepare_out(&args.out)?;
    let device = Backend::Cpu.device()?.autodiff();
    // Read once: the same bytes build the generator and name it in the record.
    let generator_bytes = resolve_bytes(&args.generator)?;
    let generator_sha256 = sha256_hex(&generator_bytes);
    let model = frozen(diffusion_from_bytes(
        &args.generator,
        &generator_bytes,
        &device,
    )?);
    let defaults = model.default_options();
    let cfg = DistillConfig {
        images: args.images,
        patch: args.patch,
        iterations: args.iterations,
        batch: args.batch,
        real_batch: args.real_batch,
        lr: args.lr,
        momentum: args.momentum,
        steps: args.steps.or(defaults.steps).unwrap_or(10),
        strength: args.strength.unwrap_or(defaults.strength),
        seed: args.seed,
    };
    let dirs = crate::train::training_dirs(&args.data, &args.data_root)?;
    let (files, _) = split_holdout(&dirs, args.holdout)?;
    eprintln!("loading {} training images", files.len());
    let data = TrainingSet::load_files(files)?;
    let mut distiller = Distiller::new(&model, &data, cfg.clone(), &device)?;
    const FIXED_SEED: u64 = 0x1d3;
    let before = distiller.evaluate(FIXED_SEED);
    let started = Instant::now();
    let pb = crate::bar(
        cfg.iterations as u64,
        "distilling [{bar:30}] {pos}/{len} DM loss {msg}, ETA {eta}",
    );
    let block = (cfg.iterations / 20).max(1);
    let (mut curve, mut sum, mut count) = (Vec::new(), 0.0, 0);
    for _ in 0..cfg.iterations {
        let loss = distiller.step();
        if !loss.is_finite() {
            bail!(
                "the DM loss is not finite at iteration {}: lower --lr",
                distiller.iteration
            );
        }
        sum += loss;
        count += 1;
        if count == block {
            curve.push(sum / count as f64);
            pb.set_message(format!("{:.4}", sum / count as f64));
            (sum, count) = (0.0, 0);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let after = distiller.evaluate(FIXED_SEED);
    let synthetic = distiller.synthetic(FIXED_SEED);
    write_patches(&args.out.join("synthetic"), &synthetic)?;
    write_patches(&args.out.join("real"), &distiller.initial)?;
    write_overview(
        &args.out.join("overview.png"),
        &distiller.initial,
        &synthetic,
    )?;
    let record = Record {
        format: "websr-ld3m",
        generator: &args.generator,
        generator_sha256,
        config: &cfg,
        loss_curve: curve,
        fixed_loss_before: before,
        fixed_loss_after: after,
        seconds,
    };
    let json = serde_json::to_string_pretty(&record)?;
    std::fs::write(args.out.join("distill.json"), json + "\n")?;
    println!(
        "{} synthetic {}x{} patches from {} ({} DDIM steps from strength {}), {} iterations in \
         {:.0} s; DM loss on a fixed batch {:.4} -> {:.4}; written to {}",
        cfg.images,
        cfg.patch,
        cfg.patch,
        args.generator,
        cfg.steps,
        cfg.strength,
        cfg.iterations,
        seconds,
        before,
        after,
        args.out.display()
    );
    Ok(())
}

/// Refuses an existing non-empty folder (a finished distillation is never overwritten).
fn prepare_out(out: &Path) -> Result<()> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).with_context(|| format!("{}", out.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} exists and is not empty; choose another --out",
                out.display()
            );
        }
    }
    Ok(())
}

fn write_patches(dir: &Path, patches: &[Planar]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    for (i, p) in patches.iter().enumerate() {
        let pic = Picture {
            rgb: p.clone(),
            alpha: None,
        };
        websr::image::save(&pic, dir.join(format!("{i:03}.png")))?;
    }
    Ok(())
}

/// The first ten real patches in the top row, their synthetic versions below, 4 px apart.
fn write_overview(path: &Path, real: &[Planar], synthetic: &[Planar]) -> Result<()> {
    let n = real.len().min(synthetic.len()).min(10);
    let Some(first) = real.first() else {
        return Ok(());
    };
    let (h, w, gap) = (first.height, first.width, 4);
    let (height, width) = (2 * h + gap, n * w + (n - 1) * gap);
    let mut canvas = Planar::new(3, height, width, vec![1.0; 3 * height * width]);
    for (row, set) in [real, synthetic].into_iter().enumerate() {
        for (col, p) in set.iter().take(n).enumerate() {
            let (y0, x0) = (row * (h + gap), col * (w + gap));
            for c in 0..3 {
                for y in 0..h {
                    let src = &p.plane(c)[y * w..(y + 1) * w];
                    let start = (y0 + y) * width + x0;
                    canvas.plane_mut(c)[start..start + w].copy_from_slice(src);
                }
            }
        }
    }
    let pic = Picture {
        rgb: canvas,
        alpha: None,
    };
    Ok(websr::image::save(&pic, path)?)
}
