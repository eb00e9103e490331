//! `websr ship`: turns a finished training run into a shipped model: writes its weights into the
//! models folder in the wire format (`--wire`, float16 by default), measures Set5/Set14 of that
//! file, writes the manifest entry and the model card. A one-pass model is measured as `websr
//! eval` does; a diffusion model with `--steps` DDIM steps, seed 0.

use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use websr::burn::tensor::Device;
use websr::degrade::PHOTO_EVAL_SEED;
use websr::device::Backend;
use websr::diffusion::model::{DefaultSampling, PredictorSpec};
use websr::diffusion::SampleOptions;
use websr::eval::{evaluate_bicubic, evaluate_inputs, evaluate_model, image_files, Report};
use websr::image::Planar;
use websr::resize::imresize;
use websr::train::diffusion::DiffusionTrainConfig;
use websr::train::{
    read_json, CheckpointPaths, Schedule, TrainConfig, TrainDegradation, TrainState,
};
use websr::upscale::{upscale_rgb, UpscaleOptions};
use websr::weights::{sha256_hex, to_f16_bytes, to_f32_bytes};
use websr::zoo::{Manifest, ModelEntry, ModelKind};
use websr::Model;

#[derive(clap::Args)]
pub struct ShipArgs {
    /// The run's checkpoint folder (websr train --out).
    #[arg(long)]
    run: PathBuf,
    #[arg(long)]
    name: String,
    #[arg(long)]
    description: String,
    /// The exact command that trained it, for the card.
    #[arg(long)]
    command: String,
    /// Anything else the card must say about how this run went.
    #[arg(long, default_value = "")]
    notes: String,
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    #[arg(long, default_value = "../shared/data")]
    data: PathBuf,
    /// Make this model the default of its scale (for `websr upscale` and the web app); a
    /// re-shipped default stays the default.
    #[arg(long)]
    default: bool,
    /// Diffusion runs: the DDIM steps (eta 0, seed 0) the scores are measured with.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Diffusion runs: the strength the scores are measured with. Given, it and --steps are
    /// recorded in the shipped file as the model's own defaults (see `websr tune-diffusion`).
    #[arg(long)]
    strength: Option<f64>,
    /// How the shipped file stores its weights (training checkpoints stay f32).
    #[arg(long, value_enum, default_value = "f16")]
    wire: Wire,
    /// Ship a run that has not reached its last step: its checkpoint with the best held-out
    /// validation (`best.safetensors`, never chosen on Set5/Set14), the card saying at which
    /// step of how many.
    #[arg(long)]
    unfinished: bool,
}

/// The number format of a shipped weights file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Wire {
    /// float16: half the download; loading widens it to float32.
    F16,
    /// float32, as trained.
    F32,
}

impl Wire {
    /// `bytes` (either format) in this one.
    pub fn encode(self, bytes: &[u8]) -> websr::Result<Vec<u8>> {
        match self {
            Wire::F16 => to_f16_bytes(bytes),
            Wire::F32 => to_f32_bytes(bytes),
        }
    }

    /// The model card's line on the file's format.
    pub fn card_line(self) -> &'static str {
        match self {
            Wire::F16 => "Weights: float16 on the wire (widened to float32 on load); the scores below are this file's.",
            Wire::F32 => "Weights: float32.",
        }
    }
}

/// The scores of a shipped model and what its card says about it.
struct Measured {
    kind: ModelKind,
    arch: String,
    scale: usize,
    set5: Report,
    set14: Report,
    /// Card lines describing the architecture and the training.
    about: Vec<String>,
    /// How the scores were measured (the eval command).
    eval_command: String,
    /// A model trained on degraded inputs: its degradation and its scores on the photo test.
    photo: Option<PhotoScores>,
}

