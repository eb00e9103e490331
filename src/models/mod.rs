//! The super-resolution models, each a burn `Config` + `Module`, and [`SrModel`], the one type the
//! rest of websr uses: an architecture description ([`ModelSpec`]) plus its network.

pub mod direct_conv;
pub mod dwa;
pub mod dwsr;
mod layers;
pub mod wavelr;
pub mod wavelr_direct;

use crate::device::with_seeded_device;
use crate::error::{Result, WebSrError};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use dwsr::{Dwsr, DwsrConfig};
use serde::{Deserialize, Serialize};
use wavelr::{WaveLr, WaveLrConfig};

/// Which network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// DWSR as published (methods.md §1).
    Dwsr,
    /// DWSR whose first convolution is a DWA module.
    DwsrDwa,
    /// DWA-Direct\[DWSR\]: stride-2 DWA on the image instead of the input DWT.
    DwaDirect,
    /// Our fast LR-resolution wavelet model.
    #[serde(rename = "wavelr")]
    WaveLr,
}

impl Arch {
    pub const ALL: [Arch; 4] = [Arch::Dwsr, Arch::DwsrDwa, Arch::DwaDirect, Arch::WaveLr];

    pub fn name(self) -> &'static str {
        match self {
            Arch::Dwsr => "dwsr",
            Arch::DwsrDwa => "dwsr-dwa",
            Arch::DwaDirect => "dwa-direct",
            Arch::WaveLr => "wavelr",
        }
    }

    pub fn parse(s: &str) -> Result<Arch> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                WebSrError::Invalid(format!(
                    "unknown architecture '{s}' (known: dwsr, dwsr-dwa, dwa-direct, wavelr)"
                ))
            })
    }
}

/// Everything needed to rebuild a network before loading its weights; stored as JSON in the
/// safetensors metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub arch: Arch,
    pub scale: usize,
    pub features: usize,
    pub body_layers: usize,
}

impl ModelSpec {
    /// The published configuration of each architecture.
    pub fn default_for(arch: Arch, scale: usize) -> ModelSpec {
        let (features, body_layers) = match arch {
            Arch::WaveLr => (48, 6),
            _ => (64, 10),
        };
        ModelSpec {
            arch,
            scale,
            features,
            body_layers,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !matches!(self.scale, 2 | 4) {
            return Err(WebSrError::Scale(self.scale as u32, "2, 4".into()));
        }
        if self.features == 0 || self.features > 512 || !self.features.is_multiple_of(2) {
            return Err(WebSrError::Invalid(format!(
                "features must be even and in 2..=512, got {}",
                self.features
            )));
        }
        if self.body_layers > 64 {
            return Err(WebSrError::Invalid(format!(
                "body_layers must be at most 64, got {}",
                self.body_layers
            )));
        }
        Ok(())
    }

    /// Bytes of the largest single buffer a forward pass allocates, per LR input pixel. A 3x3
    /// convolution may be lowered to an im2col matrix of 9 x input channels per pixel, which is the
    /// biggest intermediate; this is what a GPU's maximum buffer size has to hold.
    pub fn peak_buffer_bytes_per_lr_pixel(&self) -> u64 {
        let f = self.features as u64;
        let s2 = (self.scale * self.scale) as u64;
        let per_conv_pixel = match self.arch {
            // im2col of the widest conv input; the last conv emits 3 * scale^2 channels.
            Arch::WaveLr => return 4 * (9 * f).max(3 * s2),
            // DWA concatenates its F/2 + F/2 branches with the 12 sub-bands: F + 12 channels.
            Arch::DwsrDwa | Arch::DwaDirect => 9 * (f + 12),
            Arch::Dwsr => 9 * f,
        };
        // DWSR-family convolutions run at (scale * h / 2) x (scale * w / 2).
        4 * per_conv_pixel * s2 / 4
    }

    /// Multiply-adds per output pixel (convolutions only), for the speed/quality table.
    pub fn macs_per_output_pixel(&self) -> f64 {
        let f = self.features as f64;
        let k = 9.0;
        let body = self.body_layers as f64 * f * f * k;
        let s2 = (self.scale * self.scale) as f64;
        match self.arch {
            // Convs run at (H/2, W/2): 1/4 of the output pixels.
            Arch::Dwsr => (12.0 * f * k + body + f * 12.0 * k) / 4.0,
            Arch::DwsrDwa => {
                let dwa = 4.0 * 12.0 * (f / 2.0) * k + (f + 12.0) * f * k;
                (dwa + body + f * 12.0 * k) / 4.0
            }
            Arch::DwaDirect => {
                let dwa = 4.0 * 3.0 * (f / 2.0) * k + (f + 12.0) * f * k;
                (dwa + body + f * 12.0 * k) / 4.0
            }
            // Convs run at LR: 1/scale^2 of the output pixels.
            Arch::WaveLr => (3.0 * f * k + body + f * 3.0 * s2 * k) / s2,
        }
    }
}

/// The network behind a spec. A burn module enum: one type to train, save and load.
// One instance per model: the size difference between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum SrNet {
    Dwsr(Dwsr),
    WaveLr(WaveLr),
}

