//! SR3 (Saharia et al.) in the pixel domain, as in Janspiry's implementation (methods.md §2):
//! the bicubic-upscaled LR `x_up` (in `[-1, 1]`) conditions a U-Net on `cat[x_up, y_t]`
//! (6 -> 3 channels) that predicts the noise of `y_t`; the HR image itself is diffused.

use super::objective::noise_prediction_loss;
use super::reverse::PosteriorVariance;
use super::sampler::{Decoder, RunPlan, Sampler, SamplingRun};
use super::schedule::NoiseSchedule;
use super::unet::{UNet, UNetConfig};
use super::yoda::{Yoda, YodaGuide};
use crate::upsample::bicubic_upscale;
use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::Rng;

#[derive(Config, Debug)]
pub struct Sr3Config {
    pub scale: usize,
    /// Its channels must be 6 in, 3 out.
    #[config(default = "UNetConfig::new(6, 3)")]
    pub unet: UNetConfig,
}

#[derive(Module, Debug)]
pub struct Sr3 {
    unet: UNet,
    scale: usize,
}

impl Sr3Config {
    pub fn init(&self, device: &Device) -> Sr3 {
        assert!(
            self.unet.in_channels == 6 && self.unet.out_channels == 3,
            "SR3's U-Net maps 6 channels (condition + noisy image) to 3"
        );
        Sr3 {
            unet: self.unet.init(device),
            scale: self.scale,
        }
    }
}

impl Sr3 {
    /// SR3's code uses the true posterior variance.
    pub const VARIANCE: PosteriorVariance = PosteriorVariance::Posterior;

    pub fn scale(&self) -> usize {
        self.scale
    }

    /// The size of the diffused signal (and of a YODA map) for an `h x w` LR input: the HR size.
    pub fn diffused_size(&self, h: usize, w: usize) -> [usize; 2] {
        [h * self.scale, w * self.scale]
    }

    /// `x_up`: the bicubic upscale of `lr` (in `[0, 1]`) mapped to `[-1, 1]`.
    ///
    /// # Shapes
    ///
    /// - lr: `[batch, 3, H, W]`
    /// - output: `[batch, 3, scale*H, scale*W]`
    pub fn condition(&self, lr: Tensor<4>) -> Tensor<4> {
        bicubic_upscale(lr, self.scale)
            .mul_scalar(2.0)
            .sub_scalar(1.0)
    }

    /// `eps_hat = UNet(cat[x_up, y_t], gamma)`: the network's forward pass.
    ///
    /// # Shapes
    ///
    /// - condition (`x_up`), y (`y_t`): `[batch, 3, scale*H, scale*W]`
    /// - gamma: `[batch]`
    /// - output: `[batch, 3, scale*H, scale*W]`
    pub fn predict_noise(&self, condition: Tensor<4>, y: Tensor<4>, gamma: Tensor<1>) -> Tensor<4> {
        self.unet.forward(Tensor::cat(vec![condition, y], 1), gamma)
    }

    /// The mean L1 noise loss on one batch (`hr` in `[0, 1]`, `scale` times `lr`'s size), with
    /// noise levels drawn from `schedule` and noise from `rng`. With YODA (a map at the HR size),
    /// only the pixels inside each item's mask count and the rest is the noised `x_up`.
    pub fn loss(
        &self,
        lr: Tensor<4>,
        hr: Tensor<4>,
        schedule: &NoiseSchedule,
        rng: &mut impl Rng,
        yoda: Option<&Yoda>,
    ) -> Tensor<1> {
        let condition = self.condition(lr);
        assert_eq!(
            condition.dims(),
            hr.dims(),
            "HR must be scale x the LR size"
        );
        let y0 = hr.mul_scalar(2.0).sub_scalar(1.0);
        noise_prediction_loss(
            y0,
            || condition.clone(),
            schedule,
            rng,
            yoda,
            |y, gamma| self.predict_noise(condition.clone(), y, gamma),
        )
    }

    /// A sampling run for `lr` (`[N, 3, h, w]` in `[0, 1]`), to step with
    /// [`Sr3::predict_noise`]; `plan` says how (its seed fixes it).
    pub fn start_sampling(
        &self,
        lr: Tensor<4>,
        schedule: &NoiseSchedule,
        plan: &RunPlan,
        yoda: Option<&Yoda>,
    ) -> SamplingRun {
        let condition = self.condition(lr);
        let guide = yoda.map(|y| YodaGuide::new(y, condition.clone()));
        let process = plan.process(schedule, Self::VARIANCE);
        SamplingRun::start(condition, Decoder::Pixels, &process, plan, guide)
    }

    /// A super-resolved batch in `[0, 1]`; `seed` fixes it.
    ///
    /// # Shapes
    ///
    /// - lr: `[batch, 3, H, W]`
    /// - output: `[batch, 3, scale*H, scale*W]`
    pub fn sample(
        &self,
        lr: Tensor<4>,
        schedule: &NoiseSchedule,
        sampler: Sampler,
        seed: u64,
        yoda: Option<&Yoda>,
    ) -> Tensor<4> {
        self.start_sampling(lr, schedule, &RunPlan::full(sampler, seed), yoda)
            .run_to_end(|c, y, gamma| self.predict_noise(c, y, gamma))
    }
}
