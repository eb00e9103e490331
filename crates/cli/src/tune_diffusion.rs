//! `websr tune-diffusion`: the step-count / strength trade-off of a DiWa model, measured on
//! training images held out from training (never a test set), and the default it implies: the
//! setting with the most faithful fine detail (Haar detail energy closest to the ground truth's)
//! whose PSNR stays within `--max-psnr-drop` of the initial predictor alone. The chosen
//! setting is what `websr ship --steps --strength` records in the model; Set5/Set14 are then
//! measured for that one setting only.

use crate::models::resolve_diffusion;
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;
use websr::device::Backend;
use websr::diffusion::upscale::initial_prediction_rgb;
use websr::diffusion::SampleOptions;
use websr::eval::{evaluate_files, Report};
use websr::train::data::split_holdout;
use websr::upscale::{upscale_rgb, UpscaleOptions};
use websr::Model;

#[derive(clap::Args)]
pub struct TuneArgs {
    /// A DiWa model (shipped name or .safetensors file).
    #[arg(long)]
    model: String,
    /// DDIM step counts to try.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    steps: Vec<usize>,
    /// Strengths (fraction of the noise schedule walked back) to try.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.2,0.3,0.5,1")]
    strengths: Vec<f64>,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder holding t91/ and bsd200/: the held-out slice is the last --holdout images, the
    /// ones `websr train` validates on and never trains on.
    #[arg(long, default_value = "../shared/data")]
    data_root: PathBuf,
    #[arg(long, default_value_t = 10)]
    holdout: usize,
    /// The largest PSNR loss against the initial predictor a default may have (dB).
    #[arg(long, default_value_t = 0.3)]
    max_psnr_drop: f64,
    /// Also write the table as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One setting's scores on the held-out images.
#[derive(Serialize)]
struct Row {
    steps: usize,
    strength: f64,
    psnr_y: f64,
    ssim_y: f64,
    detail: [f64; 3],
    /// Mean |ln ratio| over the three detail sub-bands: 0 is the truth's detail energy.
    detail_error: f64,
    ms_per_image: f64,
}

fn detail_error(detail: &[f64; 3]) -> f64 {
    detail.iter().map(|r| r.ln().abs()).sum::<f64>() / 3.0
}

fn row(steps: usize, strength: f64, report: &Report, secs: f64, images: usize) -> Row {
    Row {
        steps,
        strength,
        psnr_y: report.mean.psnr_y,
        ssim_y: report.mean.ssim_y,
        detail: report.mean.detail,
        detail_error: detail_error(&report.mean.detail),
        ms_per_image: 1000.0 * secs / images as f64,
    }
}

fn print_row(label: &str, r: &Row) {
    let [lh, hl, hh] = r.detail;
    println!(
        "| {label} | {:.2} / {:.4} | {lh:.2} / {hl:.2} / {hh:.2} | {:.3} | {:.0} |",
        r.psnr_y, r.ssim_y, r.detail_error, r.ms_per_image
    );
}

pub fn run(args: TuneArgs) -> Result<()> {
    let device = Backend::Cpu.device()?;
    let d = resolve_diffusion(&args.model, &device)?;
    let dirs = [args.data_root.join("t91"), args.data_root.join("bsd200")];
    if !dirs.iter().all(|d| d.is_dir()) {
        bail!(
            "{} has no t91/ and bsd200/: the held-out training images are needed (tuning on a \
             test set is what this command exists to avoid)",
            args.data_root.display()
        );
    }
    let (_, files) = split_holdout(&dirs, args.holdout)?;
    let n = files.len();
    eprintln!("{} on {n} held-out training images", args.model);
    let scale = d.scale();
    let timed = |f: &mut dyn FnMut(&websr::image::Planar) -> websr::Result<_>| {
        let started = Instant::now();
        let report = evaluate_files(&files, scale, f)?;
        anyhow::Ok((report, started.elapsed().as_secs_f64()))
    };
    let (report, secs) =
        timed(&mut |lr| Ok(initial_prediction_rgb(&d, lr, &device)?.expect("a DiWa model")))?;
    let predictor = row(0, 0.0, &report, secs, n);
    let model = Model::Diffusion(d);
    let mut rows = Vec::new();
    for &strength in &args.strengths {
        for &steps in &args.steps {
            let opts = UpscaleOptions {
                sampling: SampleOptions {
                    steps: Some(steps),
                    seed: args.seed,
                    strength,
                    ..SampleOptions::default()
                },
                ..UpscaleOptions::default()
            };
            opts.sampling.validate()?;
            eprintln!("{steps} steps, strength {strength}");
            let (report, secs) =
                timed(&mut |lr| upscale_rgb(&model, lr, &opts, &device, &mut |_, _| true))?;
            rows.push(row(steps, strength, &report, secs, n));
        }
    }
    let floor = predictor.psnr_y - args.max_psnr_drop;
    let chosen = rows.iter().filter(|r| r.psnr_y >= floor).min_by(|a, b| {
        a.detail_error
            .total_cmp(&b.detail_error)
            .then(a.steps.cmp(&b.steps))
    });
    println!(
        "### {} on {n} held-out training images (eta 0, seed {})\n",
        args.model, args.seed
    );
    println!("| setting | PSNR-Y / SSIM-Y | detail LH / HL / HH | detail error | ms per image |");
    println!("|---|---|---|---:|---:|");
    print_row("initial predictor alone", &predictor);
    for r in &rows {
        print_row(&format!("{} steps, strength {}", r.steps, r.strength), r);
    }
    println!(
        "\ndetail: the output's level-1 Haar detail energy on Y over the truth's, per sub-band \
         (1 = matched); detail error: mean |ln ratio|."
    );
    match chosen {
        Some(c) => println!(
            "chosen: {} steps, strength {} (the least detail error within {} dB of the \
             predictor's {:.2} dB)",
            c.steps, c.strength, args.max_psnr_drop, predictor.psnr_y
        ),
        None => println!(
            "no setting stays within {} dB of the predictor's {:.2} dB",
            args.max_psnr_drop, predictor.psnr_y
        ),
    }
    if let Some(path) = &args.json {
        let text = serde_json::json!({ "predictor": predictor, "settings": rows });
        std::fs::write(path, serde_json::to_string_pretty(&text)?)?;
    }
    Ok(())
}
