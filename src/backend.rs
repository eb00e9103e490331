//! Picking the compute device at run time.

use crate::error::{Result, WebSrError};
use burn::tensor::Device;

/// The backends websr can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (`flex`): native CPU and the wasm fallback.
    Cpu,
    /// wgpu: Vulkan/Metal/DX natively, WebGPU in the browser.
    Wgpu,
}

impl Backend {
    pub fn parse(s: &str) -> Result<Backend> {
        match s {
            "cpu" | "flex" => Ok(Backend::Cpu),
            "wgpu" | "gpu" | "webgpu" => Ok(Backend::Wgpu),
            _ => Err(WebSrError::Invalid(format!(
                "unknown backend '{s}' (cpu or wgpu)"
            ))),
        }
    }

    /// Backends compiled into this build.
    pub fn available() -> Vec<Backend> {
        let mut v = Vec::new();
        if cfg!(feature = "flex") {
            v.push(Backend::Cpu);
        }
        if cfg!(feature = "wgpu") {
            v.push(Backend::Wgpu);
        }
        v
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu (flex)",
            Backend::Wgpu => "wgpu",
        }
    }

    /// The device for this backend, or a clear error when this build lacks it.
    pub fn device(self) -> Result<Device> {
        match self {
            #[cfg(feature = "flex")]
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[allow(unreachable_patterns)]
            other => Err(WebSrError::Invalid(format!(
                "backend {} is not compiled into this build (enable its cargo feature)",
                other.name()
            ))),
        }
    }
}
