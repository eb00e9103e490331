//! Dataset pruning for SR (Moser, Raue, Dengel, ICANN 2024): score every training sample with the
//! loss of a small pre-trained scorer model, rank the samples, keep the hardest fraction.
//!
//! **What a sample is.** A sample is one HR *sub-image* of a fixed grid over each training image
//! (BasicSR-style sub-images): squares of `size` pixels (default 96) every `stride` pixels
//! (default 96, so they do not overlap), starting at the top-left corner. The strip at the right
//! or bottom that is narrower than `size` belongs to no sample; an image smaller than `size` in a
//! dimension gives one sub-image that covers that dimension completely.
//!
//! **The score** of a sample is the MSE, on RGB in `[0, 1]`, between the scorer's output for the
//! bicubic-degraded sub-image ([`crate::resize::degrade_bicubic`], the evaluation's own LR) and the
//! HR sub-image (cropped to a multiple of the scale). The output is clamped to `[0, 1]` first.
//!
//! **Selection** ([`select`]): rank the samples by score, hardest (highest loss) first, ties by
//! sample order; drop the `drop_hardest` fraction at the top (the paper's "refined" set), then
//! keep the next `keep` fraction. Counts are `round(fraction * n)`. [`Order::Random`] keeps a
//! seeded random `keep` fraction instead (the control of the experiment).
//!
//! The scoring functions are pure (pictures in memory and an [`SrModel`]; no file I/O) and are
//! not behind the `train` feature, so the browser's federated client can rank a participant's
//! patches and train on the most informative ones first. The [`SubsetManifest`] (a JSON file that
//! `websr prune` writes and `websr train --subset` reads) is the only part that touches files.

use crate::device::read_f32_async;
use crate::error::{Result, WebSrError};
use crate::image::{Planar, Rect};
use crate::models::SrModel;
use crate::resize::degrade_bicubic;
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The `format` field of a subset manifest.
pub const FORMAT: &str = "websr-prune-subset";
/// The manifest version this build reads and writes.
pub const VERSION: u32 = 1;
/// Default sub-image side and stride (HR pixels).
pub const DEFAULT_SUB_IMAGE: usize = 96;
/// Sub-images scored in one forward pass.
const SCORE_BATCH: usize = 32;

/// The fixed sub-image grid over a `height x width` image (see the module docs).
pub fn sub_image_grid(height: usize, width: usize, size: usize, stride: usize) -> Vec<Rect> {
    assert!(
        size > 0 && stride > 0,
        "sub-image size and stride must be > 0"
    );
    let starts = |len: usize| -> Vec<(usize, usize)> {
        if len == 0 {
            Vec::new()
        } else if len < size {
            vec![(0, len)]
        } else {
            (0..=len - size)
                .step_by(stride)
                .map(|s| (s, size))
                .collect()
        }
    };
    let cols = starts(width);
    let mut out = Vec::new();
    for (y, h) in starts(height) {
        for &(x, w) in &cols {
            out.push(Rect { y, x, h, w });
        }
    }
    out
}

/// One scored sub-image of an in-memory picture list.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredPatch {
    /// Index of the picture in the slice that was scored.
    pub image: usize,
    pub rect: Rect,
    /// MSE of the scorer on this sub-image (higher = harder).
    pub score: f64,
}

/// MSE between `sr` (clamped to `[0, 1]`) and `hr`, over all channels and pixels.
pub fn mse(sr: &[f32], hr: &[f32]) -> f64 {
    assert_eq!(sr.len(), hr.len(), "mse of different sizes");
    let sum: f64 = sr
        .iter()
        .zip(hr)
        .map(|(a, b)| {
            let d = a.clamp(0.0, 1.0) as f64 - *b as f64;
            d * d
        })
        .sum();
    sum / sr.len().max(1) as f64
}

