//! [`DiffusionModel`]: one type for a trained SR3 or DiWa, as [`crate::SrModel`] is for the
//! one-pass models. Its [`DiffusionSpec`] (kind, U-Net, predictor, noise schedule, YODA) travels
//! as JSON in the safetensors metadata under the format `websr-diffusion`, so a weights file
//! rebuilds its network and its schedule with nothing else.

use super::diwa::{DiWa, DiWaConfig, Predictor};
use super::sampler::{truncated_start, RunPlan, Sampler, SamplingRun, Window};
use super::schedule::NoiseSchedule;
use super::sr3::{Sr3, Sr3Config};
use super::unet::UNetConfig;
use super::yoda::{detail_importance, Yoda, YodaConfig};
use crate::error::{Result, WebSrError};
use crate::models::{ModelSpec, SrModel};
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

/// DiWa's initial predictor. Untagged, so files written before [`PredictorSpec::Frozen`] existed
/// (`{"features": .., "layers": ..}`) still read as [`PredictorSpec::Joint`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PredictorSpec {
    /// DiWa's own DWSR-shaped stack on the sub-bands, trained with the diffusion.
    Joint { features: usize, layers: usize },
    /// A trained one-pass model, frozen; its weights travel in the same file (`predictor.*`).
    Frozen { one_pass: ModelSpec },
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
    /// DiWa: `k`, the diffused signal is `k (DWT(HR) - x_init)` (1 in files written before it
    /// existed). A frozen strong predictor leaves a residual of a few hundredths, which `k`
    /// brings to the signal level the noise schedule is made for.
    #[serde(default = "one")]
    pub residual_scale: f64,
    /// How the model samples unless told otherwise: chosen from its measured trade-off
    /// (`websr tune-diffusion`) and recorded when shipped (`websr ship --steps --strength`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_sampling: Option<DefaultSampling>,
}

/// A model's own sampling defaults (DDIM, eta 0).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DefaultSampling {
    pub steps: usize,
    pub strength: f64,
}

