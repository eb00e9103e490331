//! Command-line flags. Tests build the same struct with `Args::try_parse_from`.

use crate::strategy::{self, Adaptive, Strategy};
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The model the aggregator starts from when `--init` is left at its default and the file is not
/// there (e.g. the binary runs outside the repository): the shipped WaveLR x4.
pub const EMBEDDED_INIT: &[u8] = include_bytes!("../../../models/wavelr-x4.safetensors");
/// Default of `--init`.
pub const DEFAULT_INIT: &str = "models/wavelr-x4.safetensors";

/// Aggregation rule, chosen with `--strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyKind {
    /// Mean weighted by num_examples; `x += server_lr * mean`.
    Fedavg,
    /// FedAvg on the server; clients add the proximal term `--prox-mu`.
    Fedprox,
    /// Mean fed to an Adam server optimizer (`--server-lr`, `--beta1`, `--beta2`, `--tau`).
    Fedadam,
    /// Mean fed to a Yogi server optimizer (same flags as fedadam).
    Fedyogi,
    /// Coordinate-wise median.
    Median,
    /// Coordinate-wise trimmed mean cutting `--trim-beta` at each end.
    TrimmedMean,
    /// Krum tolerating `--krum-f` Byzantine clients.
    Krum,
}

/// Native federated-learning aggregator for websr models.
///
/// Serves a versioned global model (safetensors) to clients, collects their deltas round by
/// round, and aggregates them with the chosen strategy. State is kept in --state-dir and survives
/// crashes; a restarted server resumes the open round.
#[derive(Debug, Clone, Parser)]
#[command(name = "websr-aggregator", version)]
pub struct Args {
    /// Address to listen on (loopback by default; put a TLS proxy in front to expose it).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub bind: SocketAddr,

    /// Initial global model (safetensors, f32 tensors). Only read when --state-dir holds no state.
    /// When left at the default and the file is absent, the copy embedded in the binary is used.
    #[arg(long, default_value = DEFAULT_INIT)]
    pub init: PathBuf,

    /// Directory of the persistent state (created if needed).
    #[arg(long, default_value = "aggregator-state")]
    pub state_dir: PathBuf,

    /// Aggregation strategy.
    #[arg(long, value_enum, default_value_t = StrategyKind::Fedavg)]
    pub strategy: StrategyKind,

    /// Server learning rate (eta): the step on the aggregated delta (1.0 = FedAvg as published;
    /// try 0.01 for fedadam / fedyogi).
    #[arg(long, default_value_t = 1.0)]
    pub server_lr: f64,

    /// FedAdam/FedYogi first-moment decay.
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f64,

    /// FedAdam/FedYogi second-moment decay.
    #[arg(long, default_value_t = 0.99)]
    pub beta2: f64,

    /// FedAdam/FedYogi adaptivity tau (the second moment starts at tau^2).
    #[arg(long, default_value_t = 1e-3)]
    pub tau: f64,

    /// FedProx proximal term mu sent to clients (fedprox only).
    #[arg(long, default_value_t = 0.01)]
    pub prox_mu: f64,

    /// Trimmed mean: fraction cut at each end, in [0, 0.5).
    #[arg(long, default_value_t = 0.1)]
    pub trim_beta: f64,

    /// Krum: number of Byzantine clients tolerated (a round needs >= 2f+3 updates).
    #[arg(long, default_value_t = 1)]
    pub krum_f: usize,

    /// Fewest accepted updates a round may close with at its deadline.
    #[arg(long, default_value_t = 2)]
    pub min_clients: usize,

    /// Accepted updates that close a round at once.
    #[arg(long, default_value_t = 10)]
    pub target_clients: usize,

    /// Over-selection factor: up to ceil(target * factor) clients are selected per round, so
    /// stragglers do not hold it up; the updates past the target arrive too late and are refused.
    #[arg(long, default_value_t = 1.3)]
    pub over_selection: f64,

    /// Round deadline in seconds. At the deadline the round closes if it has --min-clients
    /// updates; otherwise it keeps them, releases the selected clients that sent nothing, and
    /// starts a new deadline.
    #[arg(long, default_value_t = 600.0)]
    pub round_deadline_secs: f64,

    /// Stop after this many rounds (0 = never).
    #[arg(long, default_value_t = 0)]
    pub rounds: u64,

    /// Local epochs clients should run per round (sent in the round config).
    #[arg(long, default_value_t = 1)]
    pub local_epochs: u32,

    /// Client learning rate (sent in the round config).
    #[arg(long, default_value_t = 1e-4)]
    pub client_lr: f64,

    /// Client batch size (sent in the round config).
    #[arg(long, default_value_t = 16)]
    pub batch_size: u32,

    /// Largest num_examples a client may claim (bounds one client's FedAvg weight).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_examples: u64,

    /// L2 clipping bound C on a client's whole delta: clients clip to it, the server refuses
    /// larger updates. Required by --noise-multiplier.
    #[arg(long)]
    pub clip_norm: Option<f64>,

