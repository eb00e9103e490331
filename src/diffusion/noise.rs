//! Gaussian noise drawn on the host and uploaded.
//!
//! burn seeds its random generator per backend (and, on some, globally), so a seed given to the
//! device does not pin the numbers a later `Tensor::random` returns once other code draws in
//! between. Drawing from a [`StdRng`](rand::rngs::StdRng) that the caller owns makes a seed fix
//! the whole sample, and gives the same numbers on the CPU and on WebGPU.

use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use websr_federated::dp::standard_normal;

/// A tensor of independent `N(0, 1)` values from `rng` (Box-Muller), on `device`.
pub fn standard_normal_tensor<const D: usize>(
    rng: &mut impl Rng,
    shape: [usize; D],
    device: &Device,
) -> Tensor<D> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| standard_normal(rng) as f32).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A `[values.len()]` tensor of host values (noise levels, thresholds) on `device`.
pub fn host_vector(values: &[f64], device: &Device) -> Tensor<1> {
    let data: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, [values.len()]), device)
}
