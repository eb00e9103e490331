//! `websr upscale`: one file or a whole folder, with any model (tiled one-pass or sampled
//! diffusion) or the bicubic baseline.

use crate::models::{default_model, resolve, Resolved};
use crate::progress::bar;
use crate::sampling::{describe, SamplingArgs};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use websr::device::{select, BackendChoice};
use websr::eval::image_files;
use websr::image::Picture;
use websr::jpeg_quality::SUGGEST_PHOTO_MODEL_BELOW;
use websr::upscale::{bicubic_picture, upscale_picture, UpscaleOptions};
use websr::zoo::{default_dir, Manifest};
use websr::{Model, ModelKind};

#[derive(clap::Args)]
pub struct UpscaleArgs {
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
    /// auto, cpu or wgpu.
    #[arg(long, default_value = "cpu")]
    backend: String,
    #[command(flatten)]
    sampling: SamplingArgs,
}

pub fn run(args: UpscaleArgs) -> Result<()> {
    let name = match &args.model {
        Some(name) => name.clone(),
        None => default_model(args.scale.unwrap_or(4))?,
    };
    let selected = pollster::block_on(select(BackendChoice::parse(&args.backend)?))?;
    if !selected.info.note.is_empty() {
        eprintln!("note: {}", selected.info.note);
    }
    let device = selected.device;
    let resolved = resolve(&name, args.scale, &device)?;
    let model = match &resolved {
        Resolved::Model(m) => Some(m),
        Resolved::Bicubic => None,
    };
    let opts = UpscaleOptions {
        tile: (args.tile > 0).then_some(args.tile),
        tta: args.tta,
        sampling: args.sampling.for_model(model, &name)?,
        ..UpscaleOptions::default()
    };
    match model {
        None => upscale_files(
            &args.input,
            &args.output,
            "tiles",
            &|_, _| None,
            |pic, _| Ok(bicubic_picture(pic, args.scale.unwrap_or(4))),
        ),
        Some(m) => {
            if m.kind() == ModelKind::Diffusion {
                if args.tta {
                    bail!("--tta is for one-pass models; {name} is a diffusion model");
                }
                eprintln!("{} x{}: {}", m.label(), m.scale(), describe(&opts.sampling));
            }
            let unit = unit_of(m);
            let photo = photo_alternative(&name, m.scale());
            let note =
                |src: &Path, bytes: &[u8]| photo_model_note(src, bytes, &name, photo.as_deref());
            upscale_files(&args.input, &args.output, unit, &note, |pic, progress| {
                Ok(upscale_picture(m, pic, &opts, &device, progress)?)
            })
        }
    }
}

/// The shipped photo model of this scale, when `model` was trained on clean inputs only.
fn photo_alternative(model: &str, scale: usize) -> Option<String> {
    let manifest = Manifest::load(&default_dir()).ok()?;
    if manifest
        .find(model)
        .is_some_and(|e| e.degradation.is_some())
    {
        return None;
    }
    manifest
        .models
        .into_iter()
        .find(|e| e.scale == scale && e.degradation.as_deref() == Some("photo"))
        .map(|e| e.name)
}

/// For a JPEG (`bytes`, read from `src`) saved below [`SUGGEST_PHOTO_MODEL_BELOW`] upscaled with
/// a model trained on clean inputs: the `photo` model to use instead, and why.
fn photo_model_note(src: &Path, bytes: &[u8], model: &str, photo: Option<&str>) -> Option<String> {
    let photo = photo?;
    let quality = websr::jpeg_quality::estimate(bytes)?.quality;
    (quality < SUGGEST_PHOTO_MODEL_BELOW).then(|| {
        format!(
            "{} was saved as JPEG quality {quality}: {model} was trained on clean images and \
             sharpens compression artefacts too; --model {photo} was trained on compressed, \
             noisy photos",
            src.display()
        )
    })
}

/// What the progress bar counts: tiles or sampling steps.
fn unit_of(model: &Model) -> &'static str {
    match model.kind() {
        ModelKind::OnePass => "tiles",
        ModelKind::Diffusion => "steps",
    }
}

/// Upscales the file or folder `input` into `output` with `work(picture, progress)`, a progress
/// bar counting `unit` (tiles, steps) per file, and one line per file.
fn upscale_files(
    input: &Path,
    output: &Path,
    unit: &str,
    note: &dyn Fn(&Path, &[u8]) -> Option<String>,
    mut work: impl FnMut(&Picture, &mut dyn FnMut(usize, usize) -> bool) -> Result<Picture>,
) -> Result<()> {
    for (src, dst) in upscale_jobs(input, output)? {
        let bytes = std::fs::read(&src).map_err(|e| websr::WebSrError::io(&src, e))?;
        if let Some(n) = note(&src, &bytes) {
            eprintln!("note: {n}");
        }
        let pic = websr::image::decode_read(&src, &bytes)?;
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

/// `(input, output)` pairs: the file itself, or every image of a folder into an output folder
/// as PNG.
fn upscale_jobs(input: &Path, output: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
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
