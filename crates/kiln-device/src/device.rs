//! `Device`: where tensors live and kernels run — the native CPU backend or one wgpu GPU device — and
//! how `Device::auto()` chooses between them.

use crate::cpu::CpuDevice;
use crate::gpu::{self, Backend, GpuDevice, GpuOptions, MemoryStats, Profile, RuntimeStats};
use crate::{DType, Error, RawTensor, Result};

/// What a device (or an adapter) is and can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Adapter name (`llvmpipe (LLVM 15.0.6, 256 bits)`, `NVIDIA H200`, ...).
    pub name: String,
    /// `vulkan`, `metal`, `dx12`, `gl`, or `cpu` for the native backend.
    pub backend: String,
    /// Discrete, integrated, virtual, software or cpu.
    pub device_type: String,
    /// Driver name and version, when the driver reports them.
    pub driver: String,
    /// Whether this is a software rasteriser (lavapipe, llvmpipe, WARP) rather than a GPU.
    pub is_software: bool,
    /// `SHADER_F16`: f16 arithmetic in shaders.
    pub shader_f16: bool,
    /// `SUBGROUP`: subgroup (warp) operations in shaders.
    pub subgroup: bool,
    /// Smallest and largest subgroup size the adapter may use (0 without subgroups): 8 on lavapipe,
    /// 32 on NVIDIA, 32–64 on AMD, 8–32 on Intel.
    pub subgroup_sizes: [u32; 2],
    /// `TIMESTAMP_QUERY`: GPU-side timings.
    pub timestamp_query: bool,
    /// Largest buffer, in bytes.
    pub max_buffer_bytes: u64,
    /// Largest storage binding (the largest tensor a kernel can read), in bytes.
    pub max_binding_bytes: u64,
    /// Most threads in one workgroup.
    pub max_workgroup_invocations: u32,
    /// Workgroup shared memory, in bytes.
    pub max_workgroup_memory_bytes: u32,
    /// Storage buffers one kernel may bind (0 for the CPU).
    pub max_storage_buffers_per_stage: u32,
    /// Worker threads of the CPU backend (0 for GPUs).
    pub threads: usize,
}

/// Where tensors live and kernels run. Cheap to clone.
#[derive(Clone)]
pub enum Device {
    /// The native CPU backend.
    Cpu(CpuDevice),
    /// A wgpu GPU device (hardware, or a software adapter such as lavapipe when asked for explicitly).
    Gpu(GpuDevice),
}

impl Device {
    /// The native CPU backend.
    pub fn cpu() -> Device {
        Device::Cpu(CpuDevice::new())
    }

    /// The best GPU adapter, software adapters included (so `Device::gpu()` works on lavapipe).
    pub fn gpu() -> Result<Device> {
        Device::gpu_with(&GpuOptions::default())
    }

    /// The best GPU adapter matching `options`.
    pub fn gpu_with(options: &GpuOptions) -> Result<Device> {
        GpuDevice::open(options).map(Device::Gpu)
    }

    /// The device kiln should use here: `KILN_DEVICE` if set (`cpu`, `gpu`, `vulkan`, `metal`, `dx12`,
    /// `gl`), otherwise the best hardware GPU, otherwise the CPU backend. Never fails; the reason for the
    /// choice is logged (see [`Device::auto_with_reason`]).
    pub fn auto() -> Device {
        let (device, reason) = Device::auto_with_reason();
        log::info!("kiln: using {device} ({reason})");
        device
    }

    /// Like [`Device::auto`], also returning why that device was chosen.
    pub fn auto_with_reason() -> (Device, String) {
        let requested = std::env::var("KILN_DEVICE")
            .ok()
            .filter(|v| !v.trim().is_empty());
        if let Some(value) = requested {
            let value = value.trim().to_ascii_lowercase();
            let options = match value.as_str() {
                "cpu" => return (Device::cpu(), "KILN_DEVICE=cpu".into()),
                "gpu" => Some(GpuOptions::default()),
                other => Backend::parse(other).map(|b| GpuOptions::default().backends(&[b])),
            };
            match options {
                Some(options) => match Device::gpu_with(&options) {
                    Ok(device) => return (device, format!("KILN_DEVICE={value}")),
                    Err(e) => {
                        let reason = format!(
                            "KILN_DEVICE={value} asked for a GPU but {e}; falling back to the CPU"
                        );
                        log::warn!("kiln: {reason}");
                        return (Device::cpu(), reason);
                    }
                },
                None => log::warn!(
                    "kiln: ignoring KILN_DEVICE={value:?} (expected cpu, gpu, vulkan, metal, dx12 or gl)"
                ),
            }
        }
        match Device::gpu_with(&GpuOptions::default().allow_software(false)) {
            Ok(device) => (device, "the best hardware GPU adapter".into()),
            Err(Error::NoAdapter { reason }) => (
                Device::cpu(),
                format!(
                    "no hardware GPU adapter ({reason}); the native CPU backend is faster than a software \
                     adapter (set KILN_DEVICE=gpu to use one anyway)"
                ),
            ),
            Err(e) => (Device::cpu(), format!("the GPU could not be opened ({e})")),
        }
    }

