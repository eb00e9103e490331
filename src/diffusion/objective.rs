//! The training objective SR3 and DiWa share (methods.md §2): draw SR3's continuous noise level
//! per batch item, noise the clean target, and take the L1 distance between the true and the
//! predicted noise; with YODA, only inside the mask `M(t)` of each item's step.

use super::forward_process::q_sample;
use super::noise::{host_vector, standard_normal_tensor};
use super::schedule::NoiseSchedule;
use super::yoda::{masked_l1, Yoda};
use burn::tensor::Tensor;
use rand::Rng;

/// Mean L1 noise-prediction loss for the clean target `y0` (`[N, C, H, W]`).
///
/// `predict(y_t, gamma)` is the network. `condition` is the clean signal YODA keeps outside the
/// mask, in the space of `y0` (ignored without YODA): the training input is then the forward
/// process on `M ⊙ y0 + (1 - M) ⊙ condition`, as in sampling ([`Yoda::training_input`]).
pub fn noise_prediction_loss(
    y0: Tensor<4>,
    condition: impl FnOnce() -> Tensor<4>,
    schedule: &NoiseSchedule,
    rng: &mut impl Rng,
    yoda: Option<&Yoda>,
    predict: impl FnOnce(Tensor<4>, Tensor<1>) -> Tensor<4>,
) -> Tensor<1> {
    let dims = y0.dims();
    let device = y0.device();
    let (ts, gammas): (Vec<usize>, Vec<f64>) = (0..dims[0])
        .map(|_| schedule.sample_noise_level(rng))
        .unzip();
    let gamma = host_vector(&gammas, &device);
    let eps = standard_normal_tensor(rng, dims, &device);
    match yoda {
        None => {
            let eps_hat = predict(q_sample(y0, gamma.clone(), eps.clone()), gamma);
            (eps - eps_hat).abs().mean()
        }
        Some(yoda) => {
            let mask = yoda.masks(&ts, schedule.len());
            let clean = Yoda::training_input(&mask, y0, condition());
            let eps_hat = predict(q_sample(clean, gamma.clone(), eps.clone()), gamma);
            masked_l1(&mask, eps, eps_hat)
        }
    }
}
