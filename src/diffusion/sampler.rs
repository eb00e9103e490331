//! The reverse-diffusion loop shared by SR3 and DiWa: which steps to take (DDPM's every index
//! or a DDIM sub-sequence), the noise for each, and YODA's guidance after each step. It runs
//! step by step ([`ReverseRun`], [`SamplingRun`]) so callers can preview, report and cancel.
//!
//! Only tensor ops run inside the loop, nothing is read back, so the browser can await the
//! final result once. The network is a closure `(y_t, gamma) -> eps`, `gamma = sqrt(acp_i)`
//! being the noise level the network was trained with (SR3's continuous conditioning).

use super::forward_process::noise_to_level;
use super::noise::{host_vector, Noise, NoiseField};
use super::reverse::{
    ddim_indices, ddim_step, ddpm_step, predict_y0, DdimCoefficients, DdpmCoefficients,
    PosteriorVariance,
};
use super::schedule::NoiseSchedule;
use super::yoda::YodaGuide;
use crate::wavelet::idwt;
use burn::tensor::Tensor;

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
        self.transitions_from(schedule, schedule.len() - 1)
    }

    /// The steps from index `first` (the schedule's last for a run from pure noise) down.
    pub fn transitions_from(&self, schedule: &NoiseSchedule, first: usize) -> Vec<Transition> {
        let first = first.min(schedule.len() - 1);
        let indices = match *self {
            Sampler::Ddpm => (0..=first).rev().collect(),
            Sampler::Ddim { steps, .. } => ddim_indices(first + 1, steps),
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
    /// The index the run starts from: `None` for the schedule's last (pure noise), or a lower one
    /// whose level the initial signal already has (a truncated run, see [`truncated_start`]).
    pub first_index: Option<usize>,
}

impl ReverseProcess<'_> {
    fn transitions(&self) -> Vec<Transition> {
        let last = self.schedule.len() - 1;
        self.sampler
            .transitions_from(self.schedule, self.first_index.unwrap_or(last))
    }
}

/// The schedule index a run of `strength` (in `(0, 1]`, the fraction of the schedule walked)
/// starts from; `None` for a full run.
pub fn truncated_start(schedule: &NoiseSchedule, strength: f64) -> Option<usize> {
    (strength < 1.0).then(|| {
        let last = schedule.len() - 1;
        ((strength.max(0.0) * last as f64).round() as usize).min(last)
    })
}

/// The reverse process as a state machine, one network evaluation per [`ReverseRun::step`], so
/// that a caller can show previews, report progress or stop between steps (the browser awaits
/// in between). Step noise (and YODA's re-noising) is drawn from its generator in a fixed order,
/// so `init` and the generator's seed fix the result; a deterministic DDIM (`eta = 0`) without
/// YODA draws nothing.
pub struct ReverseRun<R: Noise> {
    schedule: NoiseSchedule,
    sampler: Sampler,
    variance: PosteriorVariance,
    transitions: Vec<Transition>,
    done: usize,
    /// Steps that ran the network (YODA skips those whose mask is empty).
    evaluations: usize,
    y: Tensor<4>,
    /// The input and noise estimate of the last step, for [`ReverseRun::clean_estimate`].
    last: Option<(Tensor<4>, Tensor<4>, usize)>,
    rng: R,
    guide: Option<YodaGuide>,
}

impl<R: Noise> ReverseRun<R> {
    /// Starts from `init`: `y_T` (usually `N(0, I)`), or for a truncated process
    /// ([`ReverseProcess::first_index`]) the signal already at that index's level, which YODA's
    /// start then leaves as it is.
    pub fn new(
        init: Tensor<4>,
        process: &ReverseProcess,
        rng: R,
        guide: Option<YodaGuide>,
    ) -> Self {
        let schedule = process.schedule.clone();
        let transitions = process.transitions();
        let y = match (&guide, transitions.first(), process.first_index) {
            (Some(g), Some(first), None) => {
                g.start(init, first.from + 1, schedule.len(), &schedule)
            }
            _ => init,
        };
        ReverseRun {
            schedule,
            sampler: process.sampler,
            variance: process.variance,
            transitions,
            done: 0,
            evaluations: 0,
            y,
            last: None,
            rng,
            guide,
        }
    }

    /// Network evaluations in the whole run.
    pub fn steps(&self) -> usize {
        self.transitions.len()
    }

    pub fn steps_done(&self) -> usize {
        self.done
    }

    /// Network evaluations so far: the steps done less those YODA skipped.
    pub fn evaluations(&self) -> usize {
        self.evaluations
    }

    pub fn is_done(&self) -> bool {
        self.done == self.transitions.len()
    }

