//! The browser's federated training client: the participant's photos stay in this worker; a
//! round trains the global model on them ([`crate::federated::round`]) and returns only the
//! update body, with what the page shows about it (size, norms, loss). The page does the HTTP.

use super::secagg::SecAggParticipant;
use super::{call_progress, js_error, pick_device, Image};
use crate::degrade::DegradationSampler;
use crate::device::DeviceInfo;
use crate::error::WebSrError;
use crate::federated::round::{run_round_with_delta_async, ClientOptions};
use crate::federated::ClientData;
use crate::train::data::TrainingSet;
use burn::tensor::Device;
use js_sys::{Function, Promise, Uint8Array};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use websr_federated::protocol::RoundConfig;

/// Most pixels a participant's photos may hold in total (kept as 8-bit RGB: 192 MB).
pub const MAX_TRAINING_PIXELS: u64 = 64_000_000;

/// A participant: a compute device and the photos picked for training.
#[wasm_bindgen]
pub struct FlClient {
    device: Device,
    info: DeviceInfo,
    /// Shared with a running round; images can only be added between rounds.
    data: Rc<ClientData>,
    sampler: DegradationSampler,
}

#[wasm_bindgen]
impl FlClient {
    /// `backend` as for `Engine.create`; `degradation` is how LR inputs are made from the photos:
    /// `mixed` (blur, noise, JPEG each with probability 1/2), `clean`, `blur`, `noise` or `jpeg`.
    pub async fn create(backend: String, degradation: String) -> Result<FlClient, JsValue> {
        let sampler = DegradationSampler::parse(&degradation).map_err(|e| js_error(&e))?;
        let selected = pick_device(&backend).await?;
        Ok(FlClient {
            device: selected.device,
            info: selected.info,
            data: Rc::new(ClientData::new(TrainingSet::from_images(&[]), sampler)),
            sampler,
        })
    }

    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.info.backend.id().to_string()
    }

    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.info.adapter.clone()
    }

    #[wasm_bindgen(getter)]
    pub fn note(&self) -> String {
        self.info.note.clone()
    }

    /// Adds a photo (consumed; its alpha is ignored). Throws `TooLargeError` past the total
    /// pixel budget and an error while a round is training.
    #[wasm_bindgen(js_name = addImage)]
    pub fn add_image(&mut self, image: Image) -> Result<(), JsValue> {
        let rgb = &image.picture.rgb;
        let total = self.data.images.num_pixels() + (rgb.width * rgb.height) as u64;
        if total > MAX_TRAINING_PIXELS {
            return Err(js_error(&WebSrError::TooLarge {
                width: rgb.width as u32,
                height: rgb.height as u32,
                max_pixels: MAX_TRAINING_PIXELS - self.data.images.num_pixels(),
            }));
        }
        let data = Rc::get_mut(&mut self.data).ok_or_else(|| {
            js_error(&WebSrError::Invalid(
                "images cannot be added while a round is training".into(),
            ))
        })?;
        data.push(rgb, self.sampler);
        Ok(())
    }

    #[wasm_bindgen(getter, js_name = imageCount)]
    pub fn image_count(&self) -> u32 {
        self.data.images.len() as u32
    }

    /// Training examples the photos hold at this HR patch side.
    pub fn examples(&self, patch: u32) -> f64 {
        self.data.num_examples(patch as usize) as f64
    }

    /// Trains one round. `global` is the body of `GET /v1/model`, `round_json` the body of
    /// `GET /v1/round`. `afterStep(step, steps, loss)` is awaited after every step; `false`
    /// cancels (`CancelledError`). Resolves to a [`TrainedUpdate`].
    pub fn train(
        &self,
        global: Vec<u8>,
        round_json: String,
        patch: u32,
        max_steps: u32,
        seed: u32,
        after_step: Function,
    ) -> Promise {
        let data = self.data.clone();
        let device = self.device.clone();
        future_to_promise(async move {
            if data.images.is_empty() {
                return Err(js_error(&WebSrError::Invalid(
                    "pick at least one photo to train on".into(),
                )));
            }
            let round: RoundConfig = serde_json::from_str(&round_json).map_err(|e| {
                js_error(&WebSrError::Invalid(format!(
                    "the server's round config: {e}"
                )))
            })?;
            let opts = ClientOptions {
                patch: patch as usize,
                max_steps: max_steps as usize,
                seed: u64::from(seed),
            };
            let after = |step: usize, steps: usize, loss: f64| {
                let f = after_step.clone();
                async move { call_progress(&f, &[step as f64, steps as f64, loss]).await }
            };
            let outcome =
                run_round_with_delta_async(&global, &round, &data, &opts, &device, after).await;
            device.memory_cleanup();
            let (o, delta) = outcome.map_err(|e| js_error(&e))?;
            // A secure-aggregation round sends the delta only masked: its plain body is dropped
            // here, so it never reaches the page; the delta stays for the SecAgg session.
            let (body, delta) = match round.secure_aggregation {
                Some(_) => (Vec::new(), Some(delta)),
                None => (o.body, None),
            };
            Ok(TrainedUpdate {
                delta,
                body,
                base_version: o.base_version,
                num_examples: o.num_examples,
                steps: o.steps,
                mean_loss: o.mean_loss,
                norm: o.norm,
                sent_norm: o.sent_norm,
                clip_bound: o.clip_bound,
            }
            .into())
        })
    }
}

