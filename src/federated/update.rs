//! A client's update: its trained weights minus the global weights it started from, per tensor,
//! in the safetensors layout the server checks against. Computed on the serialised files, so
//! the names and order are exactly the ones the server reads.

use crate::error::{Result, WebSrError};
use websr_federated::dp;
use websr_federated::tensors::{self, Layout, ModelFile};

/// `trained - global` for every tensor, in layout (sorted name) order.
#[derive(Clone, Debug)]
pub struct ModelDelta {
    pub layout: Layout,
    pub tensors: Vec<Vec<f32>>,
}

fn read(bytes: &[u8], what: &str) -> Result<ModelFile> {
    tensors::read_model(bytes).map_err(|e| WebSrError::Weights(format!("{what}: {e}")))
}

impl ModelDelta {
    /// The difference between two weight files of the same model.
    pub fn between(global: &[u8], trained: &[u8]) -> Result<Self> {
        let global = read(global, "global model")?;
        let trained = read(trained, "trained model")?;
        if global.layout != trained.layout {
            return Err(WebSrError::Weights(
                "the trained model's tensors differ from the global model's".into(),
            ));
        }
        let tensors = trained
            .values
            .iter()
            .zip(&global.values)
            .map(|(t, g)| t.iter().zip(g).map(|(a, b)| a - b).collect())
            .collect();
        Ok(Self {
            layout: global.layout,
            tensors,
        })
    }

    /// L2 norm over all tensors.
    pub fn norm(&self) -> f64 {
        tensors::l2_norm(&self.tensors)
    }

    /// Scales the delta to L2 norm at most `bound` (the round's `clip_norm`); returns the norm
    /// before clipping.
    pub fn clip(&mut self, bound: f64) -> f64 {
        dp::clip(&mut self.tensors, bound)
    }

    /// The `POST /v1/update` body: the delta plus `base_version`, `num_examples` and the mean
    /// local loss in the header.
    pub fn encode(
        &self,
        base_version: u64,
        num_examples: u64,
        loss: Option<f64>,
    ) -> Result<Vec<u8>> {
        let loss = loss.filter(|l| l.is_finite());
        tensors::encode_update(
            &self.layout,
            &self.tensors,
            base_version,
            num_examples,
            loss,
        )
        .map_err(|e| WebSrError::Weights(format!("encoding the update: {e}")))
    }
}

/// `global + delta` as a weight file with the global file's metadata: what a server step
/// produces, used by the simulator to build the next global model.
pub fn rewrite(global: &[u8], values: impl FnOnce(&Layout, &mut [Vec<f32>])) -> Result<Vec<u8>> {
    let mut model = read(global, "global model")?;
    values(&model.layout, &mut model.values);
    tensors::serialize(&model.layout, &model.values, &model.metadata)
        .map_err(|e| WebSrError::Weights(format!("writing the global model: {e}")))
}