    /// One step: `denoise(y_t, gamma)` is the network's noise estimate at signal scale `gamma`.
    /// Does nothing once the run is done.
    pub fn step(&mut self, denoise: impl FnOnce(Tensor<4>, f64) -> Tensor<4>) {
        let Some(&step) = self.transitions.get(self.done) else {
            return;
        };
        let schedule = &self.schedule;
        let total = schedule.len();
        let dims = self.y.dims();
        let device = self.y.device();
        let i = step.from;
        let y = self.y.clone();
        // An empty YODA mask discards the step's estimate: skip the network, keep every draw
        // (the sample is bit-identical to the unskipped run's).
        let skip = matches!(&self.guide, Some(g) if g.mask_is_empty(i + 1, total));
        let eps = match skip {
            true => y.zeros_like(),
            false => {
                self.evaluations += 1;
                denoise(y.clone(), schedule.alphas_cumprod()[i].sqrt())
            }
        };
        let (denoised, level) = match self.sampler {
            Sampler::Ddpm => {
                let c = DdpmCoefficients::new(schedule, i, self.variance);
                let z = (c.std > 0.0).then(|| self.rng.normal(dims, &device));
                (
                    ddpm_step(y.clone(), eps.clone(), &c, z),
                    schedule.alphas_cumprod_prev()[i],
                )
            }
            Sampler::Ddim { eta, .. } => {
                let c = DdimCoefficients::new(schedule, i, step.to, eta);
                let z = (c.sigma > 0.0).then(|| self.rng.normal(dims, &device));
                (
                    ddim_step(y.clone(), eps.clone(), &c, z),
                    c.sqrt_acp_next.powi(2),
                )
            }
        };
        self.y = match &self.guide {
            Some(g) => g.after_step(denoised, i + 1, total, level, &mut self.rng),
            None => denoised,
        };
        if !skip {
            self.last = Some((y, eps, i));
        }
        self.done += 1;
    }

    /// The clean signal the last step's noise estimate implies (`y_0` hat), or the current
    /// signal before the first step: what a preview shows.
    pub fn clean_estimate(&self) -> Tensor<4> {
        match &self.last {
            Some((y, eps, i)) => {
                let acp = self.schedule.alphas_cumprod()[*i];
                predict_y0(
                    y.clone(),
                    eps.clone(),
                    (1.0 / acp).sqrt(),
                    (1.0 / acp - 1.0).sqrt(),
                )
            }
            None => self.y.clone(),
        }
    }

    /// The current signal: the sample once the run is done.
    pub fn current(&self) -> Tensor<4> {
        self.y.clone()
    }
}

/// Runs the whole reverse process from `init` with the generator `rng` (see [`ReverseRun`]).
pub fn reverse_diffusion(
    mut denoise: impl FnMut(Tensor<4>, f64) -> Tensor<4>,
    init: Tensor<4>,
    process: &ReverseProcess,
    rng: &mut impl Noise,
    guide: Option<YodaGuide>,
) -> Tensor<4> {
    let mut run = ReverseRun::new(init, process, rng, guide);
    while !run.is_done() {
        run.step(&mut denoise);
    }
    run.current()
}

/// How a model turns its diffused signal into an image in `[0, 1]`.
// One per sampling run: boxing the tensor would save nothing worth the indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Decoder {
    /// SR3: the signal is the image in `[-1, 1]`.
    Pixels,
    /// DiWa: the signal is `residual_scale` times a sub-band residual; the image is
    /// `IDWT(signal / residual_scale + x_init)`.
    Wavelet {
        x_init: Tensor<4>,
        residual_scale: f64,
    },
}

impl Decoder {
    pub fn decode(&self, signal: Tensor<4>) -> Tensor<4> {
        match self {
            Decoder::Pixels => to_image(signal),
            Decoder::Wavelet {
                x_init,
                residual_scale,
            } => to_image(idwt(signal.div_scalar(*residual_scale) + x_init.clone())),
        }
    }
}

/// A run's place in a larger signal: the whole signal's `[h, w]` and this run's top-left corner
/// in it (diffused-signal pixels). A tile's run draws the noise the whole signal has there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub whole: [usize; 2],
    pub origin: [usize; 2],
}

/// How one run walks back and what it draws: the sampler, the index it starts from (`None`: pure
/// noise at the schedule's end), the seed of its [`NoiseField`] and its window (`None`: the run
/// is the whole signal).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunPlan {
    pub sampler: Sampler,
    pub first_index: Option<usize>,
    pub seed: u64,
    pub window: Option<Window>,
    /// The YODA map's largest value, when read back: lets the run skip the steps whose mask is
    /// empty ([`YodaGuide::mask_is_empty`]).
    pub max_importance: Option<f32>,
}

