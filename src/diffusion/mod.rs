//! Diffusion super-resolution: SR3, DiWa and YODA (methods.md §§2-3), as burn tensor ops that
//! run on WebGPU and on the CPU alike. A guide to the submodules, from the maths to the models:
//!
//! - [`schedule`]: noise schedules (linear, cosine) on the host in `f64`, and SR3's continuous
//!   training noise level.
//! - [`noise`]: Gaussian noise drawn from a seeded host generator, so a seed fixes a sample.
//! - [`forward_process`]: `q_sample`, noising a clean signal to a level.
//! - [`reverse`]: one DDPM or DDIM step and their coefficients; DDIM's step indices.
//! - [`sampler`]: the reverse loop shared by the models, with optional YODA guidance.
//! - [`objective`]: the (optionally YODA-masked) L1 noise-prediction loss.
//! - [`unet`]: the conditional U-Net that predicts the noise.
//! - [`yoda`]: importance maps, time masks and the guided step of YODA.
//! - [`sr3`]: SR3, diffusing the HR image conditioned on the bicubic upscale.
//! - [`diwa`]: DiWa, diffusing the wavelet residual of an initial predictor.
//! - [`upscale`]: a whole image, padded to fit, sampled step by step (previews, cancel).
//! - [`model`]: [`DiffusionModel`], SR3 or DiWa with its spec and schedule, saved as
//!   safetensors; what the CLI, the trainer and the browser use.
//!
//! Training needs only `loss(...).backward()` and an optimiser (feature `train`); sampling
//! returns tensors that callers read back (asynchronously in the browser).

pub mod diwa;
pub mod forward_process;
pub mod model;
pub mod noise;
pub mod objective;
pub mod reverse;
pub mod sampler;
pub mod schedule;
pub mod sr3;
pub mod unet;
pub mod upscale;
pub mod yoda;

pub use diwa::{DiWa, DiWaConfig};
pub use model::{DiffusionKind, DiffusionModel, DiffusionSpec, SampleOptions};
pub use reverse::PosteriorVariance;
pub use sampler::Sampler;
pub use schedule::NoiseSchedule;
pub use sr3::{Sr3, Sr3Config};
pub use unet::{UNet, UNetConfig};
pub use yoda::{Yoda, YodaConfig};
