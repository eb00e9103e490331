//! DiWa (methods.md §2): diffusion in the Haar wavelet domain, on the residual of an initial
//! predictor.
//!
//! `c = DWT(x_up)` (12 sub-bands at half the HR size), `x_init` the initial prediction's
//! sub-bands, `y0 = k (DWT(HR) - x_init)` is diffused, the U-Net maps `cat[c, y_t]` (24 channels)
//! to the noise (12), and a sample is `IDWT(y / k + x_init)`; the reverse variance is `beta`.
//!
//! Two kinds of initial predictor ([`Predictor`]):
//! - DiWa's own ([`InitialPredictor`], DWSR's shape, `x_init = c + convs(c)`), trained jointly:
//!   it learns only through the noise loss (gradients flow through `x_init` into `y0`), as in
//!   DiWa's code, optionally with its own L1 error.
//! - a trained one-pass model (websr's shipped default), frozen: the diffusion then models only
//!   what that strong prediction misses, as DiWa's paper does with its pre-trained regressor. Its
//!   residual is small (a few hundredths in `[-1, 1]`), so `k` (`residual_scale`) scales it to
//!   the signal level the noise schedule is made for.

use super::objective::noise_prediction_loss;
use super::reverse::PosteriorVariance;
use super::sampler::{to_image, Decoder, RunPlan, Sampler, SamplingRun};
use super::schedule::NoiseSchedule;
use super::unet::{UNet, UNetConfig};
use super::yoda::{Yoda, YodaGuide};
use crate::models::SrNet;
use crate::upsample::bicubic_upscale;
use crate::wavelet::{dwt, idwt};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use rand::Rng;

#[derive(Config, Debug)]
pub struct DiWaConfig {
    pub scale: usize,
    /// Its channels must be 24 in, 12 out.
    #[config(default = "UNetConfig::new(24, 12)")]
    pub unet: UNetConfig,
    /// Width of the initial predictor (64 in DiWa, DWSR's).
    #[config(default = 64)]
    pub predictor_features: usize,
    /// Its hidden 3x3 convolutions between head and tail (10 in DiWa).
    #[config(default = 10)]
    pub predictor_layers: usize,
}

/// DWSR as DiWa's `DWSR` class: `Conv(12->F) ReLU, L x [Conv(F->F) ReLU], Conv(F->12)`, 3x3 without
/// bias, added to its input. `crate::models::dwsr::Dwsr` reads the LR image and adds the bicubic
/// itself, so this is the same stack on sub-bands. The last convolution starts at zero: an
/// untrained predictor passes `c` through, and the diffused residual starts as `DWT(HR - x_up)`.
#[derive(Module, Debug)]
pub struct InitialPredictor {
    head: Conv2d,
    body: Vec<Conv2d>,
    tail: Conv2d,
}

impl InitialPredictor {
    fn new(features: usize, layers: usize, device: &Device) -> Self {
        // He initialisation for the ReLU stack, as websr's DWSR.
        let he = Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: false,
        };
        let conv3 = |i: usize, o: usize, init: Initializer| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .with_initializer(init)
                .init(device)
        };
        InitialPredictor {
            head: conv3(12, features, he.clone()),
            body: (0..layers)
                .map(|_| conv3(features, features, he.clone()))
                .collect(),
            tail: conv3(features, 12, Initializer::Zeros),
        }
    }

    /// `c + convs(c)` on sub-bands.
    ///
    /// # Shapes
    ///
    /// - c: `[batch, 12, H, W]`
    /// - output: `[batch, 12, H, W]`
    pub fn forward(&self, c: Tensor<4>) -> Tensor<4> {
        let mut x = relu(self.head.forward(c.clone()));
        for conv in &self.body {
            x = relu(conv.forward(x));
        }
        c + self.tail.forward(x)
    }
}

/// Where `x_init` comes from.
// One per model: the size difference between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Predictor {
    /// DiWa's own stack on the sub-bands, trained with the diffusion.
    Joint(InitialPredictor),
    /// A trained one-pass model on the LR image, never trained here (its output is detached).
    Frozen(SrNet),
}

impl Predictor {
    /// The initial prediction's sub-bands for `lr` in `[0, 1]`, given `c = DWT(x_up)`. A frozen
    /// predictor's output is detached unless `through_input` (gradients then reach `lr`, never
    /// the frozen weights: LD3M optimises the LR code, [`crate::distill`]).
    fn forward(&self, lr: Tensor<4>, c: Tensor<4>, through_input: bool) -> Tensor<4> {
        match self {
            Predictor::Joint(p) => p.forward(c),
            Predictor::Frozen(net) => {
                // Untracked parameters: under autodiff a tracked forward whose result is only
                // detached leaves its graph behind every step (memory grew ~1 GB a minute).
                let up = net.clone().no_grad().forward(lr);
                let bands = dwt(up.mul_scalar(2.0).sub_scalar(1.0));
                match through_input {
                    true => bands,
                    false => bands.detach(),
                }
            }
        }
    }
}

#[derive(Module, Debug)]
pub struct DiWa {
    predictor: Predictor,
    unet: UNet,
    scale: usize,
    /// `k`: the diffused signal is `k` times the sub-band residual.
    residual_scale: f64,
}

impl DiWaConfig {
    pub fn init(&self, device: &Device) -> DiWa {
        assert!(
            self.unet.in_channels == 24 && self.unet.out_channels == 12,
            "DiWa's U-Net maps 24 channels (sub-bands + noisy residual) to 12"
        );
        let predictor =
            InitialPredictor::new(self.predictor_features, self.predictor_layers, device);
        self.init_with(Predictor::Joint(predictor), 1.0, device)
    }

