//! The models: shapes, the bicubic base, tiling == untiled, TTA, weights round trip, every
//! kind of bad weights file, and WaveLR's direct-convolution CPU path against burn's.

mod common;

use common::{devices, max_abs_diff, perturbed, rewrite, synthetic};
use websr::burn::module::{Module, ModuleVisitor, Param, ParamId};
use websr::burn::tensor::Tensor;
use websr::device::read_planar_async;
use websr::image::{Picture, Planar};
use websr::models::{wavelr_direct, Arch, ModelSpec, SrModel, SrNet};
use websr::resize::imresize;
use websr::upscale::{run_model, upscale_picture, upscale_rgb, TileJob, UpscaleOptions};
use websr::weights;
use websr::{Model, WebSrError};

/// A whole tiled upscale with no progress callback.
fn upscale_to_the_end(
    model: &SrModel,
    lr: &Planar,
    opts: &UpscaleOptions,
    device: &websr::burn::tensor::Device,
) -> Planar {
    upscale_rgb(
        &Model::from(model.clone()),
        lr,
        opts,
        device,
        &mut |_, _| true,
    )
    .unwrap()
}

fn small_spec(arch: Arch, scale: usize) -> ModelSpec {
    ModelSpec {
        arch,
        scale,
        features: 16,
        body_layers: 2,
    }
}

#[test]
fn untrained_models_output_exactly_the_matlab_bicubic() {
    // The last layer starts at zero, so an untrained model is its bicubic base: this checks the
    // tensor bicubic (matmuls) against the CPU imresize, and the output shapes.
    let lr = synthetic(10, 14, 1);
    for (name, device) in devices() {
        for arch in Arch::ALL {
            for scale in [2, 4] {
                let model = SrModel::init(small_spec(arch, scale), &device).unwrap();
                let out = run_model(&model, &lr, &device);
                assert_eq!(
                    (out.channels, out.height, out.width),
                    (3, 10 * scale, 14 * scale)
                );
                let bicubic = imresize(&lr, scale as f64);
                let d = max_abs_diff(&out.data, &bicubic.data);
                assert!(d < 1e-4, "{name} {arch:?} x{scale}: {d}");
            }
        }
    }
}

#[test]
fn every_layer_changes_the_output() {
    let lr = synthetic(8, 8, 2);
    let (_, device) = devices().remove(0);
    for arch in Arch::ALL {
        let model = perturbed(SrModel::init(small_spec(arch, 2), &device).unwrap(), 0.05);
        let out = run_model(&model, &lr, &device);
        let bicubic = imresize(&lr, 2.0);
        assert!(max_abs_diff(&out.data, &bicubic.data) > 1e-3, "{arch:?}");
    }
}

#[test]
fn deepening_keeps_the_output_exactly() {
    // Net2DeeperNet: the grown model must compute what the trained shallow one did, for every
    // architecture, and fail clearly when asked to shrink.
    let lr = synthetic(9, 11, 3);
    let (_, device) = devices().remove(0);
    for arch in Arch::ALL {
        let shallow = perturbed(SrModel::init(small_spec(arch, 2), &device).unwrap(), 0.05);
        let before = run_model(&shallow, &lr, &device);
        let params = shallow.num_params();
        let deep = shallow.clone().deepened(5).unwrap();
        assert_eq!(deep.spec.body_layers, 5);
        assert_eq!(
            deep.num_params(),
            params + 3 * (16 * 16 * 9 + bias(arch) * 16)
        );
        let after = run_model(&deep, &lr, &device);
        let d = max_abs_diff(&before.data, &after.data);
        assert!(d < 1e-5, "{arch:?}: deepening moved the output by {d}");
        let err = shallow.deepened(1).unwrap_err().to_string();
        assert!(err.contains("deepen"), "{err}");
        // 2 -> 7 puts several identities after one layer: each must be a parameter of its own,
        // or the optimizer trains only the first (it updates each id once).
        let ids = param_ids(
            &SrModel::init(small_spec(arch, 2), &device)
                .unwrap()
                .deepened(7)
                .unwrap(),
        );
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "{arch:?}: deepened layers share parameter ids"
        );
    }
}