    /// Gaussian noise multiplier z: the server adds N(0, (z C / n)^2) to the mean of n updates
    /// (and then weights clients equally). 0 = no noise, no DP guarantee.
    #[arg(long, default_value_t = 0.0)]
    pub noise_multiplier: f64,

    /// delta of the (epsilon, delta) reported by the accountant.
    #[arg(long, default_value_t = 1e-5)]
    pub dp_delta: f64,

    /// Seed of the server noise (default: from the OS).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Largest request body in bytes (default: twice the model file plus 64 KiB).
    #[arg(long)]
    pub max_body_bytes: Option<usize>,

    /// Most clients that may join (tokens are kept in the state).
    #[arg(long, default_value_t = 100_000)]
    pub max_clients: usize,

    /// Origin of a web app whose browser clients may call this server (CORS), for example
    /// `https://websr.example`; repeat for several, `*` for any. Tokens travel in the
    /// Authorization header, never in cookies, so no credentials mode is needed. Default: none
    /// (only same-origin pages and native clients).
    #[arg(long)]
    pub allow_origin: Vec<String>,
}

impl Args {
    /// Checks the flags against each other; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        let strategy = self.build_strategy();
        for origin in &self.allow_origin {
            if origin != "*" && axum::http::HeaderValue::from_str(origin).is_err() {
                return Err(format!("--allow-origin {origin:?} is not a valid origin"));
            }
        }
        if self.min_clients < 1 {
            return Err("--min-clients must be at least 1".into());
        }
        if self.target_clients < self.min_clients {
            return Err("--target-clients must be >= --min-clients".into());
        }
        if self.min_clients < strategy.min_updates() {
            return Err(format!(
                "--strategy {} needs --min-clients >= {}",
                strategy.name(),
                strategy.min_updates()
            ));
        }
        if !(self.over_selection >= 1.0 && self.over_selection.is_finite()) {
            return Err("--over-selection must be >= 1".into());
        }
        if !(self.round_deadline_secs > 0.0 && self.round_deadline_secs.is_finite()) {
            return Err("--round-deadline-secs must be > 0".into());
        }
        if !(0.0..0.5).contains(&self.trim_beta) {
            return Err("--trim-beta must be in [0, 0.5)".into());
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err("--beta1 and --beta2 must be in [0, 1)".into());
        }
        if self.tau <= 0.0 || self.server_lr <= 0.0 || self.prox_mu < 0.0 {
            return Err("--tau and --server-lr must be > 0, --prox-mu >= 0".into());
        }
        if self.clip_norm.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
            return Err("--clip-norm must be > 0".into());
        }
        if !(self.noise_multiplier >= 0.0 && self.noise_multiplier.is_finite()) {
            return Err("--noise-multiplier must be >= 0".into());
        }
        if self.noise_multiplier > 0.0 {
            if self.clip_norm.is_none() {
                return Err("--noise-multiplier needs --clip-norm".into());
            }
            if !matches!(
                self.strategy,
                StrategyKind::Fedavg
                    | StrategyKind::Fedprox
                    | StrategyKind::Fedadam
                    | StrategyKind::Fedyogi
            ) {
                return Err(format!(
                    "--noise-multiplier is calibrated for the mean; --strategy {} is not a mean",
                    strategy.name()
                ));
            }
        }
        if !(self.dp_delta > 0.0 && self.dp_delta < 1.0) {
            return Err("--dp-delta must be in (0, 1)".into());
        }
        if self.max_examples < 1 {
            return Err("--max-examples must be >= 1".into());
        }
        Ok(())
    }

    /// Most clients selected per round: `ceil(target * over_selection)`.
    pub fn selection_cap(&self) -> usize {
        (self.target_clients as f64 * self.over_selection).ceil() as usize
    }

    /// The initial model bytes (`--init`, or the embedded default).
    pub fn init_bytes(&self) -> std::io::Result<Vec<u8>> {
        match std::fs::read(&self.init) {
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && self.init == std::path::Path::new(DEFAULT_INIT) =>
            {
                Ok(EMBEDDED_INIT.to_vec())
            }
            other => other,
        }
    }

    pub fn build_strategy(&self) -> Box<dyn Strategy> {
        let adaptive = Adaptive {
            eta: self.server_lr,
            beta1: self.beta1,
            beta2: self.beta2,
            tau: self.tau,
        };
        let server_lr = self.server_lr;
        match self.strategy {
            StrategyKind::Fedavg => Box::new(strategy::FedAvg { server_lr }),
            StrategyKind::Fedprox => Box::new(strategy::FedProx {
                mu: self.prox_mu,
                server_lr,
            }),
            StrategyKind::Fedadam => Box::new(strategy::FedAdam(adaptive)),
            StrategyKind::Fedyogi => Box::new(strategy::FedYogi(adaptive)),
            StrategyKind::Median => Box::new(strategy::Median { server_lr }),
            StrategyKind::TrimmedMean => Box::new(strategy::TrimmedMean {
                beta: self.trim_beta,
                server_lr,
            }),
            StrategyKind::Krum => Box::new(strategy::Krum {
                f: self.krum_f,
                server_lr,
            }),
        }
    }
}
