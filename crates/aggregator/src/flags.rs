//! The command-line flags ([`Args`]) and their one conversion into the [`ServerConfig`] the
//! server runs with. Only this module and `main.rs` know about clap. Tests parse flags with
//! `Args::try_parse_from` too, so that they exercise the flags as users write them.

use crate::config::{
    BufferedSettings, SecAggSettings, ServerConfig, DEFAULT_INIT, DEFAULT_MAX_STALENESS,
};
use crate::strategy::{StrategyConfig, StrategyKind};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The defaults of the strategy flags are those of [`StrategyConfig::DEFAULT`].
const STRATEGY: StrategyConfig = StrategyConfig::DEFAULT;

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

    #[command(flatten)]
    pub strategy: StrategyFlags,

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
    /// larger updates. On by default, so that one client cannot drag the model anywhere.
    #[arg(long, default_value_t = 1.0)]
    pub clip_norm: f64,

    /// Accept updates of any norm (no clipping). Refused with --noise-multiplier.
    #[arg(long, conflicts_with = "clip_norm")]
    pub no_clip: bool,

    /// Gaussian noise multiplier z: the server adds N(0, (2 z C / n)^2) to the mean of n updates
    /// (and then weights clients equally): z is the noise over the replace-one sensitivity 2C/n.
    /// 0 = no noise, no DP guarantee.
    #[arg(long, default_value_t = 0.0)]
    pub noise_multiplier: f64,

    /// delta of the (epsilon, delta) reported by the accountant.
    #[arg(long, default_value_t = 1e-5)]
    pub dp_delta: f64,

    /// Seed of the server noise (default: from the OS). For tests: whoever knows the seed can
    /// remove the noise. Each round draws from its own stream (seed, version), so a restart
    /// never replays a committed round's noise.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Largest request body in bytes (default: twice the model as served, f32, plus 64 KiB).
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

    /// FedAvg weight cap: a client's self-reported num_examples counts at most this many times
    /// the round's median claim.
    #[arg(long, default_value_t = 4.0)]
    pub max_weight_ratio: f64,

    /// Client tokens expire this many seconds after they were issued (default 30 days).
    #[arg(long, default_value_t = 2_592_000.0)]
    pub token_ttl_secs: f64,

    /// Most joins per minute (bursts up to the same number); more get 429 with Retry-After.
    #[arg(long, default_value_t = 600)]
    pub max_joins_per_minute: u32,

    /// Longest a request may take, body upload included, before 408 (slow clients cannot hold
    /// connections and memory forever).
    #[arg(long, default_value_t = 120.0)]
    pub request_timeout_secs: f64,

    /// Secure aggregation (SecAgg, Bonawitz et al. 2017): clients mask their clipped deltas so
    /// that the server learns only the sum of a round's updates, through the /v1/secagg phases.
    /// Needs clipping and a mean strategy (fedavg, fedprox, fedadam, fedyogi; the mean is
    /// unweighted). With --noise-multiplier the clients add the noise (distributed DP).
    #[arg(long)]
    pub secure_aggregation: bool,

    /// SecAgg threshold t: the fewest clients each phase may close with, and the shares that
    /// rebuild a secret; coalitions below t learn nothing. Default: ceil(2/3 * --target-clients),
    /// at least 2.
    #[arg(long, requires = "secure_aggregation")]
    pub secagg_threshold: Option<usize>,

    /// SecAgg+ neighbours k: each client masks with and shares its secrets among k others
    /// (rounded up to even) instead of all. Default: all.
    #[arg(long, requires = "secure_aggregation")]
    pub secagg_neighbours: Option<usize>,

    /// Longest each SecAgg phase after the keys phase stays open (the keys phase, during which
    /// clients train, has the round deadline). At the deadline a phase closes if at least the
    /// threshold answered; otherwise the session fails and the round starts over.
    #[arg(long, default_value_t = 60.0)]
    pub secagg_phase_secs: f64,

    /// Buffered asynchronous rounds (FedBuff, Nguyen et al. 2022): every joined client may train
    /// and submit at any time (no selection cap, no deadline); every K accepted updates make the
    /// next version, each delta scaled by 1/sqrt(1 + staleness). Not with --secure-aggregation
    /// or --noise-multiplier; --min-clients, --target-clients, --over-selection and
    /// --round-deadline-secs are then unused.
    #[arg(long, value_name = "K")]
    pub buffered: Option<usize>,

    /// With --buffered: most versions an update's base_version may lag behind the current
    /// global version (older updates get 409). Default 4.
    #[arg(long, requires = "buffered")]
    pub max_staleness: Option<u64>,
}

