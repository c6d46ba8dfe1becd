//! The GPU backend: wgpu device selection, the runtime (pipelines, buffer pool, batched submission,
//! readback) and one launcher per kernel family, each matching a file in `shaders/`.

mod buffer_pool;
mod context;
pub(crate) mod conv2d;
pub(crate) mod copy;
pub(crate) mod elementwise;
pub(crate) mod gemm;
pub(crate) mod index;
pub(crate) mod loss;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod optimizer;
mod params;
pub(crate) mod pipelines;
pub(crate) mod pool;
mod profiler;
pub(crate) mod random;
pub(crate) mod recurrent;
pub(crate) mod reduce;
mod select;
pub(crate) mod softmax;
mod teams;
pub(crate) mod topk;

use std::sync::Arc;

pub use buffer_pool::MemoryStats;
pub use context::{GpuBuffer, GpuFault, RuntimeStats};
pub(crate) use context::{GpuContext, groups_for};
pub use profiler::{Profile, ProfileRow};
pub(crate) use select::list_adapters;
pub use select::{Backend, GpuOptions, PowerPreference};

use crate::{DeviceInfo, Result};

/// A handle to one GPU device (cheap to clone; clones share the device).
#[derive(Clone)]
pub struct GpuDevice {
    pub(crate) ctx: Arc<GpuContext>,
}

impl GpuDevice {
    /// Opens the best adapter matching `options`.
    pub fn open(options: &GpuOptions) -> Result<Self> {
        let (device, queue, info) = select::open(options)?;
        Ok(GpuDevice {
            ctx: GpuContext::new(device, queue, info),
        })
    }

    /// The adapter's description and limits.
    pub fn info(&self) -> &DeviceInfo {
        &self.ctx.info
    }

    /// Traffic counters (dispatches, submissions, readbacks, pipelines).
    pub fn runtime_stats(&self) -> RuntimeStats {
        self.ctx.runtime_stats()
    }

    /// Destroys the device now, freeing its memory; every later op on it returns `Error::DeviceLost`.
    pub fn destroy(&self) {
        self.ctx.destroy();
    }

    /// Whether two handles refer to the same device.
    pub fn same_device(&self, other: &GpuDevice) -> bool {
        Arc::ptr_eq(&self.ctx, &other.ctx)
    }
}
