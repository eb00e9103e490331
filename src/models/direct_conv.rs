//! Any burn `Conv2d` that is a "same" 3x3 convolution with stride 1 through `websr_kernels`'
//! direct convolution: the diffusion U-Net's hot layers on the browser's CPU path, where burn's
//! im2col + GEMM runs about 2x slower (the README's diffusion browser table). The U-Net calls
//! [`forward`] instead of `Conv2d::forward`; it takes the kernel exactly where
//! [`super::wavelr_direct::applies`] (inference on the CPU device, the browser build by default)
//! and burn everywhere else, so training and WebGPU are untouched.

use super::wavelr_direct;
use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::{Tensor, TensorData};
use websr_kernels::{Conv3x3, FeatureMap};

/// `conv` applied to `x`: the direct kernel where it applies, burn's convolution otherwise.
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if is_same_3x3(conv) && wavelr_direct::applies(&x.device()) {
        direct(conv, x)
    } else {
        conv.forward(x)
    }
}

/// Whether `conv` is what the kernel computes: 3x3, stride 1, no dilation or groups, and one
/// pixel of zero padding on every side.
pub fn is_same_3x3(conv: &Conv2d) -> bool {
    let padded_by_one = match conv.padding {
        PaddingConfig2d::Same => true,
        PaddingConfig2d::Explicit(top, left, bottom, right) => {
            [top, left, bottom, right] == [1, 1, 1, 1]
        }
        PaddingConfig2d::Valid => false,
    };
    conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && padded_by_one
}

/// `conv` (which must satisfy [`is_same_3x3`]) on the direct kernel, one batch item at a time.
/// The weights are packed on every call: a few milliseconds per U-Net pass against the
/// hundreds its convolutions take, and nothing is cached that a weight update could make stale.
pub fn direct(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    assert!(
        is_same_3x3(conv),
        "the direct kernel is a same 3x3 convolution"
    );
    let [n, channels_in, height, width] = x.dims();
    let [channels_out, ..] = conv.weight.dims();
    let device = x.device();
    let kernel = pack(conv, false);
    let input = f32_values(x);
    let plane = channels_in * height * width;
    let mut output = Vec::with_capacity(n * channels_out * height * width);
    for item in input.chunks_exact(plane.max(1)).take(n) {
        let map = FeatureMap::from_planar(channels_in, height, width, item);
        output.extend(kernel.forward(&map).to_planar(channels_out));
    }
    Tensor::from_data(
        TensorData::new(output, [n, channels_out, height, width]),
        &device,
    )
}

/// `conv` (3x3, stride 1, padding 1) as a kernel, with a fused ReLU when `relu`. Its weights
/// must be on the CPU device, where reading them back is synchronous.
pub fn pack(conv: &Conv2d, relu: bool) -> Conv3x3 {
    let [channels_out, channels_in, kh, kw] = conv.weight.dims();
    debug_assert_eq!((kh, kw), (3, 3), "the kernel is a 3x3 convolution");
    Conv3x3::new(
        channels_in,
        channels_out,
        &f32_values(conv.weight.val()),
        conv.bias.as_ref().map(|b| f32_values(b.val())).as_deref(),
        relu,
    )
}

/// A CPU tensor's values (the direct path only runs on the CPU device, where reading back is
/// synchronous and cannot fail).
fn f32_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32 above")
}
