//! YODA, "You Only Diffuse Areas" (methods.md §3): diffuse the important pixels for many steps
//! and the rest for few, by replacing, after each reverse step, the pixels outside a time mask
//! with the condition noised to the same level (RePaint-like).
//!
//! - Importance map `A in [0, 1]` (`[N, 1, h, w]` at the resolution being diffused). The thesis
//!   sums the heads of a DINO attention map; those weights cannot be shipped here, so
//!   [`detail_importance`] substitutes the multi-scale Haar detail energy of the LR luma, which
//!   also peaks on edges and texture and is zero on flat areas. Any other map can be supplied
//!   with [`Yoda::from_map`].
//! - Time mask `M(t) = 1[max(A, delta) >= t/T]` for `t in 0..=T` (the hypothesis of methods.md
//!   §3): it grows as `t` decreases (`M(t) ⊆ M(t-1)`), is full at `t = 0` for any `delta >= 0`
//!   (every `A >= 0`), and at `t = T` holds only the pixels with `A = 1`. A pixel is diffused for
//!   `floor(T max(A, delta))` steps, so `delta` is the guaranteed minimum share.
//! - Guided step (Eq. 12): `z_{t-1} = M(t) ⊙ denoised + (1 - M(t)) ⊙ (sqrt(a) c + sqrt(1-a) eps)`
//!   with `a = alpha_bar_{t-1}` and `c` the clean condition in the diffused space: the upscaled
//!   LR for SR3, zero for DiWa's residual. A DDIM step that skips from `t` to an earlier index
//!   uses `M(t)` and the level it lands on. Eq. 9's masking of the network input is not applied:
//!   outside the mask `z_t` already is the noised condition, which is also what the network sees
//!   in training ([`Yoda::training_input`]).
//! - Training loss: `mean |M(t) ⊙ (eps - eps_hat)|` ([`masked_l1`]).

use super::forward_process::noise_to_level;
use super::noise::{host_vector, Noise};
use super::schedule::NoiseSchedule;
use crate::wavelet::dwt;
use burn::config::Config;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions, PadMode};
use burn::tensor::Tensor;

/// Subtracted from the thresholds `t/T`: the division that normalises a map may give its
/// maximum as 0.99999976 on WebGPU, and the most important pixel must still be in `M(T)`.
const THRESHOLD_SLACK: f64 = 1e-6;

/// YODA's two settings.
#[derive(Config, Debug)]
pub struct YodaConfig {
    /// Lower bound of the importance in the mask rule: every pixel is diffused for at least
    /// `floor(delta T)` steps (0.05 in the pseudo-code quoted in methods.md §3).
    #[config(default = 0.05)]
    pub delta: f64,
    /// Haar levels of [`detail_importance`].
    #[config(default = 3)]
    pub levels: usize,
}

/// An importance map and the mask rule built on it.
#[derive(Clone, Debug)]
pub struct Yoda {
    importance: Tensor<4>,
    delta: f64,
}

impl Yoda {
    /// The map of [`detail_importance`] of `lr` (`[N, 3, h, w]` in `[0, 1]`) at `size`, the
    /// resolution being diffused (the HR size for SR3, half of it for DiWa).
    pub fn from_lr(lr: Tensor<4>, size: [usize; 2], config: &YodaConfig) -> Yoda {
        Yoda::from_map(detail_importance(lr, size, config.levels), config.delta)
    }

    /// An externally computed importance map, `[N, 1, h, w]` in `[0, 1]` (e.g. DINO attention).
    pub fn from_map(importance: Tensor<4>, delta: f64) -> Yoda {
        assert_eq!(importance.dims()[1], 1, "an importance map has one channel");
        assert!((0.0..=1.0).contains(&delta), "delta must lie in [0, 1]");
        Yoda { importance, delta }
    }

