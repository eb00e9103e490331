//! One reverse (denoising) step, given the network's noise estimate `eps`: DDPM's ancestral step
//! and DDIM's (possibly deterministic, possibly skipping) step.
//!
//! The scalar coefficients are computed on the host in `f64` ([`DdpmCoefficients`],
//! [`DdimCoefficients`]) and the steps themselves are plain tensor ops, so they run the same on
//! WebGPU and on the CPU and never read a tensor back.

use super::schedule::NoiseSchedule;
use burn::tensor::Tensor;

/// The variance of DDPM's reverse step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PosteriorVariance {
    /// `sigma^2 = beta_i`: DiWa's code (`posterior_variance = betas`).
    Beta,
    /// The true posterior `sigma^2 = beta_i (1 - acp_prev_i) / (1 - acp_i)`: SR3's code.
    Posterior,
}

/// The numbers of DDPM step `i` (0-indexed, `T-1` down to 0), methods.md §2:
/// `y0 = clamp(sqrt_recip_acp * y - sqrt_recip_acp_minus_one * eps, -1, 1)`,
/// `y <- mean_y0 * y0 + mean_y * y + std * z`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdpmCoefficients {
    /// `sqrt(1 / acp_i)`.
    pub sqrt_recip_acp: f64,
    /// `sqrt(1 / acp_i - 1)`.
    pub sqrt_recip_acp_minus_one: f64,
    /// `beta_i sqrt(acp_prev_i) / (1 - acp_i)`, "coef1".
    pub mean_y0: f64,
    /// `(1 - acp_prev_i) sqrt(1 - beta_i) / (1 - acp_i)`, "coef2".
    pub mean_y: f64,
    /// Standard deviation of the added noise; 0 at `i = 0`.
    pub std: f64,
}

impl DdpmCoefficients {
    pub fn new(schedule: &NoiseSchedule, i: usize, variance: PosteriorVariance) -> Self {
        let beta = schedule.betas()[i];
        let acp = schedule.alphas_cumprod()[i];
        let acp_prev = schedule.alphas_cumprod_prev()[i];
        let var = match variance {
            PosteriorVariance::Beta => beta,
            PosteriorVariance::Posterior => beta * (1.0 - acp_prev) / (1.0 - acp),
        };
        DdpmCoefficients {
            sqrt_recip_acp: (1.0 / acp).sqrt(),
            sqrt_recip_acp_minus_one: (1.0 / acp - 1.0).sqrt(),
            mean_y0: beta * acp_prev.sqrt() / (1.0 - acp),
            mean_y: (1.0 - acp_prev) * (1.0 - beta).sqrt() / (1.0 - acp),
            std: if i == 0 { 0.0 } else { var.sqrt() },
        }
    }
}

/// `clamp(a * y - b * eps, -1, 1)`: the clean signal implied by a noise estimate.
pub fn predict_y0(
    y: Tensor<4>,
    eps: Tensor<4>,
    sqrt_recip_acp: f64,
    sqrt_recip_acp_minus_one: f64,
) -> Tensor<4> {
    (y.mul_scalar(sqrt_recip_acp) - eps.mul_scalar(sqrt_recip_acp_minus_one)).clamp(-1.0, 1.0)
}

/// DDPM ancestral step. `noise` is `z ~ N(0, I)`; it is ignored when `c.std == 0` (the last step).
pub fn ddpm_step(
    y: Tensor<4>,
    eps: Tensor<4>,
    c: &DdpmCoefficients,
    noise: Option<Tensor<4>>,
) -> Tensor<4> {
    let y0 = predict_y0(y.clone(), eps, c.sqrt_recip_acp, c.sqrt_recip_acp_minus_one);
    let mean = y0.mul_scalar(c.mean_y0) + y.mul_scalar(c.mean_y);
    match noise {
        Some(z) if c.std > 0.0 => mean + z.mul_scalar(c.std),
        _ => mean,
    }
}

/// The numbers of a DDIM step (Song et al. 2021, Eq. 12) from index `i` to an earlier index `j`,
/// or to the clean signal (`acp = 1`) when `j` is `None`:
/// `y0 = clamp(sqrt_recip_acp * y - sqrt_recip_acp_minus_one * eps, -1, 1)`,
/// `y <- sqrt_acp_next * y0 + eps_scale * eps + sigma * z`, with
/// `sigma = eta sqrt((1 - acp_j)/(1 - acp_i)) sqrt(1 - acp_i/acp_j)`.
/// As in diffusers, the direction term keeps the network's `eps` after `y0` is clamped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdimCoefficients {
    pub sqrt_recip_acp: f64,
    pub sqrt_recip_acp_minus_one: f64,
    /// `sqrt(acp_j)`.
    pub sqrt_acp_next: f64,
    /// `sqrt(1 - acp_j - sigma^2)`.
    pub eps_scale: f64,
    pub sigma: f64,
}

impl DdimCoefficients {
    pub fn new(schedule: &NoiseSchedule, i: usize, j: Option<usize>, eta: f64) -> Self {
        let acp = schedule.alphas_cumprod()[i];
        let acp_next = match j {
            Some(j) => {
                assert!(j < i, "a DDIM step goes to an earlier index ({i} -> {j})");
                schedule.alphas_cumprod()[j]
            }
            None => 1.0,
        };
        let sigma =
            eta * ((1.0 - acp_next) / (1.0 - acp)).sqrt() * (1.0 - acp / acp_next).max(0.0).sqrt();
        DdimCoefficients {
            sqrt_recip_acp: (1.0 / acp).sqrt(),
            sqrt_recip_acp_minus_one: (1.0 / acp - 1.0).sqrt(),
            sqrt_acp_next: acp_next.sqrt(),
            eps_scale: (1.0 - acp_next - sigma * sigma).max(0.0).sqrt(),
            sigma,
        }
    }
}

/// DDIM step; `noise` is only used when `c.sigma > 0` (`eta > 0`).
pub fn ddim_step(
    y: Tensor<4>,
    eps: Tensor<4>,
    c: &DdimCoefficients,
    noise: Option<Tensor<4>>,
) -> Tensor<4> {
    let y0 = predict_y0(y, eps.clone(), c.sqrt_recip_acp, c.sqrt_recip_acp_minus_one);
    let next = y0.mul_scalar(c.sqrt_acp_next) + eps.mul_scalar(c.eps_scale);
    match noise {
        Some(z) if c.sigma > 0.0 => next + z.mul_scalar(c.sigma),
        _ => next,
    }
}

/// `steps` indices out of `0..total`, evenly spaced, descending from `total - 1` to 0: the
/// sub-sequence a DDIM sampler visits (all indices when `steps >= total`).
pub fn ddim_indices(total: usize, steps: usize) -> Vec<usize> {
    assert!(total > 0 && steps > 0, "DDIM needs at least one step");
    let steps = steps.min(total);
    if steps == 1 {
        return vec![total - 1];
    }
    (0..steps)
        .rev()
        .map(|k| ((k * (total - 1)) as f64 / (steps - 1) as f64).round() as usize)
        .collect()
}
