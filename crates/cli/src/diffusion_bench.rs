//! `websr bench-diffusion`: the comparison the DiWa paper makes (its ablation table), on our
//! models: SR3 vs DiWa vs DiWa+YODA at equal DDIM steps, with Set5/Set14 Y-PSNR/SSIM, images
//! per second and peak memory for one image, then the step-count trade-off on Set5. Everything
//! in one run, one after the other, so the speed ratios are measured side by side.

use crate::diffusion_cli::resolve;
use crate::peak_alloc;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use websr::backend::Backend;
use websr::burn::tensor::Device;
use websr::diffusion::upscale::{initial_prediction_rgb, upscale_rgb};
use websr::diffusion::{DiffusionKind, DiffusionModel, SampleOptions};
use websr::eval::{evaluate, evaluate_bicubic};
use websr::image::Planar;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Models to compare (shipped names or .safetensors files), in table order. A model
    /// trained with YODA is sampled with YODA; `NAME+yoda` samples any model with YODA.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sr3-x4,diwa-x4,diwa-x4+yoda,diwa-yoda-x4"
    )]
    models: Vec<String>,
    /// The equal number of DDIM steps (eta 0, seed 0) of the main table.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// DDIM step counts of the trade-off table (Set5).
    #[arg(long, value_delimiter = ',', default_value = "2,5,10,25")]
    trade_off: Vec<usize>,
    /// Folder holding set5/ and set14/ (quality columns are skipped without it).
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// LR side of the synthetic image timed for images/s and peak memory.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Timed repetitions (median reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One model at one step count.
#[derive(Serialize)]
struct Row {
    model: String,
    params: usize,
    steps: usize,
    yoda: bool,
    set5: Option<[f64; 2]>,
    set14: Option<[f64; 2]>,
    images_per_s: f64,
    peak_mib: f64,
}

/// A smooth synthetic RGB test image with edges: timing does not depend on content, but a
/// flat image would make YODA's map degenerate.
fn synthetic(side: usize) -> Planar {
    let mut p = Planar::zeros(3, side, side);
    for c in 0..3 {
        let plane = p.plane_mut(c);
        for y in 0..side {
            for x in 0..side {
                let v = ((x * (c + 1) + y * 3) % 17) as f32 / 16.0;
                plane[y * side + x] = if (x / 8 + y / 8) % 2 == 0 { v } else { 1.0 - v };
            }
        }
    }
    p
}

/// Median seconds of one upscale of `lr`, and the peak heap above the start in MiB.
fn time_and_memory(
    m: &DiffusionModel,
    lr: &Planar,
    opts: &SampleOptions,
    reps: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let mut times = Vec::new();
    let mut peak = 0usize;
    for _ in 0..reps.max(1) {
        let base = peak_alloc::reset_peak();
        let started = Instant::now();
        upscale_rgb(m, lr, opts, device, &mut |_, _| true)?;
        times.push(started.elapsed().as_secs_f64());
        peak = peak.max(peak_alloc::peak().saturating_sub(base));
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], peak as f64 / (1 << 20) as f64))
}

fn quality(
    m: &DiffusionModel,
    dir: &Path,
    opts: &SampleOptions,
    device: &Device,
) -> Result<Option<[f64; 2]>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let report = evaluate(dir, m.scale(), &mut |lr| {
        upscale_rgb(m, lr, opts, device, &mut |_, _| true)
    })?;
    Ok(Some([report.mean.psnr_y, report.mean.ssim_y]))
}

fn fmt(q: Option<[f64; 2]>) -> String {
    q.map_or("-".into(), |[p, s]| format!("{p:.2} / {s:.4}"))
}

