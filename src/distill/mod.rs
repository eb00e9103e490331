//! LD3M for super-resolution (methods.md §6; issue #19): distil a training set into `K`
//! synthetic HR patches by optimising the codes a diffusion model generates them from.
//!
//! - [`skip`]: LD3M's linearly decaying skip connection weights.
//! - [`generator`]: DiWa's DDIM sampler from learnable codes (the latent in DiWa's diffused
//!   space and the LR image it is conditioned on), with the skip connection.
//! - [`matching`]: the objective, distribution matching on randomly initialised embedders.
//! - [`Distiller`]: the codes, their SGD with momentum (LD3M's optimiser), one chunk of codes per
//!   iteration, and the synthetic patches it writes.
//!
//! What differs from the paper, and why: the generator is our DiWa (the Haar domain is its
//! latent space; no pretrained latent diffusion model can be downloaded here), conditioned on an
//! LR image instead of a class; the objective embeds Haar sub-bands with channel means (see
//! [`matching`]); there are no classes, so real batches come from the whole training set. The
//! synthetic patches are degraded like real ones (bicubic) when a model trains on them.

pub mod generator;
pub mod matching;
pub mod skip;

use crate::diffusion::noise::standard_normal_tensor;
use crate::diffusion::DiffusionModel;
use crate::error::{Result, WebSrError};
use crate::image::Planar;
use crate::train::data::TrainingSet;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use generator::Ld3mGenerator;
use matching::{band_rms, mean_embedding_distance, RandomEmbedder, BANDS};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

/// Hyper-parameters of one distillation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// `K`, the number of synthetic patches.
    pub images: usize,
    /// HR side of a patch in pixels.
    pub patch: usize,
    /// Optimisation steps; each updates one chunk of `batch` codes.
    pub iterations: usize,
    /// Synthetic patches per iteration (LD3M's chunk, `sg_batch`).
    pub batch: usize,
    /// Real patches per iteration.
    pub real_batch: usize,
    /// SGD learning rate of both codes.
    pub lr: f64,
    /// SGD momentum (LD3M: 0.5).
    pub momentum: f64,
    /// DDIM steps of the generator and the strength it starts from.
    pub steps: usize,
    pub strength: f64,
    pub seed: u64,
}

impl DistillConfig {
    /// Clear errors for settings that cannot work with `model` (a DiWa of some scale).
    pub fn validate(&self, model: &DiffusionModel) -> Result<()> {
        let bad = |m: String| Err(WebSrError::Invalid(m));
        if self.images == 0 || self.iterations == 0 || self.batch == 0 || self.real_batch == 0 {
            return bad(format!(
                "images, iterations, batch and real batch must be positive, got {}, {}, {}, {}",
                self.images, self.iterations, self.batch, self.real_batch
            ));
        }
        let multiple = model.spec.hr_multiple().max(2) * model.scale();
        if self.patch == 0 || !self.patch.is_multiple_of(multiple) {
            return bad(format!(
                "the patch side must be a positive multiple of {multiple} for this generator, got {}",
                self.patch
            ));
        }
        let lr_ok = self.lr.is_finite() && self.lr > 0.0;
        if !lr_ok || !(0.0..1.0).contains(&self.momentum) {
            return bad(format!(
                "need a finite learning rate > 0 and a momentum in [0, 1), got {} and {}",
                self.lr, self.momentum
            ));
        }
        Ok(())
    }
}

/// Up to `batch` codes with their SGD velocities.
struct Chunk {
    latent: Tensor<4>,
    lr_code: Tensor<4>,
    latent_velocity: Option<Tensor<4>>,
    code_velocity: Option<Tensor<4>>,
}

/// One distillation: `K` codes optimised through `model` so that their patches match the real
/// patches of `data` in distribution.
pub struct Distiller<'a> {
    pub cfg: DistillConfig,
    generator: Ld3mGenerator<'a>,
    data: &'a TrainingSet,
    scale: usize,
    chunks: Vec<Chunk>,
    band_rms: [f64; BANDS],
    device: Device,
    /// The real patches the codes started from, for the "K random real patches" control.
    pub initial: Vec<Planar>,
    pub iteration: usize,
}

