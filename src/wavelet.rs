//! Haar DWT / IDWT as tensor ops (methods.md section 0, the transform DiWa uses).
//!
//! For every 2x2 block `[[a, b], [c, d]]`:
//! `LL = (a+b+c+d)/2`, `LH = (a+b-c-d)/2`, `HL = (a-b+c-d)/2`, `HH = (a-b-c+d)/2`.
//! The 4x4 matrix is symmetric and orthonormal, so it is its own inverse: the same butterfly
//! serves both directions and the transform is exact up to float rounding.
//!
//! Channel layout follows DiWa: `[N, C, H, W] -> [N, 4C, H/2, W/2]` ordered
//! `[LL(c0..C), LH(c0..C), HL(c0..C), HH(c0..C)]`. Only reshapes, a permute and additions are
//! used, so it runs (and differentiates) identically on every burn backend.

use burn::tensor::Tensor;

/// The Haar butterfly along dim 1 of a `[N, 4, C, H, W]` tensor (self-inverse).
fn haar4(x: Tensor<5>) -> Tensor<5> {
    let a = x.clone().narrow(1, 0, 1);
    let b = x.clone().narrow(1, 1, 1);
    let c = x.clone().narrow(1, 2, 1);
    let d = x.narrow(1, 3, 1);
    let (s1, d1) = (a.clone() + b.clone(), a - b);
    let (s2, d2) = (c.clone() + d.clone(), c - d);
    Tensor::cat(
        vec![
            s1.clone() + s2.clone(),
            s1 - s2,
            d1.clone() + d2.clone(),
            d1 - d2,
        ],
        1,
    )
    .mul_scalar(0.5)
}

/// One level of the 2-D Haar DWT: `[N, C, H, W] -> [N, 4C, H/2, W/2]`. H and W must be even.
pub fn dwt(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    assert!(
        h % 2 == 0 && w % 2 == 0,
        "DWT needs even height and width, got {h}x{w}"
    );
    let (h2, w2) = (h / 2, w / 2);
    let blocks = x
        .reshape([n, c, h2, 2, w2, 2])
        .permute([0, 3, 5, 1, 2, 4]) // [n, dy, dx, c, h2, w2]
        .reshape([n, 4, c, h2, w2]);
    haar4(blocks).reshape([n, 4 * c, h2, w2])
}

/// Inverse of [`dwt`]: `[N, 4C, H, W] -> [N, C, 2H, 2W]`.
pub fn idwt(x: Tensor<4>) -> Tensor<4> {
    let [n, c4, h2, w2] = x.dims();
    assert!(c4 % 4 == 0, "IDWT needs a multiple of 4 channels, got {c4}");
    let c = c4 / 4;
    haar4(x.reshape([n, 4, c, h2, w2]))
        .reshape([n, 2, 2, c, h2, w2])
        .permute([0, 3, 4, 1, 5, 2]) // [n, c, h2, dy, w2, dx]
        .reshape([n, c, 2 * h2, 2 * w2])
}

/// `levels` nested DWTs applied to every sub-band (a full wavelet packet):
/// `[N, C, H, W] -> [N, 4^levels C, H/2^levels, W/2^levels]`.
pub fn dwt_levels(mut x: Tensor<4>, levels: usize) -> Tensor<4> {
    for _ in 0..levels {
        x = dwt(x);
    }
    x
}

/// Inverse of [`dwt_levels`].
pub fn idwt_levels(mut x: Tensor<4>, levels: usize) -> Tensor<4> {
    for _ in 0..levels {
        x = idwt(x);
    }
    x
}
