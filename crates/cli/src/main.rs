//! `websr`: upscale images, train and evaluate the wavelet SR models from the command line.

mod cli_models;
mod diffusion_bench;
mod diffusion_cli;
mod figure;
mod fl_client;
mod fl_sim;
mod peak_alloc;
mod prune;
mod ship;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use websr::backend::Backend;
use websr::eval::{evaluate_bicubic, evaluate_model, image_files, Report};
use websr::image::Picture;
use websr::models::{Arch, ModelSpec};
use websr::train::data::TrainingSet;
use websr::train::{StepInfo, TrainConfig, Trainer, TrainingRun};
use websr::upscale::{upscale_picture, UpscaleOptions};

#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

#[derive(Parser)]
#[command(
    name = "websr",
    version,
    about = "Wavelet super-resolution: upscale, train, evaluate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upscale an image, or every image of a folder.
    Upscale {
        /// Input image file or folder.
        input: PathBuf,
        /// Output file (for one input) or folder (for a folder input).
        #[arg(short, long)]
        output: PathBuf,
        /// Shipped model name (see `websr models`), or a .safetensors file; "bicubic" for the
        /// baseline. Default: the shipped default model of --scale.
        #[arg(long)]
        model: Option<String>,
        /// Upscaling factor; must match the model (default: the model's, 4 without --model).
        #[arg(long)]
        scale: Option<usize>,
        /// Tile side in input pixels (bounded memory); 0 = whole image at once.
        #[arg(long, default_value_t = 192)]
        tile: usize,
        /// x8 self-ensemble (flips and rotations averaged): slower, slightly better.
        #[arg(long)]
        tta: bool,
        /// cpu or wgpu.
        #[arg(long, default_value = "cpu")]
        backend: String,
        #[command(flatten)]
        sampling: diffusion_cli::SamplingArgs,
    },
    /// Score the training set's sub-images with a scorer model's loss and write the hardest
    /// fraction as a subset manifest (for `train --subset`).
    Prune(prune::PruneArgs),
    /// Take part in federated training: train on your own images, send only the model update
    /// to a websr-aggregator.
    FlClient(fl_client::FlClientArgs),
    /// The federated blind-SR benchmark: simulated clients with Dirichlet non-IID degradations,
    /// strategies against centralized training, scored on 8 degradation combinations.
    FlSim(fl_sim::FlSimArgs),
    /// Train a model on image folders (default: the 291 set under ../shared/data).
    Train(cli_models::TrainArgs),
    /// Evaluate a model on a benchmark folder: Y-PSNR / Y-SSIM per image and mean.
    Eval {
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
        sampling: diffusion_cli::SamplingArgs,
    },
    /// The diffusion benchmark: SR3 vs DiWa vs DiWa+YODA at equal DDIM steps on Set5/Set14
    /// (PSNR/SSIM), images per second and peak memory, and the step-count trade-off.
    BenchDiffusion(diffusion_bench::BenchArgs),
    /// List the shipped models.
    Models,
    /// Side-by-side crop: LR | bicubic | each --model | HR, from a benchmark image.
    Figure {
        /// HR image (LR is made from it with the evaluation degradation).
        #[arg(long)]
        image: PathBuf,
        /// Models to show, in order (repeatable).
        #[arg(long, required = true)]
        model: Vec<String>,
        #[arg(long, default_value_t = 4)]
        scale: usize,
        /// Crop as Y,X,SIZE in HR pixels.
        #[arg(long, value_delimiter = ',', default_values_t = [0, 0, 128])]
        crop: Vec<usize>,
        #[arg(short, long)]
        output: PathBuf,
        /// Diffusion models: sampled with these steps and seed (default 10 steps, seed 0);
        /// a model trained with YODA is sampled with YODA.
        #[command(flatten)]
        sampling: diffusion_cli::SamplingArgs,
    },
    /// Ship a finished training run: copy its weights to the models folder, measure Set5/Set14,
    /// update models/manifest.json and write the model card.
    Ship(ship::ShipArgs),
    /// Print the speed table: DWT/IDWT, each model's forward pass, training steps.
    Bench {
        /// Input side in pixels.
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// Timed repetitions per row (median reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// cpu or wgpu.
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// Skip the training-step rows.
        #[arg(long)]
        no_train: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Upscale {
            input,
            output,
            model,
            scale,
            tile,
            tta,
            backend,
            sampling,
        } => {
            let model = match model {
                Some(name) => name,
                None => cli_models::default_model(scale.unwrap_or(4))?,
            };
            if diffusion_cli::is_diffusion(&model)? {
                return diffusion_cli::upscale(&input, &output, &model, scale, &sampling, &backend);
            }
            sampling.refuse_for(&model)?;
            upscale(&input, &output, &model, scale, tile, tta, &backend)
        }
        Command::BenchDiffusion(args) => diffusion_bench::run(args),
        Command::Prune(args) => prune::run(args),
        Command::Train(args) => train(args),
        Command::FlClient(args) => fl_client::run(args),
        Command::FlSim(args) => fl_sim::run(args),
        Command::Eval {
            model,
            data,
            scale,
            tta,
            json,
            sampling,
        } => {
            if diffusion_cli::is_diffusion(&model)? {
                return diffusion_cli::eval(&model, &data, scale, &sampling, json);
            }
            sampling.refuse_for(&model)?;
            eval(&model, &data, scale, tta, json)
        }
        Command::Models => cli_models::list(),
        Command::Figure {
            image,
            model,
            scale,
            crop,
            output,
            sampling,
        } => {
            let [y, x, size] = crop[..] else {
                bail!("--crop takes Y,X,SIZE");
            };
            let device = Backend::Cpu.device()?;
            let models = model
                .iter()
                .map(|m| figure_upscaler(m, scale, &sampling, &device))
                .collect::<Result<Vec<_>>>()?;
            figure::run(&image, &models, scale, [y, x, size], &output)
        }
        Command::Ship(args) => ship::run(&args, &Backend::Cpu.device()?),
        Command::Bench {
            size,
            reps,
            backend,
            no_train,
        } => {
            let backend = Backend::parse(&backend)?;
            let device = backend.device()?;
            let mut rows = websr::bench::inference_rows(&device, size, reps);
            if !no_train {
                rows.extend(websr::bench::training_rows(&device, reps));
            }
            println!("{}", websr::bench::to_markdown(backend.name(), &rows));
            Ok(())
        }
    }
}

