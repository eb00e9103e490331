//! Dataset pruning: the sub-image grid, deterministic ranking, exact fractions, the refined set,
//! scoring, subset manifests and their errors, and training restricted to a subset. Synthetic
//! images only.

mod common;

use common::synthetic;
use std::path::{Path, PathBuf};
use websr::burn::tensor::Device;
use websr::image::{Picture, Planar, Rect};
use websr::models::{Arch, ModelSpec, SrModel};
use websr::prune::{
    rank_descending, score_grid, score_patches, select, sub_image_grid, Order, ScorerInfo,
    SelectParams, SubsetManifest, FORMAT, VERSION,
};

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("websr-prune-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deterministic pseudo-random scores with a few exact ties.
fn scores(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 7919 + 13) % 101) as f64 / 100.0)
        .collect()
}

fn scorer(scale: usize) -> SrModel {
    let spec = ModelSpec {
        arch: Arch::WaveLr,
        scale,
        features: 8,
        body_layers: 1,
    };
    SrModel::init_seeded(spec, &Device::flex(), 3).unwrap()
}

fn scorer_info() -> ScorerInfo {
    ScorerInfo {
        name: "test".into(),
        sha256: "0".repeat(64),
        scale: 2,
    }
}

fn rect(y: usize, x: usize, h: usize, w: usize) -> Rect {
    Rect { y, x, h, w }
}

#[test]
fn the_grid_is_fixed_non_overlapping_sub_images() {
    let g = sub_image_grid(200, 300, 96, 96);
    // Rows start at 0 and 96 (192 + 96 > 200), columns at 0, 96, 192; raster order.
    assert_eq!(g.len(), 6);
    assert_eq!(g[0], rect(0, 0, 96, 96));
    assert_eq!(g[2], rect(0, 192, 96, 96));
    assert_eq!(g[5], rect(96, 192, 96, 96));
    // An image thinner than a sub-image gives one full-height row.
    let thin = sub_image_grid(50, 200, 96, 96);
    assert_eq!(thin, vec![rect(0, 0, 50, 96), rect(0, 96, 50, 96)]);
    // Overlapping grid with a smaller stride.
    assert_eq!(sub_image_grid(96, 144, 96, 48).len(), 2);
}

#[test]
fn ranking_is_deterministic_hardest_first_with_stable_ties() {
    let s = scores(300);
    let a = rank_descending(&s).unwrap();
    let b = rank_descending(&s).unwrap();
    assert_eq!(a, b);
    for w in a.windows(2) {
        assert!(s[w[0]] > s[w[1]] || (s[w[0]] == s[w[1]] && w[0] < w[1]));
    }
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..300).collect::<Vec<_>>(), "a permutation");
    assert!(rank_descending(&[0.1, f64::NAN]).is_err());
}

#[test]
fn select_keeps_exactly_the_requested_fraction_of_the_hardest() {
    for (n, keep) in [(200, 0.5), (7, 0.5), (1000, 0.3), (3, 1.0), (101, 0.25)] {
        let s = scores(n);
        let kept = select(&s, &SelectParams::hardest(keep, 0.0)).unwrap();
        assert_eq!(
            kept.len(),
            (keep * n as f64).round() as usize,
            "n={n} keep={keep}"
        );
        let min_kept = kept.iter().map(|&i| s[i]).fold(f64::INFINITY, f64::min);
        for i in (0..n).filter(|i| !kept.contains(i)) {
            assert!(
                s[i] <= min_kept,
                "a dropped sample is harder than a kept one"
            );
        }
        assert_eq!(kept, select(&s, &SelectParams::hardest(keep, 0.0)).unwrap());
    }
}

#[test]
fn refined_removes_the_top_outliers_and_keeps_the_next_half() {
    let s = scores(200);
    let ranked = rank_descending(&s).unwrap();
    let kept = select(&s, &SelectParams::hardest(0.5, 0.05)).unwrap();
    assert_eq!(kept.len(), 100);
    assert_eq!(kept, ranked[10..110].to_vec());
    for top in &ranked[..10] {
        assert!(!kept.contains(top), "a top-5% outlier was kept");
    }
}

