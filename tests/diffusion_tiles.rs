//! Diffusion as a product feature: DiWa on a frozen one-pass predictor (its output is the
//! starting point and training never moves it), truncated few-step runs, and tiled sampling of
//! any size that draws the noise the whole image has at each pixel.

mod common;

use common::{
    max_abs_diff, perturbed, planar_tensor, serial, synthetic, tiny_diffusion_spec as tiny, values,
};
use websr::burn::tensor::Device;
use websr::diffusion::model::PredictorSpec;
use websr::diffusion::upscale::{
    sample_tile_async, sample_tiles_on_threads, tile_count, Upscaling,
};
use websr::diffusion::{DiffusionKind, DiffusionModel, SampleOptions};
use websr::error::WebSrError;
use websr::image::Planar;
use websr::metrics::psnr_rgb as psnr;
use websr::models::{Arch, ModelSpec};
use websr::train::data::TrainingSet;
use websr::train::diffusion::{DiffusionTrainConfig, DiffusionTrainer};
use websr::train::{Schedule, TrainingRun};
use websr::upscale::{upscale_rgb, UpscaleOptions};
use websr::{Model, SrModel};

fn opts(steps: usize, seed: u64) -> SampleOptions {
    SampleOptions {
        steps: Some(steps),
        seed,
        ..SampleOptions::default()
    }
}

/// A small trained-looking WaveLR x2 (perturbed weights, so its output is not bicubic).
fn one_pass(device: &Device) -> SrModel {
    let spec = ModelSpec {
        arch: Arch::WaveLr,
        scale: 2,
        features: 8,
        body_layers: 1,
    };
    perturbed(SrModel::init_seeded(spec, device, 4).unwrap(), 0.05)
}

fn frozen_diwa(device: &Device, seed: u64) -> DiffusionModel {
    let mut spec = tiny(DiffusionKind::DiWa, false);
    spec.residual_scale = 4.0;
    DiffusionModel::on_frozen_predictor(spec, one_pass(device), device, seed).unwrap()
}

fn upscale(model: &DiffusionModel, lr: &Planar, sampling: SampleOptions) -> Planar {
    let opts = UpscaleOptions {
        sampling,
        ..UpscaleOptions::default()
    };
    let device = Device::flex();
    upscale_rgb(
        &Model::from(model.clone()),
        lr,
        &opts,
        &device,
        &mut |_, _| true,
    )
    .unwrap()
}