/// The ids of every float parameter of a model.
fn param_ids(model: &SrModel) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.id);
        }
    }
    let mut ids = Ids(Vec::new());
    model.net.visit(&mut ids);
    ids.0
}

fn bias(arch: Arch) -> usize {
    usize::from(arch == Arch::WaveLr)
}

#[test]
fn published_dwsr_has_382464_parameters_and_wavelr_is_10x_cheaper() {
    let (_, device) = devices().remove(0);
    let dwsr = SrModel::init(ModelSpec::default_for(Arch::Dwsr, 4), &device).unwrap();
    assert_eq!(dwsr.num_params(), 382_464);
    let ratio = ModelSpec::default_for(Arch::Dwsr, 4).macs_per_output_pixel()
        / ModelSpec::default_for(Arch::WaveLr, 4).macs_per_output_pixel();
    assert!(
        ratio > 9.0,
        "WaveLR x4 is only {ratio:.1}x cheaper than DWSR"
    );
}

#[test]
fn tiled_output_equals_untiled_output() {
    let lr = synthetic(37, 45, 3);
    for (name, device) in devices() {
        for arch in Arch::ALL {
            let scale = if arch == Arch::WaveLr { 4 } else { 2 };
            let model = perturbed(
                SrModel::init(small_spec(arch, scale), &device).unwrap(),
                0.05,
            );
            let whole = run_model(&model, &lr, &device);
            let opts = UpscaleOptions {
                tile: Some(16),
                overlap: 4,
                halo: None,
                tta: false,
                ..Default::default()
            };
            let mut calls = 0;
            let tiled = upscale_rgb(
                &Model::from(model.clone()),
                &lr,
                &opts,
                &device,
                &mut |_, _| {
                    calls += 1;
                    true
                },
            )
            .unwrap();
            assert!(calls >= 9, "expected several tiles, got {calls}");
            let d = max_abs_diff(&whole.data, &tiled.data);
            assert!(d < 1e-3, "{name} {arch:?}: tiled differs by {d}");
        }
    }
}

/// What a pool of browser workers does: tiles computed in any order, by anyone, blended in plan
/// order. The bytes equal the one-worker loop's, and a job refuses tiles out of order, of the
/// wrong size, or missing.
#[test]
fn tiles_computed_out_of_order_blend_to_the_same_bytes() {
    let device = websr::burn::tensor::Device::flex();
    let model = perturbed(
        SrModel::init(small_spec(Arch::WaveLr, 4), &device).unwrap(),
        0.05,
    );
    let lr = synthetic(30, 26, 6);
    let opts = UpscaleOptions {
        tile: Some(64),
        min_tiles: 3,
        ..Default::default()
    };
    let one_worker = upscale_to_the_end(&model, &lr, &opts, &device);
    let mut job = TileJob::new(&model, lr.clone(), &opts);
    assert_eq!(
        job.len(),
        3,
        "min_tiles splits a one-tile image into strips"
    );
    let outputs: Vec<Planar> = (0..job.len())
        .rev()
        .map(|i| run_model(&model, &job.input(i), &device))
        .collect();
    let mut outputs: Vec<Planar> = outputs.into_iter().rev().collect();
    assert!(job.add(1, &outputs[1]).is_err(), "tile 1 before tile 0");
    let wrong = Planar::zeros(3, 4, 4);
    assert!(job.add(0, &wrong).is_err(), "a tile of the wrong size");
    job.add(0, &outputs[0]).unwrap();
    job.add(1, &outputs[1]).unwrap();
    let unfinished = TileJob::new(&model, lr.clone(), &opts);
    assert!(unfinished.finish().is_err(), "a job with tiles missing");
    job.add(2, &outputs.remove(2)).unwrap();
    let pooled = job.finish().unwrap();
    assert_eq!(pooled.data, one_worker.data, "same bytes as one worker");
    // And exact tiling: strips give the untiled image up to float rounding.
    let whole = run_model(&model, &lr, &device);
    assert!(max_abs_diff(&whole.data, &pooled.data) < 1e-4);
}