/// Set5/Set14 on the photo test inputs (`websr eval --degrade photo`) of the shipped model,
/// bicubic and the clean default of the same scale.
struct PhotoScores {
    degradation: TrainDegradation,
    ours: [Report; 2],
    bicubic: [Report; 2],
    default: Option<(String, [Report; 2])>,
}

/// What the card says about a model, which differs between the two kinds; the scores are
/// measured the same way for both ([`measure`]).
struct Described {
    arch: String,
    about: Vec<String>,
    eval_command: String,
    opts: UpscaleOptions,
}

pub fn run(args: &ShipArgs) -> Result<()> {
    let device = Backend::Cpu.device()?;
    let paths = CheckpointPaths::new(&args.run);
    let mut state: TrainState = read_json(&paths.state)?;
    // Both kinds of run record their planned steps at the top of config.json.
    let config: serde_json::Value = read_json(&paths.config)?;
    let steps = config["steps"]
        .as_u64()
        .with_context(|| format!("{}: no planned \"steps\"", paths.config.display()))?
        as usize;
    let reached = state.step;
    match (args.unfinished, reached < steps) {
        (false, true) => anyhow::bail!(
            "{} is at step {reached} of {steps}: let it finish (or resume it) before shipping, \
             or ship its best checkpoint so far with --unfinished",
            args.run.display(),
        ),
        (true, false) => anyhow::bail!(
            "{} has finished all {steps} steps: ship it without --unfinished",
            args.run.display()
        ),
        _ => {}
    }
    let weights = if args.unfinished {
        // The card describes the shipped checkpoint: the step of the best validation.
        let best = state
            .history
            .iter()
            .cloned()
            .reduce(|a, b| if b.psnr_y > a.psnr_y { b } else { a })
            .with_context(|| {
                format!(
                    "{} has no held-out validation yet, so no best checkpoint to ship",
                    args.run.display()
                )
            })?;
        state.history.retain(|p| p.step <= best.step);
        state.step = best.step;
        &paths.best
    } else {
        &paths.model
    };
    let checkpoint =
        std::fs::read(weights).with_context(|| format!("reading {}", weights.display()))?;
    // The scores are the shipped file's, so the model is loaded from the re-encoded bytes.
    let mut bytes = args.wire.encode(&checkpoint)?;
    let mut model = Model::from_bytes(&bytes, &device)?;
    if let (Model::Diffusion(d), Some(strength)) = (&mut model, args.strength) {
        d.spec.default_sampling = Some(DefaultSampling {
            steps: args.steps,
            strength,
        });
        d.spec.validate()?;
        bytes = args.wire.encode(&d.to_bytes()?)?;
        model = Model::from_bytes(&bytes, &device)?;
    }
    let (mut described, degradation) = match &model {
        Model::Diffusion(_) => {
            let cfg: DiffusionTrainConfig = read_json(&paths.config)?;
            (describe_diffusion(args, &cfg, &model, &state), None)
        }
        Model::OnePass(_) => {
            let cfg: TrainConfig = read_json(&paths.config)?;
            let described = describe_one_pass(args, &cfg, &model, &state);
            (described, cfg.degradation)
        }
    };
    if args.unfinished {
        described.about.push(format!(
            "Unfinished: the run is planned for {steps} steps and was at {reached}; this is its checkpoint of step {}, the best held-out validation so far.",
            state.step
        ));
    }
    let measured = measure(args, &model, described, degradation, &device)?;
    publish(args, &bytes, &state, &measured)
}

/// Set5 and Set14 scores, as `websr eval` measures them.
fn measure(
    args: &ShipArgs,
    model: &Model,
    d: Described,
    degradation: Option<TrainDegradation>,
    device: &Device,
) -> Result<Measured> {
    let [set5, set14] = score_sets(&args.data, model, &d.opts, device)?;
    let photo = match degradation {
        Some(d) => Some(photo_scores(args, model, d, device)?),
        None => None,
    };
    Ok(Measured {
        photo,
        kind: model.kind(),
        arch: d.arch,
        scale: model.scale(),
        set5,
        set14,
        about: d.about,
        eval_command: d.eval_command,
    })
}

