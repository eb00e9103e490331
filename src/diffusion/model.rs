//! [`DiffusionModel`]: one type for a trained SR3 or DiWa, as [`crate::SrModel`] is for the
//! one-pass models. Its [`DiffusionSpec`] (kind, U-Net, predictor, noise schedule, YODA) travels
//! as JSON in the safetensors metadata under the format `websr-diffusion`, so a weights file
//! rebuilds its network and its schedule with nothing else.

use super::diwa::{DiWa, DiWaConfig};
use super::sampler::{Sampler, SamplingRun};
use super::schedule::NoiseSchedule;
use super::sr3::{Sr3, Sr3Config};
use super::unet::UNetConfig;
use super::yoda::{Yoda, YodaConfig};
use crate::error::{Result, WebSrError};
use crate::weights::{self, DIFFUSION_FORMAT};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which diffusion model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiffusionKind {
    /// Pixel-domain diffusion conditioned on the bicubic upscale.
    Sr3,
    /// Wavelet-domain diffusion of an initial predictor's residual.
    #[serde(rename = "diwa")]
    DiWa,
}

impl DiffusionKind {
    pub fn name(self) -> &'static str {
        match self {
            DiffusionKind::Sr3 => "sr3",
            DiffusionKind::DiWa => "diwa",
        }
    }

    pub fn parse(s: &str) -> Result<DiffusionKind> {
        match s {
            "sr3" => Ok(DiffusionKind::Sr3),
            "diwa" => Ok(DiffusionKind::DiWa),
            _ => Err(WebSrError::Invalid(format!(
                "unknown diffusion model '{s}' (known: sr3, diwa)"
            ))),
        }
    }
}

/// The U-Net's shape ([`UNetConfig`] without the channel counts, which the kind fixes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UNetSpec {
    pub inner_channels: usize,
    pub channel_mults: Vec<usize>,
    pub res_blocks: usize,
    pub norm_groups: usize,
    pub dropout: f64,
    pub attention: bool,
}

/// DiWa's initial predictor (DWSR's stack on sub-bands).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PredictorSpec {
    pub features: usize,
    pub layers: usize,
}

/// The training noise schedule, which sampling subsamples (DDIM) or walks fully (DDPM).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ScheduleSpec {
    Linear {
        steps: usize,
        beta_start: f64,
        beta_end: f64,
    },
    Cosine {
        steps: usize,
        s: f64,
    },
}

impl ScheduleSpec {
    pub fn build(&self) -> NoiseSchedule {
        match *self {
            ScheduleSpec::Linear {
                steps,
                beta_start,
                beta_end,
            } => NoiseSchedule::linear(steps, beta_start, beta_end),
            ScheduleSpec::Cosine { steps, s } => NoiseSchedule::cosine(steps, s),
        }
    }

    fn steps(&self) -> usize {
        match *self {
            ScheduleSpec::Linear { steps, .. } | ScheduleSpec::Cosine { steps, .. } => steps,
        }
    }
}

/// YODA's settings, when the model was trained with its masked loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct YodaSpec {
    pub delta: f64,
    pub levels: usize,
}

impl YodaSpec {
    pub fn config(&self) -> YodaConfig {
        YodaConfig::new()
            .with_delta(self.delta)
            .with_levels(self.levels)
    }
}

impl Default for YodaSpec {
    fn default() -> Self {
        let c = YodaConfig::new();
        YodaSpec {
            delta: c.delta,
            levels: c.levels,
        }
    }
}

/// Everything needed to rebuild a diffusion model before loading its weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffusionSpec {
    pub kind: DiffusionKind,
    pub scale: usize,
    pub unet: UNetSpec,
    /// DiWa only.
    pub predictor: Option<PredictorSpec>,
    pub schedule: ScheduleSpec,
    /// Set when trained with YODA's masked loss; sampling with YODA then uses these settings.
    pub yoda: Option<YodaSpec>,
    /// DiWa: train the initial predictor also with its own L1 error `|DWT(HR) - x_init|`, not
    /// only through the noise loss (DiWa's code has no such term). YODA needs it: outside its
    /// mask the residual stays zero until the last steps, so the output there is `x_init`, and
    /// the masked noise loss alone trained a predictor far below bicubic (see the README).
    #[serde(default)]
    pub predictor_l1: bool,
}

