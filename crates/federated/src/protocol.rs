//! The JSON messages of the wire protocol (see the crate docs for the sequence of calls).

use crate::secagg::{DistributedNoise, MaskedInput, SecAggConfig, SecAggError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A client's id, assigned by `POST /v1/join` in order from 1.
pub type ClientId = u64;

/// Answer of `POST /v1/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Joined {
    pub client_id: ClientId,
    /// Bearer token for every other call. Only its SHA-256 is stored.
    pub token: String,
    /// When the token stops working (then join again); 0 from servers before expiry.
    #[serde(default)]
    pub expires_unix_ms: u64,
}

/// Answer of `GET /v1/round`: what the client must do this round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundConfig {
    /// 1-based number of the open round (it produces global version `round`).
    pub round: u64,
    /// The version to download, train from, and send as `base_version`.
    pub global_version: u64,
    pub model_sha256: String,
    /// Whether this client has a slot in the round; if not, ask again after `retry_after_s`.
    pub selected: bool,
    /// Whether this client's update for the round is already accepted.
    pub submitted: bool,
    pub finished: bool,
    pub retry_after_s: f64,
    pub deadline_unix_ms: u64,
    pub min_clients: usize,
    pub target_clients: usize,
    pub accepted: usize,
    pub strategy: String,
    /// FedProx proximal term (0 = plain local SGD).
    pub prox_mu: f64,
    /// Clip the whole delta to this L2 norm before sending (None = no bound).
    pub clip_norm: Option<f64>,
    pub local_epochs: u32,
    pub client_lr: f64,
    pub batch_size: u32,
    pub max_examples: u64,
    /// Present when the server aggregates securely: the client then sends its clipped delta
    /// through the SecAgg phases (`/v1/secagg/...`) instead of `POST /v1/update`. Absent (and
    /// not serialised) otherwise, so that clients that predate it still parse the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_aggregation: Option<SecureAggregation>,
}

impl RoundConfig {
    /// The secure-aggregation session a client that has just trained can still join: announced,
    /// and in its keys phase (a session past it was formed without this client). Both clients
    /// (`websr fl-client` and the browser's worker) ask this of a fresh `GET /v1/round`.
    pub fn joinable_secagg(&self) -> Result<&SecureAggregation, String> {
        let sa = self
            .secure_aggregation
            .as_ref()
            .ok_or("the server no longer announces secure aggregation")?;
        if sa.phase != "keys" {
            return Err(format!(
                "session {} is past its keys phase ({}): this client is not part of it",
                sa.config.round, sa.phase
            ));
        }
        Ok(sa)
    }
}

/// A secure-aggregation round as announced in [`RoundConfig::secure_aggregation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecureAggregation {
    /// What every party of the SecAgg session agrees on. `config.round` is the *session* id: it
    /// changes with every attempt at a round (a failed attempt is started over with a new id),
    /// so it is not [`RoundConfig::round`]. Every `/v1/secagg/...` call names it.
    pub config: SecAggConfig,
    /// The clipping bound `C` the encoding and the noise are sized for (the round's
    /// `clip_norm`); the client clips to at most this.
    pub clip_norm: f64,
    /// Distributed DP noise multiplier `z` (0 = none): each client adds its share of
    /// `N(0, (2 z C)^2)` on the sum, see [`SecureAggregation::noise`].
    pub noise_multiplier: f64,
    /// The open phase: `keys`, `shares`, `masked`, `unmask` (or `failed`, `done`).
    pub phase: String,
    /// Longest each phase after `keys` stays open, in seconds.
    pub phase_secs: f64,
}

impl SecureAggregation {
    /// The noise each client adds before encoding (`None` when `noise_multiplier` is 0).
    pub fn noise(&self) -> Result<Option<DistributedNoise>, SecAggError> {
        if self.noise_multiplier == 0.0 {
            return Ok(None);
        }
        DistributedNoise::for_multiplier(
            self.noise_multiplier,
            self.clip_norm,
            self.config.threshold,
        )
        .map(Some)
    }
}

/// What a client does at the least, whatever the round config asks. The server chooses the
/// batch size, the number of local steps (through `local_epochs` and `max_examples`) and the
/// clipping bound; a malicious server, or a crafted `?server=` link, could otherwise ask for one
/// step on one patch with no clipping, an update from which a single photo is far easier to
/// reconstruct. Both clients (the browser and `websr fl-client`) apply [`ClientFloor::DEFAULT`]
/// through `websr::federated::round::plan`, and the participant page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClientFloor {
    /// Smallest batch a client trains with; a round asking for less is refused.
    pub min_batch: u32,
    /// Fewest local steps: a round that would run fewer runs this many (unless the
    /// participant's own step budget is lower: that is their choice, not the server's).
    pub min_steps: u32,
    /// Largest L2 norm a client sends: it clips to the smaller of this and the round's bound,
    /// also when the round asks for no clipping.
    pub max_clip_norm: f64,
}

impl ClientFloor {
    pub const DEFAULT: ClientFloor = ClientFloor {
        min_batch: 8,
        min_steps: 20,
        max_clip_norm: 10.0,
    };

    /// Refuses a round whose batch is below the floor, naming both numbers.
    pub fn check(&self, round: &RoundConfig) -> Result<(), String> {
        if round.batch_size < self.min_batch {
            return Err(format!(
                "the server asks for batches of {}; this client trains with at least {} \
                 (smaller batches reveal more about single photos)",
                round.batch_size, self.min_batch
            ));
        }
        Ok(())
    }