impl<'a> Distiller<'a> {
    /// Draws `K` real patches (seeded) and encodes them as the starting codes. `model` must be on
    /// `device`, an autodiff device, with its parameters untracked (`no_grad`): only the codes
    /// are optimised.
    pub fn new(
        model: &'a DiffusionModel,
        data: &'a TrainingSet,
        cfg: DistillConfig,
        device: &Device,
    ) -> Result<Self> {
        cfg.validate(model)?;
        if data.is_empty() {
            return Err(WebSrError::Invalid("no real images to distil".into()));
        }
        let generator = Ld3mGenerator::new(model, cfg.steps, cfg.strength)?;
        let device = device.clone();
        let scale = model.scale();
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let (lr, hr) = data
            .batch(&mut rng, cfg.images, cfg.patch, scale)
            .to_tensors(&device);
        let initial = to_planars(hr.clone());
        let band_rms = band_rms(
            data.batch(&mut rng, cfg.real_batch.max(16), cfg.patch, scale)
                .to_tensors(&device)
                .1,
        );
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < cfg.images {
            let end = (start + cfg.batch).min(cfg.images);
            let lr = lr.clone().narrow(0, start, end - start).detach();
            let hr = hr.clone().narrow(0, start, end - start);
            chunks.push(Chunk {
                latent: generator.encode(lr.clone(), hr),
                lr_code: lr,
                latent_velocity: None,
                code_velocity: None,
            });
            start = end;
        }
        Ok(Distiller {
            cfg,
            generator,
            data,
            scale,
            chunks,
            band_rms,
            device,
            initial,
            iteration: 0,
        })
    }

