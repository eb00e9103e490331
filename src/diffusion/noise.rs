//! Gaussian noise drawn on the host and uploaded.
//!
//! burn seeds its random generator per backend (and, on some, globally), so a seed given to the
//! device does not pin the numbers a later `Tensor::random` returns once other code draws in
//! between. Drawing from a [`StdRng`] that the caller owns makes a seed fix
//! the whole sample, and gives the same numbers on the CPU and on WebGPU.

use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;
use websr_federated::dp::standard_normal;

/// Random words one [`standard_normal`] value takes from the generator: two `f64`s of one `u64`
/// each, two 32-bit words per `u64`.
const WORDS_PER_VALUE: u128 = 4;

/// Where a sampler's Gaussian noise comes from: one `[n, c, h, w]` tensor per call.
pub trait Noise {
    fn normal(&mut self, dims: [usize; 4], device: &Device) -> Tensor<4>;
}

/// Values in draw order, as [`standard_normal_tensor`] draws them.
impl Noise for StdRng {
    fn normal(&mut self, dims: [usize; 4], device: &Device) -> Tensor<4> {
        standard_normal_tensor(self, dims, device)
    }
}

impl<N: Noise + ?Sized> Noise for &mut N {
    fn normal(&mut self, dims: [usize; 4], device: &Device) -> Tensor<4> {
        (**self).normal(dims, device)
    }
}

/// Gaussian noise keyed by position in the whole image's diffused signal: the value at
/// `(n, c, y, x)` of the k-th draw is the one [`StdRng`] seeded with `seed` gives at index
/// `k * n_whole + offset(n, c, y, x)` of its stream (`offset` row-major in the whole signal). So a
/// whole-image field draws exactly the sequence `StdRng` would, and a tile's field (a window at
/// `origin`) draws the same values the whole image has there: tiles of a diffusion sample share
/// one noise, with no seam in it.
pub struct NoiseField {
    rng: ChaCha12Rng,
    /// `[n, c, h, w]` of the whole signal.
    whole: [usize; 4],
    /// `[y, x]` of this window's top-left corner in the whole signal.
    origin: [usize; 2],
    draws: u128,
}

impl NoiseField {
    /// The noise of a whole signal of `dims`.
    pub fn whole(seed: u64, dims: [usize; 4]) -> Self {
        Self::window(seed, dims, [0, 0])
    }

    /// The noise of a window at `origin` (`[y, x]`) of a whole signal of `whole` dims.
    pub fn window(seed: u64, whole: [usize; 4], origin: [usize; 2]) -> Self {
        NoiseField {
            // StdRng is ChaCha12 seeded the same way; this one can seek.
            rng: ChaCha12Rng::seed_from_u64(seed),
            whole,
            origin,
            draws: 0,
        }
    }
}

impl Noise for NoiseField {
    /// The next draw over this window; `dims` must be the window's (`[n, c]` of the whole).
    fn normal(&mut self, dims: [usize; 4], device: &Device) -> Tensor<4> {
        let [n, c, h, w] = dims;
        let [_, _, wh, ww] = self.whole;
        let [oy, ox] = self.origin;
        assert!(
            n == self.whole[0] && c == self.whole[1] && oy + h <= wh && ox + w <= ww,
            "a {dims:?} window at {:?} does not fit the whole {:?}",
            self.origin,
            self.whole
        );
        let per_draw: usize = self.whole.iter().product();
        let first = self.draws * per_draw as u128;
        let mut values = Vec::with_capacity(n * c * h * w);
        for plane in 0..n * c {
            for y in 0..h {
                let offset = ((plane * wh + oy + y) * ww + ox) as u128;
                self.rng.set_word_pos((first + offset) * WORDS_PER_VALUE);
                values.extend((0..w).map(|_| standard_normal(&mut self.rng) as f32));
            }
        }
        self.draws += 1;
        Tensor::from_data(TensorData::new(values, dims), device)
    }
}

/// A tensor of independent `N(0, 1)` values from `rng` (Box-Muller), on `device`.
pub fn standard_normal_tensor<const D: usize>(
    rng: &mut impl Rng,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| standard_normal(rng) as f32).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A `[values.len()]` tensor of host values (noise levels, thresholds) on `device`.
pub fn host_vector(values: &[f64], device: &Device) -> Tensor<1> {
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, [values.len()]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn a_whole_field_is_the_std_rng_sequence_and_a_window_is_its_slice() {
        let device = Device::flex();
        let whole = [1, 2, 5, 7];
        let mut rng = StdRng::seed_from_u64(9);
        let mut field = NoiseField::whole(9, whole);
        let expected: Vec<Vec<f32>> = (0..2).map(|_| values(rng.normal(whole, &device))).collect();
        for draw in &expected {
            assert_eq!(&values(field.normal(whole, &device)), draw);
        }
        let mut window = NoiseField::window(9, whole, [1, 3]);
        for draw in &expected {
            let got = values(window.normal([1, 2, 3, 4], &device));
            for (i, v) in got.iter().enumerate() {
                let (plane, y, x) = (i / 12, (i / 4) % 3, i % 4);
                assert_eq!(*v, draw[(plane * 5 + 1 + y) * 7 + 3 + x], "value {i}");
            }
        }
        let other = values(NoiseField::whole(10, whole).normal(whole, &device));
        assert_ne!(other, expected[0], "the seed must matter");
    }
}