/// What one round produced: the update body to `POST /v1/update`, and what it contains.
#[wasm_bindgen]
pub struct TrainedUpdate {
    body: Vec<u8>,
    /// The clipped weight change, tensor by tensor, when the round aggregates securely.
    delta: Option<Vec<Vec<f32>>>,
    base_version: u64,
    num_examples: u64,
    steps: usize,
    mean_loss: f64,
    norm: f64,
    sent_norm: f64,
    clip_bound: f64,
}

/// What this client does at the least whatever the server asks (batch, steps, clip bound), as
/// JSON for the participant page ([`websr_federated::protocol::ClientFloor`]).
#[wasm_bindgen(js_name = clientFloor)]
pub fn client_floor() -> String {
    serde_json::to_string(&websr_federated::protocol::ClientFloor::DEFAULT).expect("serialisable")
}

#[wasm_bindgen]
impl TrainedUpdate {
    /// The safetensors body: weight differences and three numbers, never pixels. Empty in a
    /// secure-aggregation round, whose update leaves only masked ([`Self::secure_aggregation`]).
    #[wasm_bindgen(getter)]
    pub fn body(&self) -> Uint8Array {
        Uint8Array::from(self.body.as_slice())
    }

    #[wasm_bindgen(getter, js_name = baseVersion)]
    pub fn base_version(&self) -> f64 {
        self.base_version as f64
    }

    #[wasm_bindgen(getter, js_name = numExamples)]
    pub fn num_examples(&self) -> f64 {
        self.num_examples as f64
    }

    #[wasm_bindgen(getter)]
    pub fn steps(&self) -> u32 {
        self.steps as u32
    }

    #[wasm_bindgen(getter, js_name = meanLoss)]
    pub fn mean_loss(&self) -> f64 {
        self.mean_loss
    }

    /// L2 norm of the weight change before clipping.
    #[wasm_bindgen(getter)]
    pub fn norm(&self) -> f64 {
        self.norm
    }

    /// L2 norm of what is sent (after clipping to the round's bound).
    #[wasm_bindgen(getter, js_name = sentNorm)]
    pub fn sent_norm(&self) -> f64 {
        self.sent_norm
    }

    /// The bound the change was clipped to (the round's, or this client's own if lower).
    #[wasm_bindgen(getter, js_name = clipBound)]
    pub fn clip_bound(&self) -> f64 {
        self.clip_bound
    }

    /// Whether the round aggregates securely: the update then goes through
    /// [`TrainedUpdate::secure_aggregation`], never as `body`.
    #[wasm_bindgen(getter, js_name = secureAggregation)]
    pub fn is_secure_aggregation(&self) -> bool {
        self.delta.is_some()
    }

    /// Joins the secure-aggregation session that `round_json` (a fresh `GET /v1/round`)
    /// announces as client `client_id`, handing the weight change over (once).
    #[wasm_bindgen(js_name = joinSecureAggregation)]
    pub fn secure_aggregation(
        &mut self,
        round_json: String,
        client_id: f64,
    ) -> Result<SecAggParticipant, JsValue> {
        let delta = self.delta.take().ok_or_else(|| {
            js_error(&WebSrError::Invalid(
                "this update is not for a secure-aggregation round, or already joined one".into(),
            ))
        })?;
        SecAggParticipant::start(&round_json, client_id as u64, delta)
    }
}
