//! The browser's part in a secure-aggregation round. The worker keeps the trained delta
//! ([`TrainedUpdate`](super::TrainedUpdate)) and, when the round announces secure aggregation,
//! turns it into a [`SecAggParticipant`]: the same [`Participant`] `websr fl-client` drives
//! (clip, this client's share of the noise, fixed-point encoding, X25519 keys, Shamir shares,
//! masks). The page carries its messages through `/v1/secagg/...`; the unmasked update never
//! leaves the worker.

use super::js_error;
use crate::error::WebSrError;
use js_sys::Uint8Array;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use wasm_bindgen::prelude::*;
use websr_federated::protocol::{encode_masked_input, ClientId, RoundConfig};
use websr_federated::secagg::{KeyDirectory, Participant, RoutedShares, UnmaskRequest};

/// One update on its way through one SecAgg session (its secrets are zeroed when freed).
#[wasm_bindgen]
pub struct SecAggParticipant {
    inner: Participant,
    rng: ChaCha20Rng,
}

fn protocol_error(what: &str, e: impl std::fmt::Display) -> JsValue {
    js_error(&WebSrError::Invalid(format!(
        "secure aggregation, {what}: {e}"
    )))
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, JsValue> {
    serde_json::from_str(json).map_err(|e| protocol_error(what, e))
}

impl SecAggParticipant {
    /// Joins the session `round_json` (the body of a fresh `GET /v1/round`) announces, with the
    /// trained `delta`. The session must still be in its keys phase.
    pub(super) fn start(
        round_json: &str,
        client_id: ClientId,
        delta: Vec<Vec<f32>>,
    ) -> Result<Self, JsValue> {
        let round: RoundConfig = parse("the round config", round_json)?;
        let sa = round
            .joinable_secagg()
            .map_err(|e| protocol_error("the round config", e))?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| protocol_error("randomness", format!("crypto.getRandomValues: {e}")))?;
        let mut rng = ChaCha20Rng::from_seed(seed);
        seed.fill(0);
        let inner = Participant::start(sa, client_id, delta, &mut rng)
            .map_err(|e| protocol_error("preparing the update", e))?;
        Ok(Self { inner, rng })
    }
}

#[wasm_bindgen]
impl SecAggParticipant {
    /// The session id every `/v1/secagg/...` call names.
    #[wasm_bindgen(getter)]
    pub fn session(&self) -> f64 {
        self.inner.session() as f64
    }

    /// Where the protocol stands, in words.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        self.inner.state().to_string()
    }

    /// The body of `POST /v1/secagg/keys`: this client's two public keys (JSON).
    #[wasm_bindgen(js_name = keysMessage)]
    pub fn keys_message(&self) -> String {
        serde_json::to_string(self.inner.keys()).expect("serialisable")
    }

    /// From the key directory (`GET /v1/secagg/keys`) to the body of `POST /v1/secagg/shares`.
    #[wasm_bindgen(js_name = shareKeys)]
    pub fn share_keys(&mut self, directory_json: &str) -> Result<String, JsValue> {
        let directory: KeyDirectory = parse("the key directory", directory_json)?;
        let shares = self
            .inner
            .share_keys(&directory, &mut self.rng)
            .map_err(|e| protocol_error("sharing keys", e))?;
        Ok(serde_json::to_string(&shares).expect("serialisable"))
    }

    /// From the routed shares (`GET /v1/secagg/shares`) to the binary body of
    /// `POST /v1/secagg/masked`: the update under its masks, uniform to anyone without them.
    #[wasm_bindgen(js_name = maskedInput)]
    pub fn masked_input(&mut self, routed_json: &str) -> Result<Uint8Array, JsValue> {
        let routed: RoutedShares = parse("the routed shares", routed_json)?;
        let masked = self
            .inner
            .masked_input(&routed)
            .map_err(|e| protocol_error("masking", e))?;
        Ok(Uint8Array::from(encode_masked_input(&masked).as_slice()))
    }

    /// From the unmasking request (`GET /v1/secagg/unmask`) to the body of
    /// `POST /v1/secagg/unmask`.
    pub fn unmask(&mut self, request_json: &str) -> Result<String, JsValue> {
        let request: UnmaskRequest = parse("the unmasking request", request_json)?;
        let response = self
            .inner
            .unmask(&request)
            .map_err(|e| protocol_error("unmasking", e))?;
        Ok(serde_json::to_string(&response).expect("serialisable"))
    }
}