impl DiffusionSpec {
    /// websr's browser-sized default: a 3-level U-Net of width 32 (1, 2, 2), DiWa's linear
    /// schedule (`T = 2000`, beta 1e-6 to 1e-2) and, for DiWa, a 32-wide 4-layer predictor.
    /// The same U-Net for both kinds keeps the SR3/DiWa comparison at equal budget.
    pub fn default_for(kind: DiffusionKind, scale: usize) -> DiffusionSpec {
        DiffusionSpec {
            kind,
            scale,
            unet: UNetSpec {
                inner_channels: 32,
                channel_mults: vec![1, 2, 2],
                res_blocks: 1,
                norm_groups: 8,
                dropout: 0.0,
                attention: false,
            },
            predictor: (kind == DiffusionKind::DiWa).then_some(PredictorSpec {
                features: 32,
                layers: 4,
            }),
            schedule: ScheduleSpec::Linear {
                steps: 2000,
                beta_start: 1e-6,
                beta_end: 1e-2,
            },
            yoda: None,
            predictor_l1: false,
        }
    }

    /// Bounds that keep a hostile file from asking for an absurd network or schedule.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(WebSrError::Invalid(m));
        if !matches!(self.scale, 2 | 4) {
            return Err(WebSrError::Scale(self.scale as u32, "2, 4".into()));
        }
        let u = &self.unet;
        if u.inner_channels == 0 || u.inner_channels > 256 || !u.inner_channels.is_multiple_of(2) {
            return bad(format!(
                "U-Net width must be even and in 2..=256, got {}",
                u.inner_channels
            ));
        }
        if u.norm_groups == 0 || !u.inner_channels.is_multiple_of(u.norm_groups) {
            return bad(format!(
                "GroupNorm groups ({}) must divide the U-Net width ({})",
                u.norm_groups, u.inner_channels
            ));
        }
        let widths_ok = u
            .channel_mults
            .iter()
            .all(|&m| (1..=8).contains(&m) && (m * u.inner_channels).is_multiple_of(u.norm_groups));
        if u.channel_mults.is_empty() || u.channel_mults.len() > 6 || !widths_ok {
            return bad(format!(
                "channel multipliers must be 1 to 6 values in 1..=8 whose widths the groups \
                 divide, got {:?}",
                u.channel_mults
            ));
        }
        if u.res_blocks == 0 || u.res_blocks > 4 || !(0.0..1.0).contains(&u.dropout) {
            return bad("res_blocks must be 1..=4 and dropout in [0, 1)".into());
        }
        match (self.kind, &self.predictor) {
            (DiffusionKind::DiWa, Some(p))
                if p.features == 0 || p.features > 256 || p.layers > 32 =>
            {
                return bad(format!("predictor {p:?} is out of bounds"));
            }
            (DiffusionKind::DiWa, None) => return bad("DiWa needs its initial predictor".into()),
            (DiffusionKind::Sr3, Some(_)) => return bad("SR3 has no initial predictor".into()),
            (DiffusionKind::Sr3, None) if self.predictor_l1 => {
                return bad("SR3 has no initial predictor to train with an L1".into());
            }
            _ => {}
        }
        let steps = self.schedule.steps();
        let betas_ok = match self.schedule {
            ScheduleSpec::Linear {
                beta_start,
                beta_end,
                ..
            } => [beta_start, beta_end].iter().all(|b| *b > 0.0 && *b < 1.0),
            ScheduleSpec::Cosine { s, .. } => (0.0..1.0).contains(&s),
        };
        if steps == 0 || steps > 10_000 || !betas_ok {
            return bad(format!("schedule {:?} is out of bounds", self.schedule));
        }
        if let Some(y) = &self.yoda {
            if !(0.0..=1.0).contains(&y.delta) || y.levels == 0 || y.levels > 6 {
                return bad(format!("YODA settings {y:?} are out of bounds"));
            }
        }
        Ok(())
    }

    /// `"sr3"`, `"diwa"` or `"diwa+yoda"`: how tables name the model.
    pub fn label(&self) -> String {
        match self.yoda {
            Some(_) => format!("{}+yoda", self.kind.name()),
            None => self.kind.name().to_string(),
        }
    }

    fn unet_config(&self) -> UNetConfig {
        let (i, o) = match self.kind {
            DiffusionKind::Sr3 => (6, 3),
            DiffusionKind::DiWa => (24, 12),
        };
        let u = &self.unet;
        UNetConfig::new(i, o)
            .with_inner_channels(u.inner_channels)
            .with_channel_mults(u.channel_mults.clone())
            .with_res_blocks(u.res_blocks)
            .with_norm_groups(u.norm_groups)
            .with_dropout(u.dropout)
            .with_attention(u.attention)
    }

    /// Height and width of the diffused signal must be multiples of this: the U-Net halves them
    /// `levels - 1` times, and DiWa diffuses at half the HR size.
    pub fn hr_multiple(&self) -> usize {
        let unet = 1 << (self.unet.channel_mults.len() - 1);
        match self.kind {
            DiffusionKind::Sr3 => unet,
            DiffusionKind::DiWa => 2 * unet,
        }
    }
}

