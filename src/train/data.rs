//! Training pairs: random HR crops from image folders (the classic 291 set: t91 + bsd200), a
//! random flip/rotation, and LR made with the evaluation's own degradation (MATLAB bicubic,
//! 8-bit rounding), so the model learns exactly the task it is scored on.

use crate::error::{Result, WebSrError};
use crate::eval::image_files;
use crate::image::{load, Planar};
use crate::resize::degrade_bicubic;
use rand::Rng;
use std::path::{Path, PathBuf};

/// One decoded training image, kept as 8-bit planar RGB to save memory.
struct Sample {
    h: usize,
    w: usize,
    rgb: Vec<u8>,
}

/// All training images in memory.
pub struct TrainingSet {
    samples: Vec<Sample>,
    pub files: Vec<PathBuf>,
}

/// A batch of `n` LR/HR pairs, NCHW, values in `[0, 1]`.
pub struct Batch {
    pub n: usize,
    pub lr_side: usize,
    pub hr_side: usize,
    pub lr: Vec<f32>,
    pub hr: Vec<f32>,
}

impl TrainingSet {
    /// Loads every image of the given folders.
    pub fn load_dirs(dirs: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::new();
        for d in dirs {
            files.extend(image_files(d)?);
        }
        Self::load_files(files)
    }

    /// Loads exactly these files (used by subset manifests).
    pub fn load_files(files: Vec<PathBuf>) -> Result<Self> {
        let mut samples = Vec::with_capacity(files.len());
        for f in &files {
            samples.push(to_sample(&load(f)?.rgb));
        }
        if samples.is_empty() {
            return Err(WebSrError::Invalid("no training images".into()));
        }
        Ok(Self { samples, files })
    }

    /// Builds a set from in-memory images (tests).
    pub fn from_images(images: &[Planar]) -> Self {
        Self {
            samples: images.iter().map(to_sample).collect(),
            files: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Samples `n` random pairs with HR side `hr_side` (a multiple of `scale`).
    pub fn batch(&self, rng: &mut impl Rng, n: usize, hr_side: usize, scale: usize) -> Batch {
        assert_eq!(
            hr_side % scale,
            0,
            "HR patch must be a multiple of the scale"
        );
        let lr_side = hr_side / scale;
        let mut lr = Vec::with_capacity(n * 3 * lr_side * lr_side);
        let mut hr = Vec::with_capacity(n * 3 * hr_side * hr_side);
        for _ in 0..n {
            let hr_patch = self.random_patch(rng, hr_side);
            let (hr_patch, lr_patch) = degrade_bicubic(&hr_patch, scale);
            hr.extend_from_slice(&hr_patch.data);
            lr.extend_from_slice(&lr_patch.data);
        }
        Batch {
            n,
            lr_side,
            hr_side,
            lr,
            hr,
        }
    }

    fn random_patch(&self, rng: &mut impl Rng, side: usize) -> Planar {
        // Pick images in proportion to their area, so every pixel is equally likely.
        let total: usize = self.samples.iter().map(|s| s.h * s.w).sum();
        let mut pick = rng.random_range(0..total);
        let sample = self
            .samples
            .iter()
            .find(|s| {
                if pick < s.h * s.w {
                    true
                } else {
                    pick -= s.h * s.w;
                    false
                }
            })
            .expect("pick < total");
        let side_h = side.min(sample.h);
        let side_w = side.min(sample.w);
        let y0 = rng.random_range(0..=sample.h - side_h);
        let x0 = rng.random_range(0..=sample.w - side_w);
        let n = sample.h * sample.w;
        let mut data = Vec::with_capacity(3 * side * side);
        for c in 0..3 {
            for y in 0..side {
                // Images smaller than the patch are mirrored; the 291 set never needs it.
                let yy = (y0 + y.min(side_h - 1)).min(sample.h - 1);
                for x in 0..side {
                    let xx = (x0 + x.min(side_w - 1)).min(sample.w - 1);
                    data.push(sample.rgb[c * n + yy * sample.w + xx] as f32 / 255.0);
                }
            }
        }
        Planar::new(3, side, side, data).dihedral(rng.random_range(0..8))
    }
}

fn to_sample(p: &Planar) -> Sample {
    Sample {
        h: p.height,
        w: p.width,
        rgb: p
            .data
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect(),
    }
}

/// The default training folders: `<data>/t91` and `<data>/bsd200`.
pub fn default_dirs(data_root: &Path) -> Vec<PathBuf> {
    vec![data_root.join("t91"), data_root.join("bsd200")]
}
