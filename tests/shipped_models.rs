//! The committed weights: every manifest entry loads, matches its checksum and spec, does real
//! work, and (where ../shared/data is present) reproduces the scores its manifest entry and the
//! README's tables report; without ../shared/data the score test says SKIPPED and checks nothing.
//! Diffusion models are sampled as their cards say: DDIM steps, eta 0, seed 0.

mod common;

use common::{devices, max_abs_diff, synthetic};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use websr::diffusion::SampleOptions;
use websr::eval::{evaluate_model, score};
use websr::resize::{degrade_bicubic, imresize};
use websr::upscale::{upscale_rgb, UpscaleOptions};
use websr::zoo::{default_dir, read_verified, Manifest, ModelEntry, ModelKind};
use websr::Model;

/// The DDIM steps the diffusion cards' scores are measured with (`websr ship --steps`).
const CARD_STEPS: usize = 10;

/// What `websr eval` runs for this model: one-pass models tiled as `upscale` does, diffusion
/// models sampled as their cards say: their recorded defaults (steps, strength) or
/// [`CARD_STEPS`] DDIM steps; eta 0, seed 0, YODA if trained with it.
fn eval_options(model: &Model) -> UpscaleOptions {
    let sampling = match model {
        Model::Diffusion(d) if d.spec.default_sampling.is_some() => d.default_options(),
        _ => SampleOptions {
            steps: Some(CARD_STEPS),
            eta: 0.0,
            seed: 0,
            yoda: model.yoda_trained(),
            ..SampleOptions::default()
        },
    };
    UpscaleOptions {
        sampling,
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

/// `../shared/data`, or `None` after saying on stderr that the score tests are skipped (they
/// need the real images; the repository holds none).
fn shared_data(test: &str) -> Option<PathBuf> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if data.join("set5").is_dir() && data.join("set14").is_dir() {
        return Some(data);
    }
    eprintln!(
        "SKIPPED: ../shared/data not found ({} has no set5/ and set14/): {test} checked nothing",
        data.display()
    );
    None
}

/// Which test set a README score is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Set {
    Set5,
    Set14,
}

impl Set {
    fn dir(self) -> &'static str {
        match self {
            Set::Set5 => "set5",
            Set::Set14 => "set14",
        }
    }
}

/// A README score: the model ("wavelr-deep-x4", "bicubic-x2"), whether it is the `--tta` row, and
/// the set.
type ScoreKey = (String, bool, Set);

/// The score columns of a README table: (cell index, set, scale).
type Columns = &'static [(usize, Set, usize)];

/// The shipped models' scores in README.md, "PSNR / SSIM" cells: the table of one-pass models
/// (Set5/Set14 at x2 and x4, with the `--tta` rows) and the diffusion models' table (x4). The
/// published rows are not ours to reproduce and are left out.
fn readme_scores() -> BTreeMap<ScoreKey, [f64; 2]> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let cell = |c: &str| -> Option<[f64; 2]> {
        let (psnr, ssim) = c.trim().trim_matches('*').split_once(" / ")?;
        Some([psnr.trim().parse().ok()?, ssim.trim().parse().ok()?])
    };
    let mut scores = BTreeMap::new();
    let tables: [(&str, Columns); 2] = [
        (
            "| model | params | MACs / output px | training | Set5 x2 | Set14 x2 | Set5 x4 | Set14 x4 |",
            &[(4, Set::Set5, 2), (5, Set::Set14, 2), (6, Set::Set5, 4), (7, Set::Set14, 4)],
        ),
        (
            "| model | Set5 PSNR / SSIM | Set14 PSNR / SSIM |",
            &[(1, Set::Set5, 4), (2, Set::Set14, 4)],
        ),
    ];
    for (header, columns) in tables {
        let at = readme
            .find(header)
            .unwrap_or_else(|| panic!("README.md has no table '{header}'"));
        for row in readme[at..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
        {
            let cells: Vec<&str> = row.split('|').skip(1).collect();
            let label = cells[0].trim();
            if label.contains("(published)") {
                continue;
            }
            let tta = label.contains("`--tta`");
            let name = label
                .split_whitespace()
                .next()
                .unwrap()
                .trim_matches(|c| c == '*' || c == '`');
            for &(column, set, scale) in columns {
                let Some(score) = cell(cells[column]) else {
                    continue; // "-": not measured
                };
                let model = match name.strip_suffix("-x4") {
                    Some(_) => name.to_string(),
                    None => format!("{name}-x{scale}"),
                };
                // bicubic x4 is in both tables: with the same numbers.
                if let Some(before) = scores.insert((model.clone(), tta, set), score) {
                    assert_eq!(before, score, "README.md: two scores for {model} {set:?}");
                }
            }
        }
    }
    scores
}

