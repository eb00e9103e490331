//! Model weights as safetensors: the network's tensors plus, in the header metadata, the
//! [`ModelSpec`] needed to rebuild it. Loaded from bytes (browser, network) or files (CLI).
//!
//! Loading is strict: a wrong format version, a missing, extra or mis-shaped tensor, a tensor
//! that is neither f32 nor f16, or a NaN/Inf value is an error that names the problem; the model
//! is never partly loaded.
//!
//! Shipped models travel as f16 (half the download, see [`to_f16_bytes`]); loading widens them
//! to f32, the type every backend here computes in. Training checkpoints stay f32.

use crate::error::{Result, WebSrError};
use crate::model::ModelKind;
use crate::models::{Arch, ModelSpec, SrModel};
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use half::f16;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::borrow::Cow;
use std::collections::BTreeMap;
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
    let bytes = store
        .get_bytes()
        .map_err(|e| WebSrError::Weights(e.to_string()))?;
    canonical_header(&bytes)
}

/// `bytes` with its header written in one canonical order: the metadata keys sorted, then the
/// tensors in the order of their data. safetensors writes the metadata from a `HashMap`, whose
/// order changes from one map to the next, so the same weights saved twice were different bytes
/// (a different SHA-256, and a resumed training run's checkpoint unequal to an uninterrupted
/// one's). The data section is kept as it is.
fn canonical_header(bytes: &[u8]) -> Result<Vec<u8>> {
    let (n, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| WebSrError::Weights(format!("not a safetensors file: {e}")))?;
    let json = |e: serde_json::Error| WebSrError::Weights(e.to_string());
    let mut entries = Vec::new();
    if let Some(md) = meta.metadata() {
        let sorted: BTreeMap<_, _> = md.iter().collect();
        entries.push(format!(
            "\"__metadata__\":{}",
            serde_json::to_string(&sorted).map_err(json)?
        ));
    }
    for name in meta.offset_keys() {
        let info = meta.info(&name).expect("a listed tensor");
        entries.push(format!(
            "{}:{}",
            serde_json::to_string(&name).map_err(json)?,
            serde_json::to_string(info).map_err(json)?
        ));
    }
    let mut header = format!("{{{}}}", entries.join(",")).into_bytes();
    // safetensors aligns the data section to 8 bytes by padding the header with spaces.
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + bytes.len() - 8 - n);
    out.extend((header.len() as u64).to_le_bytes());
    out.extend(header);
    out.extend(&bytes[8 + n..]);
    Ok(out)
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

fn deserialize(bytes: &[u8]) -> Result<SafeTensors<'_>> {
    SafeTensors::deserialize(bytes)
        .map_err(|e| WebSrError::Weights(format!("not a safetensors file: {e}")))
}

fn f32_values(data: &[u8]) -> impl Iterator<Item = f32> + '_ {
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn f16_values(data: &[u8]) -> impl Iterator<Item = f16> + '_ {
    data.chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]))
}

/// Every tensor must be f32 or f16, and finite.
fn check_values(bytes: &[u8]) -> Result<()> {
    for (name, view) in deserialize(bytes)?.iter() {
        let finite = match view.dtype() {
            Dtype::F32 => f32_values(view.data()).all(f32::is_finite),
            Dtype::F16 => f16_values(view.data()).all(|v| v.is_finite()),
            other => {
                return Err(WebSrError::Weights(format!(
                    "tensor '{name}' is {other:?}; websr weights are F32 or F16"
                )));
            }
        };
        if !finite {
            return Err(WebSrError::Weights(format!(
                "tensor '{name}' holds NaN or infinite values"
            )));
        }
    }
    Ok(())
}

/// `bytes` with every `from` tensor rewritten as `to` by `convert` (given the tensor's name and
/// data); the header metadata and all other tensors are kept. A file with no `from` tensor comes
/// back unchanged, byte for byte, so converting twice is a no-op.
fn retype(
    bytes: &[u8],
    from: Dtype,
    to: Dtype,
    convert: impl Fn(&str, &[u8]) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let st = deserialize(bytes)?;
    if st.iter().all(|(_, view)| view.dtype() != from) {
        return Ok(bytes.to_vec());
    }
    let mut tensors = Vec::new();
    for (name, view) in st.iter() {
        let (dtype, data) = match view.dtype() {
            d if d == from => (to, Cow::Owned(convert(name, view.data())?)),
            d => (d, Cow::Borrowed(view.data())),
        };
        tensors.push((name, dtype, view.shape().to_vec(), data));
    }
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data).map(|view| (*name, view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| WebSrError::Weights(e.to_string()))?;
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| WebSrError::Weights(e.to_string()))?;
    let retyped = safetensors::serialize(views, meta.metadata().clone())
        .map_err(|e| WebSrError::Weights(e.to_string()))?;
    canonical_header(&retyped)
}

/// The weights with every f32 tensor stored as f16 (round to nearest): the shipped wire format,
/// half the bytes. Refuses NaN/Inf and any value that would round to an f16 infinity (beyond its
/// largest finite 65504) rather than ship one; f16 tensors are kept as they are.
pub fn to_f16_bytes(bytes: &[u8]) -> Result<Vec<u8>> {
    check_values(bytes)?;
    retype(bytes, Dtype::F32, Dtype::F16, |name, data| {
        let mut out = Vec::with_capacity(data.len() / 2);
        for v in f32_values(data) {
            let h = f16::from_f32(v);
            if h.is_infinite() {
                return Err(WebSrError::Weights(format!(
                    "tensor '{name}' holds {v}, beyond float16's range: keep this model f32"
                )));
            }
            out.extend(h.to_le_bytes());
        }
        Ok(out)
    })
}