pub fn run(args: BenchArgs) -> Result<()> {
    let device = Backend::Cpu.device()?;
    let (set5, set14) = (args.data.join("set5"), args.data.join("set14"));
    if !set5.is_dir() {
        eprintln!(
            "note: {} not found: quality columns are skipped",
            set5.display()
        );
    }
    let lr = synthetic(args.size);
    let mut main = Vec::new();
    let mut trade = Vec::new();
    for name in &args.models {
        let (file, force_yoda) = match name.strip_suffix("+yoda") {
            Some(base) => (base, true),
            None => (name.as_str(), false),
        };
        let m = resolve(file, None, &device)?;
        let yoda = force_yoda || m.spec.yoda.is_some();
        let opts = |steps: usize| SampleOptions {
            steps: Some(steps),
            eta: 0.0,
            seed: 0,
            yoda,
        };
        let row = |steps: usize, set5: Option<[f64; 2]>, set14: Option<[f64; 2]>| -> Result<Row> {
            let (secs, peak) = time_and_memory(&m, &lr, &opts(steps), args.reps, &device)?;
            Ok(Row {
                model: name.clone(),
                params: m.num_params(),
                steps,
                yoda,
                set5,
                set14,
                images_per_s: 1.0 / secs,
                peak_mib: peak,
            })
        };
        if m.spec.kind == DiffusionKind::DiWa && !force_yoda {
            eprintln!("{name}: its initial predictor alone on Set5 and Set14");
            let only = |dir: &Path| -> Result<Option<[f64; 2]>> {
                if !dir.is_dir() {
                    return Ok(None);
                }
                let r = evaluate(dir, m.scale(), &mut |lr| {
                    Ok(initial_prediction_rgb(&m, lr, &device)?.expect("DiWa"))
                })?;
                Ok(Some([r.mean.psnr_y, r.mean.ssim_y]))
            };
            let started = Instant::now();
            initial_prediction_rgb(&m, &lr, &device)?;
            main.push(Row {
                model: format!("{name}, initial predictor alone"),
                params: m.num_params(),
                steps: 0,
                yoda: false,
                set5: only(&set5)?,
                set14: only(&set14)?,
                images_per_s: 1.0 / started.elapsed().as_secs_f64(),
                peak_mib: f64::NAN,
            });
        }
        eprintln!("{name}: {} steps on Set5 and Set14", args.steps);
        let q5 = quality(&m, &set5, &opts(args.steps), &device)?;
        let q14 = quality(&m, &set14, &opts(args.steps), &device)?;
        main.push(row(args.steps, q5, q14)?);
        for &steps in &args.trade_off {
            eprintln!("{name}: {steps} steps on Set5");
            let q = match steps == args.steps {
                true => q5,
                false => quality(&m, &set5, &opts(steps), &device)?,
            };
            trade.push(row(steps, q, None)?);
        }
    }
    let bicubic = |dir: &Path| -> Result<Option<[f64; 2]>> {
        match dir.is_dir() {
            true => {
                let r = evaluate_bicubic(dir, 4)?;
                Ok(Some([r.mean.psnr_y, r.mean.ssim_y]))
            }
            false => Ok(None),
        }
    };
    println!(
        "### Equal steps: {} DDIM steps (eta 0, seed 0), x4, CPU (flex), {} thread(s)\n",
        args.steps,
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into())
    );
    println!(
        "images/s and peak memory: one {0}x{0} -> {1}x{1} image, median of {2}.\n",
        args.size,
        args.size * 4,
        args.reps
    );
    println!("| model | params | Set5 PSNR / SSIM | Set14 PSNR / SSIM | images/s | peak MiB |");
    println!("|---|---:|---|---|---:|---:|");
    println!(
        "| bicubic | 0 | {} | {} | - | - |",
        fmt(bicubic(&set5)?),
        fmt(bicubic(&set14)?)
    );
    for r in &main {
        let peak = match r.peak_mib.is_nan() {
            true => "-".to_string(),
            false => format!("{:.0}", r.peak_mib),
        };
        println!(
            "| {} | {} | {} | {} | {:.3} | {peak} |",
            r.model,
            r.params,
            fmt(r.set5),
            fmt(r.set14),
            r.images_per_s,
        );
    }
    println!("\n### DDIM step trade-off (Set5)\n");
    println!("| model | steps | Set5 PSNR / SSIM | images/s | peak MiB |");
    println!("|---|---:|---|---:|---:|");
    for r in &trade {
        println!(
            "| {} | {} | {} | {:.3} | {:.0} |",
            r.model,
            r.steps,
            fmt(r.set5),
            r.images_per_s,
            r.peak_mib
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::json!({ "equal_steps": main, "trade_off": trade });
        std::fs::write(path, serde_json::to_string_pretty(&text)?)?;
    }
    Ok(())
}
