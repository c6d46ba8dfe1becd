//! Choosing a GPU adapter: options, ranking, and opening the device with the adapter's real limits and
//! the features kiln can use.

use crate::{DeviceInfo, Error, Result};

/// A graphics API wgpu can run kiln's compute shaders on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Vulkan (Linux, Windows, Android; Mesa lavapipe on machines without a GPU).
    Vulkan,
    /// Metal (macOS, iOS).
    Metal,
    /// Direct3D 12 (Windows).
    Dx12,
    /// OpenGL / OpenGL ES (a fallback where none of the above exists).
    Gl,
}

impl Backend {
    fn to_wgpu(self) -> wgpu::Backends {
        match self {
            Backend::Vulkan => wgpu::Backends::VULKAN,
            Backend::Metal => wgpu::Backends::METAL,
            Backend::Dx12 => wgpu::Backends::DX12,
            Backend::Gl => wgpu::Backends::GL,
        }
    }

    /// Parses `vulkan`, `metal`, `dx12` or `gl` (as `KILN_DEVICE` spells them).
    pub fn parse(name: &str) -> Option<Backend> {
        match name.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => Some(Backend::Vulkan),
            "metal" | "mtl" => Some(Backend::Metal),
            "dx12" | "d3d12" => Some(Backend::Dx12),
            "gl" | "gles" | "opengl" => Some(Backend::Gl),
            _ => None,
        }
    }
}

/// Whether to prefer the fastest or the most frugal adapter when a machine has two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PowerPreference {
    /// A discrete GPU before an integrated one.
    #[default]
    HighPerformance,
    /// An integrated GPU before a discrete one.
    LowPower,
}

/// How [`crate::Device::gpu_with`] picks and opens an adapter.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// Backends to consider; empty means `WGPU_BACKEND` if set, else all of them.
    pub backends: Vec<Backend>,
    /// Discrete or integrated first.
    pub power_preference: PowerPreference,
    /// Only adapters whose name contains this (case-insensitive).
    pub adapter_name: Option<String>,
    /// Whether software adapters (Mesa lavapipe/llvmpipe, WARP) may be chosen.
    pub allow_software: bool,
    /// Caps the largest buffer and storage binding below the adapter's limit (to emulate a smaller GPU).
    pub max_buffer_bytes: Option<u64>,
    /// Only the adapter at this position among those the other options accept, in the order wgpu
    /// lists them (a machine's identical GPUs, one per process of a distributed run).
    pub adapter_index: Option<usize>,
    /// Behave as the weakest GPU kiln supports (WebGPU's baseline): no SUBGROUP, SHADER_F16 or
    /// TIMESTAMP_QUERY even where the adapter has them, 16 KiB of workgroup memory, 256 invocations
    /// per workgroup, 8 storage buffers per shader stage, 128 MiB storage bindings and 256 MiB
    /// buffers — so the paths integrated and older GPUs take are tested on any machine.
    /// `KILN_GPU_PROFILE=webgpu` turns it on by default.
    pub baseline: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            backends: Vec::new(),
            power_preference: PowerPreference::HighPerformance,
            adapter_name: None,
            allow_software: true,
            max_buffer_bytes: None,
            adapter_index: None,
            baseline: std::env::var("KILN_GPU_PROFILE").is_ok_and(|v| v == "webgpu"),
        }
    }
}

impl GpuOptions {
    /// The WebGPU-baseline profile on or off (see [`GpuOptions::baseline`]).
    pub fn baseline(mut self, on: bool) -> Self {
        self.baseline = on;
        self
    }

    /// Only these backends.
    pub fn backends(mut self, backends: &[Backend]) -> Self {
        self.backends = backends.to_vec();
        self
    }

    /// Only adapters whose name contains `name` (case-insensitive).
    pub fn adapter_name(mut self, name: impl Into<String>) -> Self {
        self.adapter_name = Some(name.into());
        self
    }

    /// Whether software adapters may be chosen.
    pub fn allow_software(mut self, allow: bool) -> Self {
        self.allow_software = allow;
        self
    }

    /// Discrete or integrated first.
    pub fn power_preference(mut self, preference: PowerPreference) -> Self {
        self.power_preference = preference;
        self
    }

    /// Only the `index`-th accepted adapter (see [`GpuOptions::adapter_index`]).
    pub fn adapter_index(mut self, index: usize) -> Self {
        self.adapter_index = Some(index);
        self
    }

    /// Caps buffers and storage bindings at `bytes`.
    pub fn max_buffer_bytes(mut self, bytes: u64) -> Self {
        self.max_buffer_bytes = Some(bytes);
        self
    }

    fn wgpu_backends(&self) -> Option<wgpu::Backends> {
        if self.backends.is_empty() {
            None
        } else {
            Some(
                self.backends
                    .iter()
                    .fold(wgpu::Backends::empty(), |acc, b| acc | b.to_wgpu()),
            )
        }
    }
}

/// An instance over `backends`, or over `WGPU_BACKEND` / all backends when `None`.
fn instance(backends: Option<wgpu::Backends>) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if let Some(backends) = backends {
        desc.backends = backends;
    }
    wgpu::Instance::new(desc)
}

/// Whether an adapter runs on the CPU (lavapipe, llvmpipe, WARP).
fn is_software(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
}