    /// The random draws of iteration `it`: its real batch, embedder and noise.
    fn iteration_rng(&self, it: usize) -> StdRng {
        StdRng::seed_from_u64(
            self.cfg.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(it as u64 + 1)),
        )
    }

    /// A real batch and a fresh random embedder, drawn from `rng` in that order: the real
    /// batch's embedding (detached) and the embedder for the synthetic side.
    fn real_draw(&self, rng: &mut StdRng) -> (Tensor<2>, RandomEmbedder) {
        let (_, real) = self
            .data
            .batch(rng, self.cfg.real_batch, self.cfg.patch, self.scale)
            .to_tensors(&self.device);
        let embedder = RandomEmbedder::new(rng, &self.band_rms, &self.device);
        (embedder.embed(real).detach(), embedder)
    }

    /// Iteration `it`'s DM loss, with the codes it reads marked for gradients: the real batch,
    /// embedder and noise come from `it`'s own generator, the codes from chunk `it mod chunks`.
    fn iteration_loss_graph(&self, it: usize) -> (Tensor<1>, Tensor<4>, Tensor<4>) {
        let mut rng = self.iteration_rng(it);
        let (real_embedding, embedder) = self.real_draw(&mut rng);
        let chunk = &self.chunks[it % self.chunks.len()];
        let noise = standard_normal_tensor(&mut rng, chunk.latent.dims(), &self.device);
        let latent = chunk.latent.clone().detach().require_grad();
        let lr_code = chunk.lr_code.clone().detach().require_grad();
        let synthetic = self
            .generator
            .generate(latent.clone(), lr_code.clone(), noise);
        let loss = mean_embedding_distance(real_embedding, embedder.embed(synthetic));
        (loss, latent, lr_code)
    }

    /// Iteration `it`'s DM loss at the current codes, without a step (tests compare it before
    /// and after the step that iteration takes).
    pub fn iteration_loss(&self, it: usize) -> f64 {
        let (loss, _, _) = self.iteration_loss_graph(it);
        loss.detach().into_scalar::<f32>() as f64
    }

    /// One SGD step on the next chunk of codes; returns its DM loss (before the step).
    pub fn step(&mut self) -> f64 {
        let it = self.iteration;
        let (loss, latent, lr_code) = self.iteration_loss_graph(it);
        let value = loss.clone().into_scalar::<f32>() as f64;
        let grads = loss.backward();
        let (lr, momentum) = (self.cfg.lr, self.cfg.momentum);
        let chunks = self.chunks.len();
        let chunk = &mut self.chunks[it % chunks];
        if let Some(g) = latent.grad(&grads) {
            let v = sgd_velocity(chunk.latent_velocity.take(), g, momentum);
            chunk.latent = (latent.detach() - v.clone().mul_scalar(lr)).detach();
            chunk.latent_velocity = Some(v);
        }
        if let Some(g) = lr_code.grad(&grads) {
            let v = sgd_velocity(chunk.code_velocity.take(), g, momentum);
            // The code stays an image: the predictor was trained on inputs in [0, 1].
            chunk.lr_code = (lr_code.detach() - v.clone().mul_scalar(lr))
                .clamp(0.0, 1.0)
                .detach();
            chunk.code_velocity = Some(v);
        }
        self.iteration += 1;
        value
    }

    /// The synthetic HR patches the codes give now (the noise of `seed`, deterministic).
    pub fn synthetic(&self, seed: u64) -> Vec<Planar> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(self.cfg.images);
        for chunk in &self.chunks {
            let noise = standard_normal_tensor(&mut rng, chunk.latent.dims(), &self.device);
            let hr = self
                .generator
                .generate(chunk.latent.clone(), chunk.lr_code.clone(), noise)
                .detach();
            out.extend(to_planars(hr));
        }
        out
    }

    /// The DM loss of all synthetic patches against `real_batch` real ones under a fixed
    /// embedder and noise (`seed`): the same number before and after optimising, to compare.
    pub fn evaluate(&self, seed: u64) -> f64 {
        let (real_embedding, embedder) = self.real_draw(&mut StdRng::seed_from_u64(seed));
        let synthetic: Vec<Tensor<4>> = self
            .synthetic(seed)
            .iter()
            .map(|p| crate::device::to_tensor(p, &self.device))
            .collect();
        let synthetic = Tensor::cat(synthetic, 0);
        let loss = mean_embedding_distance(real_embedding, embedder.embed(synthetic).detach());
        loss.into_scalar::<f32>() as f64
    }

    /// The latent codes, concatenated (tests compare them).
    pub fn latents(&self) -> Tensor<4> {
        Tensor::cat(self.chunks.iter().map(|c| c.latent.clone()).collect(), 0)
    }

    /// The LR codes, concatenated.
    pub fn lr_codes(&self) -> Tensor<4> {
        Tensor::cat(self.chunks.iter().map(|c| c.lr_code.clone()).collect(), 0)
    }
}

/// `model` with its parameters untracked, as [`Distiller::new`] wants it: gradients flow through
/// the network to the codes, and none are kept for the frozen weights.
pub fn frozen(model: DiffusionModel) -> DiffusionModel {
    model.with_net(model.net.clone().no_grad())
}

/// PyTorch's SGD momentum (dampening 0): `v <- m v + g`.
fn sgd_velocity(previous: Option<Tensor<4>>, grad: Tensor<4>, momentum: f64) -> Tensor<4> {
    match previous {
        Some(v) => v.mul_scalar(momentum) + grad,
        None => grad,
    }
}

/// A batch `[n, 3, h, w]` as `n` pictures' planes.
fn to_planars(batch: Tensor<4>) -> Vec<Planar> {
    let [n, c, h, w] = batch.dims();
    let values: Vec<f32> = batch
        .into_data()
        .try_into_vec::<f32>()
        .expect("f32 image values");
    values
        .chunks(c * h * w)
        .take(n)
        .map(|v| Planar::new(c, h, w, v.to_vec()))
        .collect()
}