/// The weights with every f16 tensor widened to f32 (exactly): what burn's store is handed, and
/// the `--wire f32` format.
pub fn to_f32_bytes(bytes: &[u8]) -> Result<Vec<u8>> {
    retype(bytes, Dtype::F16, Dtype::F32, |_, data| {
        Ok(f16_values(data)
            .flat_map(|h| h.to_f32().to_le_bytes())
            .collect())
    })
}

/// Tensor names and shapes, in name order.
pub(crate) type Layout = BTreeMap<String, Vec<usize>>;

/// The tensors `net` holds, by the names its weights files use.
fn module_layout<M: ModuleSnapshot>(net: &M) -> Layout {
    net.collect(None, None, true)
        .into_iter()
        .map(|t| (t.name, t.shape.to_vec()))
        .collect()
}

/// The tensors a safetensors file holds.
fn file_layout(bytes: &[u8]) -> Result<Layout> {
    Ok(deserialize(bytes)?
        .iter()
        .map(|(name, view)| (name.to_string(), view.shape().to_vec()))
        .collect())
}

/// At most five quoted names, then how many more.
fn some_names<'a>(names: impl ExactSizeIterator<Item = &'a String>) -> String {
    let n = names.len();
    let mut list: Vec<String> = names.take(5).map(|name| format!("'{name}'")).collect();
    if n > 5 {
        list.push(format!("and {} more", n - 5));
    }
    list.join(", ")
}

/// Why a file with tensors `found` cannot load into `model` (described by `what`, e.g. "a dwsr
/// x2 model (16 features, 2 body layers)"), which holds `expected`: the tensors it lacks, the
/// ones it has in excess, or the first tensor whose shape differs, with both shapes. `None`
/// when every name and shape agree.
fn layout_mismatch(expected: &Layout, found: &Layout, what: &str) -> Option<String> {
    layout_difference(expected, found, what)
        .map(|why| format!("{why}: the file's tensors do not fit the spec in its metadata"))
}

/// [`layout_mismatch`] without its conclusion, for other comparisons of two tensor layouts.
pub(crate) fn layout_difference(expected: &Layout, found: &Layout, what: &str) -> Option<String> {
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !found.contains_key(*k))
        .collect();
    let extra: Vec<_> = found
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!(
                "it lacks {} tensor(s) that {what} has: {}",
                missing.len(),
                some_names(missing.into_iter())
            ));
        }
        if !extra.is_empty() {
            parts.push(format!(
                "it has {} tensor(s) that {what} does not: {}",
                extra.len(),
                some_names(extra.into_iter())
            ));
        }
        return Some(parts.join("; "));
    }
    let differ: Vec<_> = expected
        .iter()
        .filter(|&(name, shape)| &found[name] != shape)
        .collect();
    let (name, shape) = differ.first()?;
    let others = match differ.len() {
        1 => String::new(),
        n => format!(" (and {} more tensors differ)", n - 1),
    };
    Some(format!(
        "tensor '{name}' has shape {:?} in the file, but {what} needs {shape:?}{others}",
        found[*name]
    ))
}

/// Loads every tensor of `bytes` into `net`, strictly: values are checked first, and a missing,
/// extra or mis-shaped tensor is an error naming the tensors (and shapes) and `what` the model
/// is (as [`layout_mismatch`]).
pub(crate) fn load_module<M: ModuleSnapshot>(net: &mut M, bytes: &[u8], what: &str) -> Result<()> {
    check_values(bytes)?;
    if let Some(why) = layout_mismatch(&module_layout(net), &file_layout(bytes)?, what) {
        return Err(WebSrError::Weights(why));
    }
    // The modules' parameters are f32: widen f16 here rather than rely on the store casting.
    let mut store = SafetensorsStore::from_bytes(Some(to_f32_bytes(bytes)?))
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

/// "a wavelr x2 model (48 features, 6 body layers)".
pub(crate) fn describe(spec: &ModelSpec) -> String {
    format!(
        "a {} x{} model ({} features, {} body layers)",
        spec.arch.name(),
        spec.scale,
        spec.features,
        spec.body_layers
    )
}

/// Rebuilds a model from safetensors bytes on `device`.
pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<SrModel> {
    let spec = read_spec(bytes)?;
    let mut model = SrModel::init(spec.clone(), device)?;
    if let Err(e) = load_module(&mut model.net, bytes, &describe(&spec)) {
        return Err(other_arch(&spec, bytes, device).unwrap_or(e));
    }
    Ok(model)
}

/// When the tensors of a file whose spec names one architecture are exactly those of another
/// (same scale, width and depth), the error that says so.
fn other_arch(spec: &ModelSpec, bytes: &[u8], device: &Device) -> Option<WebSrError> {
    let found = file_layout(bytes).ok()?;
    let arch = Arch::ALL
        .into_iter()
        .filter(|&a| a != spec.arch)
        .find(|&arch| {
            let other = ModelSpec {
                arch,
                ..spec.clone()
            };
            SrModel::init(other, device).is_ok_and(|m| module_layout(&m.net) == found)
        })?;
    Some(WebSrError::Weights(format!(
        "the tensors are those of a {} model, but the spec in the file's metadata says {}: \
         the metadata and the tensors disagree (re-save the weights with websr)",
        arch.name(),
        spec.arch.name()
    )))
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
