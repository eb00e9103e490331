//! A "same" 3x3 convolution, stride 1, as a direct loop over channel-last feature maps.
//!
//! The kernel computes a tile of `PX` neighbouring output pixels times `NV` vectors of four
//! output channels at once (2 x 4 here: see `BLOCK_VECTORS`): `PX * NV` accumulators stay in registers while the loop runs over
//! the 9 taps and every input channel, loading `NV` weight vectors and `PX` broadcast inputs per
//! step. Weights are packed in exactly that reading order, so the loop streams through them.

use crate::feature_map::FeatureMap;
use crate::lanes::{Lanes, Portable};

/// Output channels per block: four vectors of four. With two pixels that is 8 accumulators, plus
/// 4 weight vectors and a broadcast: 13 of the 16 vector registers of x86-64 (V8 keeps one as
/// scratch), so nothing spills. Measured in V8 on 48-channel layers (node, one thread, GMAC/s):
/// 2 px x 4 vectors 17.7; 2 x 3 16.6; 4 x 2 16.5; 3 x 3 16; 1 x 6 15.5; 3 x 4 15; 2 x 5 15;
/// 4 x 3 14.5; 6 x 2 14.2; 2 x 6 11.7.
const BLOCK_VECTORS: usize = 4;
/// Output pixels per tile.
const TILE_PIXELS: usize = 2;

/// A 3x3 convolution with "same" zero padding and stride 1, optionally followed by ReLU.
#[derive(Clone, Debug)]
pub struct Conv3x3 {
    channels_in: usize,
    channels_out: usize,
    /// `channels_out` rounded up to a multiple of 4: the channels of the output map (the extra
    /// ones have zero weights and bias, so they hold zeros).
    padded_out: usize,
    relu: bool,
    /// For each block of output channels `[start, start + 4 * vectors)`, in order: the weights
    /// as `[ky][kx][input channel][4 * vectors]`. A block starts at `9 * channels_in * start`.
    packed: Vec<f32>,
    /// `padded_out` biases.
    bias: Vec<f32>,
}

impl Conv3x3 {
    /// From PyTorch/burn-layout weights `[channels_out][channels_in][3][3]` and an optional
    /// bias of `channels_out` values.
    pub fn new(
        channels_in: usize,
        channels_out: usize,
        weight: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
    ) -> Conv3x3 {
        assert!(channels_in > 0 && channels_out > 0, "empty convolution");
        assert_eq!(
            weight.len(),
            channels_out * channels_in * 9,
            "weights must be [channels_out][channels_in][3][3]"
        );
        if let Some(b) = bias {
            assert_eq!(b.len(), channels_out, "one bias per output channel");
        }
        let padded_out = channels_out.div_ceil(4) * 4;
        let mut packed = Vec::with_capacity(9 * channels_in * padded_out);
        for (start, vectors) in blocks(padded_out) {
            for tap in 0..9 {
                for ci in 0..channels_in {
                    for co in start..start + 4 * vectors {
                        packed.push(if co < channels_out {
                            weight[(co * channels_in + ci) * 9 + tap]
                        } else {
                            0.0
                        });
                    }
                }
            }
        }
        let mut padded_bias = vec![0.0; padded_out];
        if let Some(b) = bias {
            padded_bias[..channels_out].copy_from_slice(b);
        }
        Conv3x3 {
            channels_in,
            channels_out,
            padded_out,
            relu,
            packed,
            bias: padded_bias,
        }
    }

    pub fn channels_in(&self) -> usize {
        self.channels_in
    }

    /// The real output channels; the output map may carry up to 3 more, all zero.
    pub fn channels_out(&self) -> usize {
        self.channels_out
    }

    /// Multiply-adds per output pixel.
    pub fn macs_per_pixel(&self) -> usize {
        9 * self.channels_in * self.channels_out
    }

    /// The convolution of `input` (exactly `channels_in` channels) as a new map whose channels
    /// are the output channels rounded up to a multiple of 4 (the extra ones zero).
    pub fn forward(&self, input: &FeatureMap) -> FeatureMap {
        assert_eq!(
            input.channels(),
            self.channels_in,
            "the convolution takes {} channels",
            self.channels_in
        );
        let mut out = FeatureMap::zeros(input.height(), input.width(), self.padded_out);
        #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
        if crate::simd128_active() {
            // Built with relaxed SIMD: this module only loads where the engine has it.
            self.forward_relaxed(input, &mut out);
            return out;
        }
        #[cfg(target_arch = "wasm32")]
        if crate::simd128_active() {
            // An engine without wasm SIMD refuses the whole module at load time (as it does
            // for the GEMM's SIMD kernels): reaching this line means SIMD is there.
            self.forward_simd128(input, &mut out);
            return out;
        }
        self.forward_with::<Portable>(input, &mut out);
        out
    }

    /// The kernel compiled with wasm SIMD: the generic body is inlined here, so every lane
    /// operation becomes one SIMD instruction.
    #[cfg(target_arch = "wasm32")]
    #[target_feature(enable = "simd128")]
    fn forward_simd128(&self, input: &FeatureMap, out: &mut FeatureMap) {
        self.forward_with::<crate::lanes::Simd128>(input, out);
    }

    /// The kernel with relaxed SIMD's fused multiply-add (the `relaxed-simd` build).
    #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
    #[target_feature(enable = "simd128,relaxed-simd")]
    fn forward_relaxed(&self, input: &FeatureMap, out: &mut FeatureMap) {
        self.forward_with::<crate::lanes::RelaxedSimd128>(input, out);
    }

