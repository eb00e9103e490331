//! `--model` arguments (a shipped name, a `.safetensors` file, or `bicubic`), resolved in one
//! place and each weights file read once; and the `websr models` listing.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use websr::burn::tensor::Device;
use websr::diffusion::DiffusionModel;
use websr::zoo::{default_dir, read_verified, Manifest};
use websr::{Model, SrModel};

/// What a `--model` argument names.
// One per command: the size of the model variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Resolved {
    /// The bicubic baseline (no weights).
    Bicubic,
    Model(Model),
}

/// The weight file a `--model` argument names: a shipped model (checked against the manifest's
/// SHA-256) or a .safetensors path.
pub fn resolve_bytes(name: &str) -> Result<Vec<u8>> {
    if name.ends_with(".safetensors") || PathBuf::from(name).is_file() {
        return std::fs::read(name).with_context(|| format!("reading {name}"));
    }
    let dir = default_dir();
    let manifest = Manifest::load(&dir)?;
    let Some(entry) = manifest.find(name) else {
        let names: Vec<&str> = manifest.models.iter().map(|m| m.name.as_str()).collect();
        bail!("no shipped model '{name}' (shipped: {})", names.join(", "));
    };
    Ok(read_verified(&dir, entry)?)
}

/// The name of the shipped default model for `scale`.
pub fn default_model(scale: usize) -> Result<String> {
    let manifest = Manifest::load(&default_dir())?;
    Ok(manifest.default_for(scale)?.name.clone())
}

/// The model a `--model` argument names, of either kind, checked against `scale` when given.
pub fn resolve(name: &str, scale: Option<usize>, device: &Device) -> Result<Resolved> {
    if name == "bicubic" {
        return Ok(Resolved::Bicubic);
    }
    let model = Model::from_bytes(&resolve_bytes(name)?, device)
        .with_context(|| format!("model {name}"))?;
    if let Some(s) = scale.filter(|&s| s != model.scale()) {
        bail!("model {name} upscales x{}, not x{s}", model.scale());
    }
    Ok(Resolved::Model(model))
}

/// A trained model (not `bicubic`).
pub fn resolve_model(name: &str, scale: Option<usize>, device: &Device) -> Result<Model> {
    match resolve(name, scale, device)? {
        Resolved::Model(m) => Ok(m),
        Resolved::Bicubic => bail!("bicubic is not a trained model; name one"),
    }
}

/// A one-pass model (for commands that run the network directly, e.g. pruning's scorer).
pub fn resolve_one_pass(name: &str, device: &Device) -> Result<SrModel> {
    match resolve_model(name, None, device)? {
        Model::OnePass(m) => Ok(m),
        Model::Diffusion(_) => bail!("{name} is a diffusion model; this needs a one-pass model"),
    }
}

/// A diffusion model (for the diffusion benchmark).
pub fn resolve_diffusion(name: &str, device: &Device) -> Result<DiffusionModel> {
    into_diffusion(name, resolve_model(name, None, device)?)
}

/// The diffusion model in `bytes` (the file `name` resolved to, already read: a caller that
/// also hashes the file reads it once).
pub fn diffusion_from_bytes(name: &str, bytes: &[u8], device: &Device) -> Result<DiffusionModel> {
    into_diffusion(
        name,
        Model::from_bytes(bytes, device).with_context(|| format!("model {name}"))?,
    )
}

fn into_diffusion(name: &str, model: Model) -> Result<DiffusionModel> {
    match model {
        Model::Diffusion(m) => Ok(m),
        Model::OnePass(_) => bail!("{name} is a one-pass model, not a diffusion model"),
    }
}

/// `websr models`: the shipped models and their scores.
pub fn list() -> Result<()> {
    let dir = default_dir();
    let manifest = Manifest::load(&dir)?;
    println!(
        "{:<18} {:<11} {:>5} {:>10} {:>16} {:>16}  description",
        "name", "arch", "scale", "size", "Set5 PSNR/SSIM", "Set14 PSNR/SSIM"
    );
    let fmt = |s: Option<[f64; 2]>| s.map_or("-".to_string(), |[p, q]| format!("{p:.2}/{q:.4}"));
    for m in &manifest.models {
        println!(
            "{:<18} {:<11} {:>5} {:>9}K {:>16} {:>16}  {}",
            format!("{}{}", m.name, if m.default { " *" } else { "" }),
            m.arch,
            format!("x{}", m.scale),
            m.bytes / 1024,
            fmt(m.set5),
            fmt(m.set14),
            m.description
        );
    }
    println!("* the default at its scale (websr upscale without --model)");
    Ok(())
}