fn one() -> f64 {
    1.0
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
            predictor: (kind == DiffusionKind::DiWa).then_some(PredictorSpec::Joint {
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
            residual_scale: 1.0,
            default_sampling: None,
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
            (DiffusionKind::DiWa, Some(PredictorSpec::Joint { features, layers }))
                if *features == 0 || *features > 256 || *layers > 32 =>
            {
                return bad(format!("predictor {:?} is out of bounds", self.predictor));
            }
            (DiffusionKind::DiWa, Some(PredictorSpec::Frozen { one_pass })) => {
                one_pass.validate()?;
                if one_pass.scale != self.scale {
                    return bad(format!(
                        "the frozen predictor is x{}, the model x{}",
                        one_pass.scale, self.scale
                    ));
                }
                if self.predictor_l1 {
                    return bad("a frozen predictor is not trained: no predictor L1".into());
                }
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
        if !(self.residual_scale.is_finite()
            && self.residual_scale > 0.0
            && self.residual_scale <= 1e4)
        {
            return bad(format!(
                "residual scale must be in (0, 1e4], got {}",
                self.residual_scale
            ));
        }
        if let Some(d) = &self.default_sampling {
            if d.steps == 0 || d.steps > 1000 || !(d.strength > 0.0 && d.strength <= 1.0) {
                return bad(format!("default sampling {d:?} is out of bounds"));
            }
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
    /// The fraction of the noise schedule walked back, in `(0, 1]`: 1 starts from pure noise;
    /// below 1 the run starts from its prior guess (DiWa: the initial prediction; SR3: the
    /// bicubic) noised to that level, so few steps cover a short distance and the result keeps
    /// closer to the guess.
    pub strength: f64,
    /// Sample in tiles of this many LR pixels a side (with overlap, blended), each drawing the
    /// noise the whole image has there; `None`: the whole image at once up to
    /// [`super::upscale::MAX_LR_PIXELS`], tiles of [`super::upscale::DEFAULT_TILE`] above.
    pub tile: Option<usize>,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            steps: Some(50),
            eta: 0.0,
            seed: 0,
            yoda: false,
            strength: 1.0,
            tile: None,
        }
    }
}

impl SampleOptions {
    /// Bounds: `strength` in `(0, 1]`, a tile of at least 8 pixels.
    pub fn validate(&self) -> Result<()> {
        if !(self.strength > 0.0 && self.strength <= 1.0) {
            return Err(WebSrError::Invalid(format!(
                "strength must be in (0, 1], got {}",
                self.strength
            )));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(WebSrError::Invalid(format!(
                "eta must be in [0, 1], got {}",
                self.eta
            )));
        }
        if matches!(self.tile, Some(t) if t < 8) {
            return Err(WebSrError::Invalid(
                "a diffusion tile must be at least 8 pixels".into(),
            ));
        }
        Ok(())
    }

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

/// A tile's slice of the whole image's YODA importance map, and its largest value once read
/// back (which lets the tile skip the steps whose mask is empty).
#[derive(Clone, Debug)]
pub struct TileImportance {
    pub map: Tensor<4>,
    pub max: Option<f32>,
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
                let config = DiWaConfig::new(spec.scale).with_unet(spec.unet_config());
                DiffusionNet::DiWa(match spec.predictor.clone().expect("validated") {
                    PredictorSpec::Joint { features, layers } => config
                        .with_predictor_features(features)
                        .with_predictor_layers(layers)
                        .init(device),
                    PredictorSpec::Frozen { one_pass } => {
                        let net = SrModel::init(one_pass, device)?.net;
                        config.init_with(Predictor::Frozen(net), spec.residual_scale, device)
                    }
                })
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

    /// A fresh DiWa (seeded like [`DiffusionModel::init_seeded`]) on top of a trained one-pass
    /// model, frozen: `spec.predictor` becomes [`PredictorSpec::Frozen`] with `predictor`'s spec
    /// and the new model carries its weights.
    pub fn on_frozen_predictor(
        mut spec: DiffusionSpec,
        predictor: SrModel,
        device: &Device,
        seed: u64,
    ) -> Result<DiffusionModel> {
        if spec.kind != DiffusionKind::DiWa {
            return Err(WebSrError::Invalid(
                "only DiWa diffuses the residual of an initial predictor".into(),
            ));
        }
        spec.predictor = Some(PredictorSpec::Frozen {
            one_pass: predictor.spec.clone(),
        });
        let model = DiffusionModel::init_seeded(spec, device, seed)?;
        let DiffusionNet::DiWa(diwa) = model.net else {
            unreachable!("the spec is DiWa's")
        };
        let net = DiffusionNet::DiWa(diwa.with_predictor(Predictor::Frozen(predictor.net)));
        Ok(DiffusionModel {
            spec: model.spec,
            net,
            schedule: model.schedule,
        })
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

    /// How this model samples unless told otherwise: its recorded defaults
    /// ([`DiffusionSpec::default_sampling`]) or [`SampleOptions::default`], with YODA when it was
    /// trained with YODA; seed 0, eta 0.
    pub fn default_options(&self) -> SampleOptions {
        let base = SampleOptions {
            yoda: self.spec.yoda.is_some(),
            ..SampleOptions::default()
        };
        match self.spec.default_sampling {
            Some(d) => SampleOptions {
                steps: Some(d.steps),
                strength: d.strength,
                ..base
            },
            None => base,
        }
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
        Yoda::from_lr(lr.clone(), self.diffused_size(h, w), &self.yoda_config())
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
        self.start_sampling_window(lr, opts, None, None)
    }

    /// Network evaluations of a run with `opts` (without YODA's skips).
    pub fn steps_for(&self, opts: &SampleOptions) -> usize {
        let last = self.schedule.len() - 1;
        let first = truncated_start(&self.schedule, opts.strength).unwrap_or(last);
        opts.sampler().transitions_from(&self.schedule, first).len()
    }

    /// YODA's importance map of a whole image `lr` at the diffused size (this model's settings
    /// or the defaults), `[N, 1, h, w]` in `[0, 1]`: what tiles slice.
    pub fn importance_map(&self, lr: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = lr.dims();
        let config = self.yoda_config();
        detail_importance(lr, self.diffused_size(h, w), config.levels)
    }

    fn yoda_config(&self) -> YodaConfig {
        self.spec.yoda.clone().unwrap_or_default().config()
    }

    /// [`DiffusionModel::start_sampling`] for a tile: `lr_window` places `lr` in the whole LR
    /// image (LR pixels), so the run draws the noise the whole image has there; `importance`
    /// (with YODA) is the tile's slice of the whole image's map, so that tiles share one
    /// normalisation and a tile of little detail skips the steps its mask leaves empty.
    pub fn start_sampling_window(
        &self,
        lr: Tensor<4>,
        opts: &SampleOptions,
        lr_window: Option<Window>,
        importance: Option<TileImportance>,
    ) -> SamplingRun {
        let max_importance = importance.as_ref().and_then(|t| t.max);
        let yoda = opts.yoda.then(|| match importance {
            Some(t) => Yoda::from_map(t.map, self.yoda_config().delta),
            None => self.yoda_for(&lr),
        });
        let window = lr_window.map(|w| Window {
            whole: self.diffused_size(w.whole[0], w.whole[1]),
            origin: self.diffused_size(w.origin[0], w.origin[1]),
        });
        let plan = RunPlan {
            sampler: opts.sampler(),
            first_index: truncated_start(&self.schedule, opts.strength),
            seed: opts.seed,
            window,
            max_importance,
        };
        let schedule = &self.schedule;
        match &self.net {
            DiffusionNet::Sr3(m) => m.start_sampling(lr, schedule, &plan, yoda.as_ref()),
            DiffusionNet::DiWa(m) => m.start_sampling(lr, schedule, &plan, yoda.as_ref()),
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