    /// Every GPU adapter wgpu can see (honouring `WGPU_BACKEND`), hardware or software.
    pub fn list_adapters() -> Vec<DeviceInfo> {
        gpu::list_adapters()
    }

    /// What this device is and its limits.
    pub fn info(&self) -> DeviceInfo {
        match self {
            Device::Cpu(cpu) => cpu.info(),
            Device::Gpu(gpu) => gpu.info().clone(),
        }
    }

    /// Whether this is a GPU device.
    pub fn is_gpu(&self) -> bool {
        matches!(self, Device::Gpu(_))
    }

    /// Memory counters: bytes in use, bytes pooled for reuse, allocations, reuses.
    pub fn memory_stats(&self) -> MemoryStats {
        match self {
            Device::Cpu(cpu) => cpu.memory_stats(),
            Device::Gpu(gpu) => gpu.ctx.memory_stats(),
        }
    }

    /// Traffic counters of the GPU runtime (all zero on the CPU).
    pub fn runtime_stats(&self) -> RuntimeStats {
        match self {
            Device::Cpu(_) => RuntimeStats::default(),
            Device::Gpu(gpu) => gpu.runtime_stats(),
        }
    }

    /// Frees the memory the GPU buffer pool holds for reuse (no-op on the CPU).
    pub fn release_pooled_memory(&self) {
        if let Device::Gpu(gpu) = self {
            gpu.ctx.release_pooled();
        }
    }

    /// Starts a step guard (what `fit` uses on a GPU to catch a non-finite loss without a host sync
    /// per step): from now on every optimizer update kernel reads a device word, and once
    /// [`Device::guard_loss`] has found a NaN or infinite loss, writes its inputs through
    /// unchanged — so the weights and optimizer state stay those before that step. The CPU device,
    /// which can read each loss for free, has no guard: this and the two calls below do nothing
    /// there. The guard belongs to the device: one guarded training loop per device at a time
    /// (a second one would share, and reset, the first one's guard).
    pub fn begin_step_guard(&self) -> Result<()> {
        match self {
            Device::Cpu(_) => Ok(()),
            Device::Gpu(gpu) => gpu.ctx.begin_step_guard("begin_step_guard"),
        }
    }

    /// Records the guard's check of step `step`'s loss (a one-element f32 tensor on this device).
    pub fn guard_loss(&self, loss: &RawTensor, step: u32) -> Result<()> {
        let Device::Gpu(gpu) = self else {
            return Ok(());
        };
        let op = "guard_loss";
        if !loss.device().same_device(self)
            || loss.dtype() != DType::F32
            || loss.shape().numel() != 1
        {
            return Err(Error::argument(
                op,
                format!(
                    "takes a one-element f32 loss on {self}, got {:?} {} on {}",
                    loss.dtype(),
                    loss.shape(),
                    loss.device()
                ),
            ));
        }
        let loss = if loss.layout().is_contiguous() && loss.layout().offset() == 0 {
            loss.clone()
        } else {
            loss.contiguous()?
        };
        crate::gpu::optimizer::guard_loss(&gpu.ctx, loss.buffer(), step)
    }

    /// Ends the step guard and reads it (one readback): the first step given to
    /// [`Device::guard_loss`] whose loss was non-finite, if any.
    pub fn end_step_guard(&self) -> Result<Option<u32>> {
        match self {
            Device::Cpu(_) => Ok(None),
            Device::Gpu(gpu) => gpu.ctx.end_step_guard("end_step_guard"),
        }
    }

    /// Waits until every queued kernel has finished (returns at once on the CPU, which runs eagerly).
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu(_) => Ok(()),
            Device::Gpu(gpu) => gpu.ctx.synchronize(),
        }
    }

    /// Turns the per-kernel profiler on or off (`KILN_PROFILE=1` turns it on when a GPU device opens).
    /// While on, every GPU kernel is timed — with GPU timestamps where the adapter has TIMESTAMP_QUERY,
    /// else by the host clock around a submit of that kernel alone (slower; use it to find hot spots,
    /// not to measure throughput). The CPU backend has no kernels to profile: an error there.
    pub fn set_profiling(&self, on: bool) -> Result<()> {
        match self {
            Device::Cpu(_) => Err(Error::invalid(
                "set_profiling",
                "the profiler times GPU kernels; this is the CPU device (use perf for the CPU backend)",
            )),
            Device::Gpu(gpu) => gpu.ctx.set_profiling(on),
        }
    }

    /// The per-kernel table recorded since profiling started or since the last call (waits for queued
    /// kernels); `None` when the profiler is off or on the CPU. Prints as a table with `{}`.
    pub fn take_profile(&self) -> Result<Option<Profile>> {
        match self {
            Device::Cpu(_) => Ok(None),
            Device::Gpu(gpu) => gpu.ctx.take_profile(),
        }
    }

    /// Whether tensors of `self` and `other` can be used together (all CPU devices share host memory).
    pub fn same_device(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu(_), Device::Cpu(_)) => true,
            (Device::Gpu(a), Device::Gpu(b)) => a.same_device(b),
            _ => false,
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu(_) => write!(f, "cpu"),
            Device::Gpu(gpu) => write!(f, "gpu:{} ({})", gpu.info().name, gpu.info().backend),
        }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({self})")
    }
}
