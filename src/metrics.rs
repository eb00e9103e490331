//! Image-quality metrics with BasicSR's semantics, so our numbers compare with published tables:
//! PSNR and SSIM on the BT.601 luma (Y in [16, 235], not rounded), `crop_border` pixels removed
//! from every side, plus PSNR over RGB.

use crate::image::Planar;

/// BT.601 luma of an RGB image in `[0, 1]`, scaled to `[16, 235]` (BasicSR `rgb2ycbcr(y_only)`).
pub fn luma(img: &Planar) -> Vec<f64> {
    assert_eq!(img.channels, 3, "luma needs RGB");
    let (r, g, b) = (img.plane(0), img.plane(1), img.plane(2));
    r.iter()
        .zip(g)
        .zip(b)
        .map(|((&r, &g), &b)| 65.481 * r as f64 + 128.553 * g as f64 + 24.966 * b as f64 + 16.0)
        .collect()
}

fn crop_plane(p: &[f64], h: usize, w: usize, border: usize) -> (Vec<f64>, usize, usize) {
    assert!(
        h > 2 * border && w > 2 * border,
        "image too small for crop_border"
    );
    let (ch, cw) = (h - 2 * border, w - 2 * border);
    let mut out = Vec::with_capacity(ch * cw);
    for y in border..h - border {
        out.extend_from_slice(&p[y * w + border..y * w + w - border]);
    }
    (out, ch, cw)
}

fn psnr_from_mse(mse: f64, peak: f64) -> f64 {
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (peak * peak / mse).log10()
    }
}

fn check_same_size(a: &Planar, b: &Planar) {
    assert_eq!(
        (a.channels, a.height, a.width),
        (b.channels, b.height, b.width),
        "metric inputs differ in size"
    );
}

/// Mean square of the level-1 Haar detail sub-bands of the luma (`crop_border` removed, an odd
/// last row or column dropped), in the order LH (vertical change: horizontal edges), HL
/// (horizontal change: vertical edges), HH (diagonal): how much fine detail an image has.
pub fn haar_detail_energy(img: &Planar, crop_border: usize) -> [f64; 3] {
    let (y, h, w) = crop_plane(&luma(img), img.height, img.width, crop_border);
    let mut sums = [0.0; 3];
    let mut blocks = 0usize;
    for by in 0..h / 2 {
        for bx in 0..w / 2 {
            let at = |dy: usize, dx: usize| y[(2 * by + dy) * w + 2 * bx + dx];
            let (a, b, c, d) = (at(0, 0), at(0, 1), at(1, 0), at(1, 1));
            // Orthonormal Haar: each detail coefficient is a signed sum over 2.
            let bands = [
                (a + b - c - d) / 2.0,
                (a - b + c - d) / 2.0,
                (a - b - c + d) / 2.0,
            ];
            for (s, v) in sums.iter_mut().zip(bands) {
                *s += v * v;
            }
            blocks += 1;
        }
    }
    sums.map(|s| s / blocks.max(1) as f64)
}

/// Per detail sub-band (LH, HL, HH), `sr`'s [`haar_detail_energy`] over `hr`'s: 1 is as much
/// fine detail as the ground truth, below 1 smoother (a regression model's blur), above 1 more
/// (invented texture or noise). It says nothing of where the detail is: read it beside PSNR.
pub fn detail_ratio(sr: &Planar, hr: &Planar, crop_border: usize) -> [f64; 3] {
    check_same_size(sr, hr);
    let (s, h) = (
        haar_detail_energy(sr, crop_border),
        haar_detail_energy(hr, crop_border),
    );
    [0, 1, 2].map(|i| if h[i] > 0.0 { s[i] / h[i] } else { f64::NAN })
}

/// PSNR on the Y channel (peak 255), `crop_border` pixels ignored at each side.
pub fn psnr_y(a: &Planar, b: &Planar, crop_border: usize) -> f64 {
    check_same_size(a, b);
    let (ya, _, _) = crop_plane(&luma(a), a.height, a.width, crop_border);
    let (yb, _, _) = crop_plane(&luma(b), b.height, b.width, crop_border);
    let mse = ya
        .iter()
        .zip(&yb)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        / ya.len() as f64;
    psnr_from_mse(mse, 255.0)
}

/// PSNR over all RGB values (peak 1.0 on `[0, 1]` data), `crop_border` ignored at each side.
pub fn psnr_rgb(a: &Planar, b: &Planar, crop_border: usize) -> f64 {
    check_same_size(a, b);
    let mut se = 0.0;
    let mut n = 0usize;
    for c in 0..a.channels {
        let pa: Vec<f64> = a.plane(c).iter().map(|&v| v as f64).collect();
        let pb: Vec<f64> = b.plane(c).iter().map(|&v| v as f64).collect();
        let (ca, _, _) = crop_plane(&pa, a.height, a.width, crop_border);
        let (cb, _, _) = crop_plane(&pb, b.height, b.width, crop_border);
        se += ca
            .iter()
            .zip(&cb)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>();
        n += ca.len();
    }
    psnr_from_mse(se / n as f64, 1.0)
}

/// OpenCV's `getGaussianKernel(11, 1.5)`.
fn gaussian_11() -> [f64; 11] {
    let mut k = [0.0; 11];
    for (i, v) in k.iter_mut().enumerate() {
        let d = i as f64 - 5.0;
        *v = (-d * d / (2.0 * 1.5 * 1.5)).exp();
    }
    let s: f64 = k.iter().sum();
    k.map(|v| v / s)
}

