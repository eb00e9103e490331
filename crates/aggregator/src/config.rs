//! What the server runs with: [`ServerConfig`], a plain value free of clap. The binary builds it
//! from its flags ([`crate::flags::Args::server_config`]); tests may also build it directly.

use crate::strategy::StrategyConfig;
use std::path::{Path, PathBuf};

/// The model the aggregator starts from when `--init` is left at its default and the file is not
/// there (e.g. the binary runs outside the repository): the shipped WaveLR x4.
pub const EMBEDDED_INIT: &[u8] = include_bytes!("../../../models/wavelr-x4.safetensors");
/// Default of `--init`.
pub const DEFAULT_INIT: &str = "models/wavelr-x4.safetensors";

/// The server's settings. Each field is the flag of the same name (see `websr-aggregator
/// --help`, [`crate::flags::Args`]); [`ServerConfig::validate`] checks them against each other.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Initial model, read only when `state_dir` holds no state.
    pub init: PathBuf,
    pub state_dir: PathBuf,
    pub strategy: StrategyConfig,
    pub min_clients: usize,
    pub target_clients: usize,
    pub over_selection: f64,
    pub round_deadline_secs: f64,
    /// Rounds to run; 0 = never stop.
    pub rounds: u64,
    pub local_epochs: u32,
    pub client_lr: f64,
    pub batch_size: u32,
    pub max_examples: u64,
    pub clip_norm: Option<f64>,
    pub noise_multiplier: f64,
    pub dp_delta: f64,
    /// Seed of the server noise; `None` = from the OS.
    pub seed: Option<u64>,
    /// `None` = twice the model as served (f32) plus 64 KiB.
    pub max_body_bytes: Option<usize>,
    pub max_clients: usize,
    pub allow_origin: Vec<String>,
    /// A client's FedAvg weight is capped at this many times the round's median claim.
    pub max_weight_ratio: f64,
    /// Tokens stop working this long after they were issued.
    pub token_ttl_secs: f64,
    /// `POST /v1/join` budget (a token bucket of this size, refilled over a minute).
    pub max_joins_per_minute: u32,
    /// Longest a request (body included) may take before `408`.
    pub request_timeout_secs: f64,
    /// `--secure-aggregation`: rounds run the SecAgg phases (`state::secagg`); `None` = plain
    /// rounds.
    pub secure_aggregation: Option<SecAggSettings>,
    /// `--buffered K`: buffered asynchronous rounds (FedBuff, `state::buffered`); `None` =
    /// synchronous rounds.
    pub buffered: Option<BufferedSettings>,
}

/// The FedBuff flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferedSettings {
    /// `--buffered K`: accepted updates that make the next version.
    pub k: usize,
    /// `--max-staleness`: most versions an update's base may lag behind the current one.
    pub max_staleness: u64,
}

/// Default of `--max-staleness`.
pub const DEFAULT_MAX_STALENESS: u64 = 4;

/// The secure-aggregation flags.
#[derive(Debug, Clone, PartialEq)]
pub struct SecAggSettings {
    /// `--secagg-threshold` `t`; `None` = `ceil(2/3 * --target-clients)`, at least 2.
    pub threshold: Option<usize>,
    /// `--secagg-neighbours` `k` (SecAgg+); `None` = every pair of clients.
    pub neighbours: Option<usize>,
    /// `--secagg-phase-secs`: longest each phase after the keys phase stays open.
    pub phase_secs: f64,
}

