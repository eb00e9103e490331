//! WaveLR's convolutions through `websr_kernels`' direct 3x3 convolution instead of burn's
//! im2col + GEMM: the CPU path of the browser, where it runs about 3x faster (the README's
//! browser table). The same function up to float rounding (`direct_convolution_wavelr_matches_burn` in tests/models.rs); burn still
//! does the cheap parts, the bicubic base and the inverse wavelet transform.

use super::direct_conv;
use super::wavelr::WaveLr;
use crate::device::to_tensor;
use crate::image::Planar;
use burn::tensor::{Device, Tensor, TensorData};
use std::sync::atomic::{AtomicBool, Ordering};
use websr_kernels::{Conv3x3, FeatureMap};

/// On by default in the browser build only: natively burn's GEMM has AVX2/FMA kernels and
/// threads, which this single-threaded, four-lane kernel does not beat.
static ENABLED: AtomicBool = AtomicBool::new(cfg!(target_arch = "wasm32"));

/// Whether one-pass WaveLR models on the CPU device run through the direct convolution (for
/// side-by-side timings; both paths compute the same function).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether a WaveLR net on `device` takes the direct path: inference on the CPU only (the
/// kernel has no gradients, and burn's device equality ignores autodiff).
pub fn applies(device: &Device) -> bool {
    ENABLED.load(Ordering::Relaxed) && *device == Device::flex() && !device.is_autodiff()
}

/// A WaveLR network's convolutions, packed for the kernel.
pub struct DirectWaveLr {
    convolutions: Vec<Conv3x3>,
}

impl DirectWaveLr {
    /// Reads and packs the weights of `net`, which must be on the CPU device (about 0.3 M
    /// values: a millisecond, next to the seconds a tile takes, so nothing is cached that
    /// training could make stale). Every convolution but the last carries WaveLR's ReLU.
    pub fn from_net(net: &WaveLr) -> DirectWaveLr {
        let count = net.convolutions().count();
        let convolutions = net
            .convolutions()
            .enumerate()
            .map(|(i, conv)| direct_conv::pack(conv, i + 1 < count))
            .collect();
        DirectWaveLr { convolutions }
    }

    /// The tail's sub-bands for one RGB image: `[3 * 4^levels][h][w]`.
    pub fn bands(&self, lr: &Planar) -> Planar {
        let mut map = FeatureMap::from_planar(lr.channels, lr.height, lr.width, &lr.data);
        for conv in &self.convolutions {
            map = conv.forward(&map);
        }
        let bands = self.convolutions.last().map_or(0, Conv3x3::channels_out);
        Planar::new(bands, lr.height, lr.width, map.to_planar(bands))
    }
}

/// `net` (on the CPU `device`) applied to `lr` with its convolutions on the direct kernel:
/// `[1, 3, sH, sW]`.
pub fn forward(net: &WaveLr, lr: &Planar, device: &Device) -> Tensor<4> {
    let bands = DirectWaveLr::from_net(net).bands(lr);
    let bands = Tensor::<4>::from_data(
        TensorData::new(bands.data, [1, bands.channels, bands.height, bands.width]),
        device,
    );
    net.reconstruct(to_tensor(lr, device), bands)
}