#[test]
fn random_and_ascending_orders() {
    let s = scores(200);
    let p = |seed| SelectParams {
        order: Order::Random,
        keep: 0.5,
        drop_hardest: 0.05,
        seed,
    };
    let a = select(&s, &p(1)).unwrap();
    assert_eq!(a, select(&s, &p(1)).unwrap(), "seeded");
    assert_ne!(a, select(&s, &p(2)).unwrap());
    assert_eq!(a.len(), 100);
    let ranked = rank_descending(&s).unwrap();
    assert!(
        ranked[..10].iter().all(|t| !a.contains(t)),
        "drop applies first"
    );
    let asc = SelectParams {
        order: Order::Asc,
        ..SelectParams::hardest(0.25, 0.0)
    };
    let easiest = select(&s, &asc).unwrap();
    assert_eq!(easiest.len(), 50);
    assert_eq!(easiest[0], *ranked.last().unwrap());
}

#[test]
fn invalid_fractions_are_errors() {
    let s = scores(100);
    for (keep, drop) in [
        (0.0, 0.0),
        (1.5, 0.0),
        (0.5, 0.6),
        (0.5, -0.1),
        (0.001, 0.0),
    ] {
        let err = select(&s, &SelectParams::hardest(keep, drop));
        assert!(err.is_err(), "keep={keep} drop={drop} accepted");
    }
}

#[test]
fn scoring_is_deterministic_batched_and_ranks_texture_above_flat() {
    let device = Device::flex();
    let model = scorer(2);
    let flat = Planar::new(3, 96, 96, vec![0.4; 3 * 96 * 96]);
    let busy = synthetic(96, 96, 5);
    let images = vec![flat, busy];
    let patches = vec![
        (0, rect(0, 0, 48, 48)),
        (1, rect(0, 0, 48, 48)),
        (1, rect(48, 48, 48, 48)),
        (1, rect(10, 20, 30, 40)),
    ];
    let a = score_patches(&model, &images, &patches, &device).unwrap();
    let b = score_patches(&model, &images, &patches, &device).unwrap();
    assert_eq!(a, b, "scores differ between two runs");
    // Batched (equal-size sub-images in one pass) equals one by one.
    for (i, p) in patches.iter().enumerate() {
        let alone = score_patches(&model, &images, &[*p], &device).unwrap()[0];
        assert!((alone - a[i]).abs() < 1e-9, "{alone} vs {}", a[i]);
    }
    assert!(a[0] < 1e-6, "a flat sub-image is easy: {}", a[0]);
    assert!(a[1] > 1e-4 && a[2] > 1e-4, "texture is hard: {a:?}");
    // The grid helper scores every sub-image of every picture.
    let grid = score_grid(&model, &images, 48, 48, &device).unwrap();
    assert_eq!(grid.len(), 8);
    assert_eq!((grid[4].image, grid[4].rect), (1, rect(0, 0, 48, 48)));
    assert_eq!(grid[4].score, a[1]);
    // Out-of-range patches are errors, not panics.
    assert!(score_patches(&model, &images, &[(2, rect(0, 0, 8, 8))], &device).is_err());
    assert!(score_patches(&model, &images, &[(0, rect(90, 0, 8, 8))], &device).is_err());
}

/// Writes three synthetic PNGs and returns their paths.
fn write_images(dir: &Path) -> Vec<PathBuf> {
    (0..3)
        .map(|i| {
            let p = dir.join(format!("img{i}.png"));
            let pic = Picture {
                rgb: synthetic(64 + 16 * i, 80, i as u32),
                alpha: None,
            };
            websr::image::save(&pic, &p).unwrap();
            p
        })
        .collect()
}

/// A manifest over `files` scored by the test scorer (sub-images of 32).
fn manifest_for(files: &[PathBuf], params: SelectParams) -> SubsetManifest {
    let device = Device::flex();
    let model = scorer(2);
    let mut all = Vec::new();
    for f in files {
        let pic = websr::image::load(f).unwrap();
        for p in score_grid(&model, std::slice::from_ref(&pic.rgb), 32, 32, &device).unwrap() {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            all.push((name, p.rect, p.score));
        }
    }
    SubsetManifest::build(scorer_info(), 32, 32, &all, params).unwrap()
}