#[test]
fn diwa_on_a_frozen_predictor_starts_from_its_output_round_trips_and_never_trains_it() {
    let _turn = serial();
    let device = Device::flex();
    let predictor = one_pass(&device);
    let model = frozen_diwa(&device, 1);
    assert!(matches!(
        model.spec.predictor,
        Some(PredictorSpec::Frozen { ref one_pass }) if *one_pass == predictor.spec
    ));
    let lr = planar_tensor(&synthetic(8, 8, 1), &device);
    let alone = values(predictor.forward(lr.clone()).clamp(0.0, 1.0));
    let initial = values(model.initial_prediction(lr.clone()).unwrap());
    assert!(
        max_abs_diff(&alone, &initial) < 1e-5,
        "x_init must be the one-pass model's output"
    );

    // The predictor's weights travel in the file, under the same spec.
    let back = DiffusionModel::from_bytes(&model.to_bytes().unwrap(), &device).unwrap();
    assert_eq!(back.spec, model.spec);
    assert_eq!(
        values(back.initial_prediction(lr.clone()).unwrap()),
        initial
    );

    // Training moves the U-Net, never the predictor.
    let dir = std::env::temp_dir().join(format!("websr-test-frozen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let weights = dir.join("predictor.safetensors");
    websr::weights::save(&predictor, &weights).unwrap();
    let cfg = DiffusionTrainConfig {
        spec: model.spec.clone(),
        schedule: Schedule {
            steps: 3,
            batch: 2,
            patch: 16,
            lr: 1e-2,
            lr_min: 1e-3,
            seed: 5,
            checkpoint_every: 1000,
            validate_every: 1000,
        },
        val_steps: 2,
    };
    let missing = DiffusionTrainer::new(cfg.clone(), &dir.join("run0"), false, None, &device);
    assert!(
        missing.is_err(),
        "a frozen run needs the predictor's weights"
    );
    let mut trainer =
        DiffusionTrainer::new(cfg, &dir.join("run"), false, Some(&weights), &device).unwrap();
    let data = TrainingSet::from_images(&[synthetic(32, 32, 3), synthetic(24, 40, 4)]);
    let before = values(trainer.inference_model().sample(lr.clone(), &opts(2, 3)));
    trainer.run(&data, None, &mut |_| true).unwrap();
    let trained = trainer.inference_model();
    assert_eq!(
        values(trained.initial_prediction(lr.clone()).unwrap()),
        initial,
        "training moved the frozen predictor"
    );
    let after = values(trained.sample(lr, &opts(2, 3)));
    assert!(
        max_abs_diff(&before, &after) > 1e-5,
        "training changed nothing"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_truncated_run_takes_its_steps_over_part_of_the_schedule_and_stays_near_its_guess() {
    let _turn = serial();
    let device = Device::flex();
    let model = frozen_diwa(&device, 2);
    let lr = synthetic(12, 12, 2);
    let initial = values(
        model
            .initial_prediction(planar_tensor(&lr, &device))
            .unwrap(),
    );
    let distance = |strength: f64| {
        let mut o = opts(3, 7);
        o.strength = strength;
        let mut job = Upscaling::start(&model, &lr, &o, &device).unwrap();
        assert_eq!(job.steps(), 3, "strength {strength}: the steps asked for");
        while !job.is_done() {
            job.step(&model);
        }
        let out = pollster::block_on(job.finish_async()).unwrap();
        max_abs_diff(&out.data, &initial)
    };
    let (near, far) = (distance(0.01), distance(1.0));
    // An untrained U-Net's noise estimate is wrong by O(1); a run from level 0.01 can move the
    // residual only by that times sqrt(1 - alpha_bar), a full run by all of it.
    assert!(near * 5.0 < far, "strength 0.01: {near}, strength 1: {far}");
    let mut bad = opts(3, 7);
    bad.strength = 0.0;
    assert!(Upscaling::start(&model, &lr, &bad, &device).is_err());
}

#[test]
fn tiles_draw_the_whole_images_noise_so_a_tiled_sample_matches_the_untiled_one() {
    let _turn = serial();
    let device = Device::flex();
    let model = frozen_diwa(&device, 3);
    let lr = synthetic(44, 52, 5);
    for eta in [0.0, 0.5] {
        let base = SampleOptions { eta, ..opts(3, 11) };
        let whole = upscale(&model, &lr, base.clone());
        let tiled_opts = SampleOptions {
            tile: Some(24),
            ..base.clone()
        };
        let job = Upscaling::start(&model, &lr, &tiled_opts, &device).unwrap();
        assert!(job.tiles() >= 4, "{} tiles", job.tiles());
        let tiled = upscale(&model, &lr, tiled_opts);
        assert_eq!((tiled.height, tiled.width), (88, 104));
        // Another seed: how far apart two samples with independent noise are.
        let other = upscale(&model, &lr, SampleOptions { seed: 12, ..base });
        let (same_noise, other_noise) = (psnr(&tiled, &whole, 0), psnr(&other, &whole, 0));
        eprintln!("eta {eta}: tiled vs whole {same_noise:.1} dB, another seed {other_noise:.1} dB");
        assert!(
            same_noise > other_noise + 10.0,
            "eta {eta}: tiled {same_noise:.1} dB vs another seed {other_noise:.1} dB"
        );
    }
}

#[test]
fn an_image_above_the_whole_image_limit_is_sampled_in_tiles() {
    let _turn = serial();
    let device = Device::flex();
    let model = frozen_diwa(&device, 4);
    let lr = Planar::zeros(3, 300, 300);
    let job = Upscaling::start(&model, &lr, &opts(2, 1), &device).unwrap();
    assert!(job.tiles() >= 9, "{} tiles", job.tiles());
    assert_eq!(job.steps(), 2 * job.tiles());
    assert!(!job.can_preview(), "no whole-image preview while tiled");
}

/// A 48x64 image: a checkerboard in the left quarter, flat grey elsewhere.
fn detail_on_the_left() -> Planar {
    let (h, w) = (48, 64);
    let mut p = Planar::zeros(3, h, w);
    for c in 0..3 {
        for y in 0..h {
            for x in 0..w {
                let v = match x < 16 && (x / 2 + y / 2) % 2 == 0 {
                    true => 0.9,
                    false if x < 16 => 0.1,
                    false => 0.5,
                };
                p.plane_mut(c)[y * w + x] = v;
            }
        }
    }
    p
}

/// Runs an upscale to the end, stepping its tiles in place (every step of every tile without
/// `skip`); returns the image, the network evaluations and the steps.
fn sampled_in_place(
    model: &DiffusionModel,
    lr: &Planar,
    opts: &SampleOptions,
    skip: bool,
) -> (Planar, usize, usize) {
    let device = Device::flex();
    let mut job = Upscaling::start(model, lr, opts, &device).unwrap();
    if !skip {
        job = job.without_skipping();
    }
    pollster::block_on(async {
        job.settle_async(model).await.unwrap();
        while !job.is_done() {
            job.step(model);
            job.settle_async(model).await.unwrap();
        }
    });
    let (evaluations, steps) = (job.evaluations(), job.steps());
    (
        pollster::block_on(job.finish_async()).unwrap(),
        evaluations,
        steps,
    )
}

/// Runs a tiled YODA upscale to the end; returns the image, the network evaluations and steps.
fn tiled_yoda(model: &DiffusionModel, lr: &Planar, skip: bool) -> (Planar, usize, usize) {
    let opts = SampleOptions {
        yoda: true,
        tile: Some(16),
        eta: 0.3,
        ..opts(6, 4)
    };
    sampled_in_place(model, lr, &opts, skip)
}

#[test]
fn tiled_yoda_skips_the_steps_a_flat_tile_leaves_unmasked_and_changes_no_pixel() {
    let _turn = serial();
    let device = Device::flex();
    let model = frozen_diwa(&device, 5);
    let lr = detail_on_the_left();
    let (all, every, steps) = tiled_yoda(&model, &lr, false);
    assert_eq!(every, steps, "without skipping every step runs the network");
    let (skipped, fewer, _) = tiled_yoda(&model, &lr, true);
    eprintln!("{fewer} of {steps} network evaluations with skipping");
    assert!(
        fewer * 10 < steps * 7,
        "flat tiles must skip most steps: {fewer} of {steps}"
    );
    assert_eq!(skipped.data, all.data, "skipping must not change a pixel");
}

/// Samples every tile of a tiled upscale as a [`TileTask`] (last tile first, as a pool's
/// workers may finish them) and blends them in plan order; returns the image and evaluations.
fn sampled_as_tasks(model: &DiffusionModel, lr: &Planar, opts: &SampleOptions) -> (Planar, usize) {
    let device = Device::flex();
    let mut job = Upscaling::start(model, lr, opts, &device).unwrap();
    pollster::block_on(async {
        let tasks = job.tile_tasks_async(model).await.unwrap();
        assert_eq!(tasks.len(), job.tiles());
        let mut outputs = Vec::new();
        for task in tasks.iter().rev() {
            let mut steps = 0;
            let after = |done: usize, total: usize| {
                steps = done;
                assert_eq!(total, model.steps_for(opts));
                async { true }
            };
            outputs.push(
                sample_tile_async(model, task, opts, &device, after)
                    .await
                    .unwrap(),
            );
            assert_eq!(steps, model.steps_for(opts), "progress after every step");
        }
        let (wrong_tile, _) = &outputs[0];
        assert!(
            job.add_sampled(1, wrong_tile, 0).is_err(),
            "a tile out of order is refused"
        );
        for (i, (output, evaluations)) in outputs.iter().rev().enumerate() {
            job.add_sampled(i, output, *evaluations).unwrap();
        }
        let evaluations = job.evaluations();
        (job.finish_async().await.unwrap(), evaluations)
    })
}

#[test]
fn tiles_sampled_as_tasks_anywhere_give_the_bytes_of_sampling_them_in_place() {
    let _turn = serial();
    let device = Device::flex();
    let model = frozen_diwa(&device, 5);
    let lr = detail_on_the_left();
    for yoda in [false, true] {
        let opts = SampleOptions {
            yoda,
            tile: Some(16),
            eta: 0.3,
            ..opts(4, 9)
        };
        assert_eq!(
            tile_count(&model, lr.height, lr.width, &opts),
            Upscaling::start(&model, &lr, &opts, &device)
                .unwrap()
                .tiles()
        );
        let (in_place, in_place_evaluations, _) = sampled_in_place(&model, &lr, &opts, true);
        let (pooled, pooled_evaluations) = sampled_as_tasks(&model, &lr, &opts);
        assert_eq!(
            pooled.data, in_place.data,
            "yoda {yoda}: the bytes must match"
        );
        assert_eq!(pooled_evaluations, in_place_evaluations, "yoda {yoda}");
    }
}

#[test]
fn an_image_sampled_whole_shares_no_tasks_and_a_task_is_checked() {
    let _turn = serial();
    let device = Device::flex();
    let model = frozen_diwa(&device, 6);
    let lr = synthetic(12, 16, 2);
    let job = Upscaling::start(&model, &lr, &opts(2, 1), &device).unwrap();
    assert_eq!(tile_count(&model, 12, 16, &opts(2, 1)), 1);
    let huge = SampleOptions {
        tile: Some(usize::MAX),
        ..opts(2, 1)
    };
    assert_eq!(
        tile_count(&model, 12, 16, &huge),
        1,
        "a tile beyond the image"
    );
    assert_eq!(
        Upscaling::start(&model, &lr, &huge, &device)
            .unwrap()
            .tiles(),
        1
    );
    assert!(pollster::block_on(job.tile_tasks_async(&model)).is_err());
    let tiled = SampleOptions {
        tile: Some(8),
        ..opts(2, 1)
    };
    let job = Upscaling::start(&model, &lr, &tiled, &device).unwrap();
    let mut task = pollster::block_on(job.tile_tasks_async(&model)).unwrap()[0].clone();
    task.input = Planar::zeros(3, task.input.height + 1, task.input.width);
    let run = sample_tile_async(&model, &task, &tiled, &device, |_, _| async { true });
    let err = pollster::block_on(run).unwrap_err().to_string();
    assert!(err.contains("multiple of"), "{err}");
    let yoda = SampleOptions {
        yoda: true,
        ..tiled.clone()
    };
    let job = Upscaling::start(&model, &lr, &yoda, &device).unwrap();
    let mut task = pollster::block_on(job.tile_tasks_async(&model)).unwrap()[0].clone();
    let slice = task
        .importance
        .as_mut()
        .expect("a YODA task carries its slice");
    slice.dims[2] += 1;
    let run = sample_tile_async(&model, &task, &yoda, &device, |_, _| async { true });
    let err = pollster::block_on(run).unwrap_err().to_string();
    assert!(err.contains("importance slice"), "{err}");
    let cancelled = pollster::block_on(sample_tile_async(
        &model,
        &pollster::block_on(job.tile_tasks_async(&model)).unwrap()[0],
        &tiled,
        &device,
        |_, _| async { false },
    ));
    assert!(matches!(cancelled, Err(WebSrError::Cancelled)));
}

#[test]
fn tiles_sampled_on_threads_give_the_bytes_of_sampling_them_in_place_and_stop_on_cancel() {
    let _turn = serial();
    let device = Device::flex();
    let model = frozen_diwa(&device, 7);
    let lr = detail_on_the_left();
    let opts = SampleOptions {
        yoda: true,
        tile: Some(16),
        eta: 0.3,
        ..opts(3, 5)
    };
    let (in_place, evaluations, steps) = sampled_in_place(&model, &lr, &opts, true);
    for threads in [1, 3] {
        let mut job = Upscaling::start(&model, &lr, &opts, &device).unwrap();
        let mut reported = Vec::new();
        let mut after = |done, total| {
            reported.push((done, total));
            true
        };
        sample_tiles_on_threads(&model, &mut job, &device, threads, &mut after).unwrap();
        assert_eq!(
            reported.len(),
            steps,
            "{threads} threads: a report per step"
        );
        assert_eq!(reported.last(), Some(&(steps, steps)));
        assert_eq!(job.evaluations(), evaluations, "{threads} threads");
        let image = pollster::block_on(job.finish_async()).unwrap();
        assert_eq!(
            image.data, in_place.data,
            "{threads} threads: the bytes must match"
        );
    }
    // Tiles of 40 steps: a thread that ran on to the end of its tile would show.
    let long = SampleOptions {
        steps: Some(40),
        ..opts
    };
    let mut job = Upscaling::start(&model, &lr, &long, &device).unwrap();
    let mut calls = 0;
    let mut cancel_at_2 = |done, _| {
        calls += 1;
        done < 2
    };
    let cancelled = sample_tiles_on_threads(&model, &mut job, &device, 2, &mut cancel_at_2);
    assert!(matches!(cancelled, Err(WebSrError::Cancelled)));
    // Each thread may finish the step it was in: a few more reports, not the rest of its tile.
    assert!(calls < 10, "{calls} steps ran, cancelled at the second");
}