/// The strategy flags (`--strategy` to `--krum-f`), flattened into [`Args`]; they convert into a
/// [`StrategyConfig`].
#[derive(Debug, Clone, clap::Args)]
pub struct StrategyFlags {
    /// Aggregation strategy.
    #[arg(long, value_enum, default_value_t = STRATEGY.kind)]
    pub strategy: StrategyKind,

    /// Server learning rate (eta): the step on the aggregated delta (1.0 = FedAvg as published;
    /// try 0.01 for fedadam / fedyogi).
    #[arg(long, default_value_t = STRATEGY.server_lr)]
    pub server_lr: f64,

    /// FedAdam/FedYogi first-moment decay.
    #[arg(long, default_value_t = STRATEGY.beta1)]
    pub beta1: f64,

    /// FedAdam/FedYogi second-moment decay.
    #[arg(long, default_value_t = STRATEGY.beta2)]
    pub beta2: f64,

    /// FedAdam/FedYogi adaptivity tau (the second moment starts at tau^2).
    #[arg(long, default_value_t = STRATEGY.tau)]
    pub tau: f64,

    /// FedProx proximal term mu sent to clients (fedprox only).
    #[arg(long, default_value_t = STRATEGY.prox_mu)]
    pub prox_mu: f64,

    /// Trimmed mean: fraction cut at each end, in [0, 0.5).
    #[arg(long, default_value_t = STRATEGY.trim_beta)]
    pub trim_beta: f64,

    /// Krum: number of Byzantine clients tolerated (a round needs >= 2f+3 updates).
    #[arg(long, default_value_t = STRATEGY.krum_f)]
    pub krum_f: usize,
}

impl From<&StrategyFlags> for StrategyConfig {
    fn from(f: &StrategyFlags) -> Self {
        StrategyConfig {
            kind: f.strategy,
            server_lr: f.server_lr,
            prox_mu: f.prox_mu,
            trim_beta: f.trim_beta,
            krum_f: f.krum_f,
            beta1: f.beta1,
            beta2: f.beta2,
            tau: f.tau,
        }
    }
}

impl Args {
    /// The server's settings: every flag but `--bind`, which only `main` uses.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            init: self.init.clone(),
            state_dir: self.state_dir.clone(),
            strategy: StrategyConfig::from(&self.strategy),
            min_clients: self.min_clients,
            target_clients: self.target_clients,
            over_selection: self.over_selection,
            round_deadline_secs: self.round_deadline_secs,
            rounds: self.rounds,
            local_epochs: self.local_epochs,
            client_lr: self.client_lr,
            batch_size: self.batch_size,
            max_examples: self.max_examples,
            clip_norm: (!self.no_clip).then_some(self.clip_norm),
            noise_multiplier: self.noise_multiplier,
            dp_delta: self.dp_delta,
            seed: self.seed,
            max_body_bytes: self.max_body_bytes,
            max_clients: self.max_clients,
            allow_origin: self.allow_origin.clone(),
            max_weight_ratio: self.max_weight_ratio,
            token_ttl_secs: self.token_ttl_secs,
            max_joins_per_minute: self.max_joins_per_minute,
            request_timeout_secs: self.request_timeout_secs,
            secure_aggregation: self.secure_aggregation.then_some(SecAggSettings {
                threshold: self.secagg_threshold,
                neighbours: self.secagg_neighbours,
                phase_secs: self.secagg_phase_secs,
            }),
            buffered: self.buffered.map(|k| BufferedSettings {
                k,
                max_staleness: self.max_staleness.unwrap_or(DEFAULT_MAX_STALENESS),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn strategy_flag_values_are_the_strategy_names() {
        for kind in StrategyKind::ALL {
            let value = kind.to_possible_value().expect("no variant is skipped");
            assert_eq!(value.get_name(), kind.name());
        }
        assert_eq!(StrategyKind::value_variants(), StrategyKind::ALL);
    }

    #[test]
    fn flags_reach_the_server_config() {
        let args = Args::try_parse_from([
            "websr-aggregator",
            "--strategy",
            "trimmed-mean",
            "--trim-beta",
            "0.2",
            "--min-clients",
            "3",
            "--allow-origin",
            "*",
        ])
        .unwrap();
        let config = args.server_config();
        assert_eq!(
            config.strategy,
            StrategyConfig {
                kind: StrategyKind::TrimmedMean,
                trim_beta: 0.2,
                ..StrategyConfig::DEFAULT
            }
        );
        assert_eq!(config.min_clients, 3);
        assert_eq!(config.allow_origin, ["*"]);
        assert_eq!(config.init, PathBuf::from(DEFAULT_INIT));
    }

    #[test]
    fn the_flags_parse() {
        <Args as clap::CommandFactory>::command().debug_assert();
    }
}
