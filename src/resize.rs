//! MATLAB-compatible bicubic `imresize` (Keys cubic, a = -0.5, antialiased when shrinking).
//!
//! Every published SR table makes its low-resolution inputs with MATLAB's `imresize`, so both the
//! training pairs and the bicubic baseline must use exactly this kernel, its centre mapping
//! `u = x/scale + 0.5 (1 - 1/scale)` and its symmetric border handling; any other bicubic moves
//! PSNR by tenths of a dB. This is a port of BasicSR's `matlab_functions.imresize`.
//!
//! The same weights are exposed as dense matrices ([`interpolation_matrix`]) so that models can
//! upscale on the GPU with two matmuls and get the very same numbers as this CPU code.

use crate::image::Planar;

/// Keys' cubic convolution kernel with a = -0.5 (MATLAB's `cubic`).
fn cubic(x: f64) -> f64 {
    let ax = x.abs();
    let ax2 = ax * ax;
    let ax3 = ax2 * ax;
    if ax <= 1.0 {
        1.5 * ax3 - 2.5 * ax2 + 1.0
    } else if ax <= 2.0 {
        -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    } else {
        0.0
    }
}

/// For each output position, the input indices it reads and their weights (summing to one).
#[derive(Clone, Debug)]
pub struct Contributions {
    pub indices: Vec<Vec<usize>>,
    pub weights: Vec<Vec<f64>>,
}

/// MATLAB's `contributions()`: taps of the (antialiased) cubic kernel along one dimension.
pub fn contributions(in_len: usize, out_len: usize, scale: f64) -> Contributions {
    assert!(in_len > 0 && out_len > 0 && scale > 0.0);
    let antialias = scale < 1.0;
    let kernel_width = if antialias { 4.0 / scale } else { 4.0 };
    let taps = kernel_width.ceil() as i64 + 2;
    let mut indices = Vec::with_capacity(out_len);
    let mut weights = Vec::with_capacity(out_len);
    for x in 1..=out_len {
        let u = x as f64 / scale + 0.5 * (1.0 - 1.0 / scale);
        let left = (u - kernel_width / 2.0).floor() as i64;
        let mut idx = Vec::with_capacity(taps as usize);
        let mut w = Vec::with_capacity(taps as usize);
        for p in 0..taps {
            let i = left + p; // 1-based, may fall outside [1, in_len]
            let d = u - i as f64;
            let wt = if antialias {
                scale * cubic(scale * d)
            } else {
                cubic(d)
            };
            idx.push(mirror(i, in_len));
            w.push(wt);
        }
        let sum: f64 = w.iter().sum();
        // MATLAB drops taps whose weight is exactly zero; keeping them changes nothing numerically.
        let (idx, w): (Vec<usize>, Vec<f64>) = idx
            .into_iter()
            .zip(w)
            .filter(|(_, wt)| *wt != 0.0)
            .map(|(i, wt)| (i, wt / sum))
            .unzip();
        indices.push(idx);
        weights.push(w);
    }
    Contributions { indices, weights }
}

/// Symmetric (half-sample) mirroring of a 1-based index into `0..len`, as MATLAB's
/// `aux = [1:len, len:-1:1]` lookup.
fn mirror(i: i64, len: usize) -> usize {
    let period = 2 * len as i64;
    let m = (i - 1).rem_euclid(period);
    if m < len as i64 {
        m as usize
    } else {
        (period - 1 - m) as usize
    }
}

/// Output length MATLAB gives for a scale factor: `ceil(len * scale)`.
pub fn output_len(in_len: usize, scale: f64) -> usize {
    // The small epsilon keeps exact products like 255 * (1/3) * 3 from rounding up.
    ((in_len as f64 * scale) - 1e-9).ceil().max(1.0) as usize
}

/// Resizes every plane by `scale` (e.g. 4.0 to upscale, 0.25 to downscale).
pub fn imresize(img: &Planar, scale: f64) -> Planar {
    let out_h = output_len(img.height, scale);
    let out_w = output_len(img.width, scale);
    resize_to(img, out_h, out_w, scale)
}

/// Resizes to an explicit size, with the kernel computed for `scale` (MATLAB semantics).
pub fn resize_to(img: &Planar, out_h: usize, out_w: usize, scale: f64) -> Planar {
    let ch = contributions(img.height, out_h, scale);
    let cw = contributions(img.width, out_w, scale);
    // Equal scales: MATLAB resizes along the first dimension (rows) first.
    let mut out = Planar::zeros(img.channels, out_h, out_w);
    let mut tmp = vec![0.0f32; out_h * img.width];
    for c in 0..img.channels {
        let src = img.plane(c);
        // Height pass: tmp[y][x] = sum_k w * src[idx_k][x]
        for (y, (idx, w)) in ch.indices.iter().zip(&ch.weights).enumerate() {
            let row = &mut tmp[y * img.width..(y + 1) * img.width];
            for x in 0..img.width {
                let mut acc = 0.0f64;
                for (&i, &wt) in idx.iter().zip(w) {
                    acc += wt * src[i * img.width + x] as f64;
                }
                row[x] = acc as f32;
            }
        }
        // Width pass.
        let dst = out.plane_mut(c);
        for y in 0..out_h {
            let row = &tmp[y * img.width..(y + 1) * img.width];
            for (x, (idx, w)) in cw.indices.iter().zip(&cw.weights).enumerate() {
                let mut acc = 0.0f64;
                for (&i, &wt) in idx.iter().zip(w) {
                    acc += wt * row[i] as f64;
                }
                dst[y * out_w + x] = acc as f32;
            }
        }
    }
    out
}

