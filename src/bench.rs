//! The speed table behind `websr bench` and `cargo bench`: DWT/IDWT, the forward pass of every
//! model on a 256x256 input, and (with the `train` feature) one training step, timed side by side
//! in one run on one device (these machines are noisy: compare ratios, not absolute numbers).

use crate::image::Planar;
use crate::models::{wavelr_direct, Arch, ModelSpec, SrModel, SrNet};
use crate::upscale::run_model;
use crate::wavelet::{dwt, idwt};
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;

/// One row of the table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub what: String,
    /// Median wall time of the timed repetitions.
    pub ms: f64,
    /// Milliseconds per megapixel of output (where there is an image output).
    pub ms_per_output_mp: Option<f64>,
    pub macs_per_output_px: Option<f64>,
}

/// Median wall time of `reps` runs after one warm-up run (which also compiles GPU shaders).
pub fn time_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[times.len() / 2]
}

/// Synchronises by reading a tensor back, so GPU timings include the work itself.
fn sync(t: Tensor<4>) {
    let _ = t.sum().into_data();
}

/// DWT, IDWT and every model's forward pass on a `size x size` input.
pub fn inference_rows(device: &Device, size: usize, reps: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let x = Tensor::<4>::random([1, 3, size, size], Distribution::Default, device);
    let mp = (size * size) as f64 / 1e6;
    let ms = time_ms(reps, || sync(dwt(x.clone())));
    rows.push(Row {
        what: format!("DWT {size}x{size} RGB"),
        ms,
        ms_per_output_mp: Some(ms / mp),
        macs_per_output_px: None,
    });
    let bands = dwt(x);
    let ms = time_ms(reps, || sync(idwt(bands.clone())));
    rows.push(Row {
        what: format!("IDWT {size}x{size} RGB"),
        ms,
        ms_per_output_mp: Some(ms / mp),
        macs_per_output_px: None,
    });
    let lr = Planar::new(3, size, size, vec![0.5; 3 * size * size]);
    for scale in [2, 4] {
        for spec in benched_specs(scale) {
            let what = format!("{} x{scale} forward, {size}x{size} in", label(&spec));
            let macs = spec.macs_per_output_pixel();
            let model = SrModel::init(spec, device).expect("valid spec");
            let ms = time_ms(reps, || {
                run_model(&model, &lr, device);
            });
            let out_mp = mp * (scale * scale) as f64;
            rows.push(Row {
                what: what.clone(),
                ms,
                ms_per_output_mp: Some(ms / out_mp),
                macs_per_output_px: Some(macs),
            });
            if let (SrNet::WaveLr(net), true) = (&model.net, *device == Device::flex()) {
                // The browser's CPU kernel, natively (portable lanes, no wasm SIMD).
                let ms = time_ms(reps, || {
                    sync(wavelr_direct::forward(net, &lr, device));
                });
                rows.push(Row {
                    what: format!("{what}, direct conv"),
                    ms,
                    ms_per_output_mp: Some(ms / out_mp),
                    macs_per_output_px: Some(macs),
                });
            }
        }
    }
    rows
}

/// Depth of the shipped `wavelr-deep-x2` / `-x4` models, grown from WaveLR's 6 body layers.
fn wavelr_deep_layers(scale: usize) -> usize {
    if scale == 2 {
        12
    } else {
        16
    }
}

/// Every architecture at its published configuration, and WaveLR also at the depth of the
/// shipped deeper models.
fn benched_specs(scale: usize) -> Vec<ModelSpec> {
    let mut specs: Vec<ModelSpec> = Arch::ALL
        .into_iter()
        .map(|arch| ModelSpec::default_for(arch, scale))
        .collect();
    specs.push(ModelSpec {
        body_layers: wavelr_deep_layers(scale),
        ..ModelSpec::default_for(Arch::WaveLr, scale)
    });
    specs
}

/// The architecture's name, with its depth where that is not the published one.
fn label(spec: &ModelSpec) -> String {
    let default = ModelSpec::default_for(spec.arch, spec.scale);
    if spec.body_layers == default.body_layers {
        spec.arch.name().to_string()
    } else {
        format!("{} ({} body layers)", spec.arch.name(), spec.body_layers)
    }
}

/// One Adam step (batch 16, 64x64 HR patches) for every benched network at x4.
#[cfg(feature = "train")]
pub fn training_rows(device: &Device, reps: usize) -> Vec<Row> {
    use crate::train::data::TrainingSet;
    use crate::train::{Schedule, TrainConfig, Trainer, TrainingRun};
    let data = TrainingSet::from_images(&[Planar::new(3, 96, 96, vec![0.5; 3 * 96 * 96])]);
    let dir = std::env::temp_dir().join(format!("websr-bench-{}", std::process::id()));
    let mut rows = Vec::new();
    for spec in benched_specs(4) {
        let what = format!("{} x4 train step (16 x 64x64)", label(&spec));
        let cfg = TrainConfig {
            spec,
            schedule: Schedule {
                steps: usize::MAX,
                batch: 16,
                patch: 64,
                lr: 1e-4,
                lr_min: 1e-4,
                seed: 0,
                checkpoint_every: usize::MAX,
                validate_every: usize::MAX,
            },
            subset_sha256: None,
            degradation: None,
        };
        let mut trainer = Trainer::new(cfg, &dir, false, None, device).expect("trainer");
        let ms = time_ms(reps, || {
            trainer.step(&data);
        });
        rows.push(Row {
            what,
            ms,
            ms_per_output_mp: None,
            macs_per_output_px: None,
        });
    }
    let _ = std::fs::remove_dir_all(dir);
    rows
}

/// Markdown table of rows.
pub fn to_markdown(device_name: &str, rows: &[Row]) -> String {
    let mut s = format!(
        "| {device_name} | median ms | ms / output MP | MACs / output px |\n|---|---:|---:|---:|\n"
    );
    for r in rows {
        let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
        s += &format!(
            "| {} | {:.1} | {} | {} |\n",
            r.what,
            r.ms,
            opt(r.ms_per_output_mp, 1),
            opt(r.macs_per_output_px, 0)
        );
    }
    s
}
