//! One model type, one upscale path: both kinds of model load through `Model::from_bytes` (the
//! file's own format tag decides), run through `websr::upscale`, report progress per tile or
//! step, and are refused before any work when the result would not fit in memory.

mod common;

use common::{perturbed, synthetic, tiny_diffusion_spec};
use websr::burn::tensor::Device;
use websr::diffusion::{DiffusionKind, DiffusionModel, SampleOptions};
use websr::image::{Planar, MAX_OUTPUT_PIXELS};
use websr::models::{Arch, ModelSpec};
use websr::upscale::{check_output_size, upscale_rgb, upscale_rgb_async, UpscaleOptions};
use websr::{weights, Model, ModelKind, SrModel, WebSrError};

fn one_pass(device: &Device) -> SrModel {
    let spec = ModelSpec {
        arch: Arch::WaveLr,
        scale: 2,
        features: 8,
        body_layers: 2,
    };
    perturbed(SrModel::init_seeded(spec, device, 3).unwrap(), 0.05)
}

fn diffusion(device: &Device) -> DiffusionModel {
    let spec = tiny_diffusion_spec(DiffusionKind::DiWa, false);
    DiffusionModel::init_seeded(spec, device, 4).unwrap()
}

fn sampling(steps: usize) -> UpscaleOptions {
    UpscaleOptions {
        sampling: SampleOptions {
            steps: Some(steps),
            eta: 0.0,
            seed: 9,
            yoda: false,
            ..SampleOptions::default()
        },
        ..UpscaleOptions::default()
    }
}

#[test]
fn one_loader_reads_either_kind_from_the_files_own_tag() {
    let device = Device::flex();
    let lr = synthetic(12, 10, 1);
    let pairs: [(Model, ModelKind); 2] = [
        (Model::from(one_pass(&device)), ModelKind::OnePass),
        (Model::from(diffusion(&device)), ModelKind::Diffusion),
    ];
    for (model, kind) in pairs {
        let bytes = model.to_bytes().unwrap();
        assert_eq!(weights::read_kind(&bytes).unwrap(), kind);
        let back = Model::from_bytes(&bytes, &device).unwrap();
        assert_eq!(back.kind(), kind);
        assert_eq!((back.scale(), back.label()), (model.scale(), model.label()));
        let opts = sampling(2);
        let a = upscale_rgb(&model, &lr, &opts, &device, &mut |_, _| true).unwrap();
        let b = upscale_rgb(&back, &lr, &opts, &device, &mut |_, _| true).unwrap();
        assert_eq!(a.data, b.data, "{kind:?}: the reloaded model differs");
    }
    let err = Model::from_bytes(b"not weights", &device).unwrap_err();
    assert!(matches!(err, WebSrError::Weights(_)), "{err}");
}

/// Runs the async path to the end and returns what each progress call saw.
fn progress_of(model: &Model, lr: &Planar, opts: &UpscaleOptions) -> Vec<(usize, usize, bool)> {
    let device = Device::flex();
    let mut seen = Vec::new();
    pollster::block_on(upscale_rgb_async(model, lr, opts, &device, |p| {
        seen.push((p.done, p.total, p.preview.is_some()));
        std::future::ready(true)
    }))
    .unwrap();
    seen
}

#[test]
fn progress_counts_tiles_or_steps_and_previews_come_only_from_diffusion() {
    let device = Device::flex();
    let lr = synthetic(24, 20, 2);
    let tiled = UpscaleOptions {
        tile: Some(10),
        overlap: 0,
        preview_every: 1,
        ..UpscaleOptions::default()
    };
    let seen = progress_of(&Model::from(one_pass(&device)), &lr, &tiled);
    assert_eq!(seen.len(), 6, "3x2 tiles: {seen:?}");
    assert!(seen
        .iter()
        .all(|&(_, total, preview)| total == 6 && !preview));

    let mut opts = sampling(5);
    opts.preview_every = 2;
    let seen = progress_of(&Model::from(diffusion(&device)), &lr, &opts);
    let expect: Vec<_> = (1..=5).map(|d| (d, 5, d % 2 == 0)).collect();
    assert_eq!(seen, expect, "a preview every 2 steps, none after the last");
}

#[test]
fn a_result_too_large_for_memory_is_refused_before_any_work() {
    let device = Device::flex();
    // The largest square input whose x4 result fits, and one row more.
    let side = ((MAX_OUTPUT_PIXELS as f64).sqrt() / 4.0).floor() as usize;
    assert!(check_output_size(side, side, 4).is_ok());
    let err = check_output_size(side, side + 1, 4).unwrap_err();
    assert!(matches!(err, WebSrError::OutputTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("pixel limit"), "{err}");
    assert!(matches!(check_output_size(0, 5, 2), Err(WebSrError::Empty)));
    // And through the upscale itself, for both kinds, with an empty image.
    let empty = Planar::zeros(3, 0, 0);
    for model in [
        Model::from(one_pass(&device)),
        Model::from(diffusion(&device)),
    ] {
        let mut called = false;
        let err = upscale_rgb(&model, &empty, &sampling(2), &device, &mut |_, _| {
            called = true;
            true
        })
        .unwrap_err();
        assert!(matches!(err, WebSrError::Empty) && !called, "{err}");
    }
}