#[test]
fn a_manifest_round_trips_with_scores_and_ranks() {
    let dir = tempdir("roundtrip");
    let files = write_images(&dir);
    let m = manifest_for(&files, SelectParams::hardest(0.5, 0.0));
    // 2x2 + 2x2 + 3x2 sub-images of 32 (heights 64, 80, 96; width 80).
    assert_eq!(m.scored, 14);
    assert_eq!(m.samples.len(), 7);
    assert_eq!((m.format.as_str(), m.version), (FORMAT, VERSION));
    for (i, s) in m.samples.iter().enumerate() {
        assert_eq!(s.rank, i, "DES keeps ranks 0..n");
    }
    assert!(m.samples.windows(2).all(|w| w[0].score >= w[1].score));
    let path = dir.join("subset.json");
    m.write(&path).unwrap();
    let back = SubsetManifest::read(&path).unwrap();
    assert_eq!(back.samples.len(), m.samples.len());
    for (a, b) in back.samples.iter().zip(&m.samples) {
        assert_eq!((&a.file, a.rect, a.rank), (&b.file, b.rect, b.rank));
        // serde_json's float parsing may be off by an ulp.
        assert!(
            (a.score - b.score).abs() <= 1e-12 * b.score.abs(),
            "{a:?} vs {b:?}"
        );
    }
    assert_eq!(back.selection, m.selection);
    // Relative names resolve against the manifest's folder.
    assert!(back
        .files()
        .iter()
        .all(|f| f.starts_with(&dir) && f.is_file()));
    // Deterministic: scoring again writes the same bytes.
    let again = manifest_for(&files, SelectParams::hardest(0.5, 0.0));
    let path2 = dir.join("again.json");
    again.write(&path2).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&path2).unwrap()
    );
}

#[test]
fn a_manifest_with_a_missing_file_is_a_clear_error() {
    let dir = tempdir("missing");
    let files = write_images(&dir);
    let m = manifest_for(&files, SelectParams::hardest(1.0, 0.0));
    let path = dir.join("subset.json");
    m.write(&path).unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    let err = SubsetManifest::read(&path).unwrap_err().to_string();
    assert!(err.contains("missing") && err.contains("img1.png"), "{err}");
}

#[test]
fn a_manifest_with_a_duplicate_sample_is_a_clear_error() {
    let dir = tempdir("dup");
    let files = write_images(&dir);
    let mut m = manifest_for(&files, SelectParams::hardest(0.5, 0.0));
    let first = m.samples[0].clone();
    m.samples.push(first.clone());
    let path = dir.join("subset.json");
    m.write(&path).unwrap();
    let err = SubsetManifest::read(&path).unwrap_err().to_string();
    assert!(err.contains("twice") && err.contains(&first.file), "{err}");
    // The same file twice with different rectangles is fine.
    let ok = manifest_for(&files, SelectParams::hardest(1.0, 0.0));
    assert!(ok.samples.iter().filter(|s| s.file == "img0.png").count() > 1);
    ok.write(&path).unwrap();
    SubsetManifest::read(&path).unwrap();
}

#[test]
fn a_manifest_of_another_format_or_version_is_a_clear_error() {
    let dir = tempdir("version");
    let files = write_images(&dir);
    let m = manifest_for(&files, SelectParams::hardest(0.5, 0.0));
    let path = dir.join("subset.json");
    m.write(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"version\": 1", "\"version\": 99")).unwrap();
    let err = SubsetManifest::read(&path).unwrap_err().to_string();
    assert!(err.contains("version"), "{err}");
    std::fs::write(&path, text.replace(FORMAT, "something-else")).unwrap();
    let err = SubsetManifest::read(&path).unwrap_err().to_string();
    assert!(err.contains("not a subset manifest"), "{err}");
    std::fs::write(&path, "{not json").unwrap();
    assert!(SubsetManifest::read(&path).is_err());
}

