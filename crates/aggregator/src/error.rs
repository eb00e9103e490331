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
            Error::Stale { .. } | Error::FutureVersion { .. } => "version",
            Error::Duplicate { .. } => "duplicate",
            Error::NotSelected { .. } => "not_selected",
            Error::Finished(_) => "finished",
            Error::TooManyClients => "client_limit",
            Error::TooManyJoins { .. } => "join_rate",
            Error::TokenExpired => "token_expired",
            Error::Config(_) | Error::Corrupt(_) | Error::Store(_) | Error::Strategy(_) => {
                "internal"
            }
        }
    }
}
