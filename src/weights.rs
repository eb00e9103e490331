//! Model weights as safetensors: the network's tensors plus, in the header metadata, the
//! [`ModelSpec`] needed to rebuild it. Loaded from bytes (browser, network) or files (CLI).
//!
//! Loading is strict: a wrong format version, a missing, extra or mis-shaped tensor, a non-f32
//! tensor, or a NaN/Inf value is an error that names the problem; the model is never partly
//! loaded.

use crate::error::{Result, WebSrError};
use crate::model::ModelKind;
use crate::models::{ModelSpec, SrModel};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "websr-weights";
/// Bumped whenever the tensor layout of a spec changes.
pub const FORMAT_VERSION: &str = "1";

/// Value of the `format` metadata key of a diffusion model (SR3, DiWa): its spec is a
/// [`crate::diffusion::DiffusionSpec`], and it is sampled rather than run once.
pub const DIFFUSION_FORMAT: &str = "websr-diffusion";

/// Serialises any module with `spec` (JSON) in the header under the given `format`.
pub(crate) fn module_to_bytes<M: ModuleSnapshot>(
    net: &M,
    format: &str,
    spec: String,
) -> Result<Vec<u8>> {
    let mut store = SafetensorsStore::from_bytes(None)
        .skip_enum_variants(true)
        .metadata("format", format)
        .metadata("format_version", FORMAT_VERSION)
        .metadata("spec", spec);
    net.save_into(&mut store)
        .map_err(|e| WebSrError::Weights(e.to_string()))?;
    store
        .get_bytes()
        .map_err(|e| WebSrError::Weights(e.to_string()))
}

/// Serialises a model (tensors + spec) to safetensors bytes.
pub fn to_bytes(model: &SrModel) -> Result<Vec<u8>> {
    let spec = serde_json::to_string(&model.spec).expect("spec serialises");
    module_to_bytes(&model.net, FORMAT, spec)
}

/// The `format` key of a websr file, checked against `expected` and the format version; a file
/// of the other kind says what it is.
pub(crate) fn read_spec_json(bytes: &[u8], expected: &str) -> Result<String> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| WebSrError::Weights(format!("not a safetensors file: {e}")))?;
    let md = meta
        .metadata()
        .as_ref()
        .ok_or_else(|| WebSrError::Weights("no websr metadata in the file".into()))?;
    match md.get("format").map(String::as_str) {
        Some(f) if f == expected => {}
        Some(DIFFUSION_FORMAT) => {
            return Err(WebSrError::Weights(
                "this is a diffusion model (SR3/DiWa): it is sampled, with steps and a seed".into(),
            ));
        }
        Some(FORMAT) => {
            return Err(WebSrError::Weights(
                "this is a one-pass SR model, not a diffusion model".into(),
            ));
        }
        other => {
            return Err(WebSrError::Weights(format!(
                "format is {other:?}, expected \"{expected}\""
            )));
        }
    }
    match md.get("format_version").map(String::as_str) {
        Some(FORMAT_VERSION) => {}
        other => {
            return Err(WebSrError::Weights(format!(
                "format_version is {other:?}, this build reads version {FORMAT_VERSION}"
            )));
        }
    }
    md.get("spec")
        .cloned()
        .ok_or_else(|| WebSrError::Weights("metadata has no 'spec'".into()))
}

/// Which kind of model a websr weights file holds, from its `format` metadata alone.
pub fn read_kind(bytes: &[u8]) -> Result<ModelKind> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| WebSrError::Weights(format!("not a safetensors file: {e}")))?;
    let format = meta.metadata().as_ref().and_then(|md| md.get("format"));
    match format.map(String::as_str) {
        Some(FORMAT) => Ok(ModelKind::OnePass),
        Some(DIFFUSION_FORMAT) => Ok(ModelKind::Diffusion),
        None => Err(WebSrError::Weights("no websr metadata in the file".into())),
        Some(other) => Err(WebSrError::Weights(format!(
            "format is \"{other}\", expected \"{FORMAT}\" or \"{DIFFUSION_FORMAT}\""
        ))),
    }
}

/// Reads the spec from the header without touching the tensors.
pub fn read_spec(bytes: &[u8]) -> Result<ModelSpec> {
    let spec_json = read_spec_json(bytes, FORMAT)?;
    let spec: ModelSpec = serde_json::from_str(&spec_json)
        .map_err(|e| WebSrError::Weights(format!("bad spec in metadata: {e}")))?;
    spec.validate()?;
    Ok(spec)
}

/// Every tensor must be f32 and finite.
fn check_values(bytes: &[u8]) -> Result<()> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| WebSrError::Weights(format!("not a safetensors file: {e}")))?;
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(WebSrError::Weights(format!(
                "tensor '{name}' is {:?}, expected F32",
                view.dtype()
            )));
        }
        let bad = view
            .data()
            .chunks_exact(4)
            .any(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite());
        if bad {
            return Err(WebSrError::Weights(format!(
                "tensor '{name}' holds NaN or infinite values"
            )));
        }
    }
    Ok(())
}

/// Loads every tensor of `bytes` into `net`, strictly: values are checked first, and a missing,
/// extra or mis-shaped tensor is an error.
pub(crate) fn load_module<M: ModuleSnapshot>(net: &mut M, bytes: &[u8]) -> Result<()> {
    check_values(bytes)?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes.to_vec()))
        .skip_enum_variants(true)
        .validate(true)
        .allow_partial(false);
    let result = net
        .load_from(&mut store)
        .map_err(|e| WebSrError::Weights(e.to_string()))?;
    if !result.unused.is_empty() {
        return Err(WebSrError::Weights(format!(
            "file has tensors this model does not: {:?}",
            result.unused
        )));
    }
    Ok(())
}

/// Rebuilds a model from safetensors bytes on `device`.
pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<SrModel> {
    let spec = read_spec(bytes)?;
    let mut model = SrModel::init(spec, device)?;
    load_module(&mut model.net, bytes)?;
    Ok(model)
}

/// Writes `bytes` to `path` through a temporary file, so an interrupted save never leaves a
/// truncated weights file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| WebSrError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| WebSrError::io(path, e))
}

pub fn save(model: &SrModel, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    write_atomic(path, &to_bytes(model)?)
}

pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<SrModel> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| WebSrError::io(path, e))?;
    from_bytes(&bytes, device).map_err(|e| WebSrError::Weights(format!("{}: {e}", path.display())))
}

/// Lowercase hex SHA-256, used by the model manifest.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
