//! Blind degradations: how the federated clients' low-resolution images differ from the clean
//! bicubic task (methods.md §5, "Federated Learning for Blind Image Super-Resolution").
//!
//! One degradation is the classical first-order model used by Real-ESRGAN and the paper:
//!
//! ```text
//! LR = JPEG_q( round8( round8( bicubic_down_s( HR * Gaussian_blur_sigma ) ) + noise_n ) )
//! ```
//!
//! each stage optional. A client holds images of one *base kind* ([`Kind`]: clean, blur, noise
//! or JPEG) whose strength is drawn per training patch from the ranges below, so the model sees
//! a family of degradations rather than one setting. Evaluation uses fixed strengths and all 8
//! combinations ([`evaluation_suite`]), most of them unseen by any single client.
//!
//! Strength ranges (our choice; the paper publishes none): blur sigma 0.8-2.4 HR pixels
//! (evaluation 1.6), noise sigma 3-20 8-bit levels (evaluation 10), JPEG quality 35-85
//! (evaluation 50).

mod photo;
pub use photo::{photo_eval_degradation, second_order, PHOTO_EVAL_SEED};

use crate::error::{Result, WebSrError};
use crate::image::Planar;
use crate::resize::resize_to;
use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, RgbImage};
use rand::Rng;
use serde::{Deserialize, Serialize};

const BLUR_RANGE: (f32, f32) = (0.8, 2.4);
const NOISE_RANGE: (f32, f32) = (3.0, 20.0);
const JPEG_RANGE: (u8, u8) = (35, 85);
const EVAL_BLUR: f32 = 1.6;
const EVAL_NOISE: f32 = 10.0;
const EVAL_JPEG: u8 = 50;

/// A degradation a model is trained on, beyond the evaluation's clean bicubic one; its test
/// inputs are degraded too ([`crate::eval::evaluate_inputs`]). Saved in a run's `config.json`
/// and named in the manifest (`photo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainDegradation {
    /// Real photos: the second-order blur/noise/JPEG pipeline ([`second_order`]), tested on
    /// [`photo_eval_degradation`] inputs.
    Photo,
}

impl TrainDegradation {
    pub fn name(self) -> &'static str {
        match self {
            TrainDegradation::Photo => "photo",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "photo" => Ok(Self::Photo),
            other => Err(WebSrError::Invalid(format!(
                "unknown degradation '{other}' (photo; leave it out for clean bicubic inputs)"
            ))),
        }
    }
}

/// The base degradation a federated client's images carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Bicubic downscaling only (the evaluation protocol of the clean models).
    Clean,
    Blur,
    Noise,
    Jpeg,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Clean, Kind::Blur, Kind::Noise, Kind::Jpeg];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Clean => "clean",
            Kind::Blur => "blur",
            Kind::Noise => "noise",
            Kind::Jpeg => "jpeg",
        }
    }

    pub fn parse(s: &str) -> Result<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                WebSrError::Invalid(format!(
                    "unknown degradation '{s}' (clean, blur, noise or jpeg)"
                ))
            })
    }

    /// A degradation of this kind with a random strength from its training range.
    pub fn sample(self, rng: &mut impl Rng) -> Degradation {
        let none = Degradation::default();
        match self {
            Kind::Clean => none,
            Kind::Blur => Degradation {
                blur_sigma: Some(rng.random_range(BLUR_RANGE.0..=BLUR_RANGE.1)),
                ..none
            },
            Kind::Noise => Degradation {
                noise_sigma: Some(rng.random_range(NOISE_RANGE.0..=NOISE_RANGE.1)),
                ..none
            },
            Kind::Jpeg => Degradation {
                jpeg_quality: Some(rng.random_range(JPEG_RANGE.0..=JPEG_RANGE.1)),
                ..none
            },
        }
    }
}

/// How a client turns each HR training patch into its LR input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DegradationSampler {
    /// Every patch gets this base kind (at a random strength).
    Base(Kind),
    /// Blur, noise and JPEG each applied independently with probability 1/2 at a random
    /// strength: the browser client's default, since a person's photos carry no label.
    Mixed,
}

impl DegradationSampler {
    pub fn parse(s: &str) -> Result<DegradationSampler> {
        match s {
            "mixed" | "random" => Ok(DegradationSampler::Mixed),
            other => Kind::parse(other)
                .map(DegradationSampler::Base)
                .map_err(|_| {
                    WebSrError::Invalid(format!(
                        "unknown degradation '{s}' (clean, blur, noise, jpeg or mixed)"
                    ))
                }),
        }
    }

    pub fn sample(self, rng: &mut impl Rng) -> Degradation {
        match self {
            DegradationSampler::Base(kind) => kind.sample(rng),
            DegradationSampler::Mixed => {
                let mut d = Degradation::default();
                for kind in [Kind::Blur, Kind::Noise, Kind::Jpeg] {
                    if rng.random_bool(0.5) {
                        d = d.with(kind.sample(rng));
                    }
                }
                d
            }
        }
    }
}

/// One concrete degradation; `None` skips that stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Degradation {
    /// Gaussian blur standard deviation in HR pixels, applied before downscaling.
    pub blur_sigma: Option<f32>,
    /// Gaussian noise standard deviation in 8-bit levels, added to the LR image (per channel).
    pub noise_sigma: Option<f32>,
    /// JPEG quality (1-100) the LR image is compressed with.
    pub jpeg_quality: Option<u8>,
}

