//! Small building blocks shared by the wavelet models.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::Device;

/// He initialisation for convolutions followed by ReLU: burn's default (PyTorch's, gain
/// 1/sqrt(3)) shrinks activations layer by layer, which starves a deep plain net of gradient.
fn he() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: false,
    }
}

/// 3x3 convolution, stride 1, "same" padding.
pub fn conv3(channels_in: usize, channels_out: usize, bias: bool, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(bias)
        .with_initializer(he())
        .init(device)
}

/// 3x3 convolution whose weights start at zero: the last layer of a residual predictor, so an
/// untrained model outputs exactly its bicubic base and training only has to learn the detail.
pub fn conv3_zero(channels_in: usize, channels_out: usize, bias: bool, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(bias)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

/// 3x3 convolution with stride 2 (halves height and width of even inputs).
pub fn conv3_stride2(channels_in: usize, channels_out: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .with_initializer(he())
        .init(device)
}
