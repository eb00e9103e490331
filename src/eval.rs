//! Benchmark evaluation with the published protocol (see shared/data/README.md): crop HR to a
//! multiple of the scale, make LR with MATLAB bicubic and 8-bit rounding, upscale, round to
//! 8 bits, and score Y-PSNR / Y-SSIM with `crop_border = scale` (and RGB PSNR).

use crate::degrade::{
    degrade, photo_eval_degradation, Degradation, TrainDegradation, PHOTO_EVAL_SEED,
};
use crate::error::{Result, WebSrError};
use crate::image::{load, Planar};
use crate::metrics::{detail_ratio, psnr_rgb, psnr_y, ssim_y};
use crate::model::Model;
use crate::resize::{degrade_bicubic, imresize};
use crate::upscale::{upscale_rgb, UpscaleOptions};
use burn::tensor::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// Scores for one image.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Scores {
    pub name: String,
    pub psnr_y: f64,
    pub ssim_y: f64,
    pub psnr_rgb: f64,
    /// [`crate::metrics::detail_ratio`] (LH, HL, HH): the output's level-1 Haar detail energy over
    /// the ground truth's, 1 = matched.
    pub detail: [f64; 3],
}

/// Per-image scores and their mean.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    pub rows: Vec<Scores>,
    pub mean: Scores,
}

/// Image files of a folder (png, jpg, jpeg, bmp, webp), sorted by name for stable tables.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| WebSrError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .map(|e| {
                    matches!(
                        e.to_ascii_lowercase().as_str(),
                        "png" | "jpg" | "jpeg" | "bmp" | "webp"
                    )
                })
                .unwrap_or(false)
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(WebSrError::Invalid(format!(
            "no images in {}",
            dir.display()
        )));
    }
    Ok(files)
}

/// Scores one upscaled image against its ground truth (both quantised to 8 bits first).
pub fn score(name: &str, sr: &Planar, hr: &Planar, scale: usize) -> Scores {
    let mut sr = sr.clone();
    sr.quantize_u8();
    let mut hr = hr.clone();
    hr.quantize_u8();
    Scores {
        name: name.to_string(),
        psnr_y: psnr_y(&sr, &hr, scale),
        ssim_y: ssim_y(&sr, &hr, scale),
        psnr_rgb: psnr_rgb(&sr, &hr, scale),
        detail: detail_ratio(&sr, &hr, scale),
    }
}

/// Evaluates `upscale` (LR -> SR) on every image of `dir`.
pub fn evaluate(
    dir: &Path,
    scale: usize,
    upscale: &mut dyn FnMut(&Planar) -> Result<Planar>,
) -> Result<Report> {
    evaluate_files(&image_files(dir)?, scale, upscale)
}

/// [`evaluate`] on a list of image files (a held-out validation slice, for example).
pub fn evaluate_files(
    files: &[PathBuf],
    scale: usize,
    upscale: &mut dyn FnMut(&Planar) -> Result<Planar>,
) -> Result<Report> {
    evaluate_with(
        files,
        scale,
        &mut |_, hr| Ok(degrade_bicubic(hr, scale)),
        upscale,
    )
}

/// Evaluates `upscale` on LR inputs made with a blind degradation ([`crate::degrade`]). The
/// noise of image `i` is drawn from a generator seeded by `(seed, i)`, so every model is scored
/// on exactly the same inputs.
pub fn evaluate_degraded(
    dir: &Path,
    scale: usize,
    degradation: &Degradation,
    seed: u64,
    upscale: &mut dyn FnMut(&Planar) -> Result<Planar>,
) -> Result<Report> {
    evaluate_with(
        &image_files(dir)?,
        scale,
        &mut |i, hr| degrade(hr, scale, degradation, &mut image_rng(seed, i)),
        upscale,
    )
}

/// Evaluates `upscale` on the photo test inputs ([`crate::degrade::photo_eval_degradation`]):
/// bicubic LR with noise and JPEG of a fixed strength per image, drawn from `seed`.
pub fn evaluate_photo_files(
    files: &[PathBuf],
    scale: usize,
    seed: u64,
    upscale: &mut dyn FnMut(&Planar) -> Result<Planar>,
) -> Result<Report> {
    evaluate_with(
        files,
        scale,
        &mut |i, hr| {
            let d = photo_eval_degradation(seed, i);
            degrade(hr, scale, &d, &mut image_rng(seed, i))
        },
        upscale,
    )
}

/// The test inputs of a model trained with `degradation`: clean bicubic LR ([`evaluate_files`])
/// or, for the photo model, the photo test ([`evaluate_photo_files`] at [`PHOTO_EVAL_SEED`]).
pub fn evaluate_inputs(
    files: &[PathBuf],
    scale: usize,
    degradation: Option<TrainDegradation>,
    upscale: &mut dyn FnMut(&Planar) -> Result<Planar>,
) -> Result<Report> {
    match degradation {
        None => evaluate_files(files, scale, upscale),
        Some(TrainDegradation::Photo) => {
            evaluate_photo_files(files, scale, PHOTO_EVAL_SEED, upscale)
        }
    }
}

/// The noise source of test image `i`: the same for every model scored with `seed`.
fn image_rng(seed: u64, i: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Makes the evaluation pair `(hr_cropped, lr)` of image `i` from its HR picture.
type MakeLr<'a> = dyn FnMut(usize, &Planar) -> Result<(Planar, Planar)> + 'a;

/// The benchmark loop: for image `i` of `dir`, `make_lr(i, hr)` gives `(hr_cropped, lr)`.
fn evaluate_with(
    files: &[PathBuf],
    scale: usize,
    make_lr: &mut MakeLr,
    upscale: &mut dyn FnMut(&Planar) -> Result<Planar>,
) -> Result<Report> {
    if files.is_empty() {
        return Err(WebSrError::Invalid("no images to evaluate".into()));
    }
    let mut rows = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let pic = load(path)?;
        let (hr, lr) = make_lr(i, &pic.rgb)?;
        let sr = upscale(&lr)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        rows.push(score(&name, &sr, &hr, scale));
    }
    let n = rows.len() as f64;
    let mean = Scores {
        name: "mean".into(),
        psnr_y: rows.iter().map(|r| r.psnr_y).sum::<f64>() / n,
        ssim_y: rows.iter().map(|r| r.ssim_y).sum::<f64>() / n,
        psnr_rgb: rows.iter().map(|r| r.psnr_rgb).sum::<f64>() / n,
        detail: [0, 1, 2].map(|b| rows.iter().map(|r| r.detail[b]).sum::<f64>() / n),
    };
    Ok(Report { rows, mean })
}

/// Evaluates a model of either kind on a folder with the given upscaling options (tiling and
/// TTA for one-pass models, the sampling for diffusion models).
pub fn evaluate_model(
    dir: &Path,
    model: &Model,
    opts: &UpscaleOptions,
    device: &Device,
) -> Result<Report> {
    evaluate_model_files(&image_files(dir)?, model, opts, device)
}

/// [`evaluate_model`] on a list of image files.
pub fn evaluate_model_files(
    files: &[PathBuf],
    model: &Model,
    opts: &UpscaleOptions,
    device: &Device,
) -> Result<Report> {
    evaluate_files(files, model.scale(), &mut |lr| {
        upscale_rgb(model, lr, opts, device, &mut |_, _| true)
    })
}

/// The bicubic baseline on a folder.
pub fn evaluate_bicubic(dir: &Path, scale: usize) -> Result<Report> {
    evaluate(dir, scale, &mut |lr| Ok(imresize(lr, scale as f64)))
}
