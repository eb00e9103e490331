//! The compute device, in one vocabulary for the CLI and the browser: which backend was asked
//! for ([`BackendChoice`]: `auto | webgpu | cpu`), which one runs ([`Backend`]) and why
//! ([`DeviceInfo`]), chosen in one place ([`select`]); and the helpers every model needs to move
//! pictures onto a device and back ([`to_tensor`], [`read_f32_async`]) and to initialise
//! reproducibly ([`with_seeded_device`]).

use crate::error::{Result, WebSrError};
use crate::image::Planar;
use burn::tensor::{Device, Tensor, TensorData};

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
        match BackendChoice::parse(s)? {
            BackendChoice::Cpu => Ok(Backend::Cpu),
            BackendChoice::Gpu => Ok(Backend::Wgpu),
            BackendChoice::Auto => Err(WebSrError::Invalid(
                "'auto' is a choice, not a backend (cpu or wgpu)".into(),
            )),
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

    /// A name for tables and logs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu (flex)",
            Backend::Wgpu => "wgpu",
        }
    }

    /// The short name pages and scripts compare against: `"cpu"`, or `"webgpu"` in the browser
    /// (`"wgpu"` natively).
    pub fn id(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu if cfg!(target_arch = "wasm32") => "webgpu",
            Backend::Wgpu => "wgpu",
        }
    }

    /// The device for this backend, or a clear error when this build lacks it. Natively the
    /// wgpu device initialises itself on first use; the browser goes through [`select`].
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

/// The backend a person or a page asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// The GPU when there is a usable one, else the CPU (and [`DeviceInfo::note`] says why).
    Auto,
    /// The GPU or an error.
    Gpu,
    /// The CPU.
    Cpu,
}

impl BackendChoice {
    /// `auto`; `webgpu`, `wgpu` or `gpu`; `cpu` or `flex`.
    pub fn parse(s: &str) -> Result<BackendChoice> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "webgpu" | "wgpu" | "gpu" => Ok(BackendChoice::Gpu),
            "cpu" | "flex" => Ok(BackendChoice::Cpu),
            _ => Err(WebSrError::Invalid(format!(
                "unknown backend '{s}' (auto, webgpu or cpu)"
            ))),
        }
    }
}

/// What a device is and why it was chosen: what the page shows and `websr` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub backend: Backend,
    /// The GPU adapter's name, or the CPU backend's.
    pub adapter: String,
    /// Why this is not the backend asked for; empty when it is.
    pub note: String,
    /// The largest buffer the device takes, which automatic tile sizes are derived from.
    pub max_buffer_bytes: u64,
}

/// A device and what it is.
#[derive(Clone, Debug)]
pub struct SelectedDevice {
    pub device: Device,
    pub info: DeviceInfo,
}

/// Buffer budget used to size tiles on the CPU backend (wasm memory, not a GPU limit).
pub const CPU_BUFFER_BYTES: u64 = 256 << 20;

fn cpu(note: String) -> Result<SelectedDevice> {
    Ok(SelectedDevice {
        device: Backend::Cpu.device()?,
        info: DeviceInfo {
            backend: Backend::Cpu,
            adapter: if cfg!(target_arch = "wasm32") {
                "wasm (burn flex)".into()
            } else {
                "native (burn flex)".into()
            },
            note,
            max_buffer_bytes: CPU_BUFFER_BYTES,
        },
    })
}

/// The one place a backend is chosen. `Auto` takes the GPU when this build and the machine
/// have one (WebGPU in the browser), else the CPU with a note that says why; natively `Auto`
/// runs on the CPU, since native wgpu here is usually a software Vulkan driver.
pub async fn select(choice: BackendChoice) -> Result<SelectedDevice> {
    match choice {
        BackendChoice::Cpu => cpu(String::new()),
        BackendChoice::Auto if !cfg!(target_arch = "wasm32") => {
            cpu("natively, auto runs on the CPU; ask for the GPU with wgpu".into())
        }
        BackendChoice::Gpu | BackendChoice::Auto => match gpu().await {
            Ok(selected) => Ok(selected),
            Err(why) if choice == BackendChoice::Auto => cpu(format!(
                "WebGPU unavailable ({why}); running on the CPU, which is slower"
            )),
            Err(why) => Err(WebSrError::Device(why)),
        },
    }
}

/// The browser's WebGPU device, created once per worker: burn refuses a second registration.
#[cfg(all(target_arch = "wasm32", feature = "wgpu"))]
async fn gpu() -> std::result::Result<SelectedDevice, String> {
    use std::cell::RefCell;
    thread_local! {
        static GPU: RefCell<Option<SelectedDevice>> = const { RefCell::new(None) };
    }
    if let Some(gpu) = GPU.with(|g| g.borrow().clone()) {
        return Ok(gpu);
    }
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| e.to_string())?;
    let limits = setup.device.limits();
    let adapter = setup.adapter.get_info();
    let gpu = SelectedDevice {
        device,
        info: DeviceInfo {
            backend: Backend::Wgpu,
            adapter: if adapter.name.is_empty() {
                format!("{:?}", adapter.backend)
            } else {
                adapter.name.clone()
            },
            note: String::new(),
            max_buffer_bytes: limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size),
        },
    };
    GPU.with(|g| *g.borrow_mut() = Some(gpu.clone()));
    Ok(gpu)
}

/// Natively wgpu initialises itself on first use; its limits are large enough that the tile
/// size the caller chose (or the whole image) is what bounds memory.
#[cfg(not(all(target_arch = "wasm32", feature = "wgpu")))]
async fn gpu() -> std::result::Result<SelectedDevice, String> {
    let device = Backend::Wgpu.device().map_err(|e| e.to_string())?;
    Ok(SelectedDevice {
        device,
        info: DeviceInfo {
            backend: Backend::Wgpu,
            adapter: "wgpu (native)".into(),
            note: String::new(),
            max_buffer_bytes: u64::MAX,
        },
    })
}

/// The input tensor `[1, 3, h, w]` for one RGB picture.
pub fn to_tensor(lr: &Planar, device: &Device) -> Tensor<4> {
    assert_eq!(lr.channels, 3, "model input is RGB");
    Tensor::<4>::from_data(
        TensorData::new(lr.data.clone(), [1, 3, lr.height, lr.width]),
        device,
    )
}

/// Reads a tensor's values back as `f32`, awaiting the device (the only way to read a WebGPU
/// buffer in the browser).
pub async fn read_f32_async<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    tensor
        .into_data_async()
        .await
        .map_err(|e| WebSrError::Device(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| WebSrError::Invalid(format!("model output is not f32: {e:?}")))
}

/// Reads an image tensor `[1, c, h, w]` back as a picture.
pub async fn read_planar_async(image: Tensor<4>) -> Result<Planar> {
    let [_, c, h, w] = image.dims();
    Ok(Planar::new(c, h, w, read_f32_async(image).await?))
}

/// Seeds `device` and runs `init` under one process-wide lock: burn's random generator is global
/// per backend, so another thread initialising a model at the same time cannot consume numbers
/// in between.
pub fn with_seeded_device<T>(device: &Device, seed: u64, init: impl FnOnce() -> T) -> T {
    static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    init()
}