impl Degradation {
    /// The stages of `other` that are set, added to these.
    pub fn with(self, other: Degradation) -> Degradation {
        Degradation {
            blur_sigma: other.blur_sigma.or(self.blur_sigma),
            noise_sigma: other.noise_sigma.or(self.noise_sigma),
            jpeg_quality: other.jpeg_quality.or(self.jpeg_quality),
        }
    }

    /// Short name as in the paper's tables: `c`, `b`, `n`, `j`, `b+n`, ..., `b+n+j`.
    pub fn short_name(&self) -> String {
        let parts: Vec<&str> = [
            (self.blur_sigma.is_some(), "b"),
            (self.noise_sigma.is_some(), "n"),
            (self.jpeg_quality.is_some(), "j"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if parts.is_empty() {
            "c".into()
        } else {
            parts.join("+")
        }
    }
}

/// The 8 evaluation conditions at fixed strengths: c, b, n, j, b+n, b+j, n+j, b+n+j.
pub fn evaluation_suite() -> Vec<Degradation> {
    let mut out = Vec::with_capacity(8);
    for stages in [0b000, 0b100, 0b010, 0b001, 0b110, 0b101, 0b011, 0b111] {
        out.push(Degradation {
            blur_sigma: (stages & 0b100 != 0).then_some(EVAL_BLUR),
            noise_sigma: (stages & 0b010 != 0).then_some(EVAL_NOISE),
            jpeg_quality: (stages & 0b001 != 0).then_some(EVAL_JPEG),
        });
    }
    out
}

/// Degrades `hr` (cropped to a multiple of `scale`) into its LR input. Returns
/// `(hr_cropped, lr)`; `lr` holds 8-bit levels. The noise draws from `rng`.
pub fn degrade(
    hr: &Planar,
    scale: usize,
    d: &Degradation,
    rng: &mut impl Rng,
) -> Result<(Planar, Planar)> {
    let h = hr.height - hr.height % scale;
    let w = hr.width - hr.width % scale;
    if h == 0 || w == 0 {
        return Err(WebSrError::Invalid(format!(
            "a {}x{} image is smaller than the scale {scale}",
            hr.width, hr.height
        )));
    }
    let hr = hr.crop(0, 0, h, w);
    let blurred = match d.blur_sigma {
        Some(sigma) => gaussian_blur(&hr, sigma),
        None => hr.clone(),
    };
    let mut lr = resize_to(&blurred, h / scale, w / scale, 1.0 / scale as f64);
    lr.quantize_u8();
    if let Some(sigma) = d.noise_sigma {
        add_gaussian_noise(&mut lr, sigma / 255.0, rng);
        lr.quantize_u8();
    }
    if let Some(quality) = d.jpeg_quality {
        lr = jpeg_round_trip(&lr, quality)?;
    }
    Ok((hr, lr))
}

/// Separable Gaussian blur with a kernel of radius `ceil(3 sigma)` and mirrored borders.
pub fn gaussian_blur(img: &Planar, sigma: f32) -> Planar {
    if sigma <= 0.0 {
        return img.clone();
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let mut kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let (h, w) = (img.height, img.width);
    let mut out = img.clone();
    let mut tmp = vec![0.0f32; h * w];
    for c in 0..img.channels {
        let src = img.plane(c);
        for y in 0..h {
            for x in 0..w {
                tmp[y * w + x] = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, wgt)| wgt * src[y * w + mirror(x as isize + k as isize - radius, w)])
                    .sum();
            }
        }
        let dst = out.plane_mut(c);
        for y in 0..h {
            for x in 0..w {
                dst[y * w + x] = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, wgt)| wgt * tmp[mirror(y as isize + k as isize - radius, h) * w + x])
                    .sum();
            }
        }
    }
    out
}

/// Index `i` reflected into `0..len` (`-1 -> 1`, `len -> len - 2`), for any kernel size.
fn mirror(i: isize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len as isize - 1);
    let m = i.rem_euclid(period);
    (if m < len as isize { m } else { period - m }) as usize
}

/// Adds `N(0, std^2)` to every value and clamps to `[0, 1]`.
fn add_gaussian_noise(img: &mut Planar, std: f32, rng: &mut impl Rng) {
    for v in img.data.iter_mut() {
        let n = websr_federated::dp::standard_normal(rng) as f32;
        *v = (*v + std * n).clamp(0.0, 1.0);
    }
}

/// Compresses an RGB image as JPEG at `quality` and decodes it again.
pub fn jpeg_round_trip(img: &Planar, quality: u8) -> Result<Planar> {
    if img.channels != 3 {
        return Err(WebSrError::Invalid(format!(
            "JPEG degradation needs RGB, got {} channels",
            img.channels
        )));
    }
    let (h, w) = (img.height, img.width);
    let n = h * w;
    let to_u8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let rgb = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        image::Rgb([
            to_u8(img.data[i]),
            to_u8(img.data[n + i]),
            to_u8(img.data[2 * n + i]),
        ])
    });
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality.clamp(1, 100))
        .encode_image(&rgb)
        .map_err(|e| WebSrError::Invalid(format!("JPEG encoding failed: {e}")))?;
    let decoded = image::load_from_memory_with_format(&bytes, ImageFormat::Jpeg)
        .map_err(|e| WebSrError::Invalid(format!("JPEG decoding failed: {e}")))?
        .to_rgb8();
    let mut data = vec![0.0f32; 3 * n];
    for (i, p) in decoded.pixels().enumerate() {
        for c in 0..3 {
            data[c * n + i] = f32::from(p[c]) / 255.0;
        }
    }
    Ok(Planar::new(3, h, w, data))
}