/// Scores the given sub-images of `images` with `model` (see the module docs), batching
/// sub-images of equal size into one forward pass. Awaits the read-back, so it also runs on
/// WebGPU in the browser. Returns one score per entry of `patches`, in order.
pub async fn score_patches_async(
    model: &SrModel,
    images: &[Planar],
    patches: &[(usize, Rect)],
    device: &Device,
) -> Result<Vec<f64>> {
    let s = model.scale();
    let mut scores = vec![f64::NAN; patches.len()];
    // Group by the HR size after cropping to a multiple of the scale; deterministic order.
    let mut groups: Vec<((usize, usize), Vec<usize>)> = Vec::new();
    for (i, &(img, r)) in patches.iter().enumerate() {
        let image = images.get(img).ok_or_else(|| {
            WebSrError::Invalid(format!(
                "patch {i} refers to picture {img} of {}",
                images.len()
            ))
        })?;
        if image.channels != 3 || r.y + r.h > image.height || r.x + r.w > image.width {
            return Err(WebSrError::Invalid(format!(
                "patch {i} ({r:?}) is outside its {}x{} RGB picture",
                image.width, image.height
            )));
        }
        let key = (r.h - r.h % s, r.w - r.w % s);
        if key.0 == 0 || key.1 == 0 {
            return Err(WebSrError::Invalid(format!(
                "patch {i} ({r:?}) is smaller than the scale x{s}"
            )));
        }
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    for ((hh, ww), members) in groups {
        let (lh, lw) = (hh / s, ww / s);
        for chunk in members.chunks(SCORE_BATCH) {
            let mut lr_data = Vec::with_capacity(chunk.len() * 3 * lh * lw);
            let mut hr_all = Vec::with_capacity(chunk.len());
            for &i in chunk {
                let (img, r) = patches[i];
                let sub = images[img].crop(r.y, r.x, r.h, r.w);
                let (hr, lr) = degrade_bicubic(&sub, s);
                lr_data.extend_from_slice(&lr.data);
                hr_all.push(hr);
            }
            let input =
                Tensor::<4>::from_data(TensorData::new(lr_data, [chunk.len(), 3, lh, lw]), device);
            let out = read_f32_async(model.forward(input)).await?;
            let per = 3 * hh * ww;
            if out.len() != per * chunk.len() {
                return Err(WebSrError::Invalid(format!(
                    "the scorer returned {} values for {} sub-images of {hh}x{ww}",
                    out.len(),
                    chunk.len()
                )));
            }
            for (k, &i) in chunk.iter().enumerate() {
                scores[i] = mse(&out[k * per..(k + 1) * per], &hr_all[k].data);
            }
        }
    }
    Ok(scores)
}

/// [`score_patches_async`], blocking (native code and the CPU backend).
pub fn score_patches(
    model: &SrModel,
    images: &[Planar],
    patches: &[(usize, Rect)],
    device: &Device,
) -> Result<Vec<f64>> {
    pollster::block_on(score_patches_async(model, images, patches, device))
}

/// Every sub-image of the `size`/`stride` grid over each picture, with its score, in picture
/// then raster order (rank them with [`rank_descending`] or [`select`]).
pub async fn score_grid_async(
    model: &SrModel,
    images: &[Planar],
    size: usize,
    stride: usize,
    device: &Device,
) -> Result<Vec<ScoredPatch>> {
    let patches: Vec<(usize, Rect)> = images
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            sub_image_grid(p.height, p.width, size, stride)
                .into_iter()
                .map(move |r| (i, r))
        })
        .collect();
    let scores = score_patches_async(model, images, &patches, device).await?;
    Ok(patches
        .into_iter()
        .zip(scores)
        .map(|((image, rect), score)| ScoredPatch { image, rect, score })
        .collect())
}

/// [`score_grid_async`], blocking.
pub fn score_grid(
    model: &SrModel,
    images: &[Planar],
    size: usize,
    stride: usize,
    device: &Device,
) -> Result<Vec<ScoredPatch>> {
    pollster::block_on(score_grid_async(model, images, size, stride, device))
}

/// For the federated client: the grid sub-images of the pictures, most informative (highest
/// scorer loss) first.
pub async fn most_informative_first(
    model: &SrModel,
    images: &[Planar],
    size: usize,
    stride: usize,
    device: &Device,
) -> Result<Vec<ScoredPatch>> {
    let scored = score_grid_async(model, images, size, stride, device).await?;
    let scores: Vec<f64> = scored.iter().map(|p| p.score).collect();
    Ok(rank_descending(&scores)?
        .into_iter()
        .map(|i| scored[i])
        .collect())
}

/// Sample indices sorted hardest (highest score) first; equal scores keep their input order.
/// Non-finite scores are an error.
pub fn rank_descending(scores: &[f64]) -> Result<Vec<usize>> {
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(WebSrError::Invalid(format!(
            "sample {i} has a non-finite score ({})",
            scores[i]
        )));
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    Ok(idx)
}

