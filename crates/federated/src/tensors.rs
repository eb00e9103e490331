//! Safetensors <-> named flat `f32` vectors, and strict validation of everything a client sends.
//!
//! A model is a [`Layout`] (tensor names, sorted, and their shapes) plus one flat `Vec<f32>` per
//! tensor in layout order. Strategies only ever see those flat vectors.

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;

/// Metadata key of a client update: the global version the delta was computed against.
pub const META_BASE_VERSION: &str = "base_version";
/// Metadata key of a client update: how many training examples the client used (>= 1).
pub const META_NUM_EXAMPLES: &str = "num_examples";
/// Optional metadata key of a client update: the client's mean training loss.
pub const META_CLIENT_LOSS: &str = "client_loss";
/// Metadata key the server adds to every global model it serves.
pub const META_GLOBAL_VERSION: &str = "global_version";

/// Why a safetensors body was refused. Every message names the offending tensor or key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TensorError {
    #[error("not a valid safetensors body: {0}")]
    Malformed(String),
    #[error("tensor '{0}' is missing")]
    Missing(String),
    #[error("unexpected tensor '{0}': the model has no tensor of that name")]
    Unexpected(String),
    #[error("tensor '{name}' has shape {got:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("tensor '{name}' is {got}, expected F32")]
    Dtype { name: String, got: String },
    #[error("tensor '{0}' holds NaN or infinite values")]
    NonFinite(String),
    #[error("metadata: {0}")]
    Metadata(String),
}

/// Names (sorted) and shapes of a model's tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub names: Vec<String>,
    pub shapes: Vec<Vec<usize>>,
}

impl Layout {
    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.shapes
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum()
    }

    /// A zero vector per tensor.
    pub fn zeros(&self) -> Vec<Vec<f32>> {
        self.shapes
            .iter()
            .map(|s| vec![0.0; s.iter().product()])
            .collect()
    }
}

/// A model read from safetensors: layout, values, and the header metadata.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub layout: Layout,
    pub values: Vec<Vec<f32>>,
    pub metadata: HashMap<String, String>,
}

/// A validated client update.
#[derive(Debug, Clone)]
pub struct ParsedUpdate {
    pub base_version: u64,
    pub num_examples: u64,
    pub client_loss: Option<f64>,
    /// One delta per tensor, in layout order.
    pub tensors: Vec<Vec<f32>>,
    /// L2 norm of the whole delta (all tensors together).
    pub norm: f64,
}

fn deserialize(bytes: &[u8]) -> Result<SafeTensors<'_>, TensorError> {
    SafeTensors::deserialize(bytes).map_err(|e| TensorError::Malformed(e.to_string()))
}

fn metadata(bytes: &[u8]) -> Result<HashMap<String, String>, TensorError> {
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| TensorError::Malformed(e.to_string()))?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// The values of a view as f32, refusing NaN and infinities. F16 is read (widened exactly) only
/// where `f16_ok`: a model file, since shipped models travel as f16; updates are F32.
fn finite_values(name: &str, view: &TensorView<'_>, f16_ok: bool) -> Result<Vec<f32>, TensorError> {
    let values = widened_values(name, view, f16_ok)?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(TensorError::NonFinite(name.to_string()));
    }
    Ok(values)
}

/// The values of a view as f32 (F32, or F16 widened exactly where `f16_ok`), unchecked.
fn widened_values(
    name: &str,
    view: &TensorView<'_>,
    f16_ok: bool,
) -> Result<Vec<f32>, TensorError> {
    let data = view.data();
    match view.dtype() {
        Dtype::F32 => Ok(data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()),
        Dtype::F16 if f16_ok => Ok(data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect()),
        other => Err(TensorError::Dtype {
            name: name.to_string(),
            got: format!("{other:?}"),
        }),
    }
}

/// Reads a model file strictly: every tensor f32 (or f16, widened to f32) and finite. Names are
/// sorted.
pub fn read_model(bytes: &[u8]) -> Result<ModelFile, TensorError> {
    let st = deserialize(bytes)?;
    let metadata = metadata(bytes)?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    if names.is_empty() {
        return Err(TensorError::Malformed("the file holds no tensors".into()));
    }
    let mut shapes = Vec::with_capacity(names.len());
    let mut values = Vec::with_capacity(names.len());
    for name in &names {
        let view = st
            .tensor(name)
            .map_err(|e| TensorError::Malformed(e.to_string()))?;
        values.push(finite_values(name, &view, true)?);
        shapes.push(view.shape().to_vec());
    }
    Ok(ModelFile {
        layout: Layout { names, shapes },
        values,
        metadata,
    })
}

