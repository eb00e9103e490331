//! `websr ship`: turns a finished training run into a shipped model: copies its weights into the
//! models folder, measures Set5/Set14, writes the manifest entry and the model card.

use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use websr::burn::tensor::Device;
use websr::eval::evaluate_model;
use websr::train::{read_json, CheckpointPaths, TrainConfig, TrainState};
use websr::upscale::UpscaleOptions;
use websr::weights::sha256_hex;
use websr::zoo::{Manifest, ModelEntry};

#[allow(clippy::too_many_arguments)]
pub fn run(
    run_dir: &Path,
    name: &str,
    description: &str,
    command: &str,
    notes: &str,
    models_dir: &Path,
    data: &Path,
    device: &Device,
) -> Result<()> {
    let paths = CheckpointPaths::new(run_dir);
    let cfg: TrainConfig = read_json(&paths.config)?;
    let state: TrainState = read_json(&paths.state)?;
    if state.step < cfg.steps {
        anyhow::bail!(
            "{} is at step {} of {}: let it finish (or resume it) before shipping",
            run_dir.display(),
            state.step,
            cfg.steps
        );
    }
    let bytes = std::fs::read(&paths.model)
        .with_context(|| format!("reading {}", paths.model.display()))?;
    let model = websr::weights::from_bytes(&bytes, device)?;
    let scale = model.scale();
    let opts = UpscaleOptions::default();
    let set5 = evaluate_model(&data.join("set5"), &model, &opts, device)?;
    let set14 = evaluate_model(&data.join("set14"), &model, &opts, device)?;
    let bic5 = websr::eval::evaluate_bicubic(&data.join("set5"), scale)?;
    let bic14 = websr::eval::evaluate_bicubic(&data.join("set14"), scale)?;

    std::fs::create_dir_all(models_dir)?;
    let file = format!("{name}.safetensors");
    std::fs::write(models_dir.join(&file), &bytes)?;
    let mut manifest = Manifest::load(models_dir).unwrap_or_default();
    manifest.models.retain(|m| m.name != name);
    manifest.models.push(ModelEntry {
        name: name.to_string(),
        arch: cfg.spec.arch,
        scale,
        file,
        sha256: sha256_hex(&bytes),
        bytes: bytes.len() as u64,
        set5: Some([set5.mean.psnr_y, set5.mean.ssim_y]),
        set14: Some([set14.mean.psnr_y, set14.mean.ssim_y]),
        description: description.to_string(),
    });
    manifest.models.sort_by(|a, b| a.name.cmp(&b.name));
    manifest.save(models_dir)?;

    let mut card = String::new();
    writeln!(card, "# {name}\n")?;
    writeln!(card, "{description}\n")?;
    writeln!(
        card,
        "- Architecture: `{}` x{scale}, {} body layers of width {}, {} parameters, {:.0} MACs per output pixel.",
        cfg.spec.arch.name(),
        cfg.spec.body_layers,
        cfg.spec.features,
        model.num_params(),
        cfg.spec.macs_per_output_pixel()
    )?;
    writeln!(
        card,
        "- Data: the 291 set (`t91` + `bsd200` of `../shared/data`), random {0}x{0} HR crops, a random flip/rotation, LR by MATLAB bicubic x1/{scale} rounded to 8 bits.",
        cfg.patch
    )?;
    writeln!(
        card,
        "- Training: {} steps of batch {}, Adam, L1 loss, cosine learning rate {:.0e} -> {:.0e}, seed {}, on the CPU (burn flex).",
        state.step, cfg.batch, cfg.lr, cfg.lr_min, cfg.seed
    )?;
    writeln!(card, "- Command: `{command}`")?;
    writeln!(card, "- SHA-256: `{}`", sha256_hex(&bytes))?;
    if !notes.is_empty() {
        writeln!(card, "- Notes: {notes}")?;
    }
    writeln!(card)?;
    writeln!(
        card,
        "## Measured (`websr eval --model {name} --data ../shared/data/setN`)\n"
    )?;
    writeln!(
        card,
        "Y channel, `crop_border = {scale}`, BasicSR conventions.\n"
    )?;
    writeln!(
        card,
        "| set | bicubic PSNR / SSIM | {name} PSNR / SSIM |\n|---|---|---|"
    )?;
    for (set, ours, bic) in [("Set5", &set5, &bic5), ("Set14", &set14, &bic14)] {
        writeln!(
            card,
            "| {set} | {:.2} / {:.4} | {:.2} / {:.4} |",
            bic.mean.psnr_y, bic.mean.ssim_y, ours.mean.psnr_y, ours.mean.ssim_y
        )?;
    }
    if !state.history.is_empty() {
        writeln!(card, "\n## Validation during training (Set5, untiled)\n")?;
        writeln!(card, "| step | PSNR-Y | SSIM-Y |\n|---:|---:|---:|")?;
        for p in &state.history {
            writeln!(card, "| {} | {:.3} | {:.4} |", p.step, p.psnr_y, p.ssim_y)?;
        }
    }
    std::fs::write(models_dir.join(format!("{name}.md")), card)?;
    println!(
        "shipped {name}: Set5 {:.2} dB / {:.4}, Set14 {:.2} dB / {:.4}",
        set5.mean.psnr_y, set5.mean.ssim_y, set14.mean.psnr_y, set14.mean.ssim_y
    );
    Ok(())
}