/// Measured within what the README's rounding (2 decimals of dB, 4 of SSIM) allows.
fn check_readme(
    readme: &BTreeMap<ScoreKey, [f64; 2]>,
    checked: &mut Vec<ScoreKey>,
    key: ScoreKey,
    measured: [f64; 2],
) {
    let Some(&[psnr, ssim]) = readme.get(&key) else {
        return;
    };
    assert!(
        (measured[0] - psnr).abs() < 0.01 && (measured[1] - ssim).abs() < 1e-4,
        "README.md says {psnr:.2} / {ssim:.4} for {key:?}, the weights score {:.4} / {:.5}",
        measured[0],
        measured[1]
    );
    checked.push(key);
}

/// Every shipped model's Set5 score reproduces its manifest entry and the README's tables;
/// Set14 and the `--tta` rows are measured for the default models only, since in this test
/// profile all of Set14 for all 11 models, 8 passes each for `--tta`, takes far longer than a
/// test may (Set5 alone is about 3 minutes for all of them on two busy cores).
/// `WEBSR_ALL_SCORES=1` measures every model on both sets, with `--tta` for the one-pass ones,
/// and then requires every score in the README's tables to have been reproduced.
#[test]
fn shipped_scores_reproduce_the_manifest_and_readme() {
    let Some(data) = shared_data("shipped_scores_reproduce_the_manifest_and_readme") else {
        return;
    };
    let all = std::env::var_os("WEBSR_ALL_SCORES").is_some_and(|v| v == "1");
    let readme = readme_scores();
    for key in [
        ("wavelr-deep-x2".to_string(), true, Set::Set14),
        ("wavelr-deep-x4".to_string(), false, Set::Set14),
        ("sr3-x4".to_string(), false, Set::Set5),
        ("bicubic-x4".to_string(), false, Set::Set14),
    ] {
        assert!(
            readme.contains_key(&key),
            "README.md: no {key:?} score read"
        );
    }
    let mut checked = Vec::new();
    for scale in [2, 4] {
        for set in [Set::Set5, Set::Set14] {
            let report = websr::eval::evaluate_bicubic(&data.join(set.dir()), scale).unwrap();
            let key = (format!("bicubic-x{scale}"), false, set);
            check_readme(
                &readme,
                &mut checked,
                key,
                [report.mean.psnr_y, report.mean.ssim_y],
            );
        }
    }
    let (_, device) = devices().remove(0);
    for (entry, model) in shipped() {
        let name = &entry.name;
        let (one_pass, default) = (entry.kind == ModelKind::OnePass, entry.default);
        for (set, manifest) in [(Set::Set5, entry.set5), (Set::Set14, entry.set14)] {
            for tta in [false, true] {
                let wanted = match (set, tta) {
                    (Set::Set5, false) => true,
                    _ => all || default,
                };
                if !wanted || (tta && !one_pass) {
                    continue;
                }
                let opts = UpscaleOptions {
                    tta,
                    ..eval_options(&model)
                };
                let started = std::time::Instant::now();
                let report = evaluate_model(&data.join(set.dir()), &model, &opts, &device).unwrap();
                let measured = [report.mean.psnr_y, report.mean.ssim_y];
                eprintln!(
                    "{name} {set:?}{}: {:.3} / {:.4} ({:.0} s)",
                    if tta { " --tta" } else { "" },
                    measured[0],
                    measured[1],
                    started.elapsed().as_secs_f64()
                );
                if !tta {
                    let [psnr, ssim] = manifest
                        .unwrap_or_else(|| panic!("{name}: the manifest has no {set:?} score"));
                    assert!(
                        (measured[0] - psnr).abs() < 0.005 && (measured[1] - ssim).abs() < 5e-5,
                        "{name} {set:?}: measured {:.3}/{:.4}, manifest {psnr:.3}/{ssim:.4}",
                        measured[0],
                        measured[1]
                    );
                }
                check_readme(&readme, &mut checked, (name.clone(), tta, set), measured);
                // One-pass models ship only well above bicubic; diffusion models are shipped for
                // the comparison the DiWa paper makes, with their scores wherever they land.
                if one_pass && set == Set::Set5 && !tta {
                    let bicubic =
                        websr::eval::evaluate_bicubic(&data.join("set5"), entry.scale).unwrap();
                    assert!(
                        measured[0] > bicubic.mean.psnr_y + 1.0,
                        "{name} barely beats bicubic"
                    );
                }
            }
        }
    }
    let unchecked: Vec<_> = readme.keys().filter(|k| !checked.contains(k)).collect();
    if all {
        assert!(
            unchecked.is_empty(),
            "README.md scores of no shipped model: {unchecked:?}"
        );
    } else {
        eprintln!(
            "checked {} README scores; not measured in this run (WEBSR_ALL_SCORES=1 does): {unchecked:?}",
            checked.len()
        );
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