    /// The local steps to run: what the round asks (`wanted`), at least `min_steps`, at most
    /// the participant's `budget`.
    pub fn steps(&self, wanted: u64, budget: usize) -> u64 {
        wanted
            .max(u64::from(self.min_steps))
            .min(budget.max(1) as u64)
    }

    /// The bound the client clips its delta to.
    pub fn clip_bound(&self, round: &RoundConfig) -> f64 {
        round
            .clip_norm
            .map_or(self.max_clip_norm, |c| c.min(self.max_clip_norm))
    }
}

/// Answer of an accepted `POST /v1/update`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accepted {
    pub accepted: bool,
    pub client_id: ClientId,
    pub base_version: u64,
    /// The global version after this call (base_version + 1 if the update closed the round).
    pub global_version: u64,
    pub round_closed: bool,
    pub norm: f64,
}

/// Bytes before the values in a `POST /v1/secagg/masked` body: the session id and the client id,
/// each a `u64` little-endian. Then come one `u32` little-endian per model parameter, in layout
/// order (the masked input is as large as the model: JSON would triple it).
pub const MASKED_HEADER_LEN: usize = 16;

/// The `POST /v1/secagg/masked` body of `input`.
pub fn encode_masked_input(input: &MaskedInput) -> Vec<u8> {
    let mut out = Vec::with_capacity(MASKED_HEADER_LEN + 4 * input.values.len());
    out.extend_from_slice(&input.round.to_le_bytes());
    out.extend_from_slice(&input.client.to_le_bytes());
    for v in &input.values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads a `POST /v1/secagg/masked` body for a model of `params` parameters.
pub fn decode_masked_input(body: &[u8], params: usize) -> Result<MaskedInput, String> {
    let want = MASKED_HEADER_LEN + 4 * params;
    if body.len() != want {
        return Err(format!(
            "a masked input is {want} bytes ({MASKED_HEADER_LEN} of header, 4 per parameter), \
             got {}",
            body.len()
        ));
    }
    let (head, values) = body.split_at(MASKED_HEADER_LEN);
    let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
    Ok(MaskedInput {
        round: u64_at(0),
        client: u64_at(8),
        values: values
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
    })
}

/// Answer of an accepted `POST /v1/secagg/...` message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecAggAck {
    /// The SecAgg session the message was for.
    pub session: u64,
    /// The phase open after this message (it may have closed the one the message was for).
    pub phase: String,
    /// The global version after this message (it moves on when the message finished the round).
    pub global_version: u64,
}

/// Answer of `GET /v1/secagg/result` once the session has committed its round.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecAggResult {
    pub session: u64,
    /// The version the round produced.
    pub global_version: u64,
    /// Whose updates are in it (`U3`).
    pub survivors: Vec<ClientId>,
}

/// One completed round, kept in the state and reported by `/v1/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoundRecord {
    /// 1-based round number, equal to the global version it produced.
    pub round: u64,
    pub base_version: u64,
    pub clients: Vec<ClientId>,
    /// Sum of the clients' self-reported example counts; `None` while DP noise is on (it is
    /// not noised, so it is not released).
    pub examples: Option<u64>,
    pub stragglers_dropped: usize,
    pub closed_by: String,
    /// `None` while DP noise is on (self-reported and un-noised), or when no client sent one.
    pub mean_client_loss: Option<f64>,
    /// L2 norm of the aggregated delta before noise; `None` while DP noise is on.
    pub delta_norm: Option<f64>,
    pub noise_multiplier: f64,
    pub noise_std: f64,
    /// (epsilon, delta) of this round alone and of all rounds so far; None = no guarantee.
    pub epsilon_round: Option<f64>,
    pub epsilon_total: Option<f64>,
    pub dp_delta: f64,
    pub aggregation_ms: f64,
    pub completed_unix_ms: u64,
    pub model_sha256: String,
}

/// Counters of `/v1/metrics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    pub joins: u64,
    pub updates_accepted: u64,
    pub updates_rejected: BTreeMap<String, u64>,
    pub rounds_completed: u64,
    pub deadline_extensions: u64,
    /// Rounds whose aggregate was not finite: their updates were set aside and the round
    /// started over on the same version.
    #[serde(default)]
    pub rounds_quarantined: u64,
    /// Secure-aggregation sessions that ended without a sum (too few clients at a phase, bad
    /// shares, a non-finite aggregate); each was started over on the same version.
    #[serde(default)]
    pub secagg_sessions_failed: u64,
}

/// Answer of `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub global_version: u64,
    pub round: u64,
    pub model_sha256: String,
    pub strategy: String,
    pub finished: bool,
    pub clients: usize,
    pub selected: usize,
    pub accepted: usize,
    pub min_clients: usize,
    pub target_clients: usize,
    pub selection_cap: usize,
    pub deadline_unix_ms: u64,
    pub num_params: usize,
    pub dp: DpStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DpStatus {
    pub clip_norm: Option<f64>,
    pub noise_multiplier: f64,
    pub delta: f64,
    /// Cumulative epsilon over all completed rounds (None = infinite: some round had no noise).
    pub epsilon_total: Option<f64>,
    pub rounds: usize,
    pub accountant: String,
}

/// Answer of `GET /v1/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metrics {
    pub counters: Counters,
    pub history: Vec<RoundRecord>,
    pub dp: DpStatus,
}