/// The photo test (`websr eval --degrade photo`) of `model`, bicubic and the shipped default.
fn photo_scores(
    args: &ShipArgs,
    model: &Model,
    degradation: TrainDegradation,
    device: &Device,
) -> Result<PhotoScores> {
    let scale = model.scale();
    let sets = |f: &mut dyn FnMut(&Planar) -> websr::Result<Planar>| -> Result<[Report; 2]> {
        let mut one = |set: &str| -> Result<Report> {
            let files = image_files(&args.data.join(set))?;
            Ok(evaluate_inputs(&files, scale, Some(degradation), f)?)
        };
        Ok([one("set5")?, one("set14")?])
    };
    let opts = UpscaleOptions::default();
    let ours = sets(&mut |lr| upscale_rgb(model, lr, &opts, device, &mut |_, _| true))?;
    let bicubic = sets(&mut |lr| Ok(imresize(lr, scale as f64)))?;
    let default = match Manifest::load(&args.models_dir)
        .ok()
        .and_then(|m| m.default_for(scale).ok().cloned())
    {
        Some(entry) if entry.name != args.name => {
            let clean = Model::load(args.models_dir.join(&entry.file), device)?;
            let scores = sets(&mut |lr| upscale_rgb(&clean, lr, &opts, device, &mut |_, _| true))?;
            Some((entry.name, scores))
        }
        _ => None,
    };
    Ok(PhotoScores {
        degradation,
        ours,
        bicubic,
        default,
    })
}

/// The Set5 and Set14 reports of `model` (`data` holds both folders).
pub fn score_sets(
    data: &Path,
    model: &Model,
    opts: &UpscaleOptions,
    device: &Device,
) -> Result<[Report; 2]> {
    let score = |set: &str| evaluate_model(&data.join(set), model, opts, device);
    Ok([score("set5")?, score("set14")?])
}

/// How a shipped model is scored: a one-pass model as `websr eval` runs it, a diffusion model
/// with `steps` DDIM steps, eta 0, seed 0, and YODA sampling if it was trained with YODA.
pub fn card_options(model: &Model, steps: usize) -> UpscaleOptions {
    let sampling = match model {
        Model::OnePass(_) => SampleOptions::default(),
        Model::Diffusion(d) => SampleOptions {
            steps: Some(steps),
            eta: 0.0,
            seed: 0,
            yoda: model.yoda_trained(),
            strength: d.spec.default_sampling.map_or(1.0, |s| s.strength),
            ..SampleOptions::default()
        },
    };
    UpscaleOptions {
        sampling,
        ..UpscaleOptions::default()
    }
}

/// A score cell of the card's table: PSNR / SSIM.
pub fn score_cell(r: &Report) -> String {
    format!("{:.2} / {:.4}", r.mean.psnr_y, r.mean.ssim_y)
}

fn describe_one_pass(
    args: &ShipArgs,
    cfg: &TrainConfig,
    model: &Model,
    state: &TrainState,
) -> Described {
    let scale = model.scale();
    Described {
        arch: cfg.spec.arch.name().to_string(),
        about: vec![
            format!(
                "Architecture: `{}` x{scale}, {} body layers of width {}, {} parameters, {:.0} MACs per output pixel.",
                cfg.spec.arch.name(),
                cfg.spec.body_layers,
                cfg.spec.features,
                model.num_params(),
                cfg.spec.macs_per_output_pixel()
            ),
            data_line(cfg.schedule.patch, scale),
            training_line(state, &cfg.schedule, "L1 loss"),
        ],
        eval_command: format!("websr eval --model {} --data ../shared/data/setN", args.name),
        opts: card_options(model, args.steps),
    }
}

