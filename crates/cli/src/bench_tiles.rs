//! `websr bench-tiles`: what tiled diffusion costs and saves, in one run. Per image of a folder,
//! a YODA-guided upscale in tiles twice, every step of every tile and then with the steps each
//! tile's mask leaves empty skipped: the network evaluations, the time and the Y-PSNR of both
//! (the images must be bit-identical). Then the peak heap of one large synthetic image sampled
//! whole against in tiles.

use crate::models::resolve_diffusion;
use crate::peak_alloc;
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::time::Instant;
use websr::burn::tensor::Device;
use websr::device::Backend;
use websr::diffusion::upscale::Upscaling;
use websr::diffusion::{DiffusionModel, SampleOptions};
use websr::eval::{image_files, score};
use websr::image::{load, Planar};
use websr::resize::degrade_bicubic;

#[derive(clap::Args)]
pub struct BenchTilesArgs {
    /// A diffusion model (shipped name or file); sampled with YODA.
    #[arg(long, default_value = "diwa-yoda-x4")]
    model: String,
    /// DDIM steps per tile.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Tile side (LR pixels).
    #[arg(long, default_value_t = 64)]
    tile: usize,
    /// Images to upscale (their bicubic x1/scale is the input).
    #[arg(long, default_value = "../shared/data/set5")]
    data: PathBuf,
    /// LR side of the synthetic image whose peak memory is measured whole and in tiles (at most
    /// 256, the whole-image limit).
    #[arg(long, default_value_t = 256)]
    size: usize,
}

/// One tiled YODA upscale: the image, network evaluations, steps and seconds.
fn tiled(
    model: &DiffusionModel,
    lr: &Planar,
    opts: &SampleOptions,
    skip: bool,
    device: &Device,
) -> Result<(Planar, usize, usize, f64)> {
    let started = Instant::now();
    let mut job = Upscaling::start(model, lr, opts, device)?;
    if !skip {
        job = job.without_skipping();
    }
    pollster::block_on(async {
        job.settle_async(model).await?;
        while !job.is_done() {
            job.step(model);
            job.settle_async(model).await?;
        }
        Ok::<(), websr::WebSrError>(())
    })?;
    let (evaluations, steps) = (job.evaluations(), job.steps());
    let image = pollster::block_on(job.finish_async())?;
    Ok((image, evaluations, steps, started.elapsed().as_secs_f64()))
}

/// Seconds and peak heap (MiB above the start) of one upscale of `lr` with `opts`.
fn peak(
    model: &DiffusionModel,
    lr: &Planar,
    opts: &SampleOptions,
    device: &Device,
) -> Result<(f64, f64)> {
    let base = peak_alloc::reset_peak();
    let (_, _, _, secs) = tiled(model, lr, opts, true, device)?;
    let bytes = peak_alloc::peak().saturating_sub(base);
    Ok((secs, bytes as f64 / (1 << 20) as f64))
}

pub fn run(args: BenchTilesArgs) -> Result<()> {
    let device = Backend::Cpu.device()?;
    let model = resolve_diffusion(&args.model, &device)?;
    if args.size > 256 {
        bail!("--size is at most 256 (the largest image sampled whole)");
    }
    let opts = SampleOptions {
        yoda: true,
        tile: Some(args.tile),
        ..model.default_options()
    };
    let opts = SampleOptions {
        steps: Some(args.steps),
        ..opts
    };
    println!(
        "### {} in tiles of {} LR pixels, {} DDIM steps with YODA (strength {}), {} thread(s)\n",
        args.model,
        args.tile,
        args.steps,
        opts.strength,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
    );
    if args.data.is_dir() {
        println!("| image | tiles | network evaluations (all / skipping) | seconds (all / skipping) | PSNR-Y |");
        println!("|---|---:|---:|---:|---:|");
        let (mut all_s, mut skip_s, mut all_e, mut skip_e) = (0.0, 0.0, 0, 0);
        for path in image_files(&args.data)? {
            let (hr, lr) = degrade_bicubic(&load(&path)?.rgb, model.scale());
            let (every, n_all, steps, t_all) = tiled(&model, &lr, &opts, false, &device)?;
            let (skipped, n_skip, _, t_skip) = tiled(&model, &lr, &opts, true, &device)?;
            if every.data != skipped.data {
                bail!("{}: skipping changed the image", path.display());
            }
            let tiles = steps / args.steps.max(1);
            let psnr = score("", &skipped, &hr, model.scale()).psnr_y;
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            println!(
                "| {name} | {tiles} | {n_all} / {n_skip} | {t_all:.1} / {t_skip:.1} | {psnr:.2} |"
            );
            (all_s, skip_s, all_e, skip_e) = (
                all_s + t_all,
                skip_s + t_skip,
                all_e + n_all,
                skip_e + n_skip,
            );
        }
        println!(
            "| all | | {all_e} / {skip_e} ({:.0}% fewer) | {all_s:.1} / {skip_s:.1} ({:.0}% less) | identical |\n",
            100.0 * (1.0 - skip_e as f64 / all_e.max(1) as f64),
            100.0 * (1.0 - skip_s / all_s.max(1e-9))
        );
    } else {
        eprintln!(
            "note: {} not found: the per-image table is skipped",
            args.data.display()
        );
    }
    let side = args.size;
    let mut lr = Planar::zeros(3, side, side);
    for (i, v) in lr.data.iter_mut().enumerate() {
        *v = ((i * 2_654_435_761) >> 24 & 255) as f32 / 255.0;
    }
    let whole_opts = SampleOptions {
        tile: None,
        ..opts.clone()
    };
    let (whole_s, whole_mib) = peak(&model, &lr, &whole_opts, &device)?;
    let (tile_s, tile_mib) = peak(&model, &lr, &opts, &device)?;
    println!("| one {side}x{side} LR image | seconds | peak heap MiB |");
    println!("|---|---:|---:|");
    println!("| whole | {whole_s:.1} | {whole_mib:.0} |");
    println!("| tiles of {} | {tile_s:.1} | {tile_mib:.0} |", args.tile);
    Ok(())
}
