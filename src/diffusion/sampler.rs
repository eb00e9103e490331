//! The reverse-diffusion loop shared by SR3 and DiWa: which steps to take (DDPM's every index
//! or a DDIM sub-sequence), the noise for each, and YODA's guidance after each step.
//!
//! Only tensor ops run inside the loop, nothing is read back, so the browser can await the
//! final result once. The network is a closure `(y_t, gamma) -> eps`, `gamma = sqrt(acp_i)`
//! being the noise level the network was trained with (SR3's continuous conditioning).

use super::noise::{host_vector, standard_normal_tensor};
use super::reverse::{
    ddim_indices, ddim_step, ddpm_step, DdimCoefficients, DdpmCoefficients, PosteriorVariance,
};
use super::schedule::NoiseSchedule;
use super::yoda::YodaGuide;
use burn::tensor::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How to walk back from noise to a sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// Every index of the schedule, ancestral steps (the papers' sampler).
    Ddpm,
    /// `steps` evenly spaced indices; `eta = 0` is deterministic given the initial noise,
    /// `eta = 1` has DDPM's posterior variance.
    Ddim { steps: usize, eta: f64 },
}

/// One step of a sampler: from schedule index `from` to index `to`, or to the clean signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: usize,
    pub to: Option<usize>,
}

impl Sampler {
    /// The steps this sampler takes on `schedule`, first to last.
    pub fn transitions(&self, schedule: &NoiseSchedule) -> Vec<Transition> {
        let indices = match *self {
            Sampler::Ddpm => (0..schedule.len()).rev().collect(),
            Sampler::Ddim { steps, .. } => ddim_indices(schedule.len(), steps),
        };
        indices
            .iter()
            .enumerate()
            .map(|(k, &from)| Transition {
                from,
                to: indices.get(k + 1).copied(),
            })
            .collect()
    }
}

/// Everything the loop needs besides the network and the randomness.
#[derive(Clone, Copy, Debug)]
pub struct ReverseProcess<'a> {
    pub schedule: &'a NoiseSchedule,
    pub sampler: Sampler,
    /// Only used by [`Sampler::Ddpm`].
    pub variance: PosteriorVariance,
}

/// Runs the reverse process from `init` (`y_T`, usually `N(0, I)`). Step noise (and YODA's
/// re-noising) is drawn from `rng` in a fixed order, so `init` and the generator's seed fix the
/// result; a deterministic DDIM (`eta = 0`) without YODA draws nothing.
pub fn reverse_diffusion(
    mut denoise: impl FnMut(Tensor<4>, f64) -> Tensor<4>,
    init: Tensor<4>,
    process: &ReverseProcess,
    rng: &mut impl Rng,
    guide: Option<&YodaGuide>,
) -> Tensor<4> {
    let schedule = process.schedule;
    let total = schedule.len();
    let dims = init.dims();
    let device = init.device();
    let transitions = process.sampler.transitions(schedule);
    let mut y = match (guide, transitions.first()) {
        (Some(g), Some(first)) => g.start(init, first.from + 1, total, schedule),
        _ => init,
    };
    for step in transitions {
        let i = step.from;
        let eps = denoise(y.clone(), schedule.alphas_cumprod()[i].sqrt());
        let (denoised, level) = match process.sampler {
            Sampler::Ddpm => {
                let c = DdpmCoefficients::new(schedule, i, process.variance);
                let z = (c.std > 0.0).then(|| standard_normal_tensor(rng, dims, &device));
                (ddpm_step(y, eps, &c, z), schedule.alphas_cumprod_prev()[i])
            }
            Sampler::Ddim { eta, .. } => {
                let c = DdimCoefficients::new(schedule, i, step.to, eta);
                let z = (c.sigma > 0.0).then(|| standard_normal_tensor(rng, dims, &device));
                (ddim_step(y, eps, &c, z), c.sqrt_acp_next.powi(2))
            }
        };
        y = match guide {
            Some(g) => g.after_step(denoised, i + 1, total, level, rng),
            None => denoised,
        };
    }
    y
}

/// [`reverse_diffusion`] from `N(0, I)` noise of shape `dims`, everything drawn from one
/// generator seeded with `seed`: the seed fixes the whole sample, on every backend.
pub fn sample_seeded(
    denoise: impl FnMut(Tensor<4>, f64) -> Tensor<4>,
    dims: [usize; 4],
    device: &Device,
    process: &ReverseProcess,
    seed: u64,
    guide: Option<&YodaGuide>,
) -> Tensor<4> {
    let mut rng = StdRng::seed_from_u64(seed);
    let init = standard_normal_tensor(&mut rng, dims, device);
    reverse_diffusion(denoise, init, process, &mut rng, guide)
}

/// The sampling loop of SR3 and DiWa: a batch of `dims` drawn with the noise predictor
/// `predict(y, gamma)` (`gamma` repeated per item), seeded by `seed`, with `variance` as the
/// model's posterior variance and optional YODA guidance. Returns the diffused signal.
#[allow(clippy::too_many_arguments)]
pub fn sample_with_predictor(
    predict: impl Fn(Tensor<4>, Tensor<1>) -> Tensor<4>,
    dims: [usize; 4],
    device: &Device,
    schedule: &NoiseSchedule,
    sampler: Sampler,
    variance: PosteriorVariance,
    seed: u64,
    guide: Option<&YodaGuide>,
) -> Tensor<4> {
    let process = ReverseProcess {
        schedule,
        sampler,
        variance,
    };
    let denoise = |y: Tensor<4>, gamma: f64| predict(y, host_vector(&vec![gamma; dims[0]], device));
    sample_seeded(denoise, dims, device, &process, seed, guide)
}

/// `[-1, 1]` -> `[0, 1]`, clamped: the models' output images.
pub fn to_image(x: Tensor<4>) -> Tensor<4> {
    x.add_scalar(1.0).mul_scalar(0.5).clamp(0.0, 1.0)
}