    /// `[N, 1, h, w]` in `[0, 1]`.
    pub fn importance(&self) -> &Tensor<4> {
        &self.importance
    }

    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// `[N, 1, h, w]`: the diffused spatial size this map is for.
    pub fn dims(&self) -> [usize; 4] {
        self.importance.dims()
    }

    /// `M(t)` for the whole batch, as 0/1 floats `[N, 1, h, w]`; `t in 0..=total`.
    pub fn mask(&self, t: usize, total: usize) -> Tensor<4> {
        self.masks(&vec![t; self.dims()[0]], total)
    }

    /// `M(t_n)` for batch item `n`: training draws one step per item.
    pub fn masks(&self, ts: &[usize], total: usize) -> Tensor<4> {
        let dims = self.dims();
        assert_eq!(ts.len(), dims[0], "one step per batch item");
        assert!(
            ts.iter().all(|&t| t <= total),
            "t runs from 0 to T = {total}"
        );
        let thresholds: Vec<f64> = ts
            .iter()
            .map(|&t| t as f64 / total as f64 - THRESHOLD_SLACK)
            .collect();
        let thresholds = host_vector(&thresholds, &self.importance.device())
            .reshape([dims[0], 1, 1, 1])
            .expand(dims);
        self.importance
            .clone()
            .clamp_min(self.delta)
            .greater_equal(thresholds)
            .float()
    }

    /// The network input of YODA training: the forward process on `M ⊙ y0 + (1 - M) ⊙ c`.
    /// Since both regions share the noise, this is `q_sample` of the mixed clean signal.
    pub fn training_input(mask: &Tensor<4>, y0: Tensor<4>, condition: Tensor<4>) -> Tensor<4> {
        blend(mask, y0, condition)
    }
}

/// `M ⊙ inside + (1 - M) ⊙ outside`, the mask broadcast over channels.
fn blend(mask: &Tensor<4>, inside: Tensor<4>, outside: Tensor<4>) -> Tensor<4> {
    let mask = mask.clone().expand(inside.dims());
    outside.clone() + mask * (inside - outside)
}

/// `mean |M ⊙ (eps - eps_hat)|` over all elements (the summary's
/// `l1(mask * (noise - model(...)))`): masked-out pixels add zero, they are not re-weighted.
pub fn masked_l1(mask: &Tensor<4>, eps: Tensor<4>, eps_hat: Tensor<4>) -> Tensor<1> {
    let mask = mask.clone().expand(eps.dims());
    (mask * (eps - eps_hat)).abs().mean()
}

/// The substitute for DINO attention: multi-scale Haar detail energy of the luma of `lr`
/// (`[N, 3, h, w]` in `[0, 1]`), `[N, 1, size]`, min-max normalised per image to `[0, 1]`.
///
/// Level `k` (1-based) contributes `(LH^2 + HL^2 + HH^2) / 4^k`, its detail energy per pixel
/// (a coefficient at level `k` covers `4^k` pixels), bilinearly upscaled to `size`; the sum over
/// levels is a local variance measured at several scales, so both fine texture and coarser
/// edges count. Odd sides are edge-padded before a level. A flat image gives an all-zero map.
pub fn detail_importance(lr: Tensor<4>, size: [usize; 2], levels: usize) -> Tensor<4> {
    let [n, c, _, _] = lr.dims();
    assert_eq!(c, 3, "the importance map is computed from an RGB image");
    let weights = [0.299, 0.587, 0.114];
    let mut low = (0..3)
        .map(|k| lr.clone().narrow(1, k, 1).mul_scalar(weights[k]))
        .reduce(|a, b| a + b)
        .expect("three channels");
    let mut total = Tensor::<4>::zeros([n, 1, size[0], size[1]], &lr.device());
    for level in 1..=levels {
        let [_, _, h, w] = low.dims();
        if h < 2 || w < 2 {
            break;
        }
        if h % 2 == 1 || w % 2 == 1 {
            low = low.pad([(0, h % 2), (0, w % 2)], PadMode::Edge);
        }
        let bands = dwt(low);
        let detail = bands.clone().narrow(1, 1, 3).square().sum_dim(1);
        let density = detail.div_scalar(4f64.powi(level as i32));
        let options = InterpolateOptions::new(InterpolateMode::Bilinear)
            .with_align_corners(false)
            .with_output_size(size);
        total = total + interpolate(density, options);
        low = bands.narrow(1, 0, 1);
    }
    min_max_normalise(total)
}

