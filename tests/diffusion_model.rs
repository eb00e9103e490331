//! Diffusion models as shipped things: the spec and weights round-trip through safetensors
//! (hostile or wrong-kind files are refused), stepwise sampling equals one-shot sampling,
//! whole-image upscaling pads any size, and a resumed diffusion training continues exactly.

mod common;

use common::{
    max_abs_diff, planar_tensor, rewrite, serial, synthetic, tiny_diffusion_spec as tiny, values,
};
use websr::burn::tensor::Device;
use websr::diffusion::upscale::Upscaling;
use websr::diffusion::{DiffusionKind, DiffusionModel, DiffusionSpec, SampleOptions};
use websr::image::Planar;
use websr::models::{Arch, ModelSpec};
use websr::train::data::TrainingSet;
use websr::train::diffusion::{DiffusionTrainConfig, DiffusionTrainer};
use websr::train::{Schedule, TrainingRun};
use websr::upscale::{upscale_rgb, UpscaleOptions};
use websr::{Model, SrModel, WebSrError};

fn opts(steps: usize, seed: u64, yoda: bool) -> SampleOptions {
    SampleOptions {
        steps: Some(steps),
        eta: 0.0,
        seed,
        yoda,
        ..SampleOptions::default()
    }
}

fn weights_error(result: websr::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(WebSrError::Weights(m)) | Err(WebSrError::Invalid(m)) => m,
        other => panic!("expected a clear error, got {other:?}"),
    }
}