#[test]
fn self_ensemble_undoes_its_transforms() {
    // Bicubic is equivariant to flips and transposes, so the x8 ensemble of an untrained model
    // must give back plain bicubic; a wrong inverse transform would scramble the image.
    let (_, device) = devices().remove(0);
    let model = SrModel::init(small_spec(Arch::WaveLr, 2), &device).unwrap();
    let lr = synthetic(12, 9, 4);
    let opts = UpscaleOptions {
        tile: None,
        tta: true,
        ..Default::default()
    };
    let out = upscale_to_the_end(&model, &lr, &opts, &device);
    assert!(max_abs_diff(&out.data, &imresize(&lr, 2.0).data) < 1e-4);
}

#[test]
fn cancelling_stops_between_tiles() {
    let (_, device) = devices().remove(0);
    let model = SrModel::init(small_spec(Arch::WaveLr, 2), &device).unwrap();
    let lr = synthetic(40, 40, 5);
    let opts = UpscaleOptions {
        tile: Some(10),
        ..Default::default()
    };
    let mut seen = 0;
    let err = upscale_rgb(
        &Model::from(model.clone()),
        &lr,
        &opts,
        &device,
        &mut |done, _| {
            seen = done;
            done < 2
        },
    )
    .unwrap_err();
    assert!(matches!(err, WebSrError::Cancelled));
    assert_eq!(seen, 2);
}

#[test]
fn alpha_is_kept_and_upscaled() {
    let (_, device) = devices().remove(0);
    let model = SrModel::init(small_spec(Arch::WaveLr, 2), &device).unwrap();
    let rgb = synthetic(10, 12, 6);
    let alpha = Planar::new(1, 10, 12, (0..120).map(|i| (i % 7) as f32 / 6.0).collect());
    let pic = Picture {
        rgb,
        alpha: Some(alpha.clone()),
    };
    let out = upscale_picture(
        &Model::from(model),
        &pic,
        &UpscaleOptions::default(),
        &device,
        &mut |_, _| true,
    )
    .unwrap();
    let a = out.alpha.expect("alpha kept");
    assert_eq!((a.height, a.width), (20, 24));
    let mut expect = imresize(&alpha, 2.0);
    expect.data.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    assert!(max_abs_diff(&a.data, &expect.data) < 1e-6);
}

#[test]
fn weights_round_trip_exactly() {
    for (name, device) in devices() {
        for arch in Arch::ALL {
            let model = perturbed(SrModel::init(small_spec(arch, 4), &device).unwrap(), 0.05);
            let bytes = weights::to_bytes(&model).unwrap();
            let loaded = weights::from_bytes(&bytes, &device).unwrap();
            assert_eq!(loaded.spec, model.spec);
            // Saving again gives the same bytes: the header has one order.
            assert!(
                weights::to_bytes(&loaded).unwrap() == bytes,
                "{name} {arch:?}"
            );
            let lr = synthetic(6, 6, 7);
            let a = run_model(&model, &lr, &device);
            let b = run_model(&loaded, &lr, &device);
            assert!(max_abs_diff(&a.data, &b.data) < 1e-6, "{name} {arch:?}");
        }
    }
}

/// Loading `bytes` fails with a weights error whose message holds every one of `needles`.
fn expect_weights_error(bytes: &[u8], needles: &[&str]) {
    let (_, device) = devices().remove(0);
    match weights::from_bytes(bytes, &device) {
        Err(WebSrError::Weights(msg)) => {
            for needle in needles {
                assert!(msg.contains(needle), "'{msg}' lacks '{needle}'");
            }
        }
        Err(e) => panic!("wrong error kind: {e}"),
        Ok(_) => panic!("bad weights were accepted (expected {needles:?})"),
    }
}

