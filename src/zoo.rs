//! The shipped models: `models/manifest.json` lists each trained weights file with its SHA-256,
//! its spec and its measured scores; the model cards (`models/<name>.md`) say how it was made.

use crate::error::{Result, WebSrError};
pub use crate::model::ModelKind;
use crate::weights::sha256_hex;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One entry of the manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    #[serde(default)]
    pub kind: ModelKind,
    /// The architecture's name: [`crate::Arch::name`], or `sr3` / `diwa`.
    pub arch: String,
    pub scale: usize,
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    /// Mean Y-PSNR / SSIM on Set5 and Set14 at this scale, as measured by `websr eval`.
    pub set5: Option<[f64; 2]>,
    pub set14: Option<[f64; 2]>,
    pub description: String,
    /// The model `websr upscale` and the web app use at this scale when none is named: one
    /// per scale, chosen by `websr ship --default`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// How its training inputs were degraded: absent for the clean bicubic task, `photo` for
    /// the model of real photos (noise, blur, JPEG; suggested for low-quality JPEGs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degradation: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub models: Vec<ModelEntry>,
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| WebSrError::io(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| WebSrError::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join("manifest.json");
        let text = serde_json::to_string_pretty(self).expect("serialisable") + "\n";
        std::fs::write(&path, text).map_err(|e| WebSrError::io(&path, e))
    }

    pub fn find(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The default model for `scale`, or a clear error naming the ones there are.
    pub fn default_for(&self, scale: usize) -> Result<&ModelEntry> {
        self.models
            .iter()
            .find(|m| m.default && m.scale == scale)
            .ok_or_else(|| {
                let names: Vec<&str> = self
                    .models
                    .iter()
                    .filter(|m| m.scale == scale)
                    .map(|m| m.name.as_str())
                    .collect();
                WebSrError::Invalid(format!(
                    "the manifest names no default model for x{scale}; pick one with --model \
                     (x{scale}: {})",
                    if names.is_empty() {
                        "none shipped".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            })
    }

    /// Makes `name` the default of its scale (and no other model of that scale).
    pub fn set_default(&mut self, name: &str) -> Result<()> {
        let scale = self
            .find(name)
            .ok_or_else(|| WebSrError::Invalid(format!("no model '{name}' in the manifest")))?
            .scale;
        for m in self.models.iter_mut().filter(|m| m.scale == scale) {
            m.default = m.name == name;
        }
        Ok(())
    }
}

/// Reads a shipped model's bytes and checks them against the manifest's SHA-256.
pub fn read_verified(dir: &Path, entry: &ModelEntry) -> Result<Vec<u8>> {
    let path = dir.join(&entry.file);
    let bytes = std::fs::read(&path).map_err(|e| WebSrError::io(&path, e))?;
    let digest = sha256_hex(&bytes);
    if digest != entry.sha256 {
        return Err(WebSrError::Weights(format!(
            "{} has SHA-256 {digest}, the manifest expects {}",
            path.display(),
            entry.sha256
        )));
    }
    Ok(bytes)
}

/// The models folder: `$WEBSR_MODELS`, else `models/` of this source tree.
pub fn default_dir() -> PathBuf {
    std::env::var_os("WEBSR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/models")))
}
