//! Training: a small model learns above bicubic, and a resumed run continues exactly where an
//! uninterrupted one would be.

mod common;

use common::{max_abs_diff, shapes, synthetic};
use websr::burn::tensor::Device;
use websr::eval::score;
use websr::models::{Arch, ModelSpec};
use websr::resize::{degrade_bicubic, imresize};
use websr::train::data::{split_holdout, TrainingSet};
use websr::train::{CheckpointPaths, Schedule, TrainConfig, Trainer, TrainingRun};
use websr::upscale::run_model;
use websr::weights;

/// flex sums in parallel; with two trainings in one process the rayon work split changes and the
/// float sums with it, so the tests here take turns (a run alone is bit-for-bit reproducible).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(steps: usize) -> TrainConfig {
    TrainConfig {
        spec: ModelSpec {
            arch: Arch::WaveLr,
            scale: 2,
            features: 16,
            body_layers: 2,
        },
        schedule: Schedule {
            steps,
            batch: 4,
            patch: 24,
            lr: 2e-3,
            lr_min: 1e-4,
            seed: 7,
            checkpoint_every: 1000,
            validate_every: 1000,
        },
        subset_sha256: None,
        degradation: None,
    }
}

#[test]
fn a_small_model_learns_to_beat_bicubic() {
    let _turn = serial();
    let device = Device::flex();
    let image = shapes(64, 64, 11);
    let data = TrainingSet::from_images(std::slice::from_ref(&image));
    let dir = tempdir("learn");
    let mut cfg = config(400);
    cfg.spec.features = 32;
    cfg.schedule.batch = 8;
    cfg.schedule.lr = 3e-3;
    let mut trainer = Trainer::new(cfg, &dir, false, None, &device).unwrap();
    trainer.run(&data, None, &mut |_| true).unwrap();
    let (hr, lr) = degrade_bicubic(&image, 2);
    let ours = score(
        "ours",
        &run_model(&trainer.inference_model(), &lr, &device),
        &hr,
        2,
    );
    let base = score("bicubic", &imresize(&lr, 2.0), &hr, 2);
    assert!(
        ours.psnr_y > base.psnr_y + 1.0,
        "trained {:.2} dB vs bicubic {:.2} dB",
        ours.psnr_y,
        base.psnr_y
    );
}

#[test]
fn resuming_reproduces_an_uninterrupted_run() {
    let _turn = serial();
    let device = Device::flex();
    let data = TrainingSet::from_images(&[synthetic(48, 48, 3), synthetic(40, 56, 4)]);

    let straight_dir = tempdir("straight");
    let mut straight = Trainer::new(config(6), &straight_dir, false, None, &device).unwrap();
    straight.run(&data, None, &mut |_| true).unwrap();

    let resumed_dir = tempdir("resumed");
    let mut first = Trainer::new(config(6), &resumed_dir, false, None, &device).unwrap();
    first.run(&data, None, &mut |info| info.step < 3).unwrap(); // stop (and checkpoint) at 3
    assert_eq!(first.state.step, 3);
    drop(first);
    let mut second = Trainer::new(config(6), &resumed_dir, true, None, &device).unwrap();
    assert_eq!(second.state.step, 3);
    second.run(&data, None, &mut |_| true).unwrap();

    // Bit-for-bit: the final checkpoints (`weights::save` of the last step) are the same bytes,
    // so a resume that drifts by one ulp anywhere (optimizer moments, its step count, the
    // batches, the learning rate) fails here.
    let last = |dir: &std::path::Path| std::fs::read(CheckpointPaths::new(dir).model).unwrap();
    let (a, b) = (last(&straight_dir), last(&resumed_dir));
    if a != b {
        panic!(
            "the resumed run's weights differ from the uninterrupted run's: {}",
            first_difference(&a, &b)
        );
    }
    // ... and the same bytes the in-memory model of each run saves to.
    assert!(weights::to_bytes(&straight.inference_model()).unwrap() == a);
    assert!(weights::to_bytes(&second.inference_model()).unwrap() == b);

    let lr = synthetic(10, 10, 5);
    let trained = run_model(&straight.inference_model(), &lr, &device);
    let fresh = run_model(
        &websr::SrModel::init(config(6).spec, &device).unwrap(),
        &lr,
        &device,
    );
    assert!(
        max_abs_diff(&trained.data, &fresh.data) > 1e-4,
        "training changed nothing"
    );
}

