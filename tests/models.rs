//! The models: shapes, the bicubic base, tiling == untiled, TTA, weights round trip and every
//! kind of bad weights file.

mod common;

use common::{devices, max_abs_diff, perturbed, rewrite, synthetic};
use websr::burn::module::{Module, ModuleVisitor, Param, ParamId};
use websr::burn::tensor::Tensor;
use websr::image::{Picture, Planar};
use websr::models::{Arch, ModelSpec, SrModel};
use websr::resize::imresize;
use websr::upscale::{run_model, upscale_picture, upscale_rgb, UpscaleOptions};
use websr::weights;
use websr::{Model, WebSrError};

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
    let out = upscale_rgb(
        &Model::from(model.clone()),
        &lr,
        &opts,
        &device,
        &mut |_, _| true,
    )
    .unwrap();
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
            let lr = synthetic(6, 6, 7);
            let a = run_model(&model, &lr, &device);
            let b = run_model(&loaded, &lr, &device);
            assert!(max_abs_diff(&a.data, &b.data) < 1e-6, "{name} {arch:?}");
        }
    }
}

/// Rewrites a safetensors file: `edit` gets the header JSON and the data section.
fn expect_weights_error(bytes: &[u8], needle: &str) {
    let (_, device) = devices().remove(0);
    match weights::from_bytes(bytes, &device) {
        Err(WebSrError::Weights(msg)) => assert!(msg.contains(needle), "'{msg}' lacks '{needle}'"),
        Err(e) => panic!("wrong error kind: {e}"),
        Ok(_) => panic!("bad weights were accepted (expected '{needle}')"),
    }
}

#[test]
fn bad_weights_files_get_clear_errors() {
    let (_, device) = devices().remove(0);
    let model = SrModel::init(small_spec(Arch::Dwsr, 2), &device).unwrap();
    let good = weights::to_bytes(&model).unwrap();
    assert!(weights::from_bytes(&good, &device).is_ok());

    expect_weights_error(b"definitely not safetensors", "not a safetensors file");
    expect_weights_error(&good[..good.len() / 2], "safetensors");

    let wrong_version = rewrite(&good, |h, _| {
        h["__metadata__"]["format_version"] = "99".into();
    });
    expect_weights_error(&wrong_version, "format_version");

    let no_spec = rewrite(&good, |h, _| {
        h["__metadata__"].as_object_mut().unwrap().remove("spec");
    });
    expect_weights_error(&no_spec, "spec");

    let other_arch = rewrite(&good, |h, _| {
        h["__metadata__"]["spec"] =
            r#"{"arch":"wavelr","scale":2,"features":16,"body_layers":2}"#.into();
    });
    expect_weights_error(&other_arch, "");

    let renamed = rewrite(&good, |h, _| {
        let t = h.as_object_mut().unwrap().remove("tail.weight").unwrap();
        h["tail.renamed"] = t;
    });
    expect_weights_error(&renamed, "tail");

    let wrong_shape = rewrite(&good, |h, _| {
        // Same byte count, different shape: [12, 16, 3, 3] -> [16, 12, 3, 3].
        h["tail.weight"]["shape"] = serde_json::json!([16, 12, 3, 3]);
    });
    expect_weights_error(&wrong_shape, "");

    let with_nan = rewrite(&good, |h, data| {
        let start = h["tail.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
        data[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    expect_weights_error(&with_nan, "NaN");

    let bad_scale = rewrite(&good, |h, _| {
        h["__metadata__"]["spec"] =
            r#"{"arch":"dwsr","scale":3,"features":16,"body_layers":2}"#.into();
    });
    let err = weights::from_bytes(&bad_scale, &device).expect_err("scale 3 refused");
    assert!(err.to_string().contains("x3"), "{err}");
}
