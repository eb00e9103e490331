//! `websr eval`: Y-PSNR / Y-SSIM of a model (either kind) or bicubic on a benchmark folder.

use crate::models::{resolve, Resolved};
use crate::sampling::{describe, SamplingArgs};
use anyhow::{Context, Result};
use std::path::PathBuf;
use websr::degrade::TrainDegradation;
use websr::device::Backend;
use websr::eval::{evaluate_inputs, image_files, Report};
use websr::image::Planar;
use websr::resize::imresize;
use websr::upscale::{upscale_rgb, UpscaleOptions};
use websr::ModelKind;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Shipped model name, .safetensors file, or "bicubic".
    #[arg(long)]
    model: String,
    /// Folder of HR images (e.g. ../shared/data/set5).
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    scale: Option<usize>,
    #[arg(long)]
    tta: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Score on degraded inputs instead of clean bicubic ones: "photo" (noise sigma 0-15 and
    /// JPEG quality 30-90 per image, fixed seed: the `photo` model's test).
    #[arg(long)]
    degrade: Option<String>,
    #[command(flatten)]
    sampling: SamplingArgs,
}

/// The benchmark loop for the chosen test inputs: clean bicubic or `--degrade photo`.
fn score_folder(
    args: &EvalArgs,
    scale: usize,
    upscale: &mut dyn FnMut(&Planar) -> websr::Result<Planar>,
) -> Result<Report> {
    let degradation = args
        .degrade
        .as_deref()
        .map(TrainDegradation::parse)
        .transpose()?;
    Ok(evaluate_inputs(
        &image_files(&args.data)?,
        scale,
        degradation,
        upscale,
    )?)
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = Backend::Cpu.device()?;
    let (report, title) = match resolve(&args.model, args.scale, &device)? {
        Resolved::Bicubic => {
            args.sampling.for_model(None, &args.model)?;
            let s = args.scale.context("--scale is required for bicubic")?;
            let report = score_folder(&args, s, &mut |lr| Ok(imresize(lr, s as f64)))?;
            (report, title(&args, s, ""))
        }
        Resolved::Model(m) => {
            let opts = UpscaleOptions {
                tta: args.tta,
                sampling: args.sampling.for_model(Some(&m), &args.model)?,
                ..UpscaleOptions::default()
            };
            let how = match m.kind() {
                ModelKind::OnePass if args.tta => " (x8 TTA)".to_string(),
                ModelKind::OnePass => String::new(),
                ModelKind::Diffusion => format!(", {}", describe(&opts.sampling)),
            };
            let report = score_folder(&args, m.scale(), &mut |lr| {
                upscale_rgb(&m, lr, &opts, &device, &mut |_, _| true)
            })?;
            (report, title(&args, m.scale(), &how))
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&title, &report);
    }
    Ok(())
}

fn title(args: &EvalArgs, scale: usize, how: &str) -> String {
    let inputs = match &args.degrade {
        Some(d) => format!(" ({d} inputs)"),
        None => String::new(),
    };
    format!(
        "{} x{scale} on {}{inputs}{how}",
        args.model,
        args.data.display()
    )
}

/// The per-image table and its mean.
pub fn print_report(title: &str, report: &Report) {
    println!("{title}");
    println!(
        "{:<16} {:>9} {:>8} {:>10}  {:>17}",
        "image", "PSNR-Y", "SSIM-Y", "PSNR-RGB", "detail LH/HL/HH"
    );
    for r in report.rows.iter().chain(std::iter::once(&report.mean)) {
        let [lh, hl, hh] = r.detail;
        println!(
            "{:<16} {:>9.3} {:>8.4} {:>10.3}  {lh:>5.2} {hl:>5.2} {hh:>5.2}",
            r.name, r.psnr_y, r.ssim_y, r.psnr_rgb
        );
    }
    println!(
        "(detail: the output's level-1 Haar detail energy on Y over the ground truth's, per \
         sub-band; 1 = as much fine detail as the truth)"
    );
}
