//! # websr: wavelet super-resolution for the browser and the command line
//!
//! One model code base runs on WebGPU (burn-wgpu, in the page) and on burn's CPU backend
//! (`flex`, natively and as the wasm fallback).
//!
//! ## Following an image from the page to the PNG
//!
//! `www/app.mjs` (the page) -> `www/websr.mjs` (the JS library) -> `www/websr-worker.mjs` (a Web
//! Worker) -> `web::Engine` (wasm) -> [`upscale::upscale_rgb_async`] -> the [`Model`]:
//! tile by tile through a one-pass network ([`tiling`], [`models`]) or step by step through a
//! diffusion sampler ([`diffusion::upscale`]) -> [`image`] encodes the PNG. The CLI
//! (`crates/cli`, `websr upscale`) enters the same path at [`upscale::upscale_picture`].
//!
//! ## Where each method of the thesis lives
//!
//! | method | file |
//! |---|---|
//! | Haar DWT / IDWT | [`wavelet`] |
//! | DWSR, DWSR+DWA, DWA-Direct | [`models::dwsr`] (the DWA module: [`models::dwa`]) |
//! | WaveLR, our fast LR-space wavelet model | [`models::wavelr`] |
//! | SR3 / DiWa (diffusion in the wavelet domain) | [`diffusion::sr3`] / [`diffusion::diwa`] |
//! | YODA (attention-guided steps) | [`diffusion::yoda`] |
//! | dataset pruning | [`prune`] |
//! | federated blind SR (degradations, client, wire format) | [`degrade`], [`federated`], the `websr-federated` crate |
//!
//! ## The modules, in the order data flows
//!
//! - [`image`]: decode/encode files into planar `f32` RGB (+ alpha) pictures; the input and
//!   output pixel limits of every runtime.
//! - [`resize`]: MATLAB-exact bicubic `imresize`, which makes LR inputs and the baseline.
//! - [`device`]: the backend vocabulary (`auto | webgpu | cpu`), the one place a device is
//!   chosen, and moving pictures onto a device and back.
//! - [`model`]: [`Model`], either kind of trained model behind one type, loaded by
//!   [`Model::from_bytes`] from the weights' own format tag.
//! - [`models`]: the one-pass networks (DWSR, DWA, DWSR+DWA, DWA-Direct, WaveLR) and
//!   [`SrModel`]; [`diffusion`]: SR3, DiWa, YODA (schedules, samplers, U-Net) and
//!   [`diffusion::DiffusionModel`].
//! - [`weights`]: safetensors with the model spec in the metadata; strict, clear errors.
//! - [`upscale`] (with [`tiling`]): one upscale path for both kinds: bounded-memory tiles with
//!   blending and x8 self-ensemble, or stepwise sampling with previews; progress and cancel.
//! - [`upsample`]: the same bicubic as tensor matmuls, for models that add a residual to it.
//! - [`metrics`] and [`eval`]: BasicSR-compatible Y-PSNR/SSIM and the benchmark protocol.
//! - [`degrade`]: blind degradations (blur, noise, JPEG) for federated blind SR and its benchmark,
//!   and the second-order pipeline the `photo` model trains on.
//! - [`jpeg_quality`]: a JPEG's quality from its quantisation tables (to suggest the photo model).
//! - [`federated`]: the federated client: its data, local training (feature `train`), the update
//!   it sends; the wire format itself is in the `websr-federated` crate.
//! - [`prune`]: dataset pruning: score sub-images with a scorer model's loss, rank, subset manifests.
//! - [`train`] (feature `train`): data pipeline, Adam + L1 on a shared [`train::Schedule`],
//!   checkpoints, resume, validation, warm starts (also from a shallower model, which
//!   [`SrModel::deepened`] grows without changing its output), for the wavelet models and
//!   ([`train::diffusion`]) the diffusion models.
//! - [`zoo`]: the shipped, trained models and their manifest, with one default model per scale.
//! - [`bench`](mod@bench): the speed table of `websr bench` and `cargo bench`.
//! - `web` (wasm32 only): the browser runtime behind `www/websr.mjs`, run in a Web Worker.

pub mod bench;
pub mod degrade;
pub mod device;
pub mod diffusion;
pub mod error;
pub mod eval;
pub mod federated;
pub mod image;
pub mod jpeg_quality;
pub mod metrics;
pub mod model;
pub mod models;
pub mod prune;
pub mod resize;
pub mod tiling;
#[cfg(feature = "train")]
pub mod train;
pub mod upsample;
pub mod upscale;
pub mod wavelet;
#[cfg(all(target_arch = "wasm32", feature = "wgpu", feature = "flex"))]
pub mod web;
pub mod weights;
pub mod zoo;

/// Re-exported so that dependants use the very same burn (one `Device` type).
pub use burn;
pub use error::{Result, WebSrError};
pub use model::{Model, ModelKind};
pub use models::{Arch, ModelSpec, SrModel};
