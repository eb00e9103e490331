//! Diffusion upscaling in the browser (SR3, DiWa, optionally YODA-guided): [`DiffusionEngine`]
//! samples step by step, awaiting a JS callback after each step with the progress and, every
//! few steps, a preview of the current clean estimate; the callback returning `false` cancels.
//! The same code and seed give the native CLI's image (`websr upscale --steps N --seed S`).

use super::{call_with, js_error, pick_device, Image, Picked, Upscaled};
use crate::diffusion::upscale::Upscaling;
use crate::diffusion::{DiffusionModel, SampleOptions};
use crate::image::{to_dynamic, Picture, Planar};
use crate::upscale::finish_picture;
use burn::tensor::Device;
use js_sys::{Function, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// One loaded diffusion model on one device.
#[wasm_bindgen]
pub struct DiffusionEngine {
    model: DiffusionModel,
    device: Device,
    backend: &'static str,
    adapter: String,
    note: String,
}

/// Non-premultiplied RGBA of a preview (no alpha: previews show the colour channels).
fn preview_rgba(rgb: Planar) -> Uint8Array {
    let picture = Picture { rgb, alpha: None };
    Uint8Array::from(&to_dynamic(&picture).into_rgba8().into_raw()[..])
}

#[wasm_bindgen]
impl DiffusionEngine {
    /// Loads a `websr-diffusion` safetensors file; `backend` as for `Engine.create`.
    pub async fn create(weights: Vec<u8>, backend: String) -> Result<DiffusionEngine, JsValue> {
        let Picked {
            device,
            backend,
            adapter,
            note,
            ..
        } = pick_device(&backend).await?;
        let model = DiffusionModel::from_bytes(&weights, &device).map_err(|e| js_error(&e))?;
        Ok(DiffusionEngine {
            model,
            device,
            backend,
            adapter,
            note,
        })
    }

    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.to_string()
    }

    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn note(&self) -> String {
        self.note.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn scale(&self) -> u32 {
        self.model.scale() as u32
    }

    /// `sr3`, `diwa` or `diwa+yoda` (trained with YODA).
    #[wasm_bindgen(getter)]
    pub fn arch(&self) -> String {
        self.model.spec.label()
    }

    /// Whether the model was trained with YODA (then sampling with YODA is its natural mode).
    #[wasm_bindgen(getter, js_name = yodaTrained)]
    pub fn yoda_trained(&self) -> bool {
        self.model.spec.yoda.is_some()
    }

    /// Upscales `image` (consumed) with `steps` DDIM steps (eta 0) from `seed`, YODA-guided when
    /// `yoda`. `onStep(done, total, preview)` is awaited after every step; `preview` is
    /// `{width, height, rgba}` every `previewEvery` steps (0: never) and `undefined` otherwise.
    /// Returning `false` cancels with a `CancelledError`.
    pub fn upscale(
        &self,
        image: Image,
        steps: u32,
        seed: u32,
        yoda: bool,
        preview_every: u32,
        on_step: Function,
    ) -> Promise {
        let model = self.model.clone();
        let device = self.device.clone();
        future_to_promise(async move {
            let pic = image.picture;
            let opts = SampleOptions {
                steps: Some(steps.max(1) as usize),
                eta: 0.0,
                seed: seed as u64,
                yoda,
            };
            let mut job =
                Upscaling::start(&model, &pic.rgb, &opts, &device).map_err(|e| js_error(&e))?;
            let fail = |e: crate::WebSrError| {
                device.memory_cleanup();
                js_error(&e)
            };
            while !job.is_done() {
                job.step(&model);
                let done = job.steps_done();
                let preview = if preview_every > 0
                    && done.is_multiple_of(preview_every as usize)
                    && !job.is_done()
                {
                    let rgb = job.preview_async().await.map_err(fail)?;
                    let p = js_sys::Object::new();
                    let set = |k: &str, v: JsValue| js_sys::Reflect::set(&p, &k.into(), &v);
                    set("width", (rgb.width as u32).into())?;
                    set("height", (rgb.height as u32).into())?;
                    set("rgba", preview_rgba(rgb).into())?;
                    p.into()
                } else {
                    JsValue::UNDEFINED
                };
                let args = [(done as f64).into(), (job.steps() as f64).into(), preview];
                if !call_with(&on_step, &args).await {
                    return Err(fail(crate::WebSrError::Cancelled));
                }
            }
            let rgb = job.finish_async().await.map_err(fail)?;
            let out = finish_picture(rgb, &pic, model.scale());
            drop(pic);
            Ok(Upscaled::encode(out)?.into())
        })
    }

    /// Frees cached device memory.
    #[wasm_bindgen(js_name = releaseMemory)]
    pub fn release_memory(&self) {
        self.device.memory_cleanup();
    }
}
