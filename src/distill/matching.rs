//! Distribution matching (DM, Zhao & Bilen 2023) for SR data: the mean embedding of a synthetic
//! batch is pulled towards the mean embedding of a real batch, under a randomly initialised
//! network drawn afresh every iteration.
//!
//! **The embedding.** A patch enters as its 12 Haar sub-bands (the signal WaveLR and DiWa
//! predict), each divided by that band's RMS on real patches, so the detail bands that SR must
//! learn weigh as much as the low-pass band (they carry about a tenth of its amplitude). Three
//! 3x3 convolutions with ReLU and 2x2 average pooling (widths 32, 64, 128, He-initialised from a
//! host generator, so a seed fixes them) follow, and the channel means after each are
//! concatenated (224 numbers). Channel means, not the flattened map of DM's ConvNet: SR patches
//! have no canonical layout, so where a texture sits should not matter. DM's differentiable
//! augmentation is not used.

use crate::diffusion::noise::standard_normal_tensor;
use crate::wavelet::dwt;
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, conv2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions};
use burn::tensor::{Device, Tensor};
use rand::Rng;

/// Channel widths of the random embedding network.
pub const WIDTHS: [usize; 3] = [32, 64, 128];

/// Haar bands of a patch batch.
pub const BANDS: usize = 12;

/// A randomly initialised embedding network (see the module docs).
pub struct RandomEmbedder {
    weights: Vec<Tensor<4>>,
    /// `[1, 12, 1, 1]`: one divisor per Haar band.
    band_scale: Tensor<4>,
}

impl RandomEmbedder {
    /// Draws the weights from `rng` (He normal); `band_rms` holds the 12 per-band RMS values of
    /// real patches.
    pub fn new(rng: &mut impl Rng, band_rms: &[f64; BANDS], device: &Device) -> Self {
        let mut weights = Vec::with_capacity(WIDTHS.len());
        let mut cin = BANDS;
        for &cout in &WIDTHS {
            let std = (2.0 / (cin * 9) as f64).sqrt();
            weights.push(standard_normal_tensor(rng, [cout, cin, 3, 3], device).mul_scalar(std));
            cin = cout;
        }
        let inv: Vec<f32> = band_rms
            .iter()
            .map(|&r| (1.0 / r.max(1e-6)) as f32)
            .collect();
        let band_scale = Tensor::<1>::from_floats(inv.as_slice(), device).reshape([1, BANDS, 1, 1]);
        RandomEmbedder {
            weights,
            band_scale,
        }
    }

    /// The per-patch embedding.
    ///
    /// # Shapes
    ///
    /// - hr: `[batch, 3, H, W]` in `[0, 1]`, `H` and `W` even
    /// - output: `[batch, 224]`
    pub fn embed(&self, hr: Tensor<4>) -> Tensor<2> {
        let bands = haar_bands(hr);
        let dims = bands.dims();
        let mut x = bands * self.band_scale.clone().expand(dims);
        let mut means = Vec::with_capacity(self.weights.len());
        for w in &self.weights {
            let conv = conv2d(
                x,
                w.clone(),
                None,
                ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
            );
            let act = relu(conv);
            means.push(act.clone().mean_dim(3).mean_dim(2).flatten(1, 3));
            x = avg_pool2d(act, AvgPoolOptions::new([2, 2]));
        }
        Tensor::cat(means, 1)
    }
}

/// The 12 Haar sub-bands of images in `[0, 1]` (taken in `[-1, 1]`, as DiWa does).
pub fn haar_bands(hr: Tensor<4>) -> Tensor<4> {
    dwt(hr.mul_scalar(2.0).sub_scalar(1.0))
}

/// The RMS of each Haar band over a batch of real patches (host values).
pub fn band_rms(hr: Tensor<4>) -> [f64; BANDS] {
    let sq = haar_bands(hr).square().mean_dim(3).mean_dim(2).mean_dim(0);
    let values: Vec<f32> = sq
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 band energies");
    let mut out = [0.0; BANDS];
    for (o, v) in out.iter_mut().zip(values) {
        *o = (v as f64).sqrt();
    }
    out
}

/// DM's loss: the squared distance between the batch means of two embeddings,
/// `|mean(real) - mean(synthetic)|^2`.
pub fn mean_embedding_distance(real: Tensor<2>, synthetic: Tensor<2>) -> Tensor<1> {
    let diff = real.mean_dim(0) - synthetic.mean_dim(0);
    diff.square().sum()
}
