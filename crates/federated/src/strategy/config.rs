//! Which strategy to run and with what hyper-parameters: one plain value that the aggregator
//! (from its flags) and `websr fl-sim` both build their [`Strategy`] from.

use super::{Adaptive, FedAdam, FedAvg, FedProx, FedYogi, Krum, Median, Strategy, TrimmedMean};

/// Aggregation rule, chosen with `--strategy`.
///
/// The variant docs are also the aggregator's `--help` text (with the `clap` feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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

impl StrategyKind {
    /// Every strategy, in the order of the `--help` list.
    pub const ALL: [StrategyKind; 7] = [
        StrategyKind::Fedavg,
        StrategyKind::Fedprox,
        StrategyKind::Fedadam,
        StrategyKind::Fedyogi,
        StrategyKind::Median,
        StrategyKind::TrimmedMean,
        StrategyKind::Krum,
    ];

    /// The name on the command line and in the round config ([`Strategy::name`]).
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::Fedavg => "fedavg",
            StrategyKind::Fedprox => "fedprox",
            StrategyKind::Fedadam => "fedadam",
            StrategyKind::Fedyogi => "fedyogi",
            StrategyKind::Median => "median",
            StrategyKind::TrimmedMean => "trimmed-mean",
            StrategyKind::Krum => "krum",
        }
    }

    /// The strategy called `name` (exact, lower case), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the strategy combines the updates with the (weighted) mean, the statistic that
    /// the server's Gaussian noise is calibrated for ([`crate::dp::noise_std`]).
    pub fn aggregates_by_mean(self) -> bool {
        matches!(
            self,
            StrategyKind::Fedavg
                | StrategyKind::Fedprox
                | StrategyKind::Fedadam
                | StrategyKind::Fedyogi
        )
    }
}

/// A strategy and all its hyper-parameters; [`StrategyConfig::build`] makes the [`Strategy`].
/// Each field is used only by the strategies named in its doc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StrategyConfig {
    pub kind: StrategyKind,
    /// Server learning rate `eta`: the step on the aggregated delta (all strategies).
    pub server_lr: f64,
    /// Proximal term `mu` the clients add (fedprox).
    pub prox_mu: f64,
    /// Fraction cut at each end, in `[0, 0.5)` (trimmed-mean).
    pub trim_beta: f64,
    /// Byzantine clients tolerated; a round needs `2f + 3` updates (krum).
    pub krum_f: usize,
    /// First-moment decay, in `[0, 1)` (fedadam, fedyogi).
    pub beta1: f64,
    /// Second-moment decay, in `[0, 1)` (fedadam, fedyogi).
    pub beta2: f64,
    /// Adaptivity `tau`; the second moment starts at `tau^2` (fedadam, fedyogi).
    pub tau: f64,
}

impl StrategyConfig {
    /// FedAvg with the aggregator's default hyper-parameters (also its flags' defaults).
    pub const DEFAULT: StrategyConfig = StrategyConfig {
        kind: StrategyKind::Fedavg,
        server_lr: 1.0,
        prox_mu: 0.01,
        trim_beta: 0.1,
        krum_f: 1,
        beta1: 0.9,
        beta2: 0.99,
        tau: 1e-3,
    };

    /// Checks the hyper-parameters; the message names the aggregator's flag.
    pub fn validate(&self) -> Result<(), StrategyConfigError> {
        if !(0.0..0.5).contains(&self.trim_beta) {
            return Err(StrategyConfigError::TrimBeta);
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return Err(StrategyConfigError::Betas);
        }
        if self.tau <= 0.0 || self.server_lr <= 0.0 || self.prox_mu < 0.0 {
            return Err(StrategyConfigError::Signs);
        }
        Ok(())
    }

    /// The strategy, with the fields its kind uses.
    pub fn build(&self) -> Box<dyn Strategy> {
        let server_lr = self.server_lr;
        let adaptive = Adaptive {
            eta: server_lr,
            beta1: self.beta1,
            beta2: self.beta2,
            tau: self.tau,
        };
        match self.kind {
            StrategyKind::Fedavg => Box::new(FedAvg { server_lr }),
            StrategyKind::Fedprox => Box::new(FedProx {
                mu: self.prox_mu,
                server_lr,
            }),
            StrategyKind::Fedadam => Box::new(FedAdam(adaptive)),
            StrategyKind::Fedyogi => Box::new(FedYogi(adaptive)),
            StrategyKind::Median => Box::new(Median { server_lr }),
            StrategyKind::TrimmedMean => Box::new(TrimmedMean {
                beta: self.trim_beta,
                server_lr,
            }),
            StrategyKind::Krum => Box::new(Krum {
                f: self.krum_f,
                server_lr,
            }),
        }
    }
}

impl Default for StrategyConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A hyper-parameter out of range. The messages name the aggregator's flags, the only place
/// where a user sets all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StrategyConfigError {
    #[error("--trim-beta must be in [0, 0.5)")]
    TrimBeta,
    #[error("--beta1 and --beta2 must be in [0, 1)")]
    Betas,
    #[error("--tau and --server-lr must be > 0, --prox-mu >= 0")]
    Signs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_builds_the_strategy_of_its_name() {
        for kind in StrategyKind::ALL {
            let config = StrategyConfig {
                kind,
                ..StrategyConfig::DEFAULT
            };
            assert_eq!(config.build().name(), kind.name());
            assert_eq!(StrategyKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(StrategyKind::from_name("FedAvg"), None);
    }

    #[test]
    fn hyper_parameters_reach_the_strategy() {
        let config = StrategyConfig {
            kind: StrategyKind::Fedprox,
            prox_mu: 0.5,
            ..StrategyConfig::DEFAULT
        };
        assert_eq!(config.build().client_config().prox_mu, 0.5);
        let krum = StrategyConfig {
            kind: StrategyKind::Krum,
            krum_f: 2,
            ..StrategyConfig::DEFAULT
        };
        assert_eq!(krum.build().min_updates(), 7);
    }

    #[test]
    fn out_of_range_hyper_parameters_are_refused() {
        assert_eq!(StrategyConfig::DEFAULT.validate(), Ok(()));
        let refused = |edit: fn(&mut StrategyConfig)| {
            let mut config = StrategyConfig::DEFAULT;
            edit(&mut config);
            config.validate().unwrap_err()
        };
        assert_eq!(
            refused(|c| c.trim_beta = 0.5),
            StrategyConfigError::TrimBeta
        );
        assert_eq!(refused(|c| c.beta2 = 1.0), StrategyConfigError::Betas);
        assert_eq!(refused(|c| c.tau = 0.0), StrategyConfigError::Signs);
        assert_eq!(refused(|c| c.prox_mu = -0.1), StrategyConfigError::Signs);
    }
}