#[cfg(feature = "train")]
mod training {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use websr::train::data::TrainingSet;
    use websr::train::{Schedule, TrainConfig, Trainer, TrainingRun};

    /// Black picture with a white and a mid-grey square: crops from the two squares only are
    /// constant 1.0 or 0.5 patches, anything else contains black.
    fn two_squares() -> Planar {
        let (h, w) = (96, 128);
        let mut p = Planar::zeros(3, h, w);
        for c in 0..3 {
            let plane = p.plane_mut(c);
            for y in 0..32 {
                for x in 0..32 {
                    plane[(8 + y) * w + 16 + x] = 1.0;
                    plane[(50 + y) * w + 80 + x] = 0.5;
                }
            }
        }
        p
    }

    #[test]
    fn subset_crops_come_only_from_the_kept_sub_images_uniformly() {
        let image = two_squares();
        let mut set = TrainingSet::from_images(std::slice::from_ref(&image));
        set.set_regions(&[(0, rect(8, 16, 32, 32)), (0, rect(50, 80, 32, 32))])
            .unwrap();
        let mut rng = StdRng::seed_from_u64(4);
        let b = set.batch(&mut rng, 400, 16, 2);
        let per = 3 * 16 * 16;
        let (mut white, mut grey) = (0, 0);
        for k in 0..b.n {
            let patch = &b.hr[k * per..(k + 1) * per];
            if patch.iter().all(|&v| v == 1.0) {
                white += 1;
            } else if patch.iter().all(|&v| (v - 128.0 / 255.0).abs() < 1e-6) {
                grey += 1;
            } else {
                panic!("crop {k} left the kept sub-images");
            }
        }
        assert!(white > 150 && grey > 150, "not uniform: {white} / {grey}");
        // Without a subset, crops land everywhere (and mostly on black).
        let full = TrainingSet::from_images(std::slice::from_ref(&image));
        let b = full.batch(&mut rng, 50, 16, 2);
        assert!(b.hr.contains(&0.0));
        // A rectangle outside the image is an error.
        let mut bad = TrainingSet::from_images(std::slice::from_ref(&image));
        assert!(bad.set_regions(&[(0, rect(90, 0, 32, 32))]).is_err());
    }

    #[test]
    fn a_training_set_loads_from_a_manifest() {
        let dir = tempdir("load");
        let files = write_images(&dir);
        let m = manifest_for(&files, SelectParams::hardest(0.5, 0.0));
        let path = dir.join("subset.json");
        m.write(&path).unwrap();
        let m = SubsetManifest::read(&path).unwrap();
        let set = TrainingSet::load_subset(&m).unwrap();
        assert_eq!(set.num_regions(), Some(7));
        assert_eq!(set.len(), m.files().len());
    }

    #[test]
    fn resume_refuses_another_subset() {
        let device = Device::flex();
        let dir = tempdir("resume");
        let cfg = |subset: Option<&str>| TrainConfig {
            spec: ModelSpec {
                arch: Arch::WaveLr,
                scale: 2,
                features: 8,
                body_layers: 1,
            },
            schedule: Schedule {
                steps: 2,
                batch: 2,
                patch: 16,
                lr: 1e-3,
                lr_min: 1e-4,
                seed: 1,
                checkpoint_every: 1,
                validate_every: 1000,
            },
            subset_sha256: subset.map(str::to_string),
            degradation: None,
        };
        let data = TrainingSet::from_images(&[synthetic(32, 32, 1)]);
        let mut t = Trainer::new(cfg(Some("aaaa")), &dir, false, None, &device).unwrap();
        t.run(&data, None, &mut |_| true).unwrap();
        assert!(Trainer::new(cfg(Some("aaaa")), &dir, true, None, &device).is_ok());
        let err = Trainer::new(cfg(Some("bbbb")), &dir, true, None, &device)
            .err()
            .expect("another subset accepted")
            .to_string();
        assert!(err.contains("--subset"), "{err}");
        assert!(Trainer::new(cfg(None), &dir, true, None, &device).is_err());
    }
}
