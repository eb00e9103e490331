//! The browser runtime: what `www/websr-worker.mjs` calls through wasm-bindgen.
//!
//! Everything here runs inside a Web Worker, so the page never freezes. The worker owns one
//! compute device for its whole life (WebGPU through burn-wgpu, or burn's CPU backend when the
//! browser has no WebGPU adapter) and one [`Engine`] per loaded model. Images arrive either as
//! encoded bytes (decoded here by the same code as the native CLI, so results match it bit for
//! bit on the CPU) or as RGBA pixels the browser decoded (formats the `image` crate lacks).
//!
//! With the `train` feature, [`FlClient`] trains the global model on the participant's own
//! images for the federated training page (`www/federated.html`).
//!
//! Errors reach JavaScript as `Error` objects whose `name` says what happened (`DecodeError`,
//! `TooLargeError`, `CancelledError`, `DeviceError`, `WeightsError`), so the page can show a
//! message a person can act on.

use crate::error::WebSrError;
use crate::image::{decode, encode_png_image, from_dynamic, to_dynamic, Picture};
use crate::models::SrModel;
use crate::tiling::tile_for_buffer_limit;
use crate::upscale::{finish_picture, upscale_rgb_async, UpscaleOptions};
use crate::weights;
use burn::tensor::Device;
use js_sys::{Function, Promise, Uint8Array};
use std::cell::RefCell;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

mod diffusion;
#[cfg(feature = "train")]
mod federated;
pub use diffusion::DiffusionEngine;
#[cfg(feature = "train")]
pub use federated::{FlClient, TrainedUpdate};

/// Largest input accepted, as for the CLI.
pub const MAX_INPUT_PIXELS: u64 = 64_000_000;
/// Largest output: a wasm32 heap holds at most 4 GiB, and the float accumulator, the RGBA copy and
/// the PNG of a 32 MP result already take about 1 GiB.
pub const MAX_OUTPUT_PIXELS: u64 = 32_000_000;
/// Buffer budget used to size tiles on the CPU backend (wasm memory, not a GPU limit).
const CPU_BUFFER_BYTES: u64 = 256 << 20;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The websr version, so a page can tell which runtime it loaded.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// A JS `Error` whose `name` classifies the failure.
fn js_error(err: &WebSrError) -> JsValue {
    let name = match err {
        WebSrError::Decode(_) | WebSrError::Empty => "DecodeError",
        WebSrError::TooLarge { .. } | WebSrError::OutputTooLarge { .. } => "TooLargeError",
        WebSrError::Cancelled => "CancelledError",
        WebSrError::Device(_) => "DeviceError",
        WebSrError::Weights(_) => "WeightsError",
        _ => "WebSrError",
    };
    let e = js_sys::Error::new(&err.to_string());
    e.set_name(name);
    e.into()
}

/// The WebGPU device, created once per worker: burn refuses a second registration.
#[derive(Clone)]
struct Gpu {
    device: Device,
    max_buffer_bytes: u64,
    adapter: String,
}

thread_local! {
    static GPU: RefCell<Option<Gpu>> = const { RefCell::new(None) };
}

async fn webgpu() -> Result<Gpu, String> {
    if let Some(gpu) = GPU.with(|g| g.borrow().clone()) {
        return Ok(gpu);
    }
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| e.to_string())?;
    let limits = setup.device.limits();
    let info = setup.adapter.get_info();
    let gpu = Gpu {
        device,
        max_buffer_bytes: limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size),
        adapter: if info.name.is_empty() {
            format!("{:?}", info.backend)
        } else {
            info.name.clone()
        },
    };
    GPU.with(|g| *g.borrow_mut() = Some(gpu.clone()));
    Ok(gpu)
}

/// The device a worker computes on, and why.
struct Picked {
    device: Device,
    /// `"webgpu"` or `"cpu"`.
    backend: &'static str,
    adapter: String,
    /// Why this is not the requested backend; empty when it is.
    note: String,
    max_buffer_bytes: u64,
}