/// The network behind a spec: one module type to train, save and load.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum DiffusionNet {
    Sr3(Sr3),
    DiWa(DiWa),
}

/// How to sample.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOptions {
    /// DDIM steps; `None` walks every index of the schedule with DDPM.
    pub steps: Option<usize>,
    /// DDIM's eta (0: deterministic given the seed's initial noise).
    pub eta: f64,
    pub seed: u64,
    /// Guide with YODA: the model's own settings, or the defaults when it was trained without.
    pub yoda: bool,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            steps: Some(50),
            eta: 0.0,
            seed: 0,
            yoda: false,
        }
    }
}

impl SampleOptions {
    pub fn sampler(&self) -> Sampler {
        match self.steps {
            Some(steps) => Sampler::Ddim {
                steps: steps.max(1),
                eta: self.eta,
            },
            None => Sampler::Ddpm,
        }
    }
}

/// A diffusion SR model ready for sampling or training.
#[derive(Clone, Debug)]
pub struct DiffusionModel {
    pub spec: DiffusionSpec,
    pub net: DiffusionNet,
    schedule: NoiseSchedule,
}

impl DiffusionModel {
    /// A freshly initialised model.
    pub fn init(spec: DiffusionSpec, device: &Device) -> Result<DiffusionModel> {
        spec.validate()?;
        let net = match spec.kind {
            DiffusionKind::Sr3 => DiffusionNet::Sr3(
                Sr3Config::new(spec.scale)
                    .with_unet(spec.unet_config())
                    .init(device),
            ),
            DiffusionKind::DiWa => {
                let p = spec.predictor.clone().expect("validated");
                DiffusionNet::DiWa(
                    DiWaConfig::new(spec.scale)
                        .with_unet(spec.unet_config())
                        .with_predictor_features(p.features)
                        .with_predictor_layers(p.layers)
                        .init(device),
                )
            }
        };
        Ok(DiffusionModel {
            schedule: spec.schedule.build(),
            spec,
            net,
        })
    }

    /// [`DiffusionModel::init`] with reproducible weights (see [`crate::SrModel::init_seeded`]).
    pub fn init_seeded(spec: DiffusionSpec, device: &Device, seed: u64) -> Result<DiffusionModel> {
        crate::device::with_seeded_device(device, seed, || DiffusionModel::init(spec, device))
    }

    /// The same spec and schedule with another network (after an optimiser step, or `valid()`).
    pub fn with_net(&self, net: DiffusionNet) -> DiffusionModel {
        DiffusionModel {
            spec: self.spec.clone(),
            net,
            schedule: self.schedule.clone(),
        }
    }

    pub fn scale(&self) -> usize {
        self.spec.scale
    }

    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    pub fn num_params(&self) -> usize {
        self.net.num_params()
    }

    /// `[h, w]` of the diffused signal for an `h x w` LR input.
    pub fn diffused_size(&self, h: usize, w: usize) -> [usize; 2] {
        match &self.net {
            DiffusionNet::Sr3(m) => m.diffused_size(h, w),
            DiffusionNet::DiWa(m) => m.diffused_size(h, w),
        }
    }