/// Which samples a subset keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Keep the hardest (the paper's DES, the default).
    Des,
    /// Keep the easiest (the paper's ASC; for comparison only).
    Asc,
    /// A seeded random subset (the experiment's control); `drop_hardest` still applies first.
    Random,
}

impl Order {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "des" => Ok(Self::Des),
            "asc" => Ok(Self::Asc),
            "random" => Ok(Self::Random),
            _ => Err(WebSrError::Invalid(format!(
                "unknown order '{s}' (des, asc or random)"
            ))),
        }
    }
}

/// How a subset was chosen (stored in the manifest).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectParams {
    pub order: Order,
    /// Fraction of all samples kept, in `(0, 1]`.
    pub keep: f64,
    /// Fraction of all samples removed from the hardest end before keeping, in `[0, 1)`.
    pub drop_hardest: f64,
    /// Seed of [`Order::Random`].
    pub seed: u64,
}

impl SelectParams {
    /// DES: the hardest `keep` fraction, after dropping the hardest `drop_hardest`.
    pub fn hardest(keep: f64, drop_hardest: f64) -> Self {
        Self {
            order: Order::Des,
            keep,
            drop_hardest,
            seed: 0,
        }
    }
}

/// `round(fraction * n)`.
fn count(fraction: f64, n: usize) -> usize {
    (fraction * n as f64).round() as usize
}

/// Chooses the kept samples: indices into `scores`, in rank order (hardest first; for
/// [`Order::Random`] in the order drawn). Exactly `round(keep * n)` indices.
pub fn select(scores: &[f64], p: &SelectParams) -> Result<Vec<usize>> {
    if !(p.keep > 0.0 && p.keep <= 1.0) {
        return Err(WebSrError::Invalid(format!(
            "--keep must be in (0, 1], not {}",
            p.keep
        )));
    }
    if !(0.0..1.0).contains(&p.drop_hardest) {
        return Err(WebSrError::Invalid(format!(
            "--drop-hardest must be in [0, 1), not {}",
            p.drop_hardest
        )));
    }
    let n = scores.len();
    let (n_drop, n_keep) = (count(p.drop_hardest, n), count(p.keep, n));
    if n_drop + n_keep > n {
        return Err(WebSrError::Invalid(format!(
            "cannot drop {n_drop} and keep {n_keep} of {n} samples (drop + keep > 1)"
        )));
    }
    if n_keep == 0 {
        return Err(WebSrError::Invalid(format!(
            "keeping {} of {n} samples keeps none",
            p.keep
        )));
    }
    let ranked = rank_descending(scores)?;
    let rest = &ranked[n_drop..];
    Ok(match p.order {
        Order::Des => rest[..n_keep].to_vec(),
        Order::Asc => rest[rest.len() - n_keep..].iter().rev().copied().collect(),
        Order::Random => {
            // Partial Fisher-Yates over the remaining samples in their input order.
            let mut pool: Vec<usize> = rest.to_vec();
            pool.sort_unstable();
            let mut rng = StdRng::seed_from_u64(p.seed);
            for i in 0..n_keep {
                let j = rng.random_range(i..pool.len());
                pool.swap(i, j);
            }
            pool.truncate(n_keep);
            pool
        }
    })
}

/// The scorer recorded in a manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScorerInfo {
    /// Shipped model name or weights file.
    pub name: String,
    /// SHA-256 of the weights file.
    pub sha256: String,
    pub scale: usize,
}

/// One kept sample of a manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestSample {
    /// The image file: absolute, or relative to the manifest's folder.
    pub file: String,
    pub rect: Rect,
    pub score: f64,
    /// Position in the descending ranking of all scored samples (0 = hardest).
    pub rank: usize,
}