    #[inline(always)]
    fn forward_with<L: Lanes>(&self, input: &FeatureMap, out: &mut FeatureMap) {
        let (height, width) = (input.height(), input.width());
        debug_assert_eq!((out.height(), out.width()), (height, width));
        debug_assert_eq!(out.channels(), self.padded_out);
        debug_assert_eq!(self.packed.len(), 9 * self.channels_in * self.padded_out);
        let in_row = input.row_stride();
        let cin = self.channels_in;
        let cout = self.padded_out;
        for y in 0..height {
            // Padded row y is the top row of the 3x3 window of output row y.
            let window_row = y * in_row;
            let out_row = out.index(y, 0);
            for (start, vectors) in blocks(self.padded_out) {
                let weights = &self.packed[9 * cin * start..9 * cin * (start + 4 * vectors)];
                let bias = &self.bias[start..start + 4 * vectors];
                let mut x = 0;
                while x < width {
                    let pixels = if width - x >= TILE_PIXELS {
                        TILE_PIXELS
                    } else {
                        1
                    };
                    let job = Tile {
                        input: &input.data()[window_row + x * cin..],
                        in_row,
                        cin,
                        weights,
                        bias,
                        relu: self.relu,
                    };
                    let dst = &mut out.data_mut()[out_row + x * cout + start..];
                    match (pixels, vectors) {
                        (TILE_PIXELS, 4) => job.run::<L, TILE_PIXELS, 4>(dst, cout),
                        (TILE_PIXELS, 3) => job.run::<L, TILE_PIXELS, 3>(dst, cout),
                        (TILE_PIXELS, 2) => job.run::<L, TILE_PIXELS, 2>(dst, cout),
                        (TILE_PIXELS, _) => job.run::<L, TILE_PIXELS, 1>(dst, cout),
                        (_, 4) => job.run::<L, 1, 4>(dst, cout),
                        (_, 3) => job.run::<L, 1, 3>(dst, cout),
                        (_, 2) => job.run::<L, 1, 2>(dst, cout),
                        _ => job.run::<L, 1, 1>(dst, cout),
                    }
                    x += pixels;
                }
            }
        }
    }
}

/// The output-channel blocks of a padded width: `(first channel, vectors of 4)`, as many full
/// blocks as fit and then one narrower block.
fn blocks(padded_out: usize) -> impl Iterator<Item = (usize, usize)> {
    let vectors = padded_out / 4;
    (0..vectors.div_ceil(BLOCK_VECTORS)).map(move |b| {
        let first = b * BLOCK_VECTORS;
        (4 * first, BLOCK_VECTORS.min(vectors - first))
    })
}

/// One tile's inputs: the window's top-left value, the layer's packed block and its bias.
struct Tile<'a> {
    /// Starts at channel 0 of the window's top-left pixel (padded coordinates).
    input: &'a [f32],
    in_row: usize,
    cin: usize,
    weights: &'a [f32],
    bias: &'a [f32],
    relu: bool,
}

impl Tile<'_> {
    /// Computes `PX` pixels x `NV * 4` channels into `dst` (pixel `p` at `p * out_stride`).
    #[inline(always)]
    fn run<L: Lanes, const PX: usize, const NV: usize>(&self, dst: &mut [f32], out_stride: usize) {
        let cin = self.cin;
        // The loop below reads input up to 2 rows, PX + 1 columns and cin - 1 channels past its
        // start, weights 9 * cin * NV vectors, and writes PX pixels of NV vectors.
        assert!(self.input.len() >= 2 * self.in_row + (PX + 2) * cin);
        assert!(self.weights.len() >= 9 * cin * NV * 4 && self.bias.len() >= NV * 4);
        assert!(dst.len() >= (PX - 1) * out_stride + NV * 4);
        let input = self.input.as_ptr();
        let mut w = self.weights.as_ptr();
        let mut acc = [[L::zero(); NV]; PX];
        for j in 0..NV {
            // SAFETY: bias holds NV * 4 values (asserted).
            let b = unsafe { L::load(self.bias.as_ptr().add(4 * j)) };
            for row in acc.iter_mut() {
                row[j] = b;
            }
        }
        for ky in 0..3 {
            for kx in 0..3 {
                // SAFETY: row ky <= 2, column kx <= 2: within the asserted input length.
                let px0 = unsafe { input.add(ky * self.in_row + kx * cin) };
                for ci in 0..cin {
                    let mut wv = [L::zero(); NV];
                    for (j, v) in wv.iter_mut().enumerate() {
                        // SAFETY: 9 * cin * NV vectors of weights are asserted; `w` advances
                        // by NV vectors per (tap, input channel).
                        *v = unsafe { L::load(w.add(4 * j)) };
                    }
                    // SAFETY: as above.
                    w = unsafe { w.add(4 * NV) };
                    for (p, row) in acc.iter_mut().enumerate() {
                        // SAFETY: pixel p + kx <= PX + 1 and channel ci < cin: asserted.
                        let s = unsafe { L::splat_load(px0.add(p * cin + ci)) };
                        for j in 0..NV {
                            row[j] = row[j].mul_add(s, wv[j]);
                        }
                    }
                }
            }
        }
        for (p, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let v = if self.relu { v.relu() } else { v };
                // SAFETY: dst holds PX pixels of NV vectors at out_stride (asserted).
                unsafe { v.store(dst.as_mut_ptr().add(p * out_stride + 4 * j)) };
            }
        }
    }
}