pub(crate) fn bar(len: u64, template: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

fn upscale(
    input: &Path,
    output: &Path,
    model: &str,
    scale: Option<usize>,
    tile: usize,
    tta: bool,
    backend: &str,
) -> Result<()> {
    let device = Backend::parse(backend)?.device()?;
    let sr = cli_models::resolve(model, scale, &device)?;
    let opts = UpscaleOptions {
        tile: (tile > 0).then_some(tile),
        tta,
        ..UpscaleOptions::default()
    };
    upscale_files(input, output, "tiles", |pic, progress| match &sr {
        None => Ok(websr::upscale::bicubic_picture(pic, scale.unwrap_or(4))),
        Some(m) => Ok(upscale_picture(m, pic, &opts, &device, progress)?),
    })
}

/// Upscales the file or folder `input` into `output` with `work(picture, progress)`, a progress
/// bar counting `unit` (tiles, steps) per file, and one line per file.
pub(crate) fn upscale_files(
    input: &Path,
    output: &Path,
    unit: &str,
    mut work: impl FnMut(&Picture, &mut dyn FnMut(usize, usize) -> bool) -> Result<Picture>,
) -> Result<()> {
    for (src, dst) in upscale_jobs(input, output)? {
        let pic = websr::image::load(&src)?;
        let started = std::time::Instant::now();
        let pb = bar(
            0,
            &format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {unit}, ETA {{eta}}"),
        );
        pb.set_message(src.display().to_string());
        let out = work(&pic, &mut |done, total| {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
            true
        })?;
        pb.finish_and_clear();
        websr::image::save(&out, &dst)?;
        println!(
            "{} ({}x{}) -> {} ({}x{}) in {:.2} s",
            src.display(),
            pic.width(),
            pic.height(),
            dst.display(),
            out.width(),
            out.height(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// A figure panel's model: one-pass (tiled, as `upscale`) or diffusion (sampled).
fn figure_upscaler<'a>(
    name: &str,
    scale: usize,
    sampling: &diffusion_cli::SamplingArgs,
    device: &'a websr::burn::tensor::Device,
) -> Result<figure::Upscaler<'a>> {
    if diffusion_cli::is_diffusion(name)? {
        let m = diffusion_cli::resolve(name, Some(scale), device)?;
        let mut opts = sampling.options()?;
        opts.steps = Some(sampling.steps.unwrap_or(10));
        opts.yoda |= m.spec.yoda.is_some();
        return Ok(Box::new(move |lr| {
            Ok(websr::diffusion::upscale::upscale_rgb(
                &m,
                lr,
                &opts,
                device,
                &mut |_, _| true,
            )?)
        }));
    }
    let m = cli_models::resolve(name, Some(scale), device)?
        .ok_or_else(|| anyhow::anyhow!("bicubic is always shown; name trained models"))?;
    Ok(Box::new(move |lr| {
        let opts = UpscaleOptions::default();
        Ok(websr::upscale::upscale_rgb(
            &m,
            lr,
            &opts,
            device,
            &mut |_, _| true,
        )?)
    }))
}

/// `(input, output)` pairs: the file itself, or every image of a folder into an output folder
/// as PNG.
pub(crate) fn upscale_jobs(input: &Path, output: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    if !input.is_dir() {
        return Ok(vec![(input.to_path_buf(), output.to_path_buf())]);
    }
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    Ok(image_files(input)?
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap_or_default().to_string_lossy();
            let out = output.join(format!("{name}.png"));
            (p, out)
        })
        .collect())
}

pub(crate) fn print_report(title: &str, report: &Report) {
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

fn eval(model: &str, data: &Path, scale: Option<usize>, tta: bool, json: bool) -> Result<()> {
    let device = Backend::Cpu.device()?;
    let sr = cli_models::resolve(model, scale, &device)?;
    let (report, scale) = match &sr {
        None => {
            let s = scale.context("--scale is required for bicubic")?;
            (evaluate_bicubic(data, s)?, s)
        }
        Some(m) => {
            let opts = UpscaleOptions {
                tta,
                ..UpscaleOptions::default()
            };
            (evaluate_model(data, m, &opts, &device)?, m.scale())
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(
            &format!(
                "{model} x{scale} on {}{}",
                data.display(),
                if tta { " (x8 TTA)" } else { "" }
            ),
            &report,
        );
    }
    Ok(())
}

fn train(args: cli_models::TrainArgs) -> Result<()> {
    let Some(arch) = &args.arch else {
        return diffusion_cli::train(args);
    };
    let arch = Arch::parse(arch)?;
    let mut spec = ModelSpec::default_for(arch, args.scale);
    if let Some(f) = args.features {
        spec.features = f;
    }
    if let Some(l) = args.layers {
        spec.body_layers = l;
    }
    let (data, subset_sha256) = load_training_data(&args)?;
    let cfg = TrainConfig {
        spec,
        schedule: args.schedule(),
        subset_sha256,
    };
    let device = Backend::Cpu.device()?;
    let mut trainer = Trainer::new(cfg, &args.out, args.resume, args.init.as_deref(), &device)?;
    eprintln!(
        "{} x{}: {} parameters, starting at step {}",
        arch.name(),
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

/// The training images of `--data` or `--subset`, and the subset manifest's SHA-256 if any.
pub(crate) fn load_training_data(
    args: &cli_models::TrainArgs,
) -> Result<(TrainingSet, Option<String>)> {
    if let Some(subset) = &args.subset {
        let bytes =
            std::fs::read(subset).with_context(|| format!("reading {}", subset.display()))?;
        let manifest = websr::prune::Manifest::read(subset)?;
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
    let dirs = cli_models::training_dirs(&args.data, &args.data_root)?;
    eprintln!("loading training images from {dirs:?}");
    let data = TrainingSet::load_dirs(&dirs)?;
    eprintln!("{} images", data.len());
    Ok((data, None))
}

/// A progress bar from step `first` of `steps`, and the per-step callback that moves it: a
/// smoothed loss, the learning rate, and a line per validation.
pub(crate) fn training_progress(
    steps: usize,
    first: usize,
) -> (ProgressBar, impl FnMut(&StepInfo) -> bool) {
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
