//! Federated learning, the client side: what a participant (the browser page, `websr
//! fl-client`, or a simulated client in `websr fl-sim`) does with its own images.
//!
//! 1. [`ClientData`]: its images and how each one is degraded into LR training inputs
//!    ([`crate::degrade`]).
//! 2. [`local::LocalTrainer`] (feature `train`): Adam on the L1 loss from the global weights, with
//!    FedProx's proximal term when the round asks for it.
//! 3. [`update::ModelDelta`]: trained minus global weights, clipped to the round's bound, encoded
//!    as the body `POST /v1/update` expects.
//!
//! [`round::run_round_async`] strings the three together for one round of the protocol. The wire
//! format, clipping and the aggregation rules are shared with the server through the
//! `websr-federated` crate, so client and server cannot disagree on them. [`partition`] splits a
//! data set across simulated clients (Dirichlet non-IID).

pub mod partition;
pub mod update;

#[cfg(feature = "train")]
pub mod local;
#[cfg(feature = "train")]
pub mod round;

#[cfg(feature = "train")]
pub use data::ClientData;

#[cfg(feature = "train")]
mod data;
