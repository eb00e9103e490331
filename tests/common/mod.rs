//! Helpers shared by the integration tests: synthetic images (the repository holds no dataset)
//! and the devices the tests can reach.
#![allow(dead_code)]

use websr::burn::module::{Module, ModuleMapper, Param};
use websr::burn::tensor::{Device, Distribution, Tensor};
use websr::diffusion::model::{PredictorSpec, UNetSpec, YodaSpec};
use websr::diffusion::{DiffusionKind, DiffusionSpec};
use websr::image::Planar;
use websr::models::SrModel;

/// Every backend compiled into this test build.
pub fn devices() -> Vec<(&'static str, Device)> {
    websr::device::Backend::available()
        .into_iter()
        .map(|b| (b.name(), b.device().expect("compiled backend")))
        .collect()
}

/// A deterministic RGB test picture with smooth gradients, hard edges and fine texture, values
/// in [0, 1].
pub fn synthetic(height: usize, width: usize, seed: u32) -> Planar {
    let mut data = Vec::with_capacity(3 * height * width);
    let s = seed as f32;
    for c in 0..3 {
        for y in 0..height {
            for x in 0..width {
                let (fx, fy) = (x as f32, y as f32);
                let smooth = 0.5 + 0.3 * ((fx * 0.05 + s).sin() * (fy * 0.07 + c as f32).cos());
                let edge = if (x / 9 + y / 13 + c) % 2 == 0 {
                    0.15
                } else {
                    -0.15
                };
                let texture = 0.08 * ((fx * 1.7 + fy * 2.3 + s * 3.0).sin());
                data.push((smooth + edge + texture).clamp(0.0, 1.0));
            }
        }
    }
    Planar::new(3, height, width, data)
}

/// Sharp-edged shapes on a smooth background, no texture finer than the LR grid can carry:
/// bicubic blurs the edges and a network can learn to restore them.
pub fn shapes(height: usize, width: usize, seed: u32) -> Planar {
    let mut data = Vec::with_capacity(3 * height * width);
    let s = seed as f32;
    for c in 0..3 {
        for y in 0..height {
            for x in 0..width {
                let (fx, fy) = (x as f32, y as f32);
                let base = 0.3 + 0.2 * ((fx + s) * 0.03).sin() + 0.1 * c as f32;
                let disc = ((fx - 20.0 - s).powi(2) + (fy - 24.0).powi(2)).sqrt() < 11.0;
                let bar = (x + 2 * y + seed as usize) % 23 < 6;
                let v = base + if disc { 0.35 } else { 0.0 } - if bar { 0.25 } else { 0.0 };
                data.push(v.clamp(0.0, 1.0));
            }
        }
    }
    Planar::new(3, height, width, data)
}

/// Adds Gaussian noise to every parameter: a model whose every layer matters, so that tests of
/// tiling and weight round-trips are not passed by the zero-initialised last layer alone.
struct Perturb {
    std: f64,
}

impl ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let std = self.std;
        param.map(|t| {
            let noise = t.random_like(Distribution::Normal(0.0, std));
            t + noise
        })
    }
}

pub fn perturbed(model: SrModel, std: f64) -> SrModel {
    SrModel {
        spec: model.spec,
        net: model.net.map(&mut Perturb { std }),
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A safetensors file with its JSON header and data edited, e.g. to test hostile files.
pub fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value, &mut Vec<u8>)) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut data = bytes[8 + n..].to_vec();
    edit(&mut header, &mut data);
    let h = serde_json::to_vec(&header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// A test-sized spec: a two-level U-Net of width 8.
pub fn tiny_diffusion_spec(kind: DiffusionKind, yoda: bool) -> DiffusionSpec {
    let mut spec = DiffusionSpec::default_for(kind, 2);
    spec.unet = UNetSpec {
        inner_channels: 8,
        channel_mults: vec![1, 2],
        res_blocks: 1,
        norm_groups: 4,
        dropout: 0.0,
        attention: false,
    };
    if kind == DiffusionKind::DiWa {
        spec.predictor = Some(PredictorSpec::Joint {
            features: 8,
            layers: 1,
        });
    }
    spec.yoda = yoda.then(YodaSpec::default);
    spec
}

/// Tests that train, or rely on burn's seeded initialisation, take turns: one lock per test
/// binary (each compiles its own copy of this module).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `p` as a `[1, c, h, w]` tensor.
pub fn planar_tensor(p: &Planar, device: &Device) -> Tensor<4> {
    Tensor::from_data(
        websr::burn::tensor::TensorData::new(p.data.clone(), [1, p.channels, p.height, p.width]),
        device,
    )
}

/// A tensor's values, read back.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}
