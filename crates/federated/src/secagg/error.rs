//! The one error type of secure aggregation: every refusal names its reason.

use crate::protocol::ClientId;

/// Why a secure-aggregation step was refused. A round that hits one of these on the server side
/// ([`TooFewClients`](SecAggError::TooFewClients), [`NotEnoughShares`](SecAggError::NotEnoughShares))
/// is over: the [`Server`](super::Server) returns no sum, partial or otherwise.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecAggError {
    #[error("invalid secure-aggregation config: {0}")]
    Config(String),
    #[error("coordinate {index} is NaN or infinite")]
    NonFinite { index: usize },
    #[error("coordinate {index} = {value} is beyond the encoding bound +-{bound}")]
    OutOfBound {
        index: usize,
        value: f64,
        bound: f64,
    },
    #[error("vector has {got} coordinates, the round expects {expected}")]
    Length { expected: usize, got: usize },
    #[error("a sum of {got} clients cannot be decoded: the encoding is sized for at most {max}")]
    TooManyClients { got: usize, max: usize },
    #[error(
        "round {round}: only {got} clients remain at the {step} step, the threshold is {threshold}"
    )]
    TooFewClients {
        round: u64,
        step: &'static str,
        got: usize,
        threshold: usize,
    },
    #[error(
        "round {round}: only {got} shares of client {owner}'s {secret} came back, {threshold} are needed"
    )]
    NotEnoughShares {
        round: u64,
        owner: ClientId,
        secret: &'static str,
        got: usize,
        threshold: usize,
    },
    #[error(
        "client {client} refuses: the server asked for both the self-mask share and the key share \
         of client {neighbour}"
    )]
    BothSharesRequested {
        client: ClientId,
        neighbour: ClientId,
    },
    #[error("client {client} has already answered an unmasking request in round {round}")]
    AlreadyUnmasked { client: ClientId, round: u64 },
    #[error("message of round {got}, this is round {expected}")]
    WrongRound { expected: u64, got: u64 },
    #[error("{call} called out of order (state: {state})")]
    OutOfOrder {
        call: &'static str,
        state: &'static str,
    },
    #[error("client {0} is not a participant of this step")]
    UnknownClient(ClientId),
    #[error("a second message from client {0} at this step")]
    Duplicate(ClientId),
    #[error("the client refuses the server's message: {0}")]
    BadRequest(String),
    #[error("invalid message from client {client}: {reason}")]
    Invalid { client: ClientId, reason: String },
    #[error("the share from client {from} to client {to} does not decrypt")]
    Decrypt { from: ClientId, to: ClientId },
    #[error("key agreement with client {0} gave a non-contributory (low-order) secret")]
    WeakKey(ClientId),
    #[error("Shamir: {0}")]
    Shamir(String),
    #[error("the round was aborted earlier: {0}")]
    Aborted(String),
}