/// Per image: `(x - min) / (max - min)`, exact 0 and 1 at the extremes; zeros when flat.
fn min_max_normalise(x: Tensor<4>) -> Tensor<4> {
    let dims = x.dims();
    let flat = x.clone().reshape([dims[0], dims[2] * dims[3]]);
    let min = flat
        .clone()
        .min_dim(1)
        .reshape([dims[0], 1, 1, 1])
        .expand(dims);
    let max = flat.max_dim(1).reshape([dims[0], 1, 1, 1]).expand(dims);
    let range = (max - min.clone()).clamp_min(1e-12);
    (x - min) / range
}

/// YODA bound to a sampling run: the mask rule plus the clean condition `c` in the diffused
/// space (`[N, C, h, w]`).
#[derive(Clone, Debug)]
pub struct YodaGuide {
    pub yoda: Yoda,
    pub condition: Tensor<4>,
    /// The map's largest value, when the caller read it back: steps whose mask is then empty
    /// need no network evaluation ([`YodaGuide::mask_is_empty`]).
    max_importance: Option<f32>,
}

impl YodaGuide {
    pub fn new(yoda: &Yoda, condition: Tensor<4>) -> Self {
        let [n, _, h, w] = condition.dims();
        let [mn, _, mh, mw] = yoda.dims();
        assert!(
            (mn, mh, mw) == (n, h, w),
            "the importance map is {mn}x1x{mh}x{mw}, but the diffused signal is {n}x?x{h}x{w}"
        );
        YodaGuide {
            yoda: yoda.clone(),
            condition,
            max_importance: None,
        }
    }

    /// This guide knowing its map's largest value (read back by the caller).
    pub fn with_max_importance(self, max: f32) -> Self {
        YodaGuide {
            max_importance: Some(max),
            ..self
        }
    }

    /// Whether `M(t)` is empty: every pixel is then replaced by the noised condition after the
    /// step, so the step's network evaluation cannot change the sample and is skipped. The
    /// comparison is [`Yoda::masks`]' own, in `f32`; without a known maximum, never.
    pub fn mask_is_empty(&self, t: usize, total: usize) -> bool {
        let threshold = (t as f64 / total as f64 - THRESHOLD_SLACK) as f32;
        self.max_importance
            .is_some_and(|max| max.max(self.yoda.delta as f32) < threshold)
    }

    /// `z_T`: the initial noise inside `M(t)`, the condition noised to `alpha_bar_t` with the
    /// same noise outside (at the usual `alpha_bar_T ~ 0` this is the noise itself).
    pub fn start(
        &self,
        noise: Tensor<4>,
        t: usize,
        total: usize,
        schedule: &NoiseSchedule,
    ) -> Tensor<4> {
        let outside = noise_to_level(self.condition.clone(), schedule.alpha_bar(t), noise.clone());
        blend(&self.yoda.mask(t, total), noise, outside)
    }

    /// Eq. 12 after the step from `t` to the level `alpha_bar_next`.
    pub fn after_step(
        &self,
        denoised: Tensor<4>,
        t: usize,
        total: usize,
        alpha_bar_next: f64,
        rng: &mut impl Noise,
    ) -> Tensor<4> {
        let noise = rng.normal(denoised.dims(), &denoised.device());
        let known = noise_to_level(self.condition.clone(), alpha_bar_next, noise);
        blend(&self.yoda.mask(t, total), denoised, known)
    }
}
