//! One error type for the whole library, so the CLI, the browser and the aggregator can show
//! a clear message for every failure instead of a panic.

use thiserror::Error;

/// Everything that can go wrong in websr, each variant with a message a person can act on.
#[derive(Debug, Error)]
pub enum WebSrError {
    #[error("could not decode the image: {0}")]
    Decode(String),
    #[error("could not encode the image: {0}")]
    Encode(String),
    #[error("image is {width}x{height}, larger than the {max_pixels}-pixel limit")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error(
        "the result would be {width}x{height}, more than the {max_pixels}-pixel limit of this \
         runtime; choose a smaller scale or a smaller image"
    )]
    OutputTooLarge {
        width: u64,
        height: u64,
        max_pixels: u64,
    },
    #[error("image is empty (0 pixels)")]
    Empty,
    #[error("invalid weights: {0}")]
    Weights(String),
    #[error("unsupported scale x{0} for this model (supported: {1})")]
    Scale(u32, String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the compute device failed: {0}")]
    Device(String),
    #[error("cancelled")]
    Cancelled,
}

impl WebSrError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = WebSrError> = std::result::Result<T, E>;