    /// YODA for `lr` with this model's settings (or the defaults).
    fn yoda_for(&self, lr: &Tensor<4>) -> Yoda {
        let [_, _, h, w] = lr.dims();
        let config = self.spec.yoda.clone().unwrap_or_default().config();
        Yoda::from_lr(lr.clone(), self.diffused_size(h, w), &config)
    }

    /// The training loss on a batch (`lr` and `hr` in `[0, 1]`): the noise-prediction L1,
    /// YODA-masked when the spec says so.
    pub fn loss(&self, lr: Tensor<4>, hr: Tensor<4>, rng: &mut impl Rng) -> Tensor<1> {
        let yoda = self.spec.yoda.is_some().then(|| self.yoda_for(&lr));
        match &self.net {
            DiffusionNet::Sr3(m) => m.loss(lr, hr, &self.schedule, rng, yoda.as_ref()),
            DiffusionNet::DiWa(m) => {
                let (noise, residual) = m.loss_terms(lr, hr, &self.schedule, rng, yoda.as_ref());
                match self.spec.predictor_l1 {
                    true => noise + residual,
                    false => noise,
                }
            }
        }
    }

    /// Starts sampling `lr` (`[N, 3, h, w]` in `[0, 1]`); advance it with
    /// [`DiffusionModel::step`].
    pub fn start_sampling(&self, lr: Tensor<4>, opts: &SampleOptions) -> SamplingRun {
        let yoda = opts.yoda.then(|| self.yoda_for(&lr));
        let (schedule, sampler) = (&self.schedule, opts.sampler());
        match &self.net {
            DiffusionNet::Sr3(m) => {
                m.start_sampling(lr, schedule, sampler, opts.seed, yoda.as_ref())
            }
            DiffusionNet::DiWa(m) => {
                m.start_sampling(lr, schedule, sampler, opts.seed, yoda.as_ref())
            }
        }
    }

    /// DiWa's initial prediction alone as an image in `[0, 1]`; `None` for SR3.
    pub fn initial_prediction(&self, lr: Tensor<4>) -> Option<Tensor<4>> {
        match &self.net {
            DiffusionNet::Sr3(_) => None,
            DiffusionNet::DiWa(m) => Some(m.initial_prediction(lr)),
        }
    }

    /// One network evaluation of `run`.
    pub fn step(&self, run: &mut SamplingRun) {
        match &self.net {
            DiffusionNet::Sr3(m) => run.step(|c, y, g| m.predict_noise(c, y, g)),
            DiffusionNet::DiWa(m) => run.step(|c, y, g| m.predict_noise(c, y, g)),
        }
    }

    /// The whole sample, `[N, 3, scale h, scale w]` in `[0, 1]`.
    pub fn sample(&self, lr: Tensor<4>, opts: &SampleOptions) -> Tensor<4> {
        let mut run = self.start_sampling(lr, opts);
        while !run.is_done() {
            self.step(&mut run);
        }
        run.finish()
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let spec = serde_json::to_string(&self.spec).expect("spec serialises");
        weights::module_to_bytes(&self.net, DIFFUSION_FORMAT, spec)
    }

    /// Reads the spec from a file's header.
    pub fn read_spec(bytes: &[u8]) -> Result<DiffusionSpec> {
        let json = weights::read_spec_json(bytes, DIFFUSION_FORMAT)?;
        let spec: DiffusionSpec = serde_json::from_str(&json)
            .map_err(|e| WebSrError::Weights(format!("bad diffusion spec in metadata: {e}")))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Rebuilds a model from safetensors bytes, strictly (see [`crate::weights`]).
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<DiffusionModel> {
        let spec = Self::read_spec(bytes)?;
        let what = format!(
            "a {} x{} model (U-Net width {})",
            spec.label(),
            spec.scale,
            spec.unet.inner_channels
        );
        let mut model = DiffusionModel::init(spec, device)?;
        weights::load_module(&mut model.net, bytes, &what)?;
        Ok(model)
    }

    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        weights::write_atomic(path.as_ref(), &self.to_bytes()?)
    }

    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<DiffusionModel> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| WebSrError::io(path, e))?;
        Self::from_bytes(&bytes, device)
            .map_err(|e| WebSrError::Weights(format!("{}: {e}", path.display())))
    }
}
