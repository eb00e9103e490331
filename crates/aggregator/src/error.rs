//! Everything the aggregator refuses or fails at, with the reason codes of `/v1/metrics`.

use crate::protocol::ClientId;
use crate::store::StoreError;
use crate::strategy::StrategyError;
use crate::tensors::TensorError;

/// Everything the server can refuse. `api.rs` maps each to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("missing or unknown client token: send 'Authorization: Bearer <token>' with the token from POST /v1/join")]
    Unauthorized,
    #[error("{0}")]
    Update(#[from] TensorError),
    #[error("num_examples is {got}, expected 1..={max}")]
    NumExamples { got: u64, max: u64 },
    #[error("update L2 norm {norm:.6} exceeds the clipping bound {bound}")]
    NormTooLarge { norm: f64, bound: f64 },
    #[error("stale base_version {got}: the current global model is version {current}; fetch it and train again")]
    Stale { got: u64, current: u64 },
    #[error("stale base_version {got}: the current global model is version {current}, a staleness of {staleness} versions, above the limit of {max} (--max-staleness); fetch the model and train again")]
    TooStale {
        got: u64,
        current: u64,
        staleness: u64,
        max: u64,
    },
    #[error("base_version {got} does not exist: the current global model is version {current}")]
    FutureVersion { got: u64, current: u64 },
    #[error("client {client} already submitted an update for global version {version}")]
    Duplicate { client: ClientId, version: u64 },
    #[error("client {client} is not selected for the round on global version {version}: GET /v1/round first")]
    NotSelected { client: ClientId, version: u64 },
    #[error("training is finished ({0} rounds)")]
    Finished(u64),
    #[error("the server has reached its client limit")]
    TooManyClients,
    #[error("too many joins right now; try again in {retry_after_s:.1} s")]
    TooManyJoins { retry_after_s: f64 },
    #[error("the client token has expired: POST /v1/join for a new one")]
    TokenExpired,
    #[error("secure aggregation is off on this server: send updates with POST /v1/update")]
    SecAggOff,
    #[error("this server aggregates securely: send the update through the /v1/secagg phases announced in GET /v1/round (secure_aggregation), not POST /v1/update")]
    SecAggOnly,
    /// A malformed or invalid SecAgg message (400).
    #[error("secure aggregation: {0}")]
    SecAggInvalid(String),
    /// A SecAgg message that does not fit the session's state: wrong phase, session or
    /// duplicate (409).
    #[error("secure aggregation: {0}")]
    SecAggConflict(String),
    /// The client has no part in this SecAgg phase (403).
    #[error("secure aggregation: {0}")]
    SecAggForbidden(String),
    /// The phase whose broadcast was asked for is still open (425, ask again).
    #[error("secure aggregation: {0}")]
    SecAggNotYet(String),
    /// The SecAgg session failed or is unknown (410): start over from GET /v1/round.
    #[error("secure aggregation: {0}")]
    SecAggGone(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("state directory: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Strategy(#[from] StrategyError),
}

impl Error {
    /// Short reason used in the rejection counters of `/v1/metrics`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthorized => "unauthorized",
            Error::Update(TensorError::Malformed(_)) => "malformed",
            Error::Update(TensorError::Metadata(_)) => "metadata",
            Error::Update(TensorError::NonFinite(_)) => "non_finite",
            Error::Update(_) => "layout",
            Error::NumExamples { .. } => "num_examples",
            Error::NormTooLarge { .. } => "norm",
            Error::Stale { .. } | Error::TooStale { .. } | Error::FutureVersion { .. } => "version",
            Error::Duplicate { .. } => "duplicate",
            Error::NotSelected { .. } => "not_selected",
            Error::Finished(_) => "finished",
            Error::TooManyClients => "client_limit",
            Error::TooManyJoins { .. } => "join_rate",
            Error::TokenExpired => "token_expired",
            Error::SecAggOff => "secagg_off",
            Error::SecAggOnly => "secagg_only",
            Error::SecAggInvalid(_) => "secagg_invalid",
            Error::SecAggConflict(_) => "secagg_conflict",
            Error::SecAggForbidden(_) => "secagg_forbidden",
            Error::SecAggNotYet(_) => "secagg_not_yet",
            Error::SecAggGone(_) => "secagg_gone",
            Error::Config(_) | Error::Corrupt(_) | Error::Store(_) | Error::Strategy(_) => {
                "internal"
            }
        }
    }
}
