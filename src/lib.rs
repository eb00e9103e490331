//! # websr: wavelet super-resolution for the browser and the command line
//!
//! One model code base runs on WebGPU (burn-wgpu, in the page) and on burn's CPU backend
//! (`flex`, natively and as the wasm fallback). A guide to the modules, in the order data flows:
//!
//! - [`image`]: decode/encode files into planar `f32` RGB (+ alpha) pictures; size limits.
//! - [`resize`]: MATLAB-exact bicubic `imresize`, which makes LR inputs and the baseline.
//! - [`wavelet`]: Haar DWT/IDWT as tensor ops (DiWa's convention).
//! - [`upsample`]: the same bicubic as tensor matmuls, for models that add a residual to it.
//! - [`models`]: DWSR, DWA, DWSR+DWA, DWA-Direct and the fast WaveLR; [`models::SrModel`] is the
//!   type everything else uses.
//! - [`diffusion`]: diffusion SR (SR3, DiWa, YODA): schedules, samplers, U-Net, models;
//!   [`diffusion::DiffusionModel`] is what the CLI, the trainer and the browser use.
//! - [`weights`]: safetensors with the model spec in the metadata; strict, clear errors.
//! - [`tiling`] and [`upscale`]: bounded-memory tiled inference with blending, x8 self-ensemble.
//! - [`metrics`] and [`eval`]: BasicSR-compatible Y-PSNR/SSIM and the benchmark protocol.
//! - [`degrade`]: blind degradations (blur, noise, JPEG) for federated blind SR and its benchmark.
//! - [`federated`]: the federated client: its data, local training (feature `train`), the update
//!   it sends; the wire format itself is in the `websr-federated` crate.
//! - [`prune`]: dataset pruning: score sub-images with a scorer model's loss, rank, subset manifests.
//! - [`train`] (feature `train`): data pipeline, Adam + L1 on a shared [`train::Schedule`],
//!   checkpoints, resume, validation, warm starts (also from a shallower model, which
//!   [`SrModel::deepened`] grows without changing its output), for the wavelet models and
//!   ([`train::diffusion`]) the diffusion models.
//! - [`zoo`]: the shipped, trained models and their manifest, with one default model per scale.
//! - [`backend`]: picking a device at run time.
//! - `web` (wasm32 only): the browser runtime behind `www/websr.mjs`, run in a Web Worker.

pub mod backend;
pub mod bench;
pub mod degrade;
pub mod diffusion;
pub mod error;
pub mod eval;
pub mod federated;
pub mod image;
pub mod metrics;
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
pub use models::{Arch, ModelSpec, SrModel};