#[test]
fn diffusion_models_round_trip_through_safetensors_and_refuse_bad_files() {
    let _turn = serial();
    let device = Device::flex();
    let lr = planar_tensor(&synthetic(8, 8, 1), &device);
    for (kind, yoda) in [(DiffusionKind::Sr3, false), (DiffusionKind::DiWa, true)] {
        let model = DiffusionModel::init_seeded(tiny(kind, yoda), &device, 3).unwrap();
        let bytes = model.to_bytes().unwrap();
        let back = DiffusionModel::from_bytes(&bytes, &device).unwrap();
        assert_eq!(back.spec, model.spec);
        let a = values(model.sample(lr.clone(), &opts(3, 5, yoda)));
        let b = values(back.sample(lr.clone(), &opts(3, 5, yoda)));
        assert_eq!(a, b, "{kind:?}: the loaded model samples differently");
        let other = DiffusionModel::init_seeded(tiny(kind, yoda), &device, 4).unwrap();
        let c = values(other.sample(lr.clone(), &opts(3, 5, yoda)));
        assert!(
            max_abs_diff(&a, &c) > 1e-4,
            "{kind:?}: weights do not matter"
        );

        // The wrong kind of file, each way.
        let msg = weights_error(websr::weights::from_bytes(&bytes, &device));
        assert!(msg.contains("diffusion model"), "{msg}");
        // A hostile spec asking for a huge network.
        let huge = rewrite(&bytes, |h, _| {
            let spec = h["__metadata__"]["spec"].as_str().unwrap().to_string();
            let mut spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
            spec["unet"]["inner_channels"] = 100_000.into();
            h["__metadata__"]["spec"] = spec.to_string().into();
        });
        let msg = weights_error(DiffusionModel::from_bytes(&huge, &device));
        assert!(msg.contains("U-Net width"), "{msg}");
        // A spec for another network than the tensors hold.
        let mut wider = tiny(kind, yoda);
        wider.unet.inner_channels = 16;
        let swapped = rewrite(&bytes, |h, _| {
            h["__metadata__"]["spec"] = serde_json::to_string(&wider).unwrap().into();
        });
        let msg = weights_error(DiffusionModel::from_bytes(&swapped, &device));
        let needs = format!("but a {} x2 model (U-Net width 16) needs [", wider.label());
        for needle in ["tensor '", "has shape [", "in the file", &needs] {
            assert!(msg.contains(needle), "'{msg}' lacks '{needle}'");
        }
        // A NaN weight.
        let poisoned = rewrite(&bytes, |_, data| {
            data[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        });
        let msg = weights_error(DiffusionModel::from_bytes(&poisoned, &device));
        assert!(msg.contains("NaN"), "{msg}");
    }
    let sr = SrModel::init(
        ModelSpec {
            arch: Arch::WaveLr,
            scale: 2,
            features: 8,
            body_layers: 1,
        },
        &device,
    )
    .unwrap();
    let bytes = websr::weights::to_bytes(&sr).unwrap();
    let msg = weights_error(DiffusionModel::from_bytes(&bytes, &device));
    assert!(msg.contains("one-pass"), "{msg}");
}

#[test]
fn specs_outside_the_bounds_are_refused() {
    assert!(DiffusionSpec::default_for(DiffusionKind::DiWa, 4)
        .validate()
        .is_ok());
    assert!(DiffusionSpec::default_for(DiffusionKind::Sr3, 2)
        .validate()
        .is_ok());
    let mut s = DiffusionSpec::default_for(DiffusionKind::DiWa, 4);
    s.predictor = None;
    assert!(s.validate().is_err(), "DiWa without its predictor");
    let mut s = DiffusionSpec::default_for(DiffusionKind::Sr3, 4);
    s.unet.norm_groups = 5;
    assert!(s.validate().is_err(), "groups that do not divide the width");
    let mut s = DiffusionSpec::default_for(DiffusionKind::Sr3, 3);
    assert!(s.validate().is_err(), "scale 3");
    s.scale = 4;
    s.unet.channel_mults = vec![1; 7];
    assert!(s.validate().is_err(), "seven levels");
    let mut s = DiffusionSpec::default_for(DiffusionKind::Sr3, 4);
    s.predictor_l1 = true;
    assert!(s.validate().is_err(), "SR3 has no predictor to train");
}

#[test]
fn stepwise_sampling_equals_the_one_shot_sample_and_ends_at_its_preview() {
    let _turn = serial();
    let device = Device::flex();
    let lr = planar_tensor(&synthetic(8, 8, 2), &device);
    for kind in [DiffusionKind::Sr3, DiffusionKind::DiWa] {
        let model = DiffusionModel::init_seeded(tiny(kind, false), &device, 1).unwrap();
        let o = opts(4, 9, false);
        let whole = values(model.sample(lr.clone(), &o));
        let mut run = model.start_sampling(lr.clone(), &o);
        assert_eq!(run.steps(), 4);
        let mut previews = Vec::new();
        while !run.is_done() {
            model.step(&mut run);
            previews.push(values(run.preview()));
        }
        assert_eq!(run.steps_done(), 4);
        assert_eq!(previews.len(), 4);
        let last = previews.last().unwrap().clone();
        let finished = values(run.finish());
        assert_eq!(finished, whole, "{kind:?}: stepping changed the sample");
        // DDIM's last step lands on its own clean estimate.
        assert!(max_abs_diff(&last, &finished) < 1e-5, "{kind:?}");
        assert!(
            max_abs_diff(&previews[0], &finished) > 1e-4,
            "{kind:?}: previews never change"
        );
        assert!(finished.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn upscaling_pads_any_size_crops_back_and_tiles_huge_inputs() {
    let _turn = serial();
    let device = Device::flex();
    let model = DiffusionModel::init_seeded(tiny(DiffusionKind::DiWa, true), &device, 2).unwrap();
    let lr = synthetic(7, 5, 3);
    let o = opts(2, 1, true);
    let up = UpscaleOptions {
        sampling: o.clone(),
        ..UpscaleOptions::default()
    };
    let one = Model::from(model.clone());
    let out = upscale_rgb(&one, &lr, &up, &device, &mut |_, _| true).unwrap();
    assert_eq!((out.channels, out.height, out.width), (3, 14, 10));
    assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
    // Stepwise through the browser's path gives the same image.
    let mut job = Upscaling::start(&model, &lr, &o, &device).unwrap();
    while !job.is_done() {
        job.step(&model);
    }
    let stepped = pollster::block_on(job.finish_async()).unwrap();
    assert_eq!(stepped.data, out.data);
    // Cancelling stops with an error.
    let cancelled = upscale_rgb(&one, &lr, &up, &device, &mut |done, _| done < 1);
    assert!(matches!(cancelled, Err(WebSrError::Cancelled)));
    // Above the whole-image limit the image is sampled in tiles (tests/diffusion_tiles.rs).
    let huge = Planar::zeros(3, 300, 300);
    assert!(
        Upscaling::start(&model, &huge, &o, &device)
            .unwrap()
            .tiles()
            > 1
    );
}

fn train_config(steps: usize) -> DiffusionTrainConfig {
    DiffusionTrainConfig {
        spec: tiny(DiffusionKind::DiWa, true),
        schedule: Schedule {
            steps,
            batch: 2,
            patch: 16,
            lr: 1e-3,
            lr_min: 1e-4,
            seed: 5,
            checkpoint_every: 1000,
            validate_every: 1000,
        },
        val_steps: 2,
    }
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("websr-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn a_resumed_diffusion_run_continues_exactly_and_training_changes_the_model() {
    let _turn = serial();
    let device = Device::flex();
    let data = TrainingSet::from_images(&[synthetic(32, 32, 3), synthetic(24, 40, 4)]);
    let straight_dir = tempdir("diff-straight");
    let mut straight =
        DiffusionTrainer::new(train_config(4), &straight_dir, false, None, &device).unwrap();
    straight.run(&data, None, &mut |_| true).unwrap();

    let resumed_dir = tempdir("diff-resumed");
    let mut first =
        DiffusionTrainer::new(train_config(4), &resumed_dir, false, None, &device).unwrap();
    first.run(&data, None, &mut |info| info.step < 2).unwrap();
    drop(first);
    let mut second =
        DiffusionTrainer::new(train_config(4), &resumed_dir, true, None, &device).unwrap();
    assert_eq!(second.state.step, 2);
    second.run(&data, None, &mut |_| true).unwrap();

    let lr = planar_tensor(&synthetic(8, 8, 6), &device);
    let o = opts(3, 2, true);
    let a = values(straight.inference_model().sample(lr.clone(), &o));
    let b = values(second.inference_model().sample(lr.clone(), &o));
    assert!(max_abs_diff(&a, &b) < 1e-6, "the resumed run drifted");
    let saved = DiffusionModel::load(resumed_dir.join("last.safetensors"), &device).unwrap();
    assert_eq!(
        values(saved.sample(lr.clone(), &o)),
        b,
        "the checkpoint is not the model"
    );
    let fresh = DiffusionModel::init_seeded(train_config(4).spec, &device, 5).unwrap();
    assert!(
        max_abs_diff(&a, &values(fresh.sample(lr, &o))) > 1e-5,
        "training changed nothing"
    );

    // A resume with another spec is refused.
    let mut other = train_config(4);
    other.spec.yoda = None;
    let msg =
        weights_error(DiffusionTrainer::new(other, &resumed_dir, true, None, &device).map(|_| ()));
    assert!(msg.contains("checkpoint"), "{msg}");
}
