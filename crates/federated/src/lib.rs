//! # websr-federated
//!
//! The part of federated learning that clients and server must agree on, in one small crate
//! without I/O, so that the aggregator (`crates/aggregator`), the native client and simulator
//! (`websr fl-client`, `websr fl-sim`) and the browser client (wasm) run the same code:
//!
//! | module | what it holds |
//! |---|---|
//! | [`protocol`] | the JSON messages of the wire protocol (documented in `websr-aggregator`) |
//! | [`tensors`] | safetensors <-> named flat vectors, update bodies, strict validation |
//! | [`dp`] | client-side clipping, Gaussian noise, the RDP accountant |
//! | [`strategy`] | the [`Strategy`] trait: FedAvg, FedProx, FedAdam, FedYogi, median, trimmed mean, Krum |
//! | [`secagg`] | secure aggregation (SecAgg/SecAgg+): fixed-point encoding, masking, Shamir shares, the client and server state machines, the `Participant` both clients drive, distributed DP noise |
//!
//! A model here is a [`tensors::Layout`] (sorted tensor names and shapes) plus one flat `f32`
//! vector per tensor; nothing depends on burn.

pub mod dp;
pub mod protocol;
pub mod secagg;
pub mod strategy;
pub mod tensors;

pub use strategy::{Strategy, Update};
