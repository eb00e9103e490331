//! Training pairs: random HR crops from image folders (the classic 291 set: t91 + bsd200), a
//! random flip/rotation, and LR made with the evaluation's own degradation (MATLAB bicubic,
//! 8-bit rounding), so the model learns exactly the task it is scored on.
//!
//! With a subset manifest ([`crate::prune::SubsetManifest`], `websr train --subset`), crops are drawn
//! only inside the listed sub-images: a kept sub-image is picked uniformly, then a crop of the
//! patch size uniformly inside it.

use crate::error::{Result, WebSrError};
use crate::eval::image_files;
use crate::image::Rect;
use crate::image::{load, Planar};
use crate::prune::SubsetManifest;
use crate::resize::degrade_bicubic;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use std::path::{Path, PathBuf};

/// One decoded training image, kept as 8-bit planar RGB to save memory.
#[derive(Clone)]
struct Sample {
    h: usize,
    w: usize,
    rgb: Vec<u8>,
}

/// A kept sub-image of a subset: `rect` of `samples[sample]`.
#[derive(Clone, Copy, Debug)]
struct Region {
    sample: usize,
    rect: Rect,
}

/// All training images in memory.
pub struct TrainingSet {
    samples: Vec<Sample>,
    pub files: Vec<PathBuf>,
    /// With a subset: the only places crops are drawn from.
    regions: Option<Vec<Region>>,
}

/// A batch of `n` LR/HR pairs, NCHW, values in `[0, 1]`.
pub struct Batch {
    pub n: usize,
    pub lr_side: usize,
    pub hr_side: usize,
    pub lr: Vec<f32>,
    pub hr: Vec<f32>,
}

