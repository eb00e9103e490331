//! Differential privacy: client-side L2 clipping, server-side Gaussian noise, and an RDP
//! accountant.
//!
//! # Mechanism
//!
//! Each client clips its whole delta to L2 norm `C` (`clip_norm` in the round config) before
//! sending it; the server refuses any update whose norm exceeds `C` (with a relative slack of
//! [`NORM_TOLERANCE`] for float rounding). When `noise_multiplier` `z > 0` the server averages the
//! round's `n` deltas with equal weights (`num_examples` is ignored) and adds
//! `N(0, (2 z C / n)^2)` to every coordinate of the mean ([`noise_std`]), before the server
//! optimizer step (FedAdam/FedYogi only post-process the noised mean).
//!
//! # Neighbouring rounds (what the guarantee is about)
//!
//! User-level, **replace-one**: two rounds are neighbours when they have the same participants
//! (who took part, and so `n`, is public: `/v1/status` counts them and the round records list
//! them) and one participant's update is replaced by any other update of norm at most `C`. The
//! mean of `n` clipped updates then moves by at most `2C / n` in L2 (`C / n` would hold only
//! for add/remove-one with a fixed, data-independent denominator), so noise of standard deviation
//! `2 z C / n` makes each round a Gaussian mechanism with noise multiplier `z`.
//! What is released un-noised while `z > 0` is only what this relation treats as public: the
//! participants and their count. The pre-noise delta norm, the clients' self-reported losses
//! and example counts are not recorded (see the aggregator's round records).
//!
//! # Accounting (conservative)
//!
//! Each round is a Gaussian mechanism with noise multiplier `sigma = z` (noise std over
//! sensitivity). Its Rényi DP at order `alpha > 1` is `alpha / (2 sigma^2)`
//! (Mironov 2017, Prop. 7); rounds compose by adding RDP, so after rounds with multipliers
//! `z_1..z_T` the curve is `alpha * rho` with `rho = sum 1 / (2 z_t^2)`. No amplification by
//! client sub-sampling is claimed (clients choose to join, so the sampling is not random), which
//! over-states epsilon. The conversion to `(epsilon, delta)` is
//! `epsilon = min_{alpha > 1} alpha rho + ln(1/delta) / (alpha - 1)`, whose minimum over the reals
//! is at `alpha = 1 + sqrt(ln(1/delta) / rho)`: `epsilon = rho + 2 sqrt(rho ln(1/delta))`.
//! A round without noise has no guarantee (`epsilon = None`, i.e. infinite) and makes the
//! cumulative epsilon infinite as well.

use rand::Rng;

/// Relative slack on the clipping bound: a norm up to `C * (1 + NORM_TOLERANCE)` is accepted.
pub const NORM_TOLERANCE: f64 = 1e-4;

/// Scales `delta` in place so that its L2 norm is at most `bound` (what clients do).
/// Returns the norm before clipping.
pub fn clip(delta: &mut [Vec<f32>], bound: f64) -> f64 {
    let norm = crate::tensors::l2_norm(delta);
    if norm > bound && norm > 0.0 {
        let s = bound / norm;
        for x in delta.iter_mut().flatten() {
            *x = (f64::from(*x) * s) as f32;
        }
    }
    norm
}

/// Whether the server accepts an update of L2 norm `norm` under clipping bound `bound`.
pub fn within_bound(norm: f64, bound: f64) -> bool {
    norm <= bound * (1.0 + NORM_TOLERANCE)
}

/// L2 sensitivity of the mean of `n` updates clipped to `clip_norm` under replace-one
/// neighbours: `2 C / n` (see the module docs).
pub fn mean_sensitivity(clip_norm: f64, n: usize) -> f64 {
    2.0 * clip_norm / n.max(1) as f64
}

/// Standard deviation of the server noise on the mean of `n` clipped deltas:
/// `z * 2C / n`, the noise multiplier times [`mean_sensitivity`].
pub fn noise_std(noise_multiplier: f64, clip_norm: f64, n: usize) -> f64 {
    noise_multiplier * mean_sensitivity(clip_norm, n)
}

/// One standard normal sample (Box-Muller; `rand` alone has no normal distribution).
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    // u1 in (0, 1] so that ln(u1) is finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Adds `N(0, std^2)` to every coordinate.
pub fn add_gaussian_noise(delta: &mut [Vec<f32>], std: f64, rng: &mut impl Rng) {
    if std <= 0.0 {
        return;
    }
    for x in delta.iter_mut().flatten() {
        *x = (f64::from(*x) + std * standard_normal(rng)) as f32;
    }
}

/// RDP of one Gaussian round per unit order: `RDP(alpha) = alpha * rdp_rho(sigma)`.
/// Infinite for `sigma == 0`.
pub fn rdp_rho(sigma: f64) -> f64 {
    if sigma > 0.0 {
        1.0 / (2.0 * sigma * sigma)
    } else {
        f64::INFINITY
    }
}

/// `min_{alpha > 1} alpha rho + ln(1/delta) / (alpha - 1)` in closed form. `None` when infinite.
pub fn epsilon(rho: f64, delta: f64) -> Option<f64> {
    if !rho.is_finite() {
        return None;
    }
    let l = (1.0 / delta).ln();
    Some(rho + 2.0 * (rho * l).sqrt())
}

/// The optimal order for [`epsilon`]: `1 + sqrt(ln(1/delta) / rho)`.
pub fn best_order(rho: f64, delta: f64) -> f64 {
    1.0 + ((1.0 / delta).ln() / rho).sqrt()
}

/// Composes rounds: the noise multipliers of the rounds done so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accountant {
    pub delta: f64,
    rho: f64,
    rounds: usize,
}

impl Accountant {
    pub fn new(delta: f64) -> Self {
        Self {
            delta,
            rho: 0.0,
            rounds: 0,
        }
    }

    /// Records one round with noise multiplier `sigma`; returns that round's epsilon.
    pub fn record(&mut self, sigma: f64) -> Option<f64> {
        let r = rdp_rho(sigma);
        self.rho += r;
        self.rounds += 1;
        epsilon(r, self.delta)
    }

    /// Cumulative epsilon of every recorded round (`Some(0.0)` before any round).
    pub fn epsilon(&self) -> Option<f64> {
        if self.rounds == 0 {
            return Some(0.0);
        }
        epsilon(self.rho, self.delta)
    }

    pub fn rounds(&self) -> usize {
        self.rounds
    }
}