/// A model ready for inference or training: its spec and its network.
#[derive(Clone, Debug)]
pub struct SrModel {
    pub spec: ModelSpec,
    pub net: SrNet,
}

impl SrModel {
    /// A freshly initialised model (random weights, zero last layer: outputs bicubic).
    pub fn init(spec: ModelSpec, device: &Device) -> Result<SrModel> {
        spec.validate()?;
        let net = match spec.arch {
            Arch::WaveLr => SrNet::WaveLr(
                WaveLrConfig::new(spec.scale)
                    .with_features(spec.features)
                    .with_body_layers(spec.body_layers)
                    .init(device),
            ),
            arch => SrNet::Dwsr(
                DwsrConfig::new(spec.scale)
                    .with_features(spec.features)
                    .with_body_layers(spec.body_layers)
                    .with_dwa_head(arch == Arch::DwsrDwa)
                    .with_direct(arch == Arch::DwaDirect)
                    .init(device),
            ),
        };
        Ok(SrModel { spec, net })
    }

    /// Like [`SrModel::init`], with reproducible weights ([`with_seeded_device`]).
    pub fn init_seeded(spec: ModelSpec, device: &Device, seed: u64) -> Result<SrModel> {
        with_seeded_device(device, seed, || SrModel::init(spec, device))
    }

    pub fn forward(&self, lr: Tensor<4>) -> Tensor<4> {
        self.net.forward(lr)
    }

    /// This model grown to `body_layers` body convolutions without changing its output
    /// (Net2DeeperNet, `layers::deepen_body`): a warm start for a deeper model.
    pub fn deepened(self, body_layers: usize) -> Result<SrModel> {
        let old = self.spec.body_layers;
        if old == 0 || body_layers < old {
            return Err(WebSrError::Invalid(format!(
                "can only deepen a model with body layers to at least as many \
                 ({old} -> {body_layers})"
            )));
        }
        let spec = ModelSpec {
            body_layers,
            ..self.spec
        };
        spec.validate()?;
        let net = match self.net {
            SrNet::Dwsr(m) => SrNet::Dwsr(m.deepened(body_layers)),
            SrNet::WaveLr(m) => SrNet::WaveLr(m.deepened(body_layers)),
        };
        Ok(SrModel { spec, net })
    }

    pub fn scale(&self) -> usize {
        self.spec.scale
    }

    /// Pixels of LR context a tile needs around it so that tiled output equals untiled output.
    pub fn receptive_radius_lr(&self) -> usize {
        match &self.net {
            SrNet::Dwsr(m) => m.receptive_radius_lr(),
            SrNet::WaveLr(m) => m.receptive_radius_lr(),
        }
    }

    pub fn num_params(&self) -> usize {
        self.net.num_params()
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.net.devices()[0].clone()
    }
}

impl SrNet {
    pub fn forward(&self, lr: Tensor<4>) -> Tensor<4> {
        match self {
            SrNet::Dwsr(m) => m.forward(lr),
            SrNet::WaveLr(m) => m.forward(lr),
        }
    }
}