impl Batch {
    /// The LR and HR batches as NCHW tensors on `device`.
    pub fn to_tensors(self, device: &burn::tensor::Device) -> (Tensor<4>, Tensor<4>) {
        let lr = Tensor::from_data(
            TensorData::new(self.lr, [self.n, 3, self.lr_side, self.lr_side]),
            device,
        );
        let hr = Tensor::from_data(
            TensorData::new(self.hr, [self.n, 3, self.hr_side, self.hr_side]),
            device,
        );
        (lr, hr)
    }
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
        Ok(Self {
            samples,
            files,
            regions: None,
        })
    }

    /// Loads the images of a subset manifest; crops come only from its sub-images. A rectangle
    /// outside its image is an error.
    pub fn load_subset(manifest: &SubsetManifest) -> Result<Self> {
        let files = manifest.files();
        let mut set = Self::load_files(files.clone())?;
        let regions = manifest
            .samples
            .iter()
            .map(|s| {
                let path = manifest.resolve(&s.file);
                let sample = files.iter().position(|f| *f == path).expect("listed file");
                (sample, s.rect)
            })
            .collect::<Vec<_>>();
        set.set_regions(&regions)?;
        Ok(set)
    }

    /// Restricts crops to these sub-images `(image index, rect)`; each is equally likely.
    pub fn set_regions(&mut self, regions: &[(usize, Rect)]) -> Result<()> {
        if regions.is_empty() {
            return Err(WebSrError::Invalid("the subset lists no sub-images".into()));
        }
        let mut out = Vec::with_capacity(regions.len());
        for &(sample, rect) in regions {
            let s = self.samples.get(sample).ok_or_else(|| {
                WebSrError::Invalid(format!("sub-image of image {sample}: no such image"))
            })?;
            if rect.h == 0 || rect.w == 0 || rect.y + rect.h > s.h || rect.x + rect.w > s.w {
                let name = self
                    .files
                    .get(sample)
                    .map_or(format!("image {sample}"), |f| f.display().to_string());
                return Err(WebSrError::Invalid(format!(
                    "sub-image {rect:?} is outside {name} ({}x{})",
                    s.w, s.h
                )));
            }
            out.push(Region { sample, rect });
        }
        self.regions = Some(out);
        Ok(())
    }

    /// Number of sub-images crops are drawn from (`None` without a subset).
    pub fn num_regions(&self) -> Option<usize> {
        self.regions.as_ref().map(|r| r.len())
    }

    /// Builds a set from in-memory images (tests).
    pub fn from_images(images: &[Planar]) -> Self {
        Self {
            samples: images.iter().map(to_sample).collect(),
            files: Vec::new(),
            regions: None,
        }
    }

    /// Adds one image (the browser client adds a participant's photos one by one).
    pub fn push(&mut self, image: &Planar) {
        self.samples.push(to_sample(image));
    }

    /// Pixels held over all images.
    pub fn num_pixels(&self) -> u64 {
        self.samples.iter().map(|s| (s.h * s.w) as u64).sum()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Samples `n` random pairs with HR side `hr_side` (a multiple of `scale`).
    pub fn batch<R: Rng>(&self, rng: &mut R, n: usize, hr_side: usize, scale: usize) -> Batch {
        self.batch_with(rng, n, hr_side, scale, &mut |_, hr, _| {
            Ok(degrade_bicubic(hr, scale).1)
        })
        .expect("bicubic degradation cannot fail")
    }

    /// Like [`TrainingSet::batch`], with the LR input of each HR patch made by
    /// `make_lr(image_index, hr_patch, rng)` (the federated clients' blind degradations).
    pub fn batch_with<R: Rng>(
        &self,
        rng: &mut R,
        n: usize,
        hr_side: usize,
        scale: usize,
        make_lr: &mut dyn FnMut(usize, &Planar, &mut R) -> Result<Planar>,
    ) -> Result<Batch> {
        assert_eq!(
            hr_side % scale,
            0,
            "HR patch must be a multiple of the scale"
        );
        let lr_side = hr_side / scale;
        let mut lr = Vec::with_capacity(n * 3 * lr_side * lr_side);
        let mut hr = Vec::with_capacity(n * 3 * hr_side * hr_side);
        for _ in 0..n {
            let (index, hr_patch) = self.random_patch(rng, hr_side);
            let lr_patch = make_lr(index, &hr_patch, rng)?;
            debug_assert_eq!(lr_patch.data.len(), 3 * lr_side * lr_side);
            hr.extend_from_slice(&hr_patch.data);
            lr.extend_from_slice(&lr_patch.data);
        }
        Ok(Batch {
            n,
            lr_side,
            hr_side,
            lr,
            hr,
        })
    }

    /// Keeps only these images (a federated client's share), in this order.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            samples: indices.iter().map(|&i| self.samples[i].clone()).collect(),
            files: indices
                .iter()
                .filter_map(|&i| self.files.get(i).cloned())
                .collect(),
            regions: None,
        }
    }

    /// Number of disjoint `side x side` patches the images hold: a client's example count.
    pub fn num_patches(&self, side: usize) -> usize {
        self.samples
            .iter()
            .map(|s| (s.h / side.max(1)) * (s.w / side.max(1)))
            .sum()
    }

    /// A random patch and the index of the image it comes from.
    fn random_patch(&self, rng: &mut impl Rng, side: usize) -> (usize, Planar) {
        let (index, area) = match &self.regions {
            Some(regions) => {
                let r = regions[rng.random_range(0..regions.len())];
                (r.sample, r.rect)
            }
            None => self.random_image(rng),
        };
        let sample = &self.samples[index];
        let side_h = side.min(area.h);
        let side_w = side.min(area.w);
        let y0 = area.y + rng.random_range(0..=area.h - side_h);
        let x0 = area.x + rng.random_range(0..=area.w - side_w);
        let n = sample.h * sample.w;
        let mut data = Vec::with_capacity(3 * side * side);
        for c in 0..3 {
            for y in 0..side {
                // Areas smaller than the patch repeat their last row/column; the 291 set never needs it.
                let yy = y0 + y.min(side_h - 1);
                for x in 0..side {
                    let xx = x0 + x.min(side_w - 1);
                    data.push(sample.rgb[c * n + yy * sample.w + xx] as f32 / 255.0);
                }
            }
        }
        (
            index,
            Planar::new(3, side, side, data).dihedral(rng.random_range(0..8)),
        )
    }

    /// A whole image, picked in proportion to its area, so every pixel is equally likely.
    fn random_image(&self, rng: &mut impl Rng) -> (usize, Rect) {
        let total: usize = self.samples.iter().map(|s| s.h * s.w).sum();
        let mut pick = rng.random_range(0..total);
        let index = self
            .samples
            .iter()
            .position(|s| {
                if pick < s.h * s.w {
                    true
                } else {
                    pick -= s.h * s.w;
                    false
                }
            })
            .expect("pick < total");
        let sample = &self.samples[index];
        let rect = Rect {
            y: 0,
            x: 0,
            h: sample.h,
            w: sample.w,
        };
        (index, rect)
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

/// The training images of `dirs` with a validation slice held out: the last `holdout` files in
/// folder order then name order (with the default folders, the last BSD200 images). Validating on
/// images the model never trains on, instead of a test set, is what keeps Set5/Set14 for the final
/// scores only. Returns `(training, held_out)`.
pub fn split_holdout(dirs: &[PathBuf], holdout: usize) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut files = Vec::new();
    for d in dirs {
        files.extend(image_files(d)?);
    }
    if holdout >= files.len() {
        return Err(WebSrError::Invalid(format!(
            "cannot hold out {holdout} of {} training images and keep any to train on",
            files.len()
        )));
    }
    let held = files.split_off(files.len() - holdout);
    Ok((files, held))
}
