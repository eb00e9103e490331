//! Bicubic upscaling as two matrix products, `Y = M_h X M_w^T`, with the MATLAB weights of
//! [`crate::resize`]. It runs on any backend, is differentiable, and gives the same numbers as
//! the CPU `imresize`, so models that add a residual to a bicubic base agree between the CLI
//! and the browser.

use crate::resize::interpolation_matrix;
use burn::tensor::{Device, Tensor, TensorData};

/// Upscales `[N, C, H, W]` by an integer `scale` with MATLAB bicubic.
pub fn bicubic_upscale(x: Tensor<4>, scale: usize) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let device = x.device();
    let (oh, ow) = (h * scale, w * scale);
    let mh = matrix(h, oh, scale, &device).expand([n, c, oh, h]);
    let mw_t = matrix(w, ow, scale, &device)
        .swap_dims(2, 3)
        .expand([n, c, w, ow]);
    mh.matmul(x).matmul(mw_t)
}

/// `[1, 1, out, in]` interpolation matrix on `device`.
fn matrix(in_len: usize, out_len: usize, scale: usize, device: &Device) -> Tensor<4> {
    let m = interpolation_matrix(in_len, out_len, scale as f64);
    Tensor::from_data(TensorData::new(m, [1, 1, out_len, in_len]), device)
}