/// `"auto"` (WebGPU when the browser has an adapter, else CPU with a note saying why),
/// `"webgpu"` (fails without it) or `"cpu"`.
async fn pick_device(backend: &str) -> Result<Picked, JsValue> {
    let cpu = |note: String| Picked {
        device: Device::flex(),
        backend: "cpu",
        adapter: "wasm (burn flex)".to_string(),
        note,
        max_buffer_bytes: CPU_BUFFER_BYTES,
    };
    match backend {
        "cpu" => Ok(cpu("CPU backend requested".to_string())),
        "auto" | "webgpu" => match webgpu().await {
            Ok(gpu) => Ok(Picked {
                device: gpu.device,
                backend: "webgpu",
                adapter: gpu.adapter,
                note: String::new(),
                max_buffer_bytes: gpu.max_buffer_bytes,
            }),
            Err(why) if backend == "auto" => Ok(cpu(format!(
                "WebGPU unavailable ({why}); running on the CPU, which is slower"
            ))),
            Err(why) => Err(js_error(&WebSrError::Device(why))),
        },
        other => Err(js_error(&WebSrError::Invalid(format!(
            "unknown backend '{other}' (auto, webgpu or cpu)"
        )))),
    }
}

/// Calls a JS progress callback with `args` and awaits it if it returns a Promise; `false`
/// (or a throwing callback) means stop.
async fn call_progress(callback: &Function, args: &[f64]) -> bool {
    let args: Vec<JsValue> = args.iter().map(|&a| JsValue::from_f64(a)).collect();
    call_with(callback, &args).await
}

/// [`call_progress`] with any arguments.
async fn call_with(callback: &Function, args: &[JsValue]) -> bool {
    let args: js_sys::Array = args.iter().collect();
    let Ok(v) = callback.apply(&JsValue::NULL, &args) else {
        return false;
    };
    let v = match v.dyn_into::<Promise>() {
        Ok(p) => JsFuture::from(p).await.unwrap_or(JsValue::FALSE),
        Err(v) => v,
    };
    v.as_bool().unwrap_or(true)
}

/// An image ready to upscale.
#[wasm_bindgen]
pub struct Image {
    picture: Picture,
}

#[wasm_bindgen]
impl Image {
    /// Decodes PNG, JPEG, WebP or BMP bytes (EXIF orientation applied). Throws `DecodeError` for
    /// other formats, which the caller may then decode with the browser.
    pub fn decode(bytes: &[u8]) -> Result<Image, JsValue> {
        decode(bytes, MAX_INPUT_PIXELS)
            .map(|picture| Image { picture })
            .map_err(|e| js_error(&e))
    }

    /// Wraps non-premultiplied RGBA pixels (an `ImageData`'s `data`). Alpha is kept only when some
    /// pixel is not opaque.
    #[wasm_bindgen(js_name = fromRgba)]
    pub fn from_rgba(rgba: &[u8], width: u32, height: u32) -> Result<Image, JsValue> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 {
            return Err(js_error(&WebSrError::Empty));
        }
        if (w as u64) * (h as u64) > MAX_INPUT_PIXELS {
            return Err(js_error(&WebSrError::TooLarge {
                width,
                height,
                max_pixels: MAX_INPUT_PIXELS,
            }));
        }
        if rgba.len() != 4 * w * h {
            return Err(js_error(&WebSrError::Invalid(format!(
                "{} bytes of RGBA for {width}x{height}",
                rgba.len()
            ))));
        }
        let img =
            image::RgbaImage::from_raw(width, height, rgba.to_vec()).expect("length checked above");
        let mut picture = from_dynamic(&image::DynamicImage::ImageRgba8(img));
        if rgba.chunks_exact(4).all(|px| px[3] == 255) {
            picture.alpha = None; // opaque: the result needs no alpha channel either
        }
        Ok(Image { picture })
    }

    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.picture.width() as u32
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.picture.height() as u32
    }

    #[wasm_bindgen(getter, js_name = hasAlpha)]
    pub fn has_alpha(&self) -> bool {
        self.picture.alpha.is_some()
    }
}

/// An upscaled image: RGBA pixels for an `ImageData` and a lossless PNG.
#[wasm_bindgen]
pub struct Upscaled {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
    png: Vec<u8>,
}

impl Upscaled {
    /// Quantises `out` once (the PNG and the RGBA pixels are the same 8-bit image) and frees the
    /// float picture before encoding: at 32 MP it alone is 512 MiB of the wasm heap.
    fn encode(out: Picture) -> Result<Upscaled, JsValue> {
        let (width, height) = (out.width() as u32, out.height() as u32);
        let quantised = to_dynamic(&out);
        drop(out);
        let png = encode_png_image(&quantised).map_err(|e| js_error(&e))?;
        Ok(Upscaled {
            width,
            height,
            rgba: quantised.into_rgba8().into_raw(),
            png,
        })
    }
}

