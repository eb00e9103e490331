//! The committed weights: every manifest entry loads, matches its checksum and spec, does real
//! work, and (where ../shared/data is present) reproduces the Set5 scores its card reports.
//! Diffusion models are sampled as their cards say: DDIM steps, eta 0, seed 0.

mod common;

use common::{devices, max_abs_diff, synthetic};
use safetensors::{Dtype, SafeTensors};
use std::path::Path;
use websr::diffusion::SampleOptions;
use websr::eval::{evaluate_model, score};
use websr::resize::{degrade_bicubic, imresize};
use websr::upscale::{upscale_rgb, UpscaleOptions};
use websr::zoo::{default_dir, read_verified, Manifest, ModelEntry, ModelKind};
use websr::Model;

/// The DDIM steps the diffusion cards' scores are measured with (`websr ship --steps`).
const CARD_STEPS: usize = 10;

/// What `websr eval` runs for this model: one-pass models tiled as `upscale` does, diffusion
/// models sampled as their cards say (DDIM steps, eta 0, seed 0, YODA if trained with it).
fn eval_options(model: &Model) -> UpscaleOptions {
    UpscaleOptions {
        sampling: SampleOptions {
            steps: Some(CARD_STEPS),
            eta: 0.0,
            seed: 0,
            yoda: model.yoda_trained(),
        },
        ..UpscaleOptions::default()
    }
}

/// Every manifest entry with its model, loaded by the one loader for both kinds.
fn shipped() -> Vec<(ModelEntry, Model)> {
    let dir = default_dir();
    let manifest = Manifest::load(&dir).expect("models/manifest.json");
    assert!(!manifest.models.is_empty());
    let (_, device) = devices().remove(0);
    manifest
        .models
        .into_iter()
        .map(|entry| {
            let bytes = read_verified(&dir, &entry).unwrap();
            let model = Model::from_bytes(&bytes, &device).unwrap();
            assert_eq!(
                model.kind(),
                entry.kind,
                "{}: the manifest's kind",
                entry.name
            );
            (entry, model)
        })
        .collect()
}

#[test]
fn every_shipped_model_loads_and_does_real_work() {
    let (_, device) = devices().remove(0);
    let hr = synthetic(96, 96, 5);
    for (entry, model) in shipped() {
        let name = &entry.name;
        let arch = model.label().replace("+yoda", "");
        assert_eq!(
            (arch, model.scale()),
            (entry.arch.clone(), entry.scale),
            "{name}"
        );
        let (hr, lr) = degrade_bicubic(&hr, entry.scale);
        let sr = upscale_rgb(&model, &lr, &eval_options(&model), &device, &mut |_, _| {
            true
        })
        .unwrap();
        let bicubic = imresize(&lr, entry.scale as f64);
        // Trained weights move away from the bicubic start, and never into garbage.
        assert!(
            max_abs_diff(&sr.data, &bicubic.data) > 0.02,
            "{name} is still bicubic"
        );
        let (ours, base) = (
            score("", &sr, &hr, entry.scale),
            score("", &bicubic, &hr, entry.scale),
        );
        eprintln!(
            "{name}: {:.2} dB vs bicubic {:.2} dB",
            ours.psnr_y, base.psnr_y
        );
        // A generative model trades PSNR for invented detail, and ours are short CPU runs that
        // sit below bicubic in PSNR (their cards say by how much; the Set5 test below holds
        // them to it): here an absolute floor only catches a broken sampler, whose leftover
        // noise scores about 13 dB (one DDIM step from pure noise).
        let floor = match entry.kind {
            ModelKind::OnePass => base.psnr_y - 1.0,
            ModelKind::Diffusion => 16.0,
        };
        assert!(
            ours.psnr_y > floor,
            "{name}: {:.2} vs bicubic {:.2}",
            ours.psnr_y,
            base.psnr_y
        );
    }
}

