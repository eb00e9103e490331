//! [`Engine`]: one loaded model, of either kind, on the worker's device, and the one upscale
//! call the worker makes for it. A one-pass model runs tile by tile; a diffusion model samples
//! step by step and sends previews; both go through [`crate::upscale::upscale_rgb_async`], so the
//! same options and seed give the native CLI's image.

use super::diffusion_pool::{task_from_js, TiledDiffusion};
use super::image::{preview_rgba, Image, Upscaled};
use super::pool::TiledUpscale;
use super::{call_progress, call_with, is_rgb_of, js_error, pick_device};
use crate::device::{Backend, DeviceInfo};
use crate::diffusion::upscale::{sample_tile_async, tile_count, Upscaling};
use crate::diffusion::SampleOptions;
use crate::error::WebSrError;
use crate::image::Planar;
use crate::model::Model;
use crate::tiling::tile_for_buffer_limit;
use crate::upscale::{
    check_output_size, finish_picture, run_tile, upscale_rgb_async, Progress, UpscaleOptions,
};
use burn::tensor::Device;
use js_sys::{Float32Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// One loaded model on one device.
#[wasm_bindgen]
pub struct Engine {
    model: Model,
    device: Device,
    info: DeviceInfo,
}

/// A number field of a JS options object, if present.
fn number(options: &JsValue, key: &str) -> Option<f64> {
    Reflect::get(options, &key.into()).ok()?.as_f64()
}

/// A boolean field of a JS options object, if present.
fn boolean(options: &JsValue, key: &str) -> Option<bool> {
    Reflect::get(options, &key.into()).ok()?.as_bool()
}

/// The `{width, height, rgba}` object of a preview.
fn preview_object(rgb: crate::image::Planar) -> Result<JsValue, JsValue> {
    let p = Object::new();
    Reflect::set(&p, &"width".into(), &(rgb.width as u32).into())?;
    Reflect::set(&p, &"height".into(), &(rgb.height as u32).into())?;
    Reflect::set(&p, &"rgba".into(), &preview_rgba(rgb).into())?;
    Ok(p.into())
}

impl Engine {
    /// The options of one upscale, from the page's options object.
    fn options(&self, options: &JsValue) -> UpscaleOptions {
        let tile = match number(options, "tile").unwrap_or(0.0) as u32 {
            0 => self.auto_tile(),
            t => t,
        };
        // A diffusion model's own defaults (steps, strength) for what the page leaves out.
        let defaults = match &self.model {
            Model::Diffusion(d) => d.default_options(),
            Model::OnePass(_) => SampleOptions::default(),
        };
        let steps = number(options, "steps").map(|s| s.max(1.0) as usize);
        UpscaleOptions {
            tile: Some(tile.max(1) as usize),
            tta: boolean(options, "tta").unwrap_or(false),
            sampling: SampleOptions {
                steps: steps.or(defaults.steps),
                eta: 0.0,
                seed: number(options, "seed").unwrap_or(0.0) as u32 as u64,
                yoda: boolean(options, "yoda").unwrap_or(false),
                strength: number(options, "strength")
                    .unwrap_or(defaults.strength)
                    .clamp(1e-3, 1.0),
                // 0 or absent: whole up to 256x256 input pixels, tiles of 128 above.
                tile: number(options, "diffusionTile")
                    .filter(|t| *t >= 1.0)
                    .map(|t| t as usize),
            },
            preview_every: number(options, "previewEvery").unwrap_or(0.0).max(0.0) as usize,
            ..UpscaleOptions::default()
        }
    }
}

#[wasm_bindgen]
impl Engine {
    /// Loads safetensors weights of either kind (the file's own format tag decides).
    /// `backend` is `"auto"` (WebGPU when the browser has an adapter, else CPU, and
    /// [`Engine::note`] says why), `"webgpu"` (fails without it) or `"cpu"`.
    pub async fn create(weights: Vec<u8>, backend: String) -> Result<Engine, JsValue> {
        let selected = pick_device(&backend).await?;
        let model = Model::from_bytes(&weights, &selected.device).map_err(|e| js_error(&e))?;
        Ok(Engine {
            model,
            device: selected.device,
            info: selected.info,
        })
    }

    /// `"webgpu"` or `"cpu"`: what actually runs.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.info.backend.id().to_string()
    }

    /// The GPU adapter's name (or the CPU backend's).
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.info.adapter.clone()
    }

    /// Why the engine is not on the requested backend; empty when it is.
    #[wasm_bindgen(getter)]
    pub fn note(&self) -> String {
        self.info.note.clone()
    }

    /// `"regression"` (one pass) or `"diffusion"` (sampled with steps and a seed).
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        self.model.kind().name().to_string()
    }

    #[wasm_bindgen(getter)]
    pub fn scale(&self) -> u32 {
        self.model.scale() as u32
    }

    /// `wavelr`, `dwsr`, ..., `sr3`, `diwa` or `diwa+yoda`.
    #[wasm_bindgen(getter)]
    pub fn arch(&self) -> String {
        self.model.label()
    }

    /// Whether the model was trained with YODA (then sampling with YODA is its natural mode).
    #[wasm_bindgen(getter, js_name = yodaTrained)]
    pub fn yoda_trained(&self) -> bool {
        self.model.yoda_trained()
    }

    /// A diffusion model's default DDIM steps (its card's; 50 without one), 0 for a one-pass
    /// model.
    #[wasm_bindgen(getter, js_name = defaultSteps)]
    pub fn default_steps(&self) -> u32 {
        match &self.model {
            Model::Diffusion(d) => d.default_options().steps.unwrap_or(0) as u32,
            Model::OnePass(_) => 0,
        }
    }

    /// A diffusion model's default strength (the fraction of the noise schedule walked back),
    /// 1 for a model without recorded defaults and for one-pass models.
    #[wasm_bindgen(getter, js_name = defaultStrength)]
    pub fn default_strength(&self) -> f64 {
        match &self.model {
            Model::Diffusion(d) => d.default_options().strength,
            Model::OnePass(_) => 1.0,
        }
    }

    /// Multiply-adds per output pixel (convolutions only) of a one-pass model, 0 for diffusion:
    /// for the GMAC/s of the benchmark.
    #[wasm_bindgen(getter, js_name = macsPerOutputPixel)]
    pub fn macs_per_output_pixel(&self) -> f64 {
        match &self.model {
            Model::OnePass(m) => m.spec.macs_per_output_pixel(),
            Model::Diffusion(_) => 0.0,
        }
    }

    /// The device's largest buffer, which [`Engine::auto_tile`] is sized from.
    #[wasm_bindgen(getter, js_name = maxBufferBytes)]
    pub fn max_buffer_bytes(&self) -> f64 {
        self.info.max_buffer_bytes as f64
    }

    /// The tile side (LR pixels) used for `tile = 0`; 0 for a diffusion model, which samples
    /// the whole image.
    #[wasm_bindgen(getter, js_name = autoTile)]
    pub fn auto_tile(&self) -> u32 {
        match &self.model {
            Model::OnePass(m) => tile_for_buffer_limit(
                m.spec.peak_buffer_bytes_per_lr_pixel(),
                m.receptive_radius_lr(),
                self.info.max_buffer_bytes,
            ) as u32,
            Model::Diffusion(_) => 0,
        }
    }

    /// Upscales `image` (consumed). `options`: `{tile = 0, tta = false}` for a one-pass model
    /// (`tile = 0` sizes tiles from the device limits), `{steps = 50, seed = 0, yoda = false,
    /// previewEvery = 0}` for a diffusion model (DDIM, eta 0). `onProgress(done, total, preview)`
    /// is awaited after every tile or step (it may return a Promise); `preview` is `{width,
    /// height, rgba}` every `previewEvery` steps and `undefined` otherwise. Returning `false`
    /// cancels with a `CancelledError` and frees the device memory.
    pub fn upscale(&self, image: Image, options: JsValue, on_progress: Function) -> Promise {
        let model = self.model.clone();
        let device = self.device.clone();
        let opts = self.options(&options);
        future_to_promise(async move {
            let pic = image.picture;
            let after = |p: Progress| {
                let f = on_progress.clone();
                async move {
                    let preview = match p.preview {
                        Some(rgb) => match preview_object(rgb) {
                            Ok(v) => v,
                            Err(_) => return false,
                        },
                        None => JsValue::UNDEFINED,
                    };
                    let args = [(p.done as f64).into(), (p.total as f64).into(), preview];
                    call_with(&f, &args).await
                }
            };
            let rgb = match upscale_rgb_async(&model, &pic.rgb, &opts, &device, after).await {
                Ok(rgb) => rgb,
                Err(e) => {
                    device.memory_cleanup();
                    return Err(js_error(&e));
                }
            };
            let out = finish_picture(rgb, &pic, model.scale());
            drop(pic);
            Ok(Upscaled::encode(out)?.into())
        })
    }

    /// Plans an upscale of `image` (consumed) that a pool of workers computes: this worker
    /// hands out tile inputs and blends the outputs ([`TiledUpscale`]); every worker, this one
    /// included, runs tiles with [`Engine::run_tile`]. `options` as for [`Engine::upscale`],
    /// plus `minTiles` (the pool size). One-pass models only.
    #[wasm_bindgen(js_name = startTiles)]
    pub fn start_tiles(&self, image: Image, options: JsValue) -> Result<TiledUpscale, JsValue> {
        let Model::OnePass(model) = &self.model else {
            return Err(js_error(&WebSrError::Invalid(
                "a diffusion model shares its tiles as tasks: use startDiffusionTiles (or \
                 upscale)"
                    .into(),
            )));
        };
        let pic = image.picture;
        check_output_size(pic.width(), pic.height(), model.scale()).map_err(|e| js_error(&e))?;
        let mut opts = self.options(&options);
        opts.min_tiles = number(&options, "minTiles").unwrap_or(1.0).max(1.0) as usize;
        Ok(TiledUpscale::new(model, pic, &opts))
    }

    /// Runs a one-pass model on one tile input (planar RGB, `height x width`, from
    /// [`TiledUpscale::input`]), optionally as the x8 ensemble; resolves to the planar output.
    #[wasm_bindgen(js_name = runTile)]
    pub fn run_tile(&self, data: Vec<f32>, height: u32, width: u32, tta: bool) -> Promise {
        let model = self.model.clone();
        let device = self.device.clone();
        future_to_promise(async move {
            let Model::OnePass(model) = &model else {
                return Err(js_error(&WebSrError::Invalid(
                    "only a one-pass model runs tiles".into(),
                )));
            };
            let (h, w) = (height as usize, width as usize);
            if !is_rgb_of(data.len(), h, w) || h == 0 || w == 0 {
                return Err(js_error(&WebSrError::Invalid(format!(
                    "a tile input of {h}x{w} RGB needs {} values, got {}",
                    3 * h as u64 * w as u64,
                    data.len()
                ))));
            }
            let out = run_tile(model, &Planar::new(3, h, w, data), tta, &device)
                .await
                .map_err(|e| js_error(&e))?;
            Ok(Float32Array::from(out.data.as_slice()).into())
        })
    }

    /// How many tiles a diffusion model samples a `width x height` image in with `options` (as
    /// for [`Engine::upscale`], plus `diffusionTile`, the tile side in LR pixels): 1 means it is
    /// sampled whole (with previews), more that a pool can share it
    /// ([`Engine::start_diffusion_tiles`]). 0 for a one-pass model.
    #[wasm_bindgen(js_name = diffusionTileCount)]
    pub fn diffusion_tile_count(&self, width: u32, height: u32, options: JsValue) -> u32 {
        match &self.model {
            Model::Diffusion(d) => {
                let opts = self.options(&options).sampling;
                tile_count(d, height as usize, width as usize, &opts) as u32
            }
            Model::OnePass(_) => 0,
        }
    }

    /// Plans a tiled diffusion upscale of `image` (consumed) that a pool of CPU workers samples:
    /// resolves to a [`TiledDiffusion`] whose tasks any worker with the same model samples
    /// ([`Engine::sample_tile`]) and which blends their outputs in plan order. `options` as for
    /// [`Engine::diffusion_tile_count`]; the image must be tiled there.
    #[wasm_bindgen(js_name = startDiffusionTiles)]
    pub fn start_diffusion_tiles(&self, image: Image, options: JsValue) -> Promise {
        let (model, device) = (self.model.clone(), self.device.clone());
        let opts = self.options(&options).sampling;
        let on_cpu = self.info.backend == Backend::Cpu;
        future_to_promise(async move {
            let Model::Diffusion(model) = &model else {
                return Err(js_error(&WebSrError::Invalid(
                    "only a diffusion model samples tiles as tasks".into(),
                )));
            };
            if !on_cpu {
                return Err(js_error(&WebSrError::Invalid(
                    "a pool shares tiles on the CPU; WebGPU samples them in one worker".into(),
                )));
            }
            let pic = image.picture;
            check_output_size(pic.width(), pic.height(), model.scale())
                .map_err(|e| js_error(&e))?;
            let job =
                Upscaling::start(model, &pic.rgb, &opts, &device).map_err(|e| js_error(&e))?;
            let tasks = job
                .tile_tasks_async(model)
                .await
                .map_err(|e| js_error(&e))?;
            Ok(TiledDiffusion::new(job, pic, tasks, model.scale()).into())
        })
    }

    /// Samples one task of a [`TiledDiffusion`] (any worker holding the same model, with the
    /// coordinator's `options`); `onStep(done, total)` is awaited after every step (`false`
    /// cancels with a `CancelledError`). Resolves to `{data, height, width, evaluations}`, the
    /// output planar RGB.
    #[wasm_bindgen(js_name = sampleTile)]
    pub fn sample_tile(&self, task: JsValue, options: JsValue, on_step: Function) -> Promise {
        let (model, device) = (self.model.clone(), self.device.clone());
        let opts = self.options(&options).sampling;
        future_to_promise(async move {
            let Model::Diffusion(model) = &model else {
                return Err(js_error(&WebSrError::Invalid(
                    "only a diffusion model samples tiles".into(),
                )));
            };
            let task = task_from_js(&task)?;
            let after = |done: usize, total: usize| {
                let f = on_step.clone();
                async move { call_progress(&f, &[done as f64, total as f64]).await }
            };
            let sampled = sample_tile_async(model, &task, &opts, &device, after).await;
            let (output, evaluations) = sampled.map_err(|e| {
                device.memory_cleanup();
                js_error(&e)
            })?;
            let out = Object::new();
            Reflect::set(&out, &"height".into(), &(output.height as u32).into())?;
            Reflect::set(&out, &"width".into(), &(output.width as u32).into())?;
            let data = Float32Array::from(output.data.as_slice());
            Reflect::set(&out, &"data".into(), &data.into())?;
            Reflect::set(&out, &"evaluations".into(), &(evaluations as u32).into())?;
            Ok(out.into())
        })
    }

    /// Frees cached device memory (between images, or after a cancel).
    #[wasm_bindgen(js_name = releaseMemory)]
    pub fn release_memory(&self) {
        self.device.memory_cleanup();
    }
}