/// The low-resolution input of the evaluation protocol: crop to a multiple of `scale`, shrink
/// with antialiased bicubic, round to 8-bit levels. Returns `(hr_cropped, lr)`.
pub fn degrade_bicubic(hr: &Planar, scale: usize) -> (Planar, Planar) {
    let h = hr.height - hr.height % scale;
    let w = hr.width - hr.width % scale;
    let hr = hr.crop(0, 0, h, w);
    let mut lr = resize_to(&hr, h / scale, w / scale, 1.0 / scale as f64);
    lr.quantize_u8();
    (hr, lr)
}

/// Dense `[out_len x in_len]` row-major matrix of the resize weights along one dimension, so
/// that `out = M_h * X * M_w^T` reproduces [`resize_to`] with tensor ops.
pub fn interpolation_matrix(in_len: usize, out_len: usize, scale: f64) -> Vec<f32> {
    let c = contributions(in_len, out_len, scale);
    let mut m = vec![0.0f32; out_len * in_len];
    for (o, (idx, w)) in c.indices.iter().zip(&c.weights).enumerate() {
        for (&i, &wt) in idx.iter().zip(w) {
            // Mirrored taps can hit the same input twice: accumulate.
            m[o * in_len + i] += wt as f32;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_mirror_stays_in_range() {
        for &(n, s) in &[(5usize, 4.0f64), (7, 0.25), (3, 2.0), (16, 0.5)] {
            let out = output_len(n, s);
            let c = contributions(n, out, s);
            for (idx, w) in c.indices.iter().zip(&c.weights) {
                assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                assert!(idx.iter().all(|&i| i < n));
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = Planar::new(1, 6, 10, vec![0.3; 60]);
        for s in [0.5, 2.0, 4.0, 0.25] {
            let r = imresize(&img, s);
            assert!(r.data.iter().all(|v| (v - 0.3).abs() < 1e-6), "scale {s}");
        }
    }

    #[test]
    fn border_tap_matches_hand_computation() {
        // x2, first output of the ramp 0,1,2,3: u = 0.75, taps at 1-based -1..2 with weights
        // cubic(1.75), cubic(0.75), cubic(0.25), cubic(1.25) = -0.0234375, 0.2265625, 0.8671875,
        // -0.0703125; the mirrored indices read 1, 0, 0, 1, so the value is -0.09375.
        let img = Planar::new(1, 1, 4, vec![0.0, 1.0, 2.0, 3.0]);
        let out = resize_to(&img, 1, 8, 2.0);
        assert!((out.data[0] + 0.09375).abs() < 1e-7, "{:?}", out.data);
    }

    #[test]
    fn interior_of_a_ramp_is_reproduced_exactly() {
        // Keys' cubic reproduces linear functions wherever no mirrored tap is involved.
        let img = Planar::new(1, 1, 12, (0..12).map(|v| v as f32).collect());
        let out = resize_to(&img, 1, 48, 4.0);
        for x in 12..36 {
            // 0-based output x maps to input coordinate (x + 0.5) / 4 - 0.5.
            let expect = (x as f32 + 0.5) / 4.0 - 0.5;
            assert!(
                (out.data[x] - expect).abs() < 1e-5,
                "x={x}: {}",
                out.data[x]
            );
        }
    }

    #[test]
    fn matrix_form_matches_direct_form() {
        let data: Vec<f32> = (0..5 * 7).map(|i| ((i * 37) % 11) as f32 / 11.0).collect();
        let img = Planar::new(1, 5, 7, data);
        let out = resize_to(&img, 20, 28, 4.0);
        let mh = interpolation_matrix(5, 20, 4.0);
        let mw = interpolation_matrix(7, 28, 4.0);
        for y in 0..20 {
            for x in 0..28 {
                let mut acc = 0.0f32;
                for i in 0..5 {
                    for j in 0..7 {
                        acc += mh[y * 5 + i] * img.data[i * 7 + j] * mw[x * 7 + j];
                    }
                }
                assert!((acc - out.data[y * 28 + x]).abs() < 1e-5);
            }
        }
    }
}
