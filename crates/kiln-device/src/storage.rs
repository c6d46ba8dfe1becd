//! `Storage`: a tensor's elements, in host memory or in a GPU buffer.

use crate::cpu::CpuBuffer;
use crate::gpu::GpuBuffer;

/// The memory behind a tensor. Views share one `Storage` through an `Arc`.
pub enum Storage {
    /// Host memory of the CPU backend.
    Cpu(CpuBuffer),
    /// A pooled GPU buffer.
    Gpu(GpuBuffer),
}
