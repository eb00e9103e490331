//! `websr bench-diffusion`: the comparison the DiWa paper makes (its ablation table), on our
//! models: SR3 vs DiWa vs DiWa+YODA at equal DDIM steps, with Set5/Set14 Y-PSNR/SSIM, images
//! per second and peak memory for one image, then the step-count trade-off on Set5. Everything
//! in one run, one after the other, so the speed ratios are measured side by side.

use crate::models::resolve_diffusion;
use crate::peak_alloc;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use websr::burn::tensor::Device;
use websr::device::Backend;
use websr::diffusion::upscale::initial_prediction_rgb;
use websr::diffusion::{DiffusionKind, SampleOptions};
use websr::eval::evaluate;
use websr::image::Planar;
use websr::resize::imresize;
use websr::upscale::{upscale_rgb, UpscaleOptions};
use websr::Model;

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
    /// Timed repetitions per configuration, round-robin (median reported).
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

/// What one timed run does.
enum Job {
    /// Sample with these options.
    Sample(SampleOptions),
    /// DiWa's initial predictor alone.
    Initial,
}

/// `m` sampled with `sampling`, the way `websr upscale` runs it.
fn sample(
    m: &Model,
    lr: &Planar,
    sampling: &SampleOptions,
    device: &Device,
) -> websr::Result<Planar> {
    let opts = UpscaleOptions {
        sampling: sampling.clone(),
        ..UpscaleOptions::default()
    };
    upscale_rgb(m, lr, &opts, device, &mut |_, _| true)
}

/// Seconds of one run of `job` on `lr`, and the peak heap above the start in bytes.
fn time_once(m: &Model, job: &Job, lr: &Planar, device: &Device) -> Result<(f64, usize)> {
    let base = peak_alloc::reset_peak();
    let started = Instant::now();
    match (job, m) {
        (Job::Sample(opts), _) => {
            sample(m, lr, opts, device)?;
        }
        (Job::Initial, Model::Diffusion(d)) => {
            initial_prediction_rgb(d, lr, device)?;
        }
        (Job::Initial, Model::OnePass(_)) => unreachable!("only DiWa rows time the predictor"),
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((secs, peak_alloc::peak().saturating_sub(base)))
}

/// Mean Y-PSNR/SSIM of `upscale` on the benchmark folder `dir` at `scale`; `None` when the
/// folder is not here.
fn mean_scores(
    dir: &Path,
    scale: usize,
    upscale: &mut dyn FnMut(&Planar) -> websr::Result<Planar>,
) -> Result<Option<[f64; 2]>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let report = evaluate(dir, scale, upscale)?;
    Ok(Some([report.mean.psnr_y, report.mean.ssim_y]))
}

fn quality(
    m: &Model,
    dir: &Path,
    opts: &SampleOptions,
    device: &Device,
) -> Result<Option<[f64; 2]>> {
    mean_scores(dir, m.scale(), &mut |lr| sample(m, lr, opts, device))
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
    let mut models = Vec::new();
    let mut main = Vec::new();
    let mut trade = Vec::new();
    // (model, job, is the row in the trade-off table, row index): timed at the end.
    let mut jobs: Vec<(usize, Job, bool, usize)> = Vec::new();
    for name in &args.models {
        let (file, force_yoda) = match name.strip_suffix("+yoda") {
            Some(base) => (base, true),
            None => (name.as_str(), false),
        };
        let d = resolve_diffusion(file, &device)?;
        let yoda = force_yoda || d.spec.yoda.is_some();
        let params = d.num_params();
        let opts = |steps: usize| SampleOptions {
            steps: Some(steps),
            eta: 0.0,
            seed: 0,
            yoda,
            ..SampleOptions::default()
        };
        let row = |model: String, steps: usize, set5, set14| Row {
            model,
            params,
            steps,
            yoda,
            set5,
            set14,
            images_per_s: f64::NAN,
            peak_mib: f64::NAN,
        };
        let k = models.len();
        if d.spec.kind == DiffusionKind::DiWa && !force_yoda {
            eprintln!("{name}: its initial predictor alone on Set5 and Set14");
            let only = |dir: &Path| {
                mean_scores(dir, d.scale(), &mut |lr| {
                    Ok(initial_prediction_rgb(&d, lr, &device)?.expect("DiWa"))
                })
            };
            let label = format!("{name}, initial predictor alone");
            let mut r = row(label, 0, only(&set5)?, only(&set14)?);
            r.yoda = false;
            jobs.push((k, Job::Initial, false, main.len()));
            main.push(r);
        }
        let m = Model::Diffusion(d);
        eprintln!("{name}: {} steps on Set5 and Set14", args.steps);
        let q5 = quality(&m, &set5, &opts(args.steps), &device)?;
        let q14 = quality(&m, &set14, &opts(args.steps), &device)?;
        jobs.push((k, Job::Sample(opts(args.steps)), false, main.len()));
        main.push(row(name.clone(), args.steps, q5, q14));
        for &steps in &args.trade_off {
            eprintln!("{name}: {steps} steps on Set5");
            let q = match steps == args.steps {
                true => q5,
                false => quality(&m, &set5, &opts(steps), &device)?,
            };
            jobs.push((k, Job::Sample(opts(steps)), true, trade.len()));
            trade.push(row(name.clone(), steps, q, None));
        }
        models.push(m);
    }
    // Timing last, round-robin over every configuration, so a change in the machine's load
    // during the run spreads over all rows instead of favouring the ones timed later.
    eprintln!(
        "timing {} configurations x {} repetitions",
        jobs.len(),
        args.reps
    );
    let mut samples: Vec<(Vec<f64>, usize)> = vec![(Vec::new(), 0); jobs.len()];
    for _ in 0..args.reps.max(1) {
        for (j, (k, job, _, _)) in jobs.iter().enumerate() {
            let (secs, peak) = time_once(&models[*k], job, &lr, &device)?;
            samples[j].0.push(secs);
            samples[j].1 = samples[j].1.max(peak);
        }
    }
    for ((_, job, in_trade, i), (mut times, peak)) in jobs.into_iter().zip(samples) {
        times.sort_by(f64::total_cmp);
        let r = match in_trade {
            true => &mut trade[i],
            false => &mut main[i],
        };
        r.images_per_s = 1.0 / times[times.len() / 2];
        if matches!(job, Job::Sample(_)) {
            r.peak_mib = peak as f64 / (1 << 20) as f64;
        }
    }
    let bicubic = |dir: &Path| mean_scores(dir, 4, &mut |lr| Ok(imresize(lr, 4.0)));
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
