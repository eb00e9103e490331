//! Distributed DP noise: each client adds its share of the Gaussian noise before encoding, so
//! that the sum the server unmasks already carries the noise the server used to add itself.
//!
//! Each client adds `N(0, sigma^2 / n_min)` to every coordinate, where `sigma` is the standard
//! deviation wanted on the *sum* and `n_min` is the fewest clients the round may close with. A
//! round closes with `n >= n_min` survivors, whose noises add up to `N(0, n sigma^2 / n_min)`,
//! of variance at least `sigma^2`. [`DistributedNoise::for_multiplier`] takes
//! `sigma = z * 2C`, the noise of [`crate::dp`] under its replace-one neighbouring relation
//! (`N(0, (2 z C / n)^2)` on the mean, [`crate::dp::noise_std`], is `N(0, (2 z C)^2)` on the sum:
//! replacing one client's clipped update moves the sum by at most `2C`), so the
//! [`crate::dp::Accountant`] records the round with multiplier `z` as before. Since no
//! secure-aggregation round closes with fewer than `t` survivors, `n_min = t` is the natural
//! choice.
//!
//! What this assumes:
//! - every surviving client adds its share honestly. Clients colluding with the server can leave
//!   theirs out (and know it): against `c` such clients the noise left is
//!   `(n - c) sigma^2 / n_min`, so size `n_min` (or `sigma`) with that margin if it matters;
//! - the server learns only the sum (secure aggregation holds): a single client's update carries
//!   only `sigma^2 / n_min` of noise, far too little on its own;
//! - the noise is the continuous Gaussian sampled in floating point and then rounded to the
//!   fixed-point grid. The formal guarantee is that of the continuous mechanism; the gap to the
//!   discrete, modular setting (the distributed discrete Gaussian of Kairouz et al. 2021) is not
//!   accounted for here;
//! - the noised coordinates must stay inside the encoding range: [`DistributedNoise::encoding`]
//!   widens it by [`TAIL_SIGMAS`] client standard deviations, so that an out-of-range coordinate
//!   has probability below `1e-15`. A client whose encoding is refused all the same must *not*
//!   draw new noise (that would truncate the Gaussian); it sits the round out.

use super::{FixedPoint, SecAggError};
use rand::CryptoRng;

/// How many client noise standard deviations the encoding range leaves beyond the clip bound.
pub const TAIL_SIGMAS: f64 = 8.0;

/// Each client's share of the round's Gaussian noise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistributedNoise {
    /// Standard deviation wanted on the sum of the round's updates.
    pub sum_std: f64,
    /// The fewest clients the round may close with (the secure-aggregation threshold `t`).
    pub min_clients: usize,
}

impl DistributedNoise {
    /// The noise of [`crate::dp`] with multiplier `z` and clip norm `C`, on the sum:
    /// `sum_std = z * 2C` (`n` times [`crate::dp::noise_std`], the replace-one sensitivity).
    pub fn for_multiplier(
        noise_multiplier: f64,
        clip_norm: f64,
        min_clients: usize,
    ) -> Result<Self, SecAggError> {
        let sum_std = noise_multiplier * crate::dp::mean_sensitivity(clip_norm, 1);
        if !(sum_std.is_finite() && sum_std >= 0.0) || min_clients == 0 {
            return Err(SecAggError::Config(format!(
                "distributed noise needs z C >= 0 and min_clients >= 1, got {sum_std}, {min_clients}"
            )));
        }
        Ok(Self {
            sum_std,
            min_clients,
        })
    }

    /// The standard deviation each client adds: `sum_std / sqrt(min_clients)`.
    pub fn client_std(&self) -> f64 {
        self.sum_std / (self.min_clients as f64).sqrt()
    }

    /// Adds `N(0, client_std^2)` to every coordinate of a clipped delta (before encoding).
    pub fn add(&self, delta: &mut [Vec<f32>], rng: &mut impl CryptoRng) {
        crate::dp::add_gaussian_noise(delta, self.client_std(), rng);
    }

    /// The encoding for deltas clipped to `clip_norm` and then noised: every coordinate within
    /// `clip_norm (1 + NORM_TOLERANCE) + TAIL_SIGMAS client_std`.
    pub fn encoding(&self, clip_norm: f64, max_clients: usize) -> Result<FixedPoint, SecAggError> {
        let bound = clip_norm * (1.0 + crate::dp::NORM_TOLERANCE) + TAIL_SIGMAS * self.client_std();
        FixedPoint::for_bound(bound, max_clients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn summed_shares_carry_the_wanted_variance() {
        // 5 clients, n_min = 5, z = 1 and C = 1: sum std 2, so the 5 noises sum to variance 4.
        let noise = DistributedNoise::for_multiplier(1.0, 1.0, 5).unwrap();
        // The same noise on the mean of 5 as the server-side mechanism of `dp`.
        assert!((noise.sum_std / 5.0 - crate::dp::noise_std(1.0, 1.0, 5)).abs() < 1e-12);
        assert!((noise.client_std() - 2.0 / 5f64.sqrt()).abs() < 1e-12);
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let dim = 40_000;
        let mut sum = vec![0f64; dim];
        for _ in 0..5 {
            let mut d = vec![vec![0f32; dim]];
            noise.add(&mut d, &mut rng);
            for (s, x) in sum.iter_mut().zip(&d[0]) {
                *s += f64::from(*x);
            }
        }
        let var = sum.iter().map(|x| x * x).sum::<f64>() / dim as f64;
        assert!((var - 4.0).abs() < 0.15, "variance {var}");
    }

    #[test]
    fn encoding_leaves_room_for_the_noise() {
        let noise = DistributedNoise::for_multiplier(1.0, 0.5, 4).unwrap();
        let f = noise.encoding(0.5, 10).unwrap();
        assert!(f.bound() > 0.5 + 7.9 * noise.client_std());
        assert!(DistributedNoise::for_multiplier(-1.0, 1.0, 4).is_err());
        assert!(DistributedNoise::for_multiplier(1.0, 1.0, 0).is_err());
    }
}