#[test]
fn bad_weights_files_get_clear_errors() {
    let (_, device) = devices().remove(0);
    let model = SrModel::init(small_spec(Arch::Dwsr, 2), &device).unwrap();
    let good = weights::to_bytes(&model).unwrap();
    assert!(weights::from_bytes(&good, &device).is_ok());

    expect_weights_error(b"definitely not safetensors", &["not a safetensors file"]);
    expect_weights_error(&good[..good.len() / 2], &["safetensors"]);

    let wrong_version = rewrite(&good, |h, _| {
        h["__metadata__"]["format_version"] = "99".into();
    });
    expect_weights_error(&wrong_version, &["format_version"]);

    let no_spec = rewrite(&good, |h, _| {
        h["__metadata__"].as_object_mut().unwrap().remove("spec");
    });
    expect_weights_error(&no_spec, &["spec"]);

    let other_arch = rewrite(&good, |h, _| {
        h["__metadata__"]["spec"] =
            r#"{"arch":"wavelr","scale":2,"features":16,"body_layers":2}"#.into();
    });
    // The architecture the tensors are and the one the metadata claims.
    expect_weights_error(
        &other_arch,
        &["tensors are those of a dwsr model", "metadata says wavelr"],
    );

    let renamed = rewrite(&good, |h, _| {
        let t = h.as_object_mut().unwrap().remove("tail.weight").unwrap();
        h["tail.renamed"] = t;
    });
    expect_weights_error(
        &renamed,
        &[
            "lacks 1 tensor(s) that a dwsr x2 model (16 features, 2 body layers) has: 'tail.weight'",
            "has 1 tensor(s) that a dwsr x2 model (16 features, 2 body layers) does not: 'tail.renamed'",
        ],
    );

    let wrong_shape = rewrite(&good, |h, _| {
        // Same byte count, different shape: [12, 16, 3, 3] -> [16, 12, 3, 3].
        h["tail.weight"]["shape"] = serde_json::json!([16, 12, 3, 3]);
    });
    // The tensor, the shape in the file and the one the spec's model needs.
    expect_weights_error(
        &wrong_shape,
        &[
            "tensor 'tail.weight' has shape [16, 12, 3, 3] in the file",
            "needs [12, 16, 3, 3]",
        ],
    );

    // A spec whose width is not the tensors' (the same architecture).
    let wider = rewrite(&good, |h, _| {
        h["__metadata__"]["spec"] =
            r#"{"arch":"dwsr","scale":2,"features":32,"body_layers":2}"#.into();
    });
    expect_weights_error(
        &wider,
        &["in the file, but a dwsr x2 model (32 features, 2 body layers) needs"],
    );

    let with_nan = rewrite(&good, |h, data| {
        let start = h["tail.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
        data[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    expect_weights_error(&with_nan, &["NaN"]);

    let bad_scale = rewrite(&good, |h, _| {
        h["__metadata__"]["spec"] =
            r#"{"arch":"dwsr","scale":3,"features":16,"body_layers":2}"#.into();
    });
    let err = weights::from_bytes(&bad_scale, &device).expect_err("scale 3 refused");
    assert!(err.to_string().contains("x3"), "{err}");
}

/// The browser's CPU path (websr-kernels' direct convolution) computes the function burn's
/// convolution does, at x2 and x4, on sizes that are not multiples of the kernel's 4-pixel tiles.
#[test]
fn direct_convolution_wavelr_matches_burn() {
    let device = websr::burn::tensor::Device::flex();
    for (scale, body_layers, height, width) in [(4, 3, 13, 18), (2, 2, 9, 7)] {
        let spec = ModelSpec {
            body_layers,
            ..ModelSpec::default_for(Arch::WaveLr, scale)
        };
        // Perturbed: a fresh model's zero tail would hide every convolution before it.
        let model = perturbed(SrModel::init_seeded(spec, &device, 5).unwrap(), 0.05);
        let SrNet::WaveLr(net) = &model.net else {
            panic!("a WaveLR spec builds a WaveLR net")
        };
        let lr = synthetic(height, width, 3);
        let burn = run_model(&model, &lr, &device);
        let direct =
            pollster::block_on(read_planar_async(wavelr_direct::forward(net, &lr, &device)))
                .unwrap();
        assert_eq!(
            (direct.channels, direct.height, direct.width),
            (3, scale * height, scale * width)
        );
        let bicubic = run_model(
            &SrModel::init(model.spec.clone(), &device).unwrap(),
            &lr,
            &device,
        );
        assert!(
            max_abs_diff(&burn.data, &bicubic.data) > 0.01,
            "the perturbed network must add detail for this test to mean anything"
        );
        let diff = max_abs_diff(&burn.data, &direct.data);
        assert!(diff < 1e-4, "x{scale}: direct and burn differ by {diff}");
    }
    // Natively burn's convolution stays the default (its GEMM has AVX2 and threads).
    assert!(!wavelr_direct::applies(&device));
}
