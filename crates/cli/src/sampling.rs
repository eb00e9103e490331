//! How a diffusion model samples (`--steps`, `--seed`, `--eta`, `--yoda`, `--strength`,
//! `--diffusion-tile`), shared by the
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
    /// Diffusion models: the fraction of the noise schedule walked back, in (0, 1]. Below 1 the
    /// run starts from the model's guess (DiWa: its initial prediction) noised to that level.
    /// Default: the model's own (its card), else 1.
    #[arg(long)]
    pub strength: Option<f64>,
    /// Diffusion models: sample in tiles of this many LR pixels a side (default: the whole
    /// image up to 256x256 pixels, tiles of 128 above).
    #[arg(long)]
    pub diffusion_tile: Option<usize>,
}

impl SamplingArgs {
    fn given(&self) -> bool {
        self.steps.is_some()
            || self.seed.is_some()
            || self.eta.is_some()
            || self.yoda
            || self.strength.is_some()
            || self.diffusion_tile.is_some()
    }

    /// The options these flags give over `defaults` (a model's own, for what is not given).
    pub fn options(&self, defaults: &SampleOptions) -> Result<SampleOptions> {
        let eta = self.eta.unwrap_or(defaults.eta);
        if !(0.0..=1.0).contains(&eta) {
            bail!("--eta must lie in [0, 1]");
        }
        let opts = SampleOptions {
            steps: match self.steps {
                Some(0) => None,
                Some(n) => Some(n),
                None => defaults.steps,
            },
            eta,
            seed: self.seed.unwrap_or(defaults.seed),
            yoda: self.yoda || defaults.yoda,
            strength: self.strength.unwrap_or(defaults.strength),
            tile: self.diffusion_tile.or(defaults.tile),
        };
        opts.validate()?;
        Ok(opts)
    }

    /// The sampling options for `model` (`name` on the command line) over the model's own
    /// defaults: an error when sampling flags are given for a model that is not sampled.
    pub fn for_model(&self, model: Option<&Model>, name: &str) -> Result<SampleOptions> {
        match model {
            Some(Model::Diffusion(d)) => self.options(&d.default_options()),
            _ if self.given() => bail!(
                "--steps, --seed, --eta, --yoda, --strength and --diffusion-tile are for diffusion \
                 models; {name} is not one"
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
    let strength = match opts.strength < 1.0 {
        true => format!(", strength {}", opts.strength),
        false => String::new(),
    };
    format!("{steps}{strength}, seed {}{yoda}", opts.seed)
}
