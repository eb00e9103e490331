//! A client's update: its trained weights minus the global weights it started from, per tensor,
//! in the safetensors layout the server checks against. Computed on the serialised files, so
//! the names and order are exactly the ones the server reads.

use crate::error::{Result, WebSrError};
use crate::models::ModelSpec;
use crate::weights;
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

/// Why an update of `trained` cannot be taken against `global`: both models as their specs
/// describe them, and how the trained file's tensors differ.
fn wrong_model(global: &ModelFile, trained: &ModelFile) -> String {
    let what = |file: &ModelFile| {
        file.metadata
            .get("spec")
            .and_then(|json| serde_json::from_str::<ModelSpec>(json).ok())
            .map_or("a model of unknown spec".to_string(), |spec| {
                weights::describe(&spec)
            })
    };
    let layout = |file: &ModelFile| -> weights::Layout {
        file.layout
            .names
            .iter()
            .cloned()
            .zip(file.layout.shapes.iter().cloned())
            .collect()
    };
    let (want, got) = (what(global), what(trained));
    let detail = weights::layout_difference(&layout(global), &layout(trained), &want)
        .map_or(String::new(), |d| format!(" ({d})"));
    format!(
        "the trained model is {got}, but the global model is {want}{detail}: an update must be \
         trained from its round's global model"
    )
}

impl ModelDelta {
    /// The difference between two weight files of the same model.
    pub fn between(global: &[u8], trained: &[u8]) -> Result<Self> {
        let global = read(global, "global model")?;
        let trained = read(trained, "trained model")?;
        if global.layout != trained.layout {
            return Err(WebSrError::Weights(wrong_model(&global, &trained)));
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
