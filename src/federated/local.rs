//! Local training on a client: Adam on the L1 loss, starting from the global weights, with
//! FedProx's proximal term `mu/2 * ||w - w_global||^2` added to the loss when `mu > 0`.
//!
//! Adam's moments start from zero every round: a client keeps no state between rounds (it may
//! never come back), which is what the FedAvg/FedProx papers assume for the local solver.

use crate::device::read_f32_async;
use crate::error::Result;
use crate::federated::ClientData;
use crate::models::{SrModel, SrNet};
use crate::train::step::{l1_step, optimizer};
use crate::train::step_rng;
use crate::weights;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::ModuleOptimizer;
use burn::tensor::{Device, Tensor, TensorData};

/// What one client does in one round.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalConfig {
    pub steps: usize,
    pub batch: usize,
    /// HR patch side (a multiple of the model's scale).
    pub patch: usize,
    /// Adam learning rate (the round's `client_lr`).
    pub lr: f64,
    /// FedProx proximal weight (the round's `prox_mu`); 0 = plain local training.
    pub prox_mu: f64,
    pub seed: u64,
}

/// Collects every float parameter, flattened, in the module's (fixed) visiting order.
struct FlatParams(Vec<Tensor<1>>);

impl ModuleVisitor for FlatParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

fn flat_params(net: &SrNet) -> Vec<Tensor<1>> {
    let mut v = FlatParams(Vec::new());
    net.visit(&mut v);
    v.0
}

/// FedProx's proximal term `mu/2 * ||w - w_global||^2`, which keeps a client near the global
/// weights.
struct Proximal {
    mu: f64,
    /// The global weights, detached, in [`flat_params`] order.
    anchor: Vec<Tensor<1>>,
}

impl Proximal {
    /// The term for the client's current weights (`None` for a network without parameters).
    fn term(&self, net: &SrNet) -> Option<Tensor<1>> {
        let squares = flat_params(net)
            .into_iter()
            .zip(&self.anchor)
            .map(|(w, g)| (w - g.clone()).square().sum());
        let sum = squares.reduce(|sum, square| sum + square)?;
        Some(sum.mul_scalar(self.mu / 2.0))
    }
}

/// A client's model being trained from the global weights.
pub struct LocalTrainer {
    cfg: LocalConfig,
    model: SrModel,
    /// `None` when the round's `prox_mu` is 0: plain local training.
    proximal: Option<Proximal>,
    optim: ModuleOptimizer,
    device: Device,
    step: usize,
    loss_sum: f64,
}

impl LocalTrainer {
    /// Loads the global weights (safetensors bytes) for training on `device`.
    pub fn new(global: &[u8], cfg: LocalConfig, device: &Device) -> Result<Self> {
        let device = device.clone().autodiff();
        let model = weights::from_bytes(global, &device)?;
        let proximal = (cfg.prox_mu > 0.0).then(|| Proximal {
            mu: cfg.prox_mu,
            anchor: flat_params(&model.net)
                .into_iter()
                .map(|t| t.detach())
                .collect(),
        });
        Ok(Self {
            cfg,
            model,
            proximal,
            optim: optimizer(),
            device,
            step: 0,
            loss_sum: 0.0,
        })
    }

    pub fn config(&self) -> &LocalConfig {
        &self.cfg
    }

    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// Mean of the L1 losses of the steps so far (without the proximal term).
    pub fn mean_loss(&self) -> Option<f64> {
        (self.step > 0).then(|| self.loss_sum / self.step as f64)
    }

    /// One Adam step on a fresh batch; returns its L1 loss. Async because the browser may only
    /// read the loss back from the GPU asynchronously.
    pub async fn step_async(&mut self, data: &ClientData) -> Result<f64> {
        // The same client and round always see the same batches.
        let mut rng = step_rng(self.cfg.seed, self.step);
        let scale = self.model.scale();
        let batch = data
            .batch(&mut rng, self.cfg.batch, self.cfg.patch, scale)?
            .to_tensors(&self.device);
        let l1 = l1_step(
            &mut self.model.net,
            &mut self.optim,
            batch,
            self.cfg.lr,
            |net| self.proximal.as_ref().and_then(|p| p.term(net)),
        );
        let value = f64::from(read_f32_async(l1).await?[0]);
        self.step += 1;
        self.loss_sum += value;
        Ok(value)
    }

    /// Synchronous [`LocalTrainer::step_async`] (native callers).
    pub fn step(&mut self, data: &ClientData) -> Result<f64> {
        pollster::block_on(self.step_async(data))
    }

    /// A copy of the model being trained, without autodiff, on the training device.
    pub fn inference_model(&self) -> SrModel {
        SrModel {
            spec: self.model.spec.clone(),
            net: self.model.net.valid(),
        }
    }

    /// The trained weights, serialised like the global file. The parameters are read back
    /// asynchronously (a browser may not block on the GPU) into a CPU copy of the model, which is
    /// then serialised.
    pub async fn trained_bytes_async(&self) -> Result<Vec<u8>> {
        let params = flat_params(&self.model.net);
        let lengths: Vec<usize> = params.iter().map(|p| p.shape().num_elements()).collect();
        let all = read_f32_async(Tensor::cat(params, 0).detach()).await?;
        let mut values = Vec::with_capacity(lengths.len());
        let mut rest = all.as_slice();
        for n in lengths {
            let (head, tail) = rest.split_at(n);
            values.push(head.to_vec());
            rest = tail;
        }
        let cpu = Device::flex();
        let copy = SrModel::init(self.model.spec.clone(), &cpu)?;
        let mut fill = FillParams {
            values: values.into_iter(),
            device: cpu,
        };
        let net = copy.net.map(&mut fill);
        weights::to_bytes(&SrModel {
            spec: self.model.spec.clone(),
            net,
        })
    }

    /// Synchronous [`LocalTrainer::trained_bytes_async`] (native callers).
    pub fn trained_bytes(&self) -> Result<Vec<u8>> {
        pollster::block_on(self.trained_bytes_async())
    }
}

/// Replaces every float parameter, in visiting order, with the next of `values`.
struct FillParams<I> {
    values: I,
    device: Device,
}

impl<I: Iterator<Item = Vec<f32>>> ModuleMapper for FillParams<I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let values = self
            .values
            .next()
            .expect("the same module type visits the same parameters");
        let device = self.device.clone();
        param.map(|t| Tensor::from_data(TensorData::new(values, t.shape()), &device))
    }
}
