//! The browser runtime: what `www/websr-worker.mjs` calls through wasm-bindgen.
//!
//! Everything here runs inside a Web Worker, so the page never freezes. The worker owns one
//! compute device for its whole life (chosen by [`crate::device::select`]: WebGPU through
//! burn-wgpu, or burn's CPU backend when the browser has no WebGPU adapter) and one [`Engine`]
//! per loaded model, of either kind. Images arrive either as encoded bytes (decoded here by the
//! same code as the native CLI, so results match it bit for bit on the CPU) or as RGBA pixels
//! the browser decoded (formats the `image` crate lacks); see [`Image`].
//!
//! With the `train` feature, [`FlClient`] trains the global model on the participant's own
//! images for the federated training page (`www/federated.html`).
//!
//! Errors reach JavaScript as `Error` objects whose `name` says what happened (`DecodeError`,
//! `TooLargeError`, `CancelledError`, `DeviceError`, `WeightsError`), so the page can show a
//! message a person can act on.

use crate::device::{select, BackendChoice, SelectedDevice};
use crate::error::WebSrError;
use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

mod diffusion_pool;
mod engine;
#[cfg(feature = "train")]
mod federated;
mod image;
mod pool;
#[cfg(feature = "train")]
mod secagg;
pub use diffusion_pool::TiledDiffusion;
pub use engine::Engine;
#[cfg(feature = "train")]
pub use federated::{FlClient, TrainedUpdate};
pub use image::{Image, Upscaled};
pub use pool::TiledUpscale;
#[cfg(feature = "train")]
pub use secagg::SecAggParticipant;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    // Every browser with WebGPU, and every current one without, runs wasm SIMD (128-bit): use
    // the GEMM's SIMD kernel for the CPU path (about 4 f32 lanes per instruction instead of 1).
    gemm::set_wasm_simd128(true);
}

/// Turns the CPU path's SIMD kernels (burn's GEMM and websr's direct convolution) on or off
/// (on by default): for side-by-side benchmarks (`scripts/web-bench.mjs --modes cpu,cpu-scalar`)
/// and for a browser whose SIMD misbehaves. Both settings compute the same bytes.
#[wasm_bindgen(js_name = setCpuSimd)]
pub fn set_cpu_simd(enable: bool) {
    gemm::set_wasm_simd128(enable);
    websr_kernels::set_simd128(enable);
}

/// The arithmetic the CPU path's convolution kernel runs on: `"relaxed-simd"` (the second
/// wasm build, fused multiply-add), `"simd128"` or `"portable"` (SIMD switched off).
#[wasm_bindgen(js_name = cpuKernel)]
pub fn cpu_kernel() -> String {
    websr_kernels::active_kernel().to_string()
}

/// Whether the CPU path's 3x3 convolutions (WaveLR's, and the diffusion U-Net's stride-1 ones)
/// run through websr's direct convolution kernel (the default) or burn's im2col + GEMM
/// convolution: for side-by-side benchmarks (`--modes cpu,cpu-burn`).
#[wasm_bindgen(js_name = setDirectConv)]
pub fn set_direct_conv(enable: bool) {
    crate::models::wavelr_direct::set_enabled(enable);
}

/// The quality (1-100, libjpeg scale) a JPEG was saved at, read from its quantisation tables;
/// `undefined` for anything that is not a JPEG ([`crate::jpeg_quality`]).
#[wasm_bindgen(js_name = jpegQuality)]
pub fn jpeg_quality(bytes: &[u8]) -> Option<u8> {
    crate::jpeg_quality::estimate(bytes).map(|q| q.quality)
}

/// The websr version, so a page can tell which runtime it loaded.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Whether `len` values are a planar RGB image of `h x w` (no overflow on wasm32's 32-bit
/// `usize`: a hostile size cannot wrap around to the data's length).
fn is_rgb_of(len: usize, h: usize, w: usize) -> bool {
    h.checked_mul(w).and_then(|p| p.checked_mul(3)) == Some(len)
}

/// A tile's output sent back by a worker (planar RGB, `height x width`), its length checked.
fn tile_output(height: u32, width: u32, data: Vec<f32>) -> Result<crate::image::Planar, JsValue> {
    let (h, w) = (height as usize, width as usize);
    if !is_rgb_of(data.len(), h, w) {
        return Err(js_sys::Error::new("tile output length does not match its size").into());
    }
    Ok(crate::image::Planar::new(3, h, w, data))
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

/// The device for a page's `backend` string (`"auto"`, `"webgpu"` or `"cpu"`).
async fn pick_device(backend: &str) -> Result<SelectedDevice, JsValue> {
    let choice = BackendChoice::parse(backend).map_err(|e| js_error(&e))?;
    select(choice).await.map_err(|e| js_error(&e))
}

/// Calls a JS progress callback with numeric `args` and awaits it if it returns a Promise;
/// `false` (or a throwing callback) means stop.
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
