//! The forward (noising) process in SR3's continuous parametrisation:
//! `y_t = gamma * y0 + sqrt(1 - gamma^2) * eps`, where `gamma = sqrt(alpha_bar)` is the signal
//! scale, one per batch item.

use burn::tensor::Tensor;

/// Noises `y0` (`[N, C, H, W]`) to the levels `gamma` (`[N]`) with the given `noise`.
pub fn q_sample(y0: Tensor<4>, gamma: Tensor<1>, noise: Tensor<4>) -> Tensor<4> {
    let dims = y0.dims();
    assert_eq!(
        gamma.dims()[0],
        dims[0],
        "one noise level per batch item is needed"
    );
    let gamma = gamma.reshape([dims[0], 1, 1, 1]);
    let sigma = (gamma.clone().square().neg() + 1.0).clamp_min(0.0).sqrt();
    y0 * gamma.expand(dims) + noise * sigma.expand(dims)
}

/// `sqrt(a) * x + sqrt(1 - a) * noise` for one scalar `alpha_bar = a` shared by the batch: the
/// forward process at a discrete level, as the samplers and YODA's re-noising use it.
pub fn noise_to_level(x: Tensor<4>, alpha_bar: f64, noise: Tensor<4>) -> Tensor<4> {
    x.mul_scalar(alpha_bar.sqrt()) + noise.mul_scalar((1.0 - alpha_bar).max(0.0).sqrt())
}