fn describe_diffusion(
    args: &ShipArgs,
    cfg: &DiffusionTrainConfig,
    model: &Model,
    state: &TrainState,
) -> Described {
    let scale = model.scale();
    let opts = card_options(model, args.steps);
    let spec = &cfg.spec;
    let yoda = match &spec.yoda {
        Some(y) => format!(
            ", trained with YODA's masked loss (detail-energy map, {} levels, delta {}) and sampled with YODA",
            y.levels, y.delta
        ),
        None => String::new(),
    };
    let predictor = match &spec.predictor {
        Some(PredictorSpec::Joint { features, layers }) => format!(
            ", initial predictor {} layers of width {features}{}",
            layers + 2,
            match spec.predictor_l1 {
                true => " (also trained with its own L1 error)",
                false => " (trained through the noise loss only)",
            }
        ),
        Some(PredictorSpec::Frozen { one_pass }) => format!(
            ", initial predictor the one-pass `{}` x{} ({} body layers of width {}), frozen, its \
             residual diffused at {:.2}x",
            one_pass.arch.name(),
            one_pass.scale,
            one_pass.body_layers,
            one_pass.features,
            spec.residual_scale
        ),
        None => String::new(),
    };
    Described {
        arch: spec.kind.name().to_string(),
        about: vec![
            format!(
                "Architecture: `{}` x{scale}, U-Net width {} with multipliers {:?}, {} res block(s) per level, attention {}{predictor}{yoda}; {} parameters. Noise schedule {:?}.",
                spec.kind.name(),
                spec.unet.inner_channels,
                spec.unet.channel_mults,
                spec.unet.res_blocks,
                spec.unet.attention,
                model.num_params(),
                spec.schedule
            ),
            data_line(cfg.schedule.patch, scale),
            training_line(
                state,
                &cfg.schedule,
                "L1 noise-prediction loss with SR3's continuous noise level",
            ),
            match args.strength {
                Some(strength) => format!(
                    "Sampling for the scores below, and the model's default: {} DDIM steps from \
                     strength {strength} (the fraction of the noise schedule walked back), eta \
                     0, seed 0.",
                    args.steps
                ),
                None => format!(
                    "Sampling for the scores below: {} DDIM steps, eta 0, seed 0.",
                    args.steps
                ),
            },
        ],
        eval_command: format!(
            "websr eval --model {} --steps {}{} --seed 0{} --data ../shared/data/setN",
            args.name,
            args.steps,
            args.strength
                .map_or(String::new(), |s| format!(" --strength {s}")),
            if spec.yoda.is_some() { " --yoda" } else { "" }
        ),
        opts,
    }
}

fn training_line(state: &TrainState, s: &Schedule, loss: &str) -> String {
    format!(
        "Training: {} steps of batch {}, Adam, {loss}, cosine learning rate {:.0e} -> {:.0e}, seed {}, on the CPU (burn flex).",
        state.step, s.batch, s.lr, s.lr_min, s.seed
    )
}

fn data_line(patch: usize, scale: usize) -> String {
    format!(
        "Data: the 291 set (`t91` + `bsd200` of `../shared/data`), random {patch}x{patch} HR crops, a random flip/rotation, LR by MATLAB bicubic x1/{scale} rounded to 8 bits."
    )
}

