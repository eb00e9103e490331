//! WaveLR, our fast model for the browser (not from the thesis): the convolutions run at the
//! low resolution and predict the high-resolution Haar sub-bands directly, one IDWT level per
//! factor of two (x2: 12 bands, x4: a two-level packet of 48 bands), added to the bicubic base.
//!
//! Running at LR resolution is the whole point: at x4 it touches 16x fewer pixels than a network
//! on the upscaled image and 4x fewer than DWSR (which runs at half the output size), so with
//! a comparable depth it needs about 10x fewer multiply-adds per output pixel than DWSR.

use super::direct_conv;
use super::layers::{conv3, conv3_zero, deepen_body};
use crate::upsample::bicubic_upscale;
use crate::wavelet::idwt_levels;
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{activation::relu, Device, Tensor};

#[derive(Config, Debug)]
pub struct WaveLrConfig {
    /// 2 or 4.
    pub scale: usize,
    #[config(default = 48)]
    pub features: usize,
    #[config(default = 6)]
    pub body_layers: usize,
}

#[derive(Module, Debug)]
pub struct WaveLr {
    head: Conv2d,
    body: Vec<Conv2d>,
    tail: Conv2d,
    scale: usize,
    levels: usize,
}

impl WaveLrConfig {
    pub fn init(&self, device: &Device) -> WaveLr {
        let levels = match self.scale {
            2 => 1,
            4 => 2,
            s => panic!("WaveLR supports x2 and x4, not x{s}"),
        };
        let f = self.features;
        WaveLr {
            head: conv3(3, f, true, device),
            body: (0..self.body_layers)
                .map(|_| conv3(f, f, true, device))
                .collect(),
            tail: conv3_zero(f, 3 * 4usize.pow(levels as u32), true, device),
            scale: self.scale,
            levels,
        }
    }
}

impl WaveLr {
    /// The low-resolution image `lr`, in `[0, 1]`, upscaled.
    ///
    /// # Shapes
    ///
    /// - lr: `[batch, 3, H, W]`
    /// - output: `[batch, 3, scale*H, scale*W]`
    ///
    /// On the browser's CPU path (inference only) the convolutions take the direct kernel one at
    /// a time ([`super::direct_conv`]); a whole upscale goes through [`super::wavelr_direct`]
    /// instead, which also keeps the features channel-last between layers.
    pub fn forward(&self, lr: Tensor<4>) -> Tensor<4> {
        let mut x = relu(direct_conv::forward(&self.head, lr.clone()));
        for conv in &self.body {
            x = relu(direct_conv::forward(conv, x));
        }
        self.reconstruct(lr, direct_conv::forward(&self.tail, x))
    }

    /// The same function with `body_layers` body convolutions (Net2DeeperNet: `layers::deepen_body`).
    pub fn deepened(self, body_layers: usize) -> WaveLr {
        WaveLr {
            body: deepen_body(self.body, body_layers),
            ..self
        }
    }

    /// The convolutions in order (head, body, tail), each followed by ReLU but the last.
    pub(crate) fn convolutions(&self) -> impl Iterator<Item = &Conv2d> {
        std::iter::once(&self.head)
            .chain(&self.body)
            .chain(std::iter::once(&self.tail))
    }

    /// The output from the tail's sub-bands `[batch, 3 * 4^levels, H, W]` and the LR input:
    /// bicubic base plus the inverse wavelet transform (shared by [`super::wavelr_direct`]).
    pub(crate) fn reconstruct(&self, lr: Tensor<4>, bands: Tensor<4>) -> Tensor<4> {
        bicubic_upscale(lr, self.scale) + idwt_levels(bands, self.levels)
    }

    /// Radius of the receptive field in LR pixels (one per conv, plus the bicubic taps).
    pub fn receptive_radius_lr(&self) -> usize {
        self.body.len() + 2 + 2
    }
}