fn parse_u64(md: &HashMap<String, String>, key: &str) -> Result<u64, TensorError> {
    let raw = md
        .get(key)
        .ok_or_else(|| TensorError::Metadata(format!("'{key}' is missing")))?;
    raw.trim()
        .parse()
        .map_err(|_| TensorError::Metadata(format!("'{key}' is {raw:?}, expected an integer")))
}

/// Validates a client update against `layout`: exact names, shapes and dtype, finite values,
/// and the `base_version` / `num_examples` (/ `client_loss`) metadata.
pub fn parse_update(bytes: &[u8], layout: &Layout) -> Result<ParsedUpdate, TensorError> {
    let st = deserialize(bytes)?;
    let md = metadata(bytes)?;
    let base_version = parse_u64(&md, META_BASE_VERSION)?;
    let num_examples = parse_u64(&md, META_NUM_EXAMPLES)?;
    let client_loss = match md.get(META_CLIENT_LOSS) {
        None => None,
        Some(raw) => match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Some(v),
            _ => {
                return Err(TensorError::Metadata(format!(
                    "'{META_CLIENT_LOSS}' is {raw:?}, expected a finite number"
                )))
            }
        },
    };
    let mut sent: Vec<&str> = st.names();
    sent.sort_unstable();
    if let Some(extra) = sent.iter().find(|n| {
        layout
            .names
            .binary_search_by(|m| m.as_str().cmp(n))
            .is_err()
    }) {
        return Err(TensorError::Unexpected(extra.to_string()));
    }
    let mut tensors = Vec::with_capacity(layout.names.len());
    let mut sum_sq = 0.0f64;
    for (name, shape) in layout.names.iter().zip(&layout.shapes) {
        let view = st
            .tensor(name)
            .map_err(|_| TensorError::Missing(name.clone()))?;
        if view.shape() != shape.as_slice() {
            return Err(TensorError::Shape {
                name: name.clone(),
                expected: shape.clone(),
                got: view.shape().to_vec(),
            });
        }
        let values = widened_values(name, &view, false)?;
        // One pass checks both: a sum of f32 squares in f64 cannot overflow (at most 2^32 terms
        // of at most 1.2e77), so it is finite exactly when every value is.
        let squares = sum_of_squares(&values);
        if !squares.is_finite() {
            return Err(TensorError::NonFinite(name.clone()));
        }
        sum_sq += squares;
        tensors.push(values);
    }
    Ok(ParsedUpdate {
        base_version,
        num_examples,
        client_loss,
        tensors,
        norm: sum_sq.sqrt(),
    })
}

/// Serialises named flat vectors (in `layout` order) with `metadata` in the header.
pub fn serialize(
    layout: &Layout,
    values: &[Vec<f32>],
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>, TensorError> {
    let bytes: Vec<Vec<u8>> = values
        .iter()
        .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = layout
        .names
        .iter()
        .zip(&layout.shapes)
        .zip(&bytes)
        .map(|((name, shape), data)| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|view| (name.as_str(), view))
                .map_err(|e| TensorError::Malformed(format!("tensor '{name}': {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let md = (!metadata.is_empty()).then(|| metadata.clone());
    safetensors::serialize(views, md).map_err(|e| TensorError::Malformed(e.to_string()))
}

/// Encodes an update body: deltas plus `base_version`, `num_examples` and optional `client_loss`.
/// This is the body `POST /v1/update` expects (see the crate docs).
pub fn encode_update(
    layout: &Layout,
    deltas: &[Vec<f32>],
    base_version: u64,
    num_examples: u64,
    client_loss: Option<f64>,
) -> Result<Vec<u8>, TensorError> {
    let mut md = HashMap::new();
    md.insert(META_BASE_VERSION.to_string(), base_version.to_string());
    md.insert(META_NUM_EXAMPLES.to_string(), num_examples.to_string());
    if let Some(loss) = client_loss {
        md.insert(META_CLIENT_LOSS.to_string(), loss.to_string());
    }
    serialize(layout, deltas, &md)
}

/// L2 norm over all tensors, accumulated in f64.
pub fn l2_norm(tensors: &[Vec<f32>]) -> f64 {
    tensors
        .iter()
        .map(|t| sum_of_squares(t))
        .sum::<f64>()
        .sqrt()
}

/// Sum of squares in f64 with eight independent partial sums: one running sum is a chain of
/// dependent additions (latency-bound, most of an update's validation time); eight lanes let
/// the compiler vectorise it. Changes the rounding by at most a few ulps.
pub fn sum_of_squares(values: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f64::from(v) * f64::from(v);
        }
    }
    let tail: f64 = tail.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    lanes.iter().sum::<f64>() + tail
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
