//! The committed weights: every manifest entry loads, matches its checksum and spec, and beats
//! bicubic on a synthetic picture (so a broken or untrained file cannot be shipped silently).

mod common;

use common::{devices, shapes};
use websr::eval::score;
use websr::resize::{degrade_bicubic, imresize};
use websr::upscale::run_model;
use websr::zoo::{default_dir, read_verified, Manifest};

#[test]
fn every_shipped_model_loads_and_beats_bicubic() {
    let dir = default_dir();
    let manifest = Manifest::load(&dir).expect("models/manifest.json");
    assert!(!manifest.models.is_empty());
    let (_, device) = devices().remove(0);
    let hr = shapes(96, 96, 5);
    for entry in &manifest.models {
        let bytes = read_verified(&dir, entry).unwrap();
        let model = websr::weights::from_bytes(&bytes, &device).unwrap();
        assert_eq!(
            (model.spec.arch, model.scale()),
            (entry.arch, entry.scale),
            "{}",
            entry.name
        );
        let (hr, lr) = degrade_bicubic(&hr, entry.scale);
        let ours = score("ours", &run_model(&model, &lr, &device), &hr, entry.scale);
        let base = score(
            "bicubic",
            &imresize(&lr, entry.scale as f64),
            &hr,
            entry.scale,
        );
        assert!(
            ours.psnr_y > base.psnr_y + 0.1,
            "{}: {:.2} dB vs bicubic {:.2} dB",
            entry.name,
            ours.psnr_y,
            base.psnr_y
        );
    }
}

#[test]
fn a_tampered_file_is_refused() {
    let dir = default_dir();
    let manifest = Manifest::load(&dir).unwrap();
    let mut entry = manifest.models[0].clone();
    entry.sha256 = "0".repeat(64);
    let err = read_verified(&dir, &entry).unwrap_err();
    assert!(err.to_string().contains("SHA-256"), "{err}");
}
