//! One optimisation step, written once for every trainer: the wavelet [`super::Trainer`], the
//! diffusion trainer and the federated client's local training.

use crate::models::SrNet;
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

/// The optimizer every trainer uses: Adam with burn's defaults.
pub(crate) fn optimizer() -> ModuleOptimizer {
    AdamConfig::new().init()
}

/// Moves `net` one optimizer step, with learning rate `lr`, down the gradient of `loss` (a loss
/// computed from `net`).
pub(crate) fn descend<M: Module>(
    net: &mut M,
    optim: &mut ModuleOptimizer,
    loss: Tensor<1>,
    lr: f64,
) {
    let grads = GradientsParams::from_grads(loss.backward(), &*net);
    *net = optim.step(lr, net.clone(), grads);
}

/// One step of `net` on the L1 loss of a `(lr, hr)` batch, plus `penalty(net)` when that gives a
/// term (the federated client's FedProx term); `learning_rate` is the optimizer's.
///
/// Returns the batch's L1 loss, without the penalty and still on the device: the browser may
/// only read it back asynchronously.
pub(crate) fn l1_step(
    net: &mut SrNet,
    optim: &mut ModuleOptimizer,
    (lr, hr): (Tensor<4>, Tensor<4>),
    learning_rate: f64,
    penalty: impl FnOnce(&SrNet) -> Option<Tensor<1>>,
) -> Tensor<1> {
    let l1 = (net.forward(lr) - hr).abs().mean();
    let loss = match penalty(net) {
        Some(term) => l1.clone() + term,
        None => l1.clone(),
    };
    descend(net, optim, loss, learning_rate);
    l1
}