/// Where two weights files first differ: the tensor and element, with both f32 values and their
/// bits, or the header when that is what differs.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    let (ta, tb) = (tensors(a), tensors(b));
    if ta.keys().ne(tb.keys()) {
        return format!("different tensors: {:?} vs {:?}", ta.keys(), tb.keys());
    }
    for (name, va) in &ta {
        let vb = &tb[name];
        if let Some(i) = (0..va.len().min(vb.len())).find(|&i| va[i].to_bits() != vb[i].to_bits()) {
            return format!(
                "'{name}'[{i}]: {:e} ({:#010x}) vs {:e} ({:#010x})",
                va[i],
                va[i].to_bits(),
                vb[i],
                vb[i].to_bits()
            );
        }
    }
    "same tensor values, different header".into()
}

/// Every tensor of a weights file, by name, as f32 values.
fn tensors(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<f32>> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    st.iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (name.to_string(), values)
        })
        .collect()
}

#[test]
fn shallower_initial_weights_grow_into_the_requested_depth() {
    let _turn = serial();
    let device = Device::flex();
    let data = TrainingSet::from_images(&[synthetic(48, 48, 3)]);
    let dir = tempdir("deepen-src");
    let mut shallow = Trainer::new(config(20), &dir, false, None, &device).unwrap();
    shallow.run(&data, None, &mut |_| true).unwrap();
    let init = dir.join("shallow.safetensors");
    websr::weights::save(&shallow.inference_model(), &init).unwrap();

    let mut deep_cfg = config(20);
    deep_cfg.spec.body_layers = 4;
    let deep_dir = tempdir("deepen-dst");
    let deep = Trainer::new(deep_cfg.clone(), &deep_dir, false, Some(&init), &device).unwrap();
    assert_eq!(deep.model.spec.body_layers, 4);
    let lr = synthetic(10, 12, 5);
    let d = max_abs_diff(
        &run_model(&shallow.inference_model(), &lr, &device).data,
        &run_model(&deep.inference_model(), &lr, &device).data,
    );
    assert!(
        d < 1e-5,
        "the deepened start differs from its weights by {d}"
    );

    // Anything else than depth must still match.
    let mut wider = deep_cfg;
    wider.spec.features = 32;
    let err = Trainer::new(wider, &tempdir("deepen-bad"), false, Some(&init), &device)
        .err()
        .expect("a wider model cannot start from these weights")
        .to_string();
    assert!(err.contains("initial weights are for"), "{err}");
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("websr-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The validation slice is the last files in folder-then-name order, disjoint from training,
/// the same on every call; holding out everything is refused.
#[test]
fn holdout_split_is_disjoint_deterministic_and_refuses_to_hold_out_everything() {
    let root = tempdir("holdout");
    let (a, b) = (root.join("a"), root.join("b"));
    for (dir, names) in [
        (&a, ["2.png", "1.png", "notes.txt"]),
        (&b, ["y.png", "x.png", "z.bmp"]),
    ] {
        std::fs::create_dir_all(dir).unwrap();
        for name in names {
            std::fs::write(dir.join(name), b"not decoded by the split").unwrap();
        }
    }
    let dirs = [a.clone(), b.clone()];
    let (train, held) = split_holdout(&dirs, 2).unwrap();
    assert_eq!(held, vec![b.join("y.png"), b.join("z.bmp")]);
    assert_eq!(
        train,
        vec![a.join("1.png"), a.join("2.png"), b.join("x.png")]
    );
    assert_eq!(split_holdout(&dirs, 2).unwrap(), (train, held));
    let err = split_holdout(&dirs, 5).unwrap_err().to_string();
    assert!(err.contains("cannot hold out 5 of 5"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
