//! websr-kernels: the hot loop of websr's CPU path in the browser, written by hand.
//!
//! burn's CPU backend lowers a 3x3 convolution to im2col plus a GEMM; in the browser that reaches
//! about 5 GMAC/s even with the GEMM's wasm SIMD kernel, because of the im2col copies and layout
//! changes around it. WaveLR (websr's browser model) is nothing but a stack of 3x3 convolutions
//! at one resolution, so a direct convolution on channel-last feature maps, with the zero
//! padding stored once around each map, does the same work without any of that traffic.
//!
//! - [`FeatureMap`]: an image of features, channel-last, with a one-pixel zero border.
//! - [`Conv3x3`]: a "same" 3x3 convolution (+ optional ReLU) with its weights packed for the
//!   kernel; [`Conv3x3::forward`] maps one [`FeatureMap`] to the next.
//! - [`set_simd128`]: in wasm, switches between the SIMD kernel and the portable one (for
//!   side-by-side timings). Both do the same IEEE operations in the same order, so they give
//!   bit-identical results, and the native tests check the browser's arithmetic.
//! - Feature `relaxed-simd` (a second wasm build): the SIMD kernel's multiply-add becomes
//!   relaxed SIMD's fused one; [`active_kernel`] names what runs.

mod conv3x3;
mod feature_map;
mod lanes;

pub use conv3x3::Conv3x3;
pub use feature_map::FeatureMap;

use std::sync::atomic::{AtomicBool, Ordering};

static SIMD128: AtomicBool = AtomicBool::new(true);

/// Whether the wasm build runs the SIMD kernel (the default) or the portable one. Natively only
/// the portable kernel exists and this changes nothing.
pub fn set_simd128(on: bool) {
    SIMD128.store(on, Ordering::Relaxed);
}

/// Whether the SIMD kernel runs: only in a wasm build, and only while [`set_simd128`] allows it.
pub fn simd128_active() -> bool {
    cfg!(target_arch = "wasm32") && SIMD128.load(Ordering::Relaxed)
}

/// The arithmetic the convolution runs on now: `"relaxed-simd"` (wasm SIMD with fused
/// multiply-add: the `relaxed-simd` build), `"simd128"` or `"portable"` (native, or SIMD off).
pub fn active_kernel() -> &'static str {
    if !simd128_active() {
        "portable"
    } else if cfg!(feature = "relaxed-simd") {
        "relaxed-simd"
    } else {
        "simd128"
    }
}
