//! The Differential Wavelet Amplifier (Moser et al., ICANN 2023; methods.md section 1).
//!
//! `V = Conv_v1(X) - Conv_v2(S_v X)`, `H = Conv_h1(X) - Conv_h2(S_h X)`,
//! `Y = ReLU(Conv_final(cat[V, H, X]))`, where `S_v` / `S_h` shift the input by one row / column,
//! so each pair of filters sees windows offset by one pixel and their difference acts as a
//! learnable derivative filter that cancels the common mode.
//!
//! Choices where the paper is silent (documented here, measured in the README's ablation):
//! - all kernels 3x3; the four difference convolutions have `diff_features` outputs (default
//!   half the body width), no bias (the bias would cancel in the difference anyway);
//! - the shift pads with zeros at the top/left edge;
//! - a ReLU follows the final convolution because DWA replaces the network's first conv + ReLU;
//! - Direct mode ([`DwaConfig::stride`] = 2) reads the RGB image; its "original input" branch is the
//!   2x2 space-to-depth rearrangement of the image (a lossless reshape, not a DWT).

use super::layers::{conv3, conv3_stride2};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::{activation::relu, Device, Tensor};

#[derive(Config, Debug)]
pub struct DwaConfig {
    pub channels_in: usize,
    pub channels_out: usize,
    pub diff_features: usize,
    /// 1 for the wavelet-domain module, 2 for DWA-Direct on the image.
    #[config(default = 1)]
    pub stride: usize,
}

#[derive(Module, Debug)]
pub struct Dwa {
    v1: Conv2d,
    v2: Conv2d,
    h1: Conv2d,
    h2: Conv2d,
    fuse: Conv2d,
    stride: usize,
}

impl DwaConfig {
    pub fn init(&self, device: &Device) -> Dwa {
        assert!(self.stride == 1 || self.stride == 2, "DWA stride is 1 or 2");
        let diff = |d: &Device| {
            if self.stride == 1 {
                conv3(self.channels_in, self.diff_features, false, d)
            } else {
                conv3_stride2(self.channels_in, self.diff_features, d)
            }
        };
        let skip_channels = self.channels_in * self.stride * self.stride;
        Dwa {
            v1: diff(device),
            v2: diff(device),
            h1: diff(device),
            h2: diff(device),
            fuse: conv3(
                2 * self.diff_features + skip_channels,
                self.channels_out,
                true,
                device,
            ),
            stride: self.stride,
        }
    }
}

/// Shifts down by one row (dim 2) or right by one column (dim 3), zero-filling the edge.
fn shift(x: Tensor<4>, dim: usize) -> Tensor<4> {
    let len = x.dims()[dim];
    let padded = if dim == 2 {
        x.pad((0, 0, 1, 0), burn::tensor::ops::PadMode::Constant(0.0))
    } else {
        x.pad((1, 0, 0, 0), burn::tensor::ops::PadMode::Constant(0.0))
    };
    padded.narrow(dim, 0, len)
}

/// 2x2 space-to-depth: `[N, C, H, W] -> [N, 4C, H/2, W/2]`.
pub fn space_to_depth(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h / 2, 2, w / 2, 2])
        .permute([0, 3, 5, 1, 2, 4])
        .reshape([n, 4 * c, h / 2, w / 2])
}

impl Dwa {
    /// `ReLU(Conv_final(cat[V, H, X]))` of `x` (sub-bands, or the image in Direct mode).
    ///
    /// # Shapes
    ///
    /// - x: `[batch, channels_in, H, W]` (H and W even when the stride is 2)
    /// - output: `[batch, channels_out, H/stride, W/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let v = self.v1.forward(x.clone()) - self.v2.forward(shift(x.clone(), 2));
        let h = self.h1.forward(x.clone()) - self.h2.forward(shift(x.clone(), 3));
        let skip = if self.stride == 2 {
            space_to_depth(x)
        } else {
            x
        };
        relu(self.fuse.forward(Tensor::cat(vec![v, h, skip], 1)))
    }
}