/// Copies the weights, updates the manifest and writes the card.
fn publish(args: &ShipArgs, bytes: &[u8], state: &TrainState, m: &Measured) -> Result<()> {
    let name = &args.name;
    let scale = m.scale;
    let bic5 = evaluate_bicubic(&args.data.join("set5"), scale)?;
    let bic14 = evaluate_bicubic(&args.data.join("set14"), scale)?;
    std::fs::create_dir_all(&args.models_dir)?;
    let file = format!("{name}.safetensors");
    std::fs::write(args.models_dir.join(&file), bytes)?;
    let mut manifest = Manifest::load(&args.models_dir).unwrap_or_default();
    // Re-shipping the default keeps it the default.
    let was_default = manifest.find(name).is_some_and(|e| e.default);
    manifest.models.retain(|e| &e.name != name);
    manifest.models.push(ModelEntry {
        name: name.to_string(),
        kind: m.kind,
        arch: m.arch.clone(),
        scale,
        file,
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
        set5: Some([m.set5.mean.psnr_y, m.set5.mean.ssim_y]),
        set14: Some([m.set14.mean.psnr_y, m.set14.mean.ssim_y]),
        description: args.description.to_string(),
        default: was_default,
        degradation: m.photo.as_ref().map(|p| p.degradation.name().to_string()),
    });
    if args.default {
        manifest.set_default(name)?;
    }
    manifest.models.sort_by(|a, b| a.name.cmp(&b.name));
    manifest.save(&args.models_dir)?;

    let mut card = String::new();
    writeln!(card, "# {name}\n")?;
    writeln!(card, "{}\n", args.description)?;
    for line in &m.about {
        writeln!(card, "- {line}")?;
    }
    writeln!(card, "- Command: `{}`", args.command)?;
    writeln!(card, "- SHA-256: `{}`", sha256_hex(bytes))?;
    writeln!(card, "- {}", args.wire.card_line())?;
    if !args.notes.is_empty() {
        writeln!(card, "- Notes: {}", args.notes)?;
    }
    writeln!(card)?;
    writeln!(card, "## Measured (`{}`)\n", m.eval_command)?;
    writeln!(
        card,
        "Y channel, `crop_border = {scale}`, BasicSR conventions.\n"
    )?;
    writeln!(
        card,
        "| set | bicubic PSNR / SSIM | {name} PSNR / SSIM |\n|---|---|---|"
    )?;
    for (set, ours, bic) in [("Set5", &m.set5, &bic5), ("Set14", &m.set14, &bic14)] {
        writeln!(
            card,
            "| {set} | {} | {} |",
            score_cell(bic),
            score_cell(ours)
        )?;
    }
    if let Some(p) = &m.photo {
        writeln!(
            card,
            "\n## On photo inputs (`websr eval --degrade photo`)\n\nThe clean bicubic LR with Gaussian noise of sigma 0-15 and a JPEG round trip at quality 30-90, drawn per image from a fixed seed ({PHOTO_EVAL_SEED}): the same inputs for every model.\n"
        )?;
        let mut header = "| set | bicubic | ".to_string();
        if let Some((default, _)) = &p.default {
            write!(header, "{default} (clean default) | ")?;
        }
        writeln!(
            card,
            "{header}{name} |\n|---|---|{}---|",
            if p.default.is_some() { "---|" } else { "" }
        )?;
        for (i, set) in ["Set5", "Set14"].into_iter().enumerate() {
            let mut row = format!("| {set} | {} | ", score_cell(&p.bicubic[i]));
            if let Some((_, d)) = &p.default {
                write!(row, "{} | ", score_cell(&d[i]))?;
            }
            writeln!(card, "{row}{} |", score_cell(&p.ours[i]))?;
        }
    }
    if !state.history.is_empty() {
        let inputs = if m.photo.is_some() {
            ", photo inputs"
        } else {
            ""
        };
        writeln!(
            card,
            "\n## Validation during training (held-out training images{inputs})\n"
        )?;
        writeln!(card, "| step | PSNR-Y | SSIM-Y |\n|---:|---:|---:|")?;
        for p in &state.history {
            writeln!(card, "| {} | {:.3} | {:.4} |", p.step, p.psnr_y, p.ssim_y)?;
        }
    }
    std::fs::write(args.models_dir.join(format!("{name}.md")), card)?;
    println!(
        "shipped {name}: Set5 {:.2} dB / {:.4}, Set14 {:.2} dB / {:.4}",
        m.set5.mean.psnr_y, m.set5.mean.ssim_y, m.set14.mean.psnr_y, m.set14.mean.ssim_y
    );
    Ok(())
}