impl RunPlan {
    /// A whole-signal run from pure noise.
    pub fn full(sampler: Sampler, seed: u64) -> RunPlan {
        RunPlan {
            sampler,
            first_index: None,
            seed,
            window: None,
            max_importance: None,
        }
    }

    /// The process of this plan on `schedule` with the model's posterior `variance`.
    pub fn process<'a>(
        &self,
        schedule: &'a NoiseSchedule,
        variance: PosteriorVariance,
    ) -> ReverseProcess<'a> {
        ReverseProcess {
            schedule,
            sampler: self.sampler,
            variance,
            first_index: self.first_index,
        }
    }

    /// The noise of a run on a signal of `dims`.
    fn noise(&self, dims: [usize; 4]) -> NoiseField {
        match self.window {
            None => NoiseField::whole(self.seed, dims),
            Some(w) => NoiseField::window(
                self.seed,
                [dims[0], dims[1], w.whole[0], w.whole[1]],
                w.origin,
            ),
        }
    }
}

/// One model's sampling run: the reverse process on a batch, the network's condition, and the
/// decoder to an image. Everything is drawn from one [`NoiseField`] (the initial noise first), so
/// its seed fixes the whole sample, on every backend, and a tile's run draws the noise the whole
/// image has there. Only tensor ops run: read the results with `read_f32_async` in the browser.
pub struct SamplingRun {
    reverse: ReverseRun<NoiseField>,
    condition: Tensor<4>,
    decoder: Decoder,
}

impl SamplingRun {
    /// A run on a diffused signal the shape of `condition`, with the model's posterior
    /// `variance` and optional YODA guidance. A truncated process starts from the decoder's
    /// prior guess (SR3: the bicubic condition; DiWa: a zero residual) noised to its first level.
    pub fn start(
        condition: Tensor<4>,
        decoder: Decoder,
        process: &ReverseProcess,
        plan: &RunPlan,
        guide: Option<YodaGuide>,
    ) -> SamplingRun {
        let mut noise = plan.noise(condition.dims());
        let mut init = noise.normal(condition.dims(), &condition.device());
        if let Some(first) = process.first_index {
            let guess = match decoder {
                Decoder::Pixels => condition.clone(),
                Decoder::Wavelet { .. } => condition.zeros_like(),
            };
            let level = process.schedule.alphas_cumprod()[first];
            init = noise_to_level(guess, level, init);
        }
        let guide = match plan.max_importance {
            Some(max) => guide.map(|g| g.with_max_importance(max)),
            None => guide,
        };
        SamplingRun {
            reverse: ReverseRun::new(init, process, noise, guide),
            condition,
            decoder,
        }
    }

    pub fn steps(&self) -> usize {
        self.reverse.steps()
    }

    pub fn steps_done(&self) -> usize {
        self.reverse.steps_done()
    }

    /// Network evaluations so far (YODA skips the steps whose mask is empty).
    pub fn evaluations(&self) -> usize {
        self.reverse.evaluations()
    }

    pub fn is_done(&self) -> bool {
        self.reverse.is_done()
    }

    /// One step with the noise predictor `predict(condition, y_t, gamma)` (`gamma` repeated per
    /// batch item).
    pub fn step(&mut self, predict: impl FnOnce(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>) {
        let condition = self.condition.clone();
        self.reverse.step(|y, gamma| {
            let n = y.dims()[0];
            let gamma = host_vector(&vec![gamma; n], &y.device());
            predict(condition, y, gamma)
        });
    }

    /// The image the current clean estimate decodes to, in `[0, 1]`.
    pub fn preview(&self) -> Tensor<4> {
        self.decoder.decode(self.reverse.clean_estimate())
    }

    /// The finished image in `[0, 1]` (the current state's, if stopped early).
    pub fn finish(self) -> Tensor<4> {
        self.preview_final()
    }

    /// [`SamplingRun::finish`] without consuming the run.
    pub fn preview_final(&self) -> Tensor<4> {
        self.decoder.decode(self.reverse.current())
    }

    /// Runs the remaining steps with `predict` and returns the image.
    pub fn run_to_end(
        mut self,
        predict: impl Fn(Tensor<4>, Tensor<4>, Tensor<1>) -> Tensor<4>,
    ) -> Tensor<4> {
        while !self.is_done() {
            self.step(&predict);
        }
        self.finish()
    }
}

/// `[-1, 1]` -> `[0, 1]`, clamped: the models' output images.
pub fn to_image(x: Tensor<4>) -> Tensor<4> {
    x.add_scalar(1.0).mul_scalar(0.5).clamp(0.0, 1.0)
}
