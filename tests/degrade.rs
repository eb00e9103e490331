//! Blind degradations: each stage does what it claims, the evaluation suite is the paper's 8
//! combinations, and degraded evaluation inputs are reproducible.

mod common;

use common::shapes;
use rand::rngs::StdRng;
use rand::SeedableRng;
use websr::degrade::{
    degrade, evaluation_suite, gaussian_blur, jpeg_round_trip, Degradation, DegradationSampler,
    Kind,
};
use websr::image::Planar;
use websr::metrics::psnr_rgb;

fn flat(value: f32, side: usize) -> Planar {
    Planar::new(3, side, side, vec![value; 3 * side * side])
}

fn std_dev(v: &[f32]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    (v.iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt()
}

#[test]
fn blur_keeps_flat_images_and_mass_and_smooths_edges() {
    let img = flat(0.4, 20);
    let out = gaussian_blur(&img, 1.7);
    assert!(out.data.iter().all(|v| (v - 0.4).abs() < 1e-5));

    // An impulse in the middle spreads out but keeps its total (the kernel sums to 1).
    let mut impulse = Planar::zeros(3, 31, 31);
    impulse.data[15 * 31 + 15] = 1.0;
    let spread = gaussian_blur(&impulse, 1.5);
    let total: f32 = spread.plane(0).iter().sum();
    assert!((total - 1.0).abs() < 1e-4, "mass {total}");
    assert!(spread.data[15 * 31 + 15] < 0.1);
    assert!(spread.data[15 * 31 + 16] > 0.0);

    // A kernel wider than the image still works (mirrored borders).
    let tiny = shapes(4, 4, 3);
    let out = gaussian_blur(&tiny, 3.0);
    assert!(out
        .data
        .iter()
        .all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
    assert!(std_dev(&out.data) < std_dev(&tiny.data));
}

#[test]
fn noise_has_the_requested_strength_and_follows_the_seed() {
    let hr = flat(0.5, 256);
    let d = Degradation {
        noise_sigma: Some(10.0),
        ..Default::default()
    };
    let (_, lr) = degrade(&hr, 2, &d, &mut StdRng::seed_from_u64(1)).unwrap();
    let sigma = std_dev(&lr.data) * 255.0;
    assert!((sigma - 10.0).abs() < 0.6, "noise sigma {sigma}");
    // 8-bit levels.
    assert!(lr
        .data
        .iter()
        .all(|v| ((v * 255.0) - (v * 255.0).round()).abs() < 1e-3));
    let (_, again) = degrade(&hr, 2, &d, &mut StdRng::seed_from_u64(1)).unwrap();
    let (_, other) = degrade(&hr, 2, &d, &mut StdRng::seed_from_u64(2)).unwrap();
    assert_eq!(lr, again);
    assert_ne!(lr, other);
}

#[test]
fn jpeg_loses_detail_in_proportion_to_quality() {
    let img = shapes(64, 64, 5);
    let q90 = jpeg_round_trip(&img, 90).unwrap();
    let q10 = jpeg_round_trip(&img, 10).unwrap();
    let (p90, p10) = (psnr_rgb(&q90, &img, 0), psnr_rgb(&q10, &img, 0));
    assert!(p90 > 28.0, "q90 {p90:.1} dB");
    assert!(p10 < p90 - 3.0, "q10 {p10:.1} dB vs q90 {p90:.1} dB");
    assert!(jpeg_round_trip(&Planar::zeros(1, 8, 8), 50).is_err());
}

#[test]
fn each_stage_changes_the_clean_input_and_clean_is_bicubic() {
    let hr = shapes(96, 96, 9);
    let mut rng = StdRng::seed_from_u64(3);
    let (crop, clean) = degrade(&hr, 4, &Degradation::default(), &mut rng).unwrap();
    let (bicubic_hr, bicubic_lr) = websr::resize::degrade_bicubic(&hr, 4);
    assert_eq!(clean, bicubic_lr);
    assert_eq!(crop, bicubic_hr);
    for d in evaluation_suite().into_iter().skip(1) {
        let (_, lr) = degrade(&hr, 4, &d, &mut rng).unwrap();
        assert_eq!((lr.height, lr.width), (24, 24));
        let p = psnr_rgb(&lr, &clean, 0);
        assert!(
            p < 45.0,
            "{} barely changes the input ({p:.1} dB)",
            d.short_name()
        );
    }
    assert!(degrade(&shapes(3, 3, 1), 4, &Degradation::default(), &mut rng).is_err());
}

#[test]
fn the_evaluation_suite_is_the_eight_combinations() {
    let names: Vec<String> = evaluation_suite().iter().map(|d| d.short_name()).collect();
    assert_eq!(names, ["c", "b", "n", "j", "b+n", "b+j", "n+j", "b+n+j"]);
}

#[test]
fn samplers_draw_their_kind_within_range() {
    let mut rng = StdRng::seed_from_u64(4);
    for _ in 0..200 {
        let b = Kind::Blur.sample(&mut rng);
        assert!(b.noise_sigma.is_none() && b.jpeg_quality.is_none());
        assert!((0.8..=2.4).contains(&b.blur_sigma.unwrap()));
        let j = Kind::Jpeg.sample(&mut rng);
        assert!((35..=85).contains(&j.jpeg_quality.unwrap()));
        assert_eq!(Kind::Clean.sample(&mut rng), Degradation::default());
    }
    let mixed: Vec<String> = (0..200)
        .map(|_| DegradationSampler::Mixed.sample(&mut rng).short_name())
        .collect();
    for name in ["c", "b+n+j", "n"] {
        assert!(mixed.iter().any(|m| m == name), "mixed never drew {name}");
    }
    assert_eq!(
        DegradationSampler::parse("noise").unwrap(),
        DegradationSampler::Base(Kind::Noise)
    );
    assert!(DegradationSampler::parse("sepia").is_err());
}
