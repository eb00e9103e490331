//! [`Model`]: every trained model websr runs, behind one type. A one-pass network
//! ([`SrModel`]: DWSR, the DWA variants, WaveLR) maps the LR image to the SR image in one
//! forward pass; a diffusion model ([`DiffusionModel`]: SR3, DiWa) samples it in steps from a
//! seed. Both are loaded by [`Model::from_bytes`], which reads the weights' own format tag, and
//! both are run by [`crate::upscale`]; code that must know the difference matches on the enum.

use crate::diffusion::DiffusionModel;
use crate::error::{Result, WebSrError};
use crate::models::SrModel;
use crate::weights;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How a model runs: the `kind` of a manifest entry and of a weights file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelKind {
    /// One forward pass ([`SrModel`]); `"regression"` in the manifest.
    #[default]
    #[serde(rename = "regression", alias = "one-pass")]
    OnePass,
    /// Sampled with steps and a seed ([`DiffusionModel`]).
    #[serde(rename = "diffusion")]
    Diffusion,
}

impl ModelKind {
    /// `"regression"` or `"diffusion"`, as the manifest and the page name it.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::OnePass => "regression",
            ModelKind::Diffusion => "diffusion",
        }
    }
}

/// A trained model of either kind.
// A handful per process, built once: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Model {
    OnePass(SrModel),
    Diffusion(DiffusionModel),
}

impl From<SrModel> for Model {
    fn from(m: SrModel) -> Self {
        Model::OnePass(m)
    }
}

impl From<DiffusionModel> for Model {
    fn from(m: DiffusionModel) -> Self {
        Model::Diffusion(m)
    }
}

impl Model {
    /// Rebuilds a model of whichever kind the safetensors bytes say, strictly (see
    /// [`crate::weights`]).
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Model> {
        Ok(match weights::read_kind(bytes)? {
            ModelKind::OnePass => Model::OnePass(weights::from_bytes(bytes, device)?),
            ModelKind::Diffusion => Model::Diffusion(DiffusionModel::from_bytes(bytes, device)?),
        })
    }

    /// [`Model::from_bytes`] of a file; errors name the file.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Model> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| WebSrError::io(path, e))?;
        Self::from_bytes(&bytes, device)
            .map_err(|e| WebSrError::Weights(format!("{}: {e}", path.display())))
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        match self {
            Model::OnePass(m) => weights::to_bytes(m),
            Model::Diffusion(m) => m.to_bytes(),
        }
    }

    pub fn kind(&self) -> ModelKind {
        match self {
            Model::OnePass(_) => ModelKind::OnePass,
            Model::Diffusion(_) => ModelKind::Diffusion,
        }
    }

    pub fn scale(&self) -> usize {
        match self {
            Model::OnePass(m) => m.scale(),
            Model::Diffusion(m) => m.scale(),
        }
    }

    /// How tables and the page name the architecture: `wavelr`, `dwsr`, ..., `sr3`, `diwa`,
    /// `diwa+yoda` (a diffusion model trained with YODA).
    pub fn label(&self) -> String {
        match self {
            Model::OnePass(m) => m.spec.arch.name().to_string(),
            Model::Diffusion(m) => m.spec.label(),
        }
    }

    pub fn num_params(&self) -> usize {
        match self {
            Model::OnePass(m) => m.num_params(),
            Model::Diffusion(m) => m.num_params(),
        }
    }

    /// Whether sampling with YODA is this model's natural mode (it was trained with it).
    pub fn yoda_trained(&self) -> bool {
        matches!(self, Model::Diffusion(m) if m.spec.yoda.is_some())
    }
}