/// Separable 11x11 Gaussian filter, "valid" region only (BasicSR crops 5 pixels after filtering).
fn gauss_valid(p: &[f64], h: usize, w: usize) -> (Vec<f64>, usize, usize) {
    let k = gaussian_11();
    let (oh, ow) = (h - 10, w - 10);
    let mut tmp = vec![0.0; oh * w];
    for y in 0..oh {
        for x in 0..w {
            tmp[y * w + x] = (0..11).map(|i| k[i] * p[(y + i) * w + x]).sum();
        }
    }
    let mut out = vec![0.0; oh * ow];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = (0..11).map(|i| k[i] * tmp[y * w + x + i]).sum();
        }
    }
    (out, oh, ow)
}

/// SSIM on one plane of values in `[0, 255]` (Wang et al., as implemented by BasicSR).
fn ssim_plane(a: &[f64], b: &[f64], h: usize, w: usize) -> f64 {
    let c1 = (0.01f64 * 255.0).powi(2);
    let c2 = (0.03f64 * 255.0).powi(2);
    let prod = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).collect::<Vec<_>>();
    let (mu1, _, _) = gauss_valid(a, h, w);
    let (mu2, _, _) = gauss_valid(b, h, w);
    let (s11, _, _) = gauss_valid(&prod(a, a), h, w);
    let (s22, _, _) = gauss_valid(&prod(b, b), h, w);
    let (s12, _, _) = gauss_valid(&prod(a, b), h, w);
    let n = mu1.len();
    let mut total = 0.0;
    for i in 0..n {
        let (m1, m2) = (mu1[i], mu2[i]);
        let v1 = s11[i] - m1 * m1;
        let v2 = s22[i] - m2 * m2;
        let cov = s12[i] - m1 * m2;
        total +=
            ((2.0 * m1 * m2 + c1) * (2.0 * cov + c2)) / ((m1 * m1 + m2 * m2 + c1) * (v1 + v2 + c2));
    }
    total / n as f64
}

/// SSIM on the Y channel, `crop_border` pixels ignored at each side.
pub fn ssim_y(a: &Planar, b: &Planar, crop_border: usize) -> f64 {
    check_same_size(a, b);
    let (ya, h, w) = crop_plane(&luma(a), a.height, a.width, crop_border);
    let (yb, _, _) = crop_plane(&luma(b), b.height, b.width, crop_border);
    ssim_plane(&ya, &yb, h, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(h: usize, w: usize, amp: f32, seed: u32) -> Planar {
        let mut s = seed;
        let data = (0..3 * h * w)
            .map(|i| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                let base = ((i % w) as f32 / w as f32) * 0.8 + 0.1;
                (base + amp * ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5)).clamp(0.0, 1.0)
            })
            .collect();
        Planar::new(3, h, w, data)
    }

    #[test]
    fn identical_images_are_perfect() {
        let a = noisy(32, 40, 0.2, 1);
        assert!(psnr_y(&a, &a, 2).is_infinite());
        assert!((ssim_y(&a, &a, 2) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn psnr_of_a_constant_offset_is_closed_form() {
        // Adding d to R, G and B adds (65.481 + 128.553 + 24.966) d = 219 d to Y.
        let a = Planar::new(3, 8, 8, vec![0.5; 192]);
        let b = Planar::new(3, 8, 8, vec![0.5 + 10.0 / 219.0; 192]);
        let expect = 10.0 * (255.0f64 * 255.0 / 100.0).log10();
        assert!((psnr_y(&a, &b, 0) - expect).abs() < 1e-3);
    }

    #[test]
    fn more_noise_means_lower_scores() {
        let clean = noisy(48, 48, 0.0, 3);
        let little = noisy(48, 48, 0.05, 3);
        let lots = noisy(48, 48, 0.3, 3);
        assert!(psnr_y(&clean, &little, 4) > psnr_y(&clean, &lots, 4));
        assert!(ssim_y(&clean, &little, 4) > ssim_y(&clean, &lots, 4));
        assert!(psnr_rgb(&clean, &little, 4) > psnr_rgb(&clean, &lots, 4));
        assert!(ssim_y(&clean, &lots, 4) < 0.9);
    }

    #[test]
    fn detail_ratio_is_one_for_the_truth_below_for_blur_and_sees_each_direction() {
        let hr = noisy(32, 32, 0.5, 7);
        for r in detail_ratio(&hr, &hr, 2) {
            assert!((r - 1.0).abs() < 1e-12);
        }
        // A 2x2 box blur removes most level-1 detail.
        let mut blurred = hr.clone();
        for c in 0..3 {
            let p = hr.plane(c);
            for y in 0..31 {
                for x in 0..31 {
                    let v = (p[y * 32 + x]
                        + p[y * 32 + x + 1]
                        + p[(y + 1) * 32 + x]
                        + p[(y + 1) * 32 + x + 1])
                        / 4.0;
                    blurred.plane_mut(c)[y * 32 + x] = v;
                }
            }
        }
        assert!(detail_ratio(&blurred, &hr, 2).iter().all(|r| *r < 0.7));
        // Vertical stripes (change along x) are HL detail only.
        let stripes = Planar::new(
            3,
            8,
            8,
            (0..192)
                .map(|i| if i % 2 == 0 { 0.2 } else { 0.8 })
                .collect(),
        );
        let [lh, hl, hh] = haar_detail_energy(&stripes, 0);
        assert!(lh < 1e-9 && hh < 1e-9 && hl > 1.0, "{lh} {hl} {hh}");
    }
}