#[wasm_bindgen]
impl Upscaled {
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.width
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Non-premultiplied RGBA, row-major (copied into a fresh `Uint8Array`).
    #[wasm_bindgen(getter)]
    pub fn rgba(&self) -> Uint8Array {
        Uint8Array::from(&self.rgba[..])
    }

    #[wasm_bindgen(getter)]
    pub fn png(&self) -> Uint8Array {
        Uint8Array::from(&self.png[..])
    }
}

/// One loaded model on one device.
#[wasm_bindgen]
pub struct Engine {
    model: SrModel,
    device: Device,
    backend: &'static str,
    adapter: String,
    note: String,
    max_buffer_bytes: u64,
}

#[wasm_bindgen]
impl Engine {
    /// Loads safetensors weights. `backend` is `"auto"` (WebGPU when the browser has an adapter,
    /// else CPU, and [`Engine::note`] says why), `"webgpu"` (fails without it) or `"cpu"`.
    pub async fn create(weights: Vec<u8>, backend: String) -> Result<Engine, JsValue> {
        let Picked {
            device,
            backend,
            adapter,
            note,
            max_buffer_bytes,
        } = pick_device(&backend).await?;
        let model = weights::from_bytes(&weights, &device).map_err(|e| js_error(&e))?;
        Ok(Engine {
            model,
            device,
            backend,
            adapter,
            note,
            max_buffer_bytes,
        })
    }

    /// `"webgpu"` or `"cpu"`: what actually runs.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.to_string()
    }

    /// The GPU adapter's name (or the CPU backend's).
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Why the engine is not on the requested backend; empty when it is.
    #[wasm_bindgen(getter)]
    pub fn note(&self) -> String {
        self.note.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn scale(&self) -> u32 {
        self.model.scale() as u32
    }

    #[wasm_bindgen(getter)]
    pub fn arch(&self) -> String {
        self.model.spec.arch.name().to_string()
    }

    /// The device's largest buffer, which [`Engine::auto_tile`] is sized from.
    #[wasm_bindgen(getter, js_name = maxBufferBytes)]
    pub fn max_buffer_bytes(&self) -> f64 {
        self.max_buffer_bytes as f64
    }

    /// The tile side (LR pixels) used for `tile = 0`.
    #[wasm_bindgen(getter, js_name = autoTile)]
    pub fn auto_tile(&self) -> u32 {
        tile_for_buffer_limit(
            self.model.spec.peak_buffer_bytes_per_lr_pixel(),
            self.model.receptive_radius_lr(),
            self.max_buffer_bytes,
        ) as u32
    }

    /// Upscales `image` (consumed). `tile = 0` sizes tiles from the device limits.
    /// `afterTile(done, total)` is awaited after every tile (it may return a Promise); returning
    /// `false` cancels with a `CancelledError` and frees the device memory.
    pub fn upscale(&self, image: Image, tile: u32, tta: bool, after_tile: Function) -> Promise {
        let model = self.model.clone();
        let device = self.device.clone();
        let tile = if tile == 0 { self.auto_tile() } else { tile } as usize;
        future_to_promise(async move {
            let pic = image.picture;
            let scale = model.scale() as u64;
            let (w, h) = (pic.width() as u64 * scale, pic.height() as u64 * scale);
            if w * h > MAX_OUTPUT_PIXELS {
                return Err(js_error(&WebSrError::OutputTooLarge {
                    width: w,
                    height: h,
                    max_pixels: MAX_OUTPUT_PIXELS,
                }));
            }
            let opts = UpscaleOptions {
                tile: Some(tile),
                tta,
                ..UpscaleOptions::default()
            };
            let after = |done: usize, total: usize| {
                let f = after_tile.clone();
                async move { call_progress(&f, &[done as f64, total as f64]).await }
            };
            let result = upscale_rgb_async(&model, &pic.rgb, &opts, &device, after).await;
            let rgb = match result {
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

    /// Frees cached device memory (between images, or after a cancel).
    #[wasm_bindgen(js_name = releaseMemory)]
    pub fn release_memory(&self) {
        self.device.memory_cleanup();
    }
}