impl ServerConfig {
    /// Checks the settings against each other; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        let strategy = self.strategy.build();
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
        self.strategy.validate().map_err(|e| e.to_string())?;
        if self.clip_norm.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
            return Err("--clip-norm must be > 0".into());
        }
        if !(self.noise_multiplier >= 0.0 && self.noise_multiplier.is_finite()) {
            return Err("--noise-multiplier must be >= 0".into());
        }
        if self.noise_multiplier > 0.0 {
            if self.clip_norm.is_none() {
                return Err(
                    "--noise-multiplier needs clipping (--clip-norm, not --no-clip)".into(),
                );
            }
            if !self.strategy.kind.aggregates_by_mean() {
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
        if !(self.max_weight_ratio >= 1.0 && self.max_weight_ratio.is_finite()) {
            return Err("--max-weight-ratio must be >= 1".into());
        }
        if !(self.token_ttl_secs > 0.0 && self.token_ttl_secs.is_finite()) {
            return Err("--token-ttl-secs must be > 0".into());
        }
        if self.max_joins_per_minute < 1 {
            return Err("--max-joins-per-minute must be >= 1".into());
        }
        if !(self.request_timeout_secs > 0.0 && self.request_timeout_secs.is_finite()) {
            return Err("--request-timeout-secs must be > 0".into());
        }
        if let Some(sa) = &self.secure_aggregation {
            self.validate_secagg(sa, strategy.name())?;
        }
        if let Some(b) = &self.buffered {
            self.validate_buffered(b, strategy.min_updates(), strategy.name())?;
        }
        Ok(())
    }

    /// The SecAgg threshold `t` of a round (`None` when secure aggregation is off).
    pub fn secagg_threshold(&self) -> Option<usize> {
        let sa = self.secure_aggregation.as_ref()?;
        Some(
            sa.threshold
                .unwrap_or_else(|| (2 * self.target_clients).div_ceil(3).max(2)),
        )
    }

    fn validate_secagg(&self, sa: &SecAggSettings, strategy: &str) -> Result<(), String> {
        if self.clip_norm.is_none() {
            return Err(
                "--secure-aggregation needs clipping (--clip-norm, not --no-clip): the \
                 fixed-point encoding of the updates is sized by the clipping bound"
                    .into(),
            );
        }
        if !self.strategy.kind.aggregates_by_mean() {
            return Err(format!(
                "--secure-aggregation reveals only the sum of the updates, so it runs the \
                 unweighted mean (fedavg, fedprox, fedadam, fedyogi); --strategy {strategy} \
                 needs every update in clear"
            ));
        }
        let t = self.secagg_threshold().unwrap_or(0);
        if t < 2 {
            return Err(
                "--secagg-threshold must be at least 2 (one share reveals a secret)".into(),
            );
        }
        if t > self.target_clients {
            return Err(format!(
                "--secagg-threshold {t} is above --target-clients {}: no round could close",
                self.target_clients
            ));
        }
        let cap = self.selection_cap();
        match sa.neighbours {
            Some(0) => return Err("--secagg-neighbours must be at least 1".into()),
            Some(k) if k.next_multiple_of(2) + 1 < t => {
                return Err(format!(
                    "--secagg-neighbours {k}: each secret would have {} holders, fewer than \
                     --secagg-threshold {t}",
                    k.next_multiple_of(2) + 1
                ))
            }
            Some(k) if k.next_multiple_of(2).min(cap.saturating_sub(1)) + 1 > 255 => {
                return Err(format!(
                    "--secagg-neighbours {k}: at most 254 (the Shamir sharing allows 255 holders)"
                ))
            }
            None if cap > 255 => {
                return Err(format!(
                    "up to {cap} clients per round: set --secagg-neighbours (at most 254), the \
                     Shamir sharing allows 255 holders per secret"
                ))
            }
            _ => {}
        }
        if !(sa.phase_secs > 0.0 && sa.phase_secs.is_finite()) {
            return Err("--secagg-phase-secs must be > 0".into());
        }
        Ok(())
    }

    fn validate_buffered(
        &self,
        b: &BufferedSettings,
        min_updates: usize,
        strategy: &str,
    ) -> Result<(), String> {
        if self.secure_aggregation.is_some() {
            return Err(
                "--buffered and --secure-aggregation cannot be combined: a SecAgg session masks \
                 one synchronous round's updates together"
                    .into(),
            );
        }
        if self.noise_multiplier > 0.0 {
            return Err(
                "--buffered with --noise-multiplier is not supported: the DP noise and its \
                 accounting are calibrated for synchronous rounds of unweighted updates"
                    .into(),
            );
        }
        if b.k < 1 {
            return Err("--buffered K must be at least 1".into());
        }
        if b.k < min_updates {
            return Err(format!(
                "--strategy {strategy} needs --buffered >= {min_updates}"
            ));
        }
        Ok(())
    }

    /// Accepted updates that close a round: `K` with `--buffered`, else `--target-clients`.
    pub fn close_at(&self) -> usize {
        self.buffered.map_or(self.target_clients, |b| b.k)
    }

    /// Most clients selected per round: `ceil(target * over_selection)`.
    pub fn selection_cap(&self) -> usize {
        (self.target_clients as f64 * self.over_selection).ceil() as usize
    }

    /// The initial model bytes (`init`, or the embedded default).
    pub fn init_bytes(&self) -> std::io::Result<Vec<u8>> {
        match std::fs::read(&self.init) {
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && self.init == Path::new(DEFAULT_INIT) =>
            {
                Ok(EMBEDDED_INIT.to_vec())
            }
            other => other,
        }
    }
}
