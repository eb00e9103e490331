//! `websr eval`: Y-PSNR / Y-SSIM of a model (either kind) or bicubic on a benchmark folder.

use crate::models::{resolve, Resolved};
use crate::sampling::{describe, SamplingArgs};
use anyhow::{Context, Result};
use std::path::PathBuf;
use websr::device::Backend;
use websr::eval::{evaluate_bicubic, evaluate_model, Report};
use websr::upscale::UpscaleOptions;
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
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = Backend::Cpu.device()?;
    let (report, title) = match resolve(&args.model, args.scale, &device)? {
        Resolved::Bicubic => {
            args.sampling.for_model(None, &args.model, 50)?;
            let s = args.scale.context("--scale is required for bicubic")?;
            (evaluate_bicubic(&args.data, s)?, title(&args, s, ""))
        }
        Resolved::Model(m) => {
            let opts = UpscaleOptions {
                tta: args.tta,
                sampling: args.sampling.for_model(Some(&m), &args.model, 50)?,
                ..UpscaleOptions::default()
            };
            let how = match m.kind() {
                ModelKind::OnePass if args.tta => " (x8 TTA)".to_string(),
                ModelKind::OnePass => String::new(),
                ModelKind::Diffusion => format!(", {}", describe(&opts.sampling)),
            };
            let report = evaluate_model(&args.data, &m, &opts, &device)?;
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
    format!("{} x{scale} on {}{how}", args.model, args.data.display())
}

/// The per-image table and its mean.
pub fn print_report(title: &str, report: &Report) {
    println!("{title}");
    println!(
        "{:<16} {:>9} {:>8} {:>10}",
        "image", "PSNR-Y", "SSIM-Y", "PSNR-RGB"
    );
    for r in report.rows.iter().chain(std::iter::once(&report.mean)) {
        println!(
            "{:<16} {:>9.3} {:>8.4} {:>10.3}",
            r.name, r.psnr_y, r.ssim_y, r.psnr_rgb
        );
    }
}