#[test]
fn shipped_scores_reproduce_on_set5() {
    let set5 = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/set5");
    if !set5.is_dir() {
        eprintln!(
            "skipped: {} is not here (the scores need the real images)",
            set5.display()
        );
        return;
    }
    let (_, device) = devices().remove(0);
    for (entry, model) in shipped() {
        let report = evaluate_model(&set5, &model, &eval_options(&model), &device).unwrap();
        let [psnr, ssim] = entry.set5.expect("manifest has Set5 scores");
        assert!(
            (report.mean.psnr_y - psnr).abs() < 0.005 && (report.mean.ssim_y - ssim).abs() < 5e-5,
            "{}: measured {:.3}/{:.4}, manifest {psnr:.3}/{ssim:.4}",
            entry.name,
            report.mean.psnr_y,
            report.mean.ssim_y
        );
        // One-pass models ship only well above bicubic; diffusion models are shipped for the
        // comparison the DiWa paper makes, with their scores wherever they land.
        if entry.kind == ModelKind::OnePass {
            let bicubic = websr::eval::evaluate_bicubic(&set5, entry.scale).unwrap();
            assert!(
                report.mean.psnr_y > bicubic.mean.psnr_y + 1.0,
                "{} barely beats bicubic",
                entry.name
            );
        }
    }
}

/// SRCNN's published Set5 Y-PSNR (methods.md): issue #2's bar for a default model.
const SRCNN_SET5: [(usize, f64); 2] = [(2, 36.66), (4, 30.48)];

#[test]
fn each_scale_has_one_default_above_srcnn() {
    let manifest = Manifest::load(&default_dir()).unwrap();
    for (scale, srcnn) in SRCNN_SET5 {
        let defaults: Vec<&ModelEntry> = manifest
            .models
            .iter()
            .filter(|m| m.default && m.scale == scale)
            .collect();
        assert_eq!(defaults.len(), 1, "x{scale} needs exactly one default");
        let default = defaults[0];
        assert_eq!(default.kind, ModelKind::OnePass, "{}", default.name);
        assert_eq!(manifest.default_for(scale).unwrap().name, default.name);
        // The manifest's scores are the measured ones: the Set5 test above reproduces them.
        let [psnr, _] = default.set5.expect("manifest has Set5 scores");
        assert!(
            psnr > srcnn,
            "the x{scale} default {} scores {psnr:.2} dB on Set5, below SRCNN's {srcnn}",
            default.name
        );
    }
}

#[test]
fn setting_a_default_moves_it_within_its_scale_only() {
    let mut manifest = Manifest::load(&default_dir()).unwrap();
    let x4: Vec<String> = manifest
        .models
        .iter()
        .filter(|m| m.scale == 4)
        .map(|m| m.name.clone())
        .collect();
    let x2_default = manifest.default_for(2).unwrap().name.clone();
    for name in &x4 {
        manifest.set_default(name).unwrap();
        assert_eq!(&manifest.default_for(4).unwrap().name, name);
        assert_eq!(manifest.models.iter().filter(|m| m.default).count(), 2);
        assert_eq!(manifest.default_for(2).unwrap().name, x2_default);
    }
    assert!(manifest.set_default("no-such-model").is_err());
    manifest.models.retain(|m| m.scale != 4);
    let err = manifest.default_for(4).unwrap_err().to_string();
    assert!(
        err.contains("no default model for x4") && err.contains("none shipped"),
        "{err}"
    );
}

/// Shipped models kept float32: in float16 their Set5/Set14 PSNR moved by more than the 0.01 dB
/// `websr reencode` allows (sr3-x4: -0.017 dB on Set5, -0.012 dB on Set14).
const KEPT_F32: &[&str] = &["sr3-x4"];

#[test]
fn shipped_models_travel_as_f16() {
    let dir = default_dir();
    let manifest = Manifest::load(&dir).unwrap();
    for entry in &manifest.models {
        // The manifest's SHA-256 and size are those of the file as shipped.
        let bytes = read_verified(&dir, entry).unwrap();
        assert_eq!(bytes.len() as u64, entry.bytes, "{}", entry.name);
        let want = if KEPT_F32.contains(&entry.name.as_str()) {
            Dtype::F32
        } else {
            Dtype::F16
        };
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let other: Vec<&str> = st
            .iter()
            .filter(|(_, view)| view.dtype() != want)
            .map(|(name, _)| name)
            .collect();
        assert!(
            other.is_empty(),
            "{} should ship {want:?} tensors only (websr reencode), not {other:?}",
            entry.name
        );
    }
    // The web app's first download, above all.
    for scale in [2, 4] {
        let default = &manifest.default_for(scale).unwrap().name;
        assert!(!KEPT_F32.contains(&default.as_str()), "{default}");
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
