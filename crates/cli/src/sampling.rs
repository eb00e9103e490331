//! How a diffusion model samples (`--steps`, `--seed`, `--eta`, `--yoda`), shared by the
//! commands that run models; refused for one-pass models.

use anyhow::{bail, Result};
use websr::diffusion::SampleOptions;
use websr::Model;

/// The sampling flags.
#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Diffusion models: DDIM steps (0: every step of the schedule with DDPM). Default 50.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Diffusion models: the seed of the noise; the same seed and steps give the same image.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Diffusion models: DDIM's eta (0 is deterministic given the seed).
    #[arg(long)]
    pub eta: Option<f64>,
    /// Diffusion models: guide sampling with YODA (detail-energy importance map).
    #[arg(long)]
    pub yoda: bool,
}

impl SamplingArgs {
    fn given(&self) -> bool {
        self.steps.is_some() || self.seed.is_some() || self.eta.is_some() || self.yoda
    }

    /// The options these flags give, with `default_steps` when `--steps` is absent.
    pub fn options(&self, default_steps: usize) -> Result<SampleOptions> {
        let eta = self.eta.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&eta) {
            bail!("--eta must lie in [0, 1]");
        }
        Ok(SampleOptions {
            steps: match self.steps.unwrap_or(default_steps) {
                0 => None,
                n => Some(n),
            },
            eta,
            seed: self.seed.unwrap_or(0),
            yoda: self.yoda,
        })
    }

    /// The sampling options for `model` (`name` on the command line): an error when sampling
    /// flags are given for a model that is not sampled.
    pub fn for_model(
        &self,
        model: Option<&Model>,
        name: &str,
        default_steps: usize,
    ) -> Result<SampleOptions> {
        match model {
            Some(Model::Diffusion(_)) => self.options(default_steps),
            _ if self.given() => bail!(
                "--steps, --seed, --eta and --yoda are for diffusion models; {name} is not one"
            ),
            _ => Ok(SampleOptions::default()),
        }
    }
}

/// "20 DDIM steps (eta 0), seed 7, YODA": how a sampling run is described in titles and logs.
pub fn describe(opts: &SampleOptions) -> String {
    let steps = match opts.steps {
        Some(n) => format!("{n} DDIM steps (eta {})", opts.eta),
        None => "DDPM, every step".to_string(),
    };
    let yoda = if opts.yoda { ", YODA" } else { "" };
    format!("{steps}, seed {}{yoda}", opts.seed)
}