/// Describes an adapter for `Device::list_adapters` and `Device::info`.
pub(crate) fn describe(
    info: &wgpu::AdapterInfo,
    features: wgpu::Features,
    limits: &wgpu::Limits,
) -> DeviceInfo {
    DeviceInfo {
        name: info.name.clone(),
        backend: info.backend.to_str().to_string(),
        device_type: match info.device_type {
            wgpu::DeviceType::DiscreteGpu => "discrete GPU",
            wgpu::DeviceType::IntegratedGpu => "integrated GPU",
            wgpu::DeviceType::VirtualGpu => "virtual GPU",
            wgpu::DeviceType::Cpu => "software (runs on the CPU)",
            wgpu::DeviceType::Other => "other",
        }
        .to_string(),
        driver: format!("{} {}", info.driver, info.driver_info)
            .trim()
            .to_string(),
        is_software: is_software(info),
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
        subgroup: features.contains(wgpu::Features::SUBGROUP),
        subgroup_sizes: if features.contains(wgpu::Features::SUBGROUP) {
            [info.subgroup_min_size, info.subgroup_max_size]
        } else {
            [0, 0]
        },
        timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        max_buffer_bytes: limits.max_buffer_size,
        max_binding_bytes: limits.max_storage_buffer_binding_size,
        max_workgroup_invocations: limits.max_compute_invocations_per_workgroup,
        max_workgroup_memory_bytes: limits.max_compute_workgroup_storage_size,
        max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
        threads: 0,
    }
}

/// Every adapter wgpu can see (honouring `WGPU_BACKEND`).
pub(crate) fn list_adapters() -> Vec<DeviceInfo> {
    let adapters = pollster::block_on(instance(None).enumerate_adapters(wgpu::Backends::all()));
    adapters
        .iter()
        .map(|a| describe(&a.get_info(), a.features(), &a.limits()))
        .collect()
}

/// Higher is better: hardware before software, the preferred kind of GPU first, native APIs before GL.
fn rank(info: &wgpu::AdapterInfo, preference: PowerPreference) -> u32 {
    let kind = match (info.device_type, preference) {
        (wgpu::DeviceType::DiscreteGpu, PowerPreference::HighPerformance) => 50,
        (wgpu::DeviceType::IntegratedGpu, PowerPreference::HighPerformance) => 40,
        (wgpu::DeviceType::IntegratedGpu, PowerPreference::LowPower) => 50,
        (wgpu::DeviceType::DiscreteGpu, PowerPreference::LowPower) => 40,
        (wgpu::DeviceType::VirtualGpu, _) => 30,
        (wgpu::DeviceType::Other, _) => 20,
        (wgpu::DeviceType::Cpu, _) => 10,
    };
    let api = if info.backend == wgpu::Backend::Gl {
        0
    } else {
        1
    };
    kind * 2 + api
}

/// Features kiln uses when the adapter has them.
fn wanted_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY
}

/// Opens the best adapter matching `options`: returns the device, its queue and its description.
pub(crate) fn open(options: &GpuOptions) -> Result<(wgpu::Device, wgpu::Queue, DeviceInfo)> {
    let adapters = pollster::block_on(
        instance(options.wgpu_backends()).enumerate_adapters(wgpu::Backends::all()),
    );
    if adapters.is_empty() {
        return Err(Error::NoAdapter {
            reason: "wgpu found no adapter (no Vulkan/Metal/DX12/GL driver; on Linux install \
                     mesa-vulkan-drivers for a software one)"
                .into(),
        });
    }
    let mut rejected = Vec::new();
    let mut candidates = Vec::new();
    for adapter in adapters {
        let info = adapter.get_info();
        if is_software(&info) && !options.allow_software {
            rejected.push(format!(
                "{} ({}) is a software adapter",
                info.name,
                info.backend.to_str()
            ));
        } else if let Some(want) = &options.adapter_name
            && !info.name.to_lowercase().contains(&want.to_lowercase())
        {
            rejected.push(format!("{} does not match the name {want:?}", info.name));
        } else {
            candidates.push(adapter);
        }
    }
    if let Some(index) = options.adapter_index {
        let count = candidates.len();
        candidates = candidates.into_iter().nth(index).into_iter().collect();
        if candidates.is_empty() {
            rejected.push(format!(
                "adapter index {index} asked for, but only {count} adapter(s) qualify"
            ));
        }
    }
    candidates.sort_by_key(|a| std::cmp::Reverse(rank(&a.get_info(), options.power_preference)));
    for adapter in candidates {
        let info = adapter.get_info();
        let mut features = adapter.features() & wanted_features();
        let mut limits = adapter.limits();
        if options.baseline {
            features = wgpu::Features::empty();
            limits.max_compute_workgroup_storage_size =
                limits.max_compute_workgroup_storage_size.min(16 << 10);
            limits.max_compute_invocations_per_workgroup =
                limits.max_compute_invocations_per_workgroup.min(256);
            limits.max_compute_workgroup_size_x = limits.max_compute_workgroup_size_x.min(256);
            limits.max_compute_workgroup_size_y = limits.max_compute_workgroup_size_y.min(256);
            limits.max_compute_workgroup_size_z = limits.max_compute_workgroup_size_z.min(64);
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(128 << 20);
            limits.max_buffer_size = limits.max_buffer_size.min(256 << 20);
            limits.max_storage_buffers_per_shader_stage =
                limits.max_storage_buffers_per_shader_stage.min(8);
        }
        if let Some(cap) = options.max_buffer_bytes {
            limits.max_buffer_size = limits.max_buffer_size.min(cap);
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        let request = adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kiln"),
            required_features: features,
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        });
        match pollster::block_on(request) {
            Ok((device, queue)) => {
                let description = describe(&info, device.features(), &device.limits());
                return Ok((device, queue, description));
            }
            Err(e) => rejected.push(format!(
                "{} ({}): device request failed: {e}",
                info.name,
                info.backend.to_str()
            )),
        }
    }
    Err(Error::NoAdapter {
        reason: rejected.join("; "),
    })
}
