//! The LD3M generator on DiWa: a synthetic HR patch is DiWa's deterministic DDIM sample from
//! two learnable codes, with LD3M's decaying skip connection from the initial state into every
//! step so that gradients reach it (methods.md §6).
//!
//! The codes play the roles of LD3M's latent and class embedding:
//! - the **latent** `z` lives in DiWa's diffused space, `k (DWT(HR) - x_init)` (12 sub-bands at
//!   half the HR side); LD3M initialises it by encoding a real image, here the same map of a
//!   real patch;
//! - the **LR code** is the image DiWa is conditioned on (LD3M's class embedding), initialised as
//!   that patch's bicubic LR. Gradients reach it through the condition and through the frozen
//!   initial predictor's input.
//!
//! A sample: `y = q(z, first level)` with the given noise, then for each DDIM step `i` (eta 0)
//! `y0 = (1 - w_i) y0_hat(y) + w_i z`, `y <- sqrt(acp_next) y0 + sqrt(1 - acp_next) eps`, and
//! finally `HR = IDWT(y0 / k + x_init(LR code))` in `[0, 1]`.

use super::skip::skip_weights;
use crate::diffusion::forward_process::noise_to_level;
use crate::diffusion::model::DiffusionNet;
use crate::diffusion::noise::host_vector;
use crate::diffusion::reverse::{predict_y0, DdimCoefficients};
use crate::diffusion::sampler::{to_image, truncated_start, Sampler, Transition};
use crate::diffusion::{DiWa, DiffusionModel, NoiseSchedule};
use crate::error::{Result, WebSrError};
use crate::wavelet::{dwt, idwt};
use burn::tensor::Tensor;

/// DiWa's DDIM sampler from learnable codes.
pub struct Ld3mGenerator<'a> {
    diwa: &'a DiWa,
    schedule: &'a NoiseSchedule,
    transitions: Vec<Transition>,
    weights: Vec<f64>,
}

impl<'a> Ld3mGenerator<'a> {
    /// `steps` DDIM steps from `strength` (1 = pure noise, less = a truncated start, as the
    /// model samples by default) of `model`, which must be a DiWa.
    pub fn new(model: &'a DiffusionModel, steps: usize, strength: f64) -> Result<Self> {
        let DiffusionNet::DiWa(diwa) = &model.net else {
            return Err(WebSrError::Invalid(format!(
                "LD3M needs a DiWa generator, not {}",
                model.spec.kind.name()
            )));
        };
        if steps == 0 || !(strength > 0.0 && strength <= 1.0) {
            return Err(WebSrError::Invalid(format!(
                "the generator needs at least one step and a strength in (0, 1], got {steps} \
                 steps from {strength}"
            )));
        }
        let schedule = model.schedule();
        let first = truncated_start(schedule, strength).unwrap_or(schedule.len() - 1);
        let transitions = Sampler::Ddim { steps, eta: 0.0 }.transitions_from(schedule, first);
        let weights = skip_weights(transitions.len());
        Ok(Ld3mGenerator {
            diwa,
            schedule,
            transitions,
            weights,
        })
    }

    /// The DDIM steps a sample takes.
    pub fn steps(&self) -> usize {
        self.transitions.len()
    }

    /// The latent that gives back `hr` (LD3M's "encode"): `k (DWT(HR) - x_init(lr))`, detached.
    ///
    /// # Shapes
    ///
    /// - lr: `[batch, 3, H, W]`, hr: `[batch, 3, scale*H, scale*W]`, both in `[0, 1]`
    /// - output: `[batch, 12, scale*H/2, scale*W/2]`
    pub fn encode(&self, lr: Tensor<4>, hr: Tensor<4>) -> Tensor<4> {
        let (_, x_init) = self.diwa.condition(lr);
        let target = dwt(hr.mul_scalar(2.0).sub_scalar(1.0));
        (target - x_init)
            .mul_scalar(self.diwa.residual_scale())
            .detach()
    }

    /// Synthetic HR patches in `[0, 1]` from the codes; `noise` (like `latent`) noises the
    /// latent to the first step's level. Differentiable in `latent` and `lr_code`.
    ///
    /// # Shapes
    ///
    /// - latent, noise: `[batch, 12, scale*H/2, scale*W/2]`
    /// - lr_code: `[batch, 3, H, W]`
    /// - output: `[batch, 3, scale*H, scale*W]`
    pub fn generate(&self, latent: Tensor<4>, lr_code: Tensor<4>, noise: Tensor<4>) -> Tensor<4> {
        let (c, x_init) = self.diwa.condition_through_input(lr_code);
        let n = latent.dims()[0];
        let device = latent.device();
        let acp = self.schedule.alphas_cumprod();
        let first = self.transitions[0].from;
        let mut y = noise_to_level(latent.clone(), acp[first], noise);
        let mut clean = y.clone();
        for (step, &w) in self.transitions.iter().zip(&self.weights) {
            let gamma = host_vector(&vec![acp[step.from].sqrt(); n], &device);
            let eps = self.diwa.predict_noise(c.clone(), y.clone(), gamma);
            let co = DdimCoefficients::new(self.schedule, step.from, step.to, 0.0);
            let estimate = predict_y0(
                y,
                eps.clone(),
                co.sqrt_recip_acp,
                co.sqrt_recip_acp_minus_one,
            );
            clean = estimate.mul_scalar(1.0 - w) + latent.clone().mul_scalar(w);
            y = clean.clone().mul_scalar(co.sqrt_acp_next) + eps.mul_scalar(co.eps_scale);
        }
        // After the last step (to the clean signal) `y` is `clean`.
        to_image(idwt(clean.div_scalar(self.diwa.residual_scale()) + x_init))
    }
}
