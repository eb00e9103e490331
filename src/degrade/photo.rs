//! The degradations of real photos, for the `photo` model (issue #16.5).
//!
//! Training inputs come from a simplified form of Real-ESRGAN's *second-order* pipeline (Wang et
//! al. 2021): the degradation model is applied twice, each round a Gaussian blur, a bicubic
//! resize, then Gaussian noise and a JPEG round trip in random order, every stage with a random
//! strength and sometimes skipped. The first round resizes to a random intermediate size between
//! the HR and the LR size, the second to the LR size. A few patches stay plain bicubic, so the
//! model keeps clean inputs clean.
//!
//! Evaluation uses something simpler and fixed ([`photo_eval_degradation`]): the clean bicubic LR
//! with noise of sigma 0-15 and JPEG quality 30-90 drawn per image from a fixed seed, so every
//! model is scored on the same inputs.

use super::{add_gaussian_noise, gaussian_blur, jpeg_round_trip, Degradation};
use crate::error::{Result, WebSrError};
use crate::image::Planar;
use crate::resize::{degrade_bicubic, resize_to};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Share of training patches left as plain bicubic downscaling.
const CLEAN_SHARE: f64 = 0.1;

/// One round of the pipeline: blur probability and sigma range (in pixels of the round's input),
/// noise probability and sigma range (8-bit levels), JPEG probability and quality range.
struct Round {
    blur: (f64, f32, f32),
    noise: (f64, f32, f32),
    jpeg: (f64, u8, u8),
}

const FIRST: Round = Round {
    blur: (0.8, 0.2, 2.4),
    noise: (0.6, 1.0, 15.0),
    jpeg: (0.7, 30, 95),
};

const SECOND: Round = Round {
    blur: (0.4, 0.2, 1.2),
    noise: (0.5, 1.0, 10.0),
    jpeg: (0.8, 30, 95),
};

/// Evaluation: per-image noise sigma and JPEG quality ranges (issue #16.5).
pub const EVAL_NOISE_RANGE: (f32, f32) = (0.0, 15.0);
pub const EVAL_JPEG_RANGE: (u8, u8) = (30, 90);
/// The seed of the photo evaluation inputs (fixed: every model sees the same degraded images).
pub const PHOTO_EVAL_SEED: u64 = 2024;

/// The LR training input of an HR patch (sides a multiple of `scale`), through the second-order
/// pipeline. Values are 8-bit levels in `[0, 1]`.
pub fn second_order(hr: &Planar, scale: usize, rng: &mut impl Rng) -> Result<Planar> {
    if !hr.height.is_multiple_of(scale)
        || !hr.width.is_multiple_of(scale)
        || hr.height == 0
        || hr.width == 0
    {
        return Err(WebSrError::Invalid(format!(
            "a {}x{} patch is not a multiple of the scale {scale}",
            hr.width, hr.height
        )));
    }
    if rng.random_bool(CLEAN_SHARE) {
        return Ok(degrade_bicubic(hr, scale).1);
    }
    let (lr_h, lr_w) = (hr.height / scale, hr.width / scale);
    // The intermediate size: a random factor between 1 (no resize) and the full scale.
    let factor = rng.random_range(1.0..=scale as f64);
    let mid_h = ((hr.height as f64 / factor).round() as usize).clamp(lr_h, hr.height);
    let mid_w = ((hr.width as f64 / factor).round() as usize).clamp(lr_w, hr.width);
    let mid = round(hr, mid_h, mid_w, &FIRST, rng)?;
    round(&mid, lr_h, lr_w, &SECOND, rng)
}

/// Blur, resize to `h x w`, then noise and JPEG in random order.
fn round(img: &Planar, h: usize, w: usize, r: &Round, rng: &mut impl Rng) -> Result<Planar> {
    let mut out = if rng.random_bool(r.blur.0) {
        gaussian_blur(img, rng.random_range(r.blur.1..=r.blur.2))
    } else {
        img.clone()
    };
    if (h, w) != (img.height, img.width) {
        out = resize_to(&out, h, w, h as f64 / img.height as f64);
    }
    out.quantize_u8();
    let noise_first = rng.random_bool(0.5);
    for stage in if noise_first { [0, 1] } else { [1, 0] } {
        if stage == 0 && rng.random_bool(r.noise.0) {
            add_gaussian_noise(
                &mut out,
                rng.random_range(r.noise.1..=r.noise.2) / 255.0,
                rng,
            );
            out.quantize_u8();
        } else if stage == 1 && rng.random_bool(r.jpeg.0) {
            out = jpeg_round_trip(&out, rng.random_range(r.jpeg.1..=r.jpeg.2))?;
        }
    }
    Ok(out)
}

/// The fixed evaluation degradation of image `index`: bicubic, noise sigma in 0-15, JPEG quality
/// in 30-90, drawn from `(seed, index)`.
pub fn photo_eval_degradation(seed: u64, index: usize) -> Degradation {
    let mut rng = StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let noise = rng.random_range(EVAL_NOISE_RANGE.0..=EVAL_NOISE_RANGE.1);
    let quality = rng.random_range(EVAL_JPEG_RANGE.0..=EVAL_JPEG_RANGE.1);
    Degradation {
        blur_sigma: None,
        noise_sigma: (noise > 0.0).then_some(noise),
        jpeg_quality: Some(quality),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(side: usize) -> Planar {
        let n = side * side;
        let data = (0..3 * n)
            .map(|i| ((i % n) % side + (i % n) / side) as f32 / (2 * side) as f32)
            .collect();
        Planar::new(3, side, side, data)
    }

    #[test]
    fn second_order_gives_lr_size_in_8_bit_levels() {
        let hr = gradient(64);
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..20 {
            let lr = second_order(&hr, 4, &mut rng).unwrap();
            assert_eq!((lr.channels, lr.height, lr.width), (3, 16, 16));
            assert!(lr.data.iter().all(
                |v| (0.0..=1.0).contains(v) && ((v * 255.0) - (v * 255.0).round()).abs() < 1e-3
            ));
        }
    }

    #[test]
    fn second_order_varies_and_sometimes_stays_clean() {
        let hr = gradient(64);
        let clean = degrade_bicubic(&hr, 4).1;
        let mut rng = StdRng::seed_from_u64(9);
        let outs: Vec<Planar> = (0..60)
            .map(|_| second_order(&hr, 4, &mut rng).unwrap())
            .collect();
        let n_clean = outs.iter().filter(|o| o.data == clean.data).count();
        assert!((1..20).contains(&n_clean), "{n_clean} of 60 clean");
        let distinct = outs.iter().filter(|o| o.data != clean.data).count();
        assert!(distinct > 40);
    }

    #[test]
    fn second_order_refuses_a_patch_off_the_scale() {
        let err = second_order(&gradient(63), 4, &mut StdRng::seed_from_u64(1)).unwrap_err();
        assert!(err.to_string().contains("multiple of the scale"), "{err}");
    }

    #[test]
    fn eval_degradation_is_fixed_and_in_range() {
        let a: Vec<_> = (0..14)
            .map(|i| photo_eval_degradation(PHOTO_EVAL_SEED, i))
            .collect();
        let b: Vec<_> = (0..14)
            .map(|i| photo_eval_degradation(PHOTO_EVAL_SEED, i))
            .collect();
        assert_eq!(a, b);
        assert!(a.windows(2).any(|w| w[0] != w[1]));
        for d in &a {
            assert!(d.blur_sigma.is_none());
            let q = d.jpeg_quality.unwrap();
            assert!((30..=90).contains(&q));
            assert!(d.noise_sigma.unwrap_or(0.0) <= 15.0);
        }
    }
}