    /// DiWa on `predictor` (a frozen one-pass network for [`Predictor::Frozen`]), diffusing
    /// `residual_scale` times the residual.
    pub fn init_with(&self, predictor: Predictor, residual_scale: f64, device: &Device) -> DiWa {
        DiWa {
            predictor,
            unet: self.unet.init(device),
            scale: self.scale,
            residual_scale,
        }
    }
}

impl DiWa {
    /// DiWa's code: `posterior_variance = betas`.
    pub const VARIANCE: PosteriorVariance = PosteriorVariance::Beta;

    pub fn scale(&self) -> usize {
        self.scale
    }

    /// This model with another initial predictor (the same U-Net).
    pub fn with_predictor(self, predictor: Predictor) -> DiWa {
        DiWa { predictor, ..self }
    }

    /// The size of the diffused signal (and of a YODA map) for an `h x w` LR input: half the HR
    /// size, the sub-band grid. The HR sides must be even.
    pub fn diffused_size(&self, h: usize, w: usize) -> [usize; 2] {
        [h * self.scale / 2, w * self.scale / 2]
    }

    /// `(c, x_init)` for `lr` in `[0, 1]`: the sub-bands of `x_up` (in `[-1, 1]`) and the initial
    /// prediction.
    ///
    /// # Shapes
    ///
    /// - lr: `[batch, 3, H, W]`
    /// - c, x_init: `[batch, 12, scale*H/2, scale*W/2]`
    pub fn condition(&self, lr: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        self.condition_impl(lr, false)
    }

    /// [`DiWa::condition`] with gradients from both outputs back to `lr`, also through a frozen
    /// predictor (whose weights stay untracked): the generator of [`crate::distill`].
    pub fn condition_through_input(&self, lr: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        self.condition_impl(lr, true)
    }

    fn condition_impl(&self, lr: Tensor<4>, through_input: bool) -> (Tensor<4>, Tensor<4>) {
        let up = bicubic_upscale(lr.clone(), self.scale)
            .mul_scalar(2.0)
            .sub_scalar(1.0);
        let c = dwt(up);
        let x_init = self.predictor.forward(lr, c.clone(), through_input);
        (c, x_init)
    }

    /// `k`: the diffused signal is `k (DWT(HR) - x_init)`.
    pub fn residual_scale(&self) -> f64 {
        self.residual_scale
    }

    /// `eps_hat = UNet(cat[c, y_t], gamma)`: the network's forward pass.
    ///
    /// # Shapes
    ///
    /// - c, y (`y_t`): `[batch, 12, scale*H/2, scale*W/2]`
    /// - gamma: `[batch]`
    /// - output: `[batch, 12, scale*H/2, scale*W/2]`
    pub fn predict_noise(&self, c: Tensor<4>, y: Tensor<4>, gamma: Tensor<1>) -> Tensor<4> {
        self.unet.forward(Tensor::cat(vec![c, y], 1), gamma)
    }

    /// The initial prediction alone as an image in `[0, 1]` (what DiWa adds the diffusion to).
    ///
    /// # Shapes
    ///
    /// - lr: `[batch, 3, H, W]`
    /// - output: `[batch, 3, scale*H, scale*W]`
    pub fn initial_prediction(&self, lr: Tensor<4>) -> Tensor<4> {
        to_image(idwt(self.condition(lr).1))
    }

    /// The mean L1 noise loss on one batch (`hr` in `[0, 1]`); trains the U-Net and the initial
    /// predictor together. With YODA (a map at half the HR size), the residual outside the mask
    /// is the noised zero.
    pub fn loss(
        &self,
        lr: Tensor<4>,
        hr: Tensor<4>,
        schedule: &NoiseSchedule,
        rng: &mut impl Rng,
        yoda: Option<&Yoda>,
    ) -> Tensor<1> {
        self.loss_terms(lr, hr, schedule, rng, yoda).0
    }

    /// [`DiWa::loss`] and the mean absolute residual `|DWT(HR) - x_init|`, the initial
    /// predictor's own L1 error, which [`super::model::DiffusionSpec::predictor_l1`] adds.
    pub fn loss_terms(
        &self,
        lr: Tensor<4>,
        hr: Tensor<4>,
        schedule: &NoiseSchedule,
        rng: &mut impl Rng,
        yoda: Option<&Yoda>,
    ) -> (Tensor<1>, Tensor<1>) {
        let (c, x_init) = self.condition(lr);
        let target = dwt(hr.mul_scalar(2.0).sub_scalar(1.0));
        assert_eq!(target.dims(), c.dims(), "HR must be scale x the LR size");
        let residual = target - x_init;
        let residual_l1 = residual.clone().abs().mean();
        let y0 = residual.mul_scalar(self.residual_scale);
        let zeros = || y0.zeros_like();
        let noise = noise_prediction_loss(y0.clone(), zeros, schedule, rng, yoda, |y, gamma| {
            self.predict_noise(c.clone(), y, gamma)
        });
        (noise, residual_l1)
    }

    /// A sampling run for `lr` (`[N, 3, h, w]` in `[0, 1]`), to step with
    /// [`DiWa::predict_noise`]; `plan` says how (its seed fixes it). YODA keeps the residual's zero outside its mask.
    pub fn start_sampling(
        &self,
        lr: Tensor<4>,
        schedule: &NoiseSchedule,
        plan: &RunPlan,
        yoda: Option<&Yoda>,
    ) -> SamplingRun {
        let (c, x_init) = self.condition(lr);
        let guide = yoda.map(|y| YodaGuide::new(y, x_init.zeros_like()));
        let process = plan.process(schedule, Self::VARIANCE);
        let decoder = Decoder::Wavelet {
            x_init,
            residual_scale: self.residual_scale,
        };
        SamplingRun::start(c, decoder, &process, plan, guide)
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
