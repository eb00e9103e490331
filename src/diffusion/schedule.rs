//! Noise schedules, on the host in `f64`: the `beta` sequence of a diffusion process and the
//! products derived from it, plus SR3's continuous noise level for training.
//!
//! Arrays are 0-indexed as in DiWa's sampler (methods.md §2): `acp[i] = prod_{k<=i} (1 - beta[k])`
//! and `acp_prev[i] = acp[i-1]` with `acp_prev[0] = 1`. The training rule of SR3 is written
//! 1-indexed: `t in 1..=T`, `alpha_bar_t = acp[t-1]`, `alpha_bar_0 = 1`
//! ([`NoiseSchedule::alpha_bar`] converts).

use rand::Rng;

/// A discrete noise schedule of `T` steps.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseSchedule {
    betas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    alphas_cumprod_prev: Vec<f64>,
}

impl NoiseSchedule {
    /// Any schedule from its betas (each in `(0, 1)`).
    pub fn from_betas(betas: Vec<f64>) -> NoiseSchedule {
        assert!(
            !betas.is_empty(),
            "a noise schedule needs at least one step"
        );
        assert!(
            betas.iter().all(|&b| b > 0.0 && b < 1.0),
            "every beta must lie in (0, 1)"
        );
        let alphas_cumprod: Vec<f64> = betas
            .iter()
            .scan(1.0, |acp, &b| {
                *acp *= 1.0 - b;
                Some(*acp)
            })
            .collect();
        let alphas_cumprod_prev = std::iter::once(1.0)
            .chain(alphas_cumprod[..betas.len() - 1].iter().copied())
            .collect();
        NoiseSchedule {
            betas,
            alphas_cumprod,
            alphas_cumprod_prev,
        }
    }

    /// `steps` betas evenly spaced from `beta_start` to `beta_end` (numpy's `linspace`), the
    /// schedule of SR3 and DiWa (DiWa: `linear(2000, 1e-6, 1e-2)` to train, 500 steps to sample).
    pub fn linear(steps: usize, beta_start: f64, beta_end: f64) -> NoiseSchedule {
        assert!(steps > 0, "a noise schedule needs at least one step");
        let betas = (0..steps)
            .map(|i| match steps {
                1 => beta_start,
                _ => beta_start + (beta_end - beta_start) * i as f64 / (steps - 1) as f64,
            })
            .collect();
        NoiseSchedule::from_betas(betas)
    }

    /// The cosine schedule of Nichol & Dhariwal (SRDiff's, with `s = 0.008`):
    /// `alpha_bar(t) = f(t)/f(0)`, `f(t) = cos^2(((t/T + s)/(1 + s)) * pi/2)`, and
    /// `beta_t = 1 - alpha_bar(t)/alpha_bar(t-1)` clipped to 0.999 so the last step stays finite.
    pub fn cosine(steps: usize, s: f64) -> NoiseSchedule {
        assert!(steps > 0, "a noise schedule needs at least one step");
        let f = |t: usize| {
            let x = (t as f64 / steps as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2;
            x.cos().powi(2)
        };
        let betas = (1..=steps)
            .map(|t| (1.0 - f(t) / f(t - 1)).clamp(1e-12, 0.999))
            .collect();
        NoiseSchedule::from_betas(betas)
    }

    /// `T`, the number of steps.
    pub fn len(&self) -> usize {
        self.betas.len()
    }

    /// Always false: a schedule has at least one step (clippy wants the pair with `len`).
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    pub fn betas(&self) -> &[f64] {
        &self.betas
    }

    /// `acp[i] = prod_{k<=i} (1 - beta[k])`.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// `acp_prev[i] = acp[i-1]`, `acp_prev[0] = 1`.
    pub fn alphas_cumprod_prev(&self) -> &[f64] {
        &self.alphas_cumprod_prev
    }

    /// 1-indexed `alpha_bar_t` for `t in 0..=T`, with `alpha_bar_0 = 1` (no noise).
    pub fn alpha_bar(&self, t: usize) -> f64 {
        assert!(
            t <= self.len(),
            "t = {t} is past the schedule's {}",
            self.len()
        );
        if t == 0 {
            1.0
        } else {
            self.alphas_cumprod[t - 1]
        }
    }

    /// The interval SR3 draws its continuous noise level from at step `t in 1..=T`:
    /// `(sqrt(alpha_bar_t), sqrt(alpha_bar_{t-1}))`, low end first (methods.md §2 writes it as
    /// `U(sqrt(alpha_bar_{t-1}), sqrt(alpha_bar_t))`; numpy's `uniform` accepts either order).
    pub fn noise_level_bounds(&self, t: usize) -> (f64, f64) {
        assert!(t >= 1, "training steps are 1-indexed");
        (self.alpha_bar(t).sqrt(), self.alpha_bar(t - 1).sqrt())
    }

    /// SR3's training noise level: `t ~ U{1..T}`, then `gamma ~ U` on
    /// [`NoiseSchedule::noise_level_bounds`]. Returns `(t, gamma)`; `gamma` is the signal
    /// scale of `y_t = gamma * y0 + sqrt(1 - gamma^2) * eps`. Sampling `gamma` between the discrete
    /// levels trains the network for every level, so it can be sampled with any schedule.
    pub fn sample_noise_level(&self, rng: &mut impl Rng) -> (usize, f64) {
        let t = rng.random_range(1..=self.len());
        let (low, high) = self.noise_level_bounds(t);
        (t, low + (high - low) * rng.random::<f64>())
    }
}