/// A subset manifest: what `websr prune` writes and `websr train --subset` reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubsetManifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`] for this build.
    pub version: u32,
    pub scorer: ScorerInfo,
    /// Sub-image side and stride of the grid, HR pixels.
    pub sub_image: usize,
    pub stride: usize,
    pub selection: SelectParams,
    /// How many samples were scored (the kept ones are `samples`).
    pub scored: usize,
    /// Mean score of all scored samples and of the kept ones.
    pub mean_score: f64,
    pub mean_kept_score: f64,
    pub samples: Vec<ManifestSample>,
    /// The folder relative file names are resolved against (not stored).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl SubsetManifest {
    /// Builds a manifest from scored samples `(file, rect, score)` (all of them, in a
    /// deterministic order) and the selection.
    pub fn build(
        scorer: ScorerInfo,
        sub_image: usize,
        stride: usize,
        all: &[(String, Rect, f64)],
        selection: SelectParams,
    ) -> Result<Self> {
        let scores: Vec<f64> = all.iter().map(|s| s.2).collect();
        let ranked = rank_descending(&scores)?;
        let mut rank_of = vec![0; all.len()];
        for (r, &i) in ranked.iter().enumerate() {
            rank_of[i] = r;
        }
        let kept = select(&scores, &selection)?;
        let samples: Vec<ManifestSample> = kept
            .iter()
            .map(|&i| ManifestSample {
                file: all[i].0.clone(),
                rect: all[i].1,
                score: all[i].2,
                rank: rank_of[i],
            })
            .collect();
        let mean = |v: &mut dyn Iterator<Item = f64>, n: usize| v.sum::<f64>() / n.max(1) as f64;
        let manifest = Self {
            format: FORMAT.into(),
            version: VERSION,
            scorer,
            sub_image,
            stride,
            selection,
            scored: all.len(),
            mean_score: mean(&mut scores.iter().copied(), scores.len()),
            mean_kept_score: mean(&mut samples.iter().map(|s| s.score), samples.len()),
            samples,
            base_dir: PathBuf::new(),
        };
        manifest.check_duplicates()?;
        Ok(manifest)
    }

    /// Parses and checks the format, version and duplicates (not the files; see [`Self::read`]).
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| WebSrError::Invalid(format!("subset manifest is not JSON: {e}")))?;
        let format = value.get("format").and_then(|v| v.as_str());
        if format != Some(FORMAT) {
            return Err(WebSrError::Invalid(format!(
                "not a subset manifest: format is {format:?}, expected \"{FORMAT}\""
            )));
        }
        let version = value.get("version").and_then(|v| v.as_u64());
        if version != Some(VERSION as u64) {
            return Err(WebSrError::Invalid(format!(
                "subset manifest version {version:?} is not supported (this build reads version \
                 {VERSION}); re-run `websr prune`"
            )));
        }
        let mut m: SubsetManifest = serde_json::from_value(value)
            .map_err(|e| WebSrError::Invalid(format!("subset manifest: {e}")))?;
        m.base_dir = base_dir.to_path_buf();
        if m.samples.is_empty() {
            return Err(WebSrError::Invalid(
                "subset manifest lists no samples".into(),
            ));
        }
        m.check_duplicates()?;
        Ok(m)
    }

    /// Reads a manifest file and checks it: format, version, no duplicate sample, every file
    /// present. Relative file names are resolved against the manifest's folder.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| WebSrError::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let m = Self::parse(&text, &base)
            .map_err(|e| WebSrError::Invalid(format!("{}: {e}", path.display())))?;
        let missing: Vec<String> = m
            .files()
            .into_iter()
            .filter(|f| !f.is_file())
            .map(|f| f.display().to_string())
            .collect();
        if !missing.is_empty() {
            return Err(WebSrError::Invalid(format!(
                "{}: {} image file(s) of the subset are missing: {}",
                path.display(),
                missing.len(),
                missing.join(", ")
            )));
        }
        Ok(m)
    }

    /// Writes the manifest as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("serialisable") + "\n";
        std::fs::write(path, text).map_err(|e| WebSrError::io(path, e))
    }

    fn check_duplicates(&self) -> Result<()> {
        let mut seen = HashSet::new();
        for s in &self.samples {
            if !seen.insert((s.file.as_str(), s.rect)) {
                return Err(WebSrError::Invalid(format!(
                    "subset manifest lists the sample {} {:?} twice",
                    s.file, s.rect
                )));
            }
        }
        Ok(())
    }

    /// Where a sample's file is.
    pub fn resolve(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The distinct image files, in order of first appearance.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut seen = HashSet::new();
        self.samples
            .iter()
            .filter(|s| seen.insert(s.file.as_str()))
            .map(|s| self.resolve(&s.file))
            .collect()
    }
}
