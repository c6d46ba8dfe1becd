//! The native CPU backend: host memory and one module per kernel family, multi-threaded with rayon.

pub(crate) mod conv1d;
pub(crate) mod conv2d;
pub(crate) mod copy;
pub(crate) mod elementwise;
mod gemm;
pub(crate) mod loss;
pub(crate) mod matmul;
pub(crate) mod norm;
pub(crate) mod optimizer;
pub(crate) mod pool;
pub(crate) mod random;
pub(crate) mod recurrent;
pub(crate) mod reduce;
pub(crate) mod softmax;
pub(crate) mod topk;
mod vecmath;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use half::f16;

use crate::{DType, DeviceInfo, MemoryStats};

/// Elements in host memory, by dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum CpuData {
    /// f32 elements.
    F32(Vec<f32>),
    /// f16 elements.
    F16(Vec<f16>),
    /// u32 elements.
    U32(Vec<u32>),
}

impl CpuData {
    /// The dtype of the elements.
    pub fn dtype(&self) -> DType {
        match self {
            CpuData::F32(_) => DType::F32,
            CpuData::F16(_) => DType::F16,
            CpuData::U32(_) => DType::U32,
        }
    }

    fn bytes(&self) -> u64 {
        match self {
            CpuData::F32(v) => v.len() as u64 * 4,
            CpuData::F16(v) => v.len() as u64 * 2,
            CpuData::U32(v) => v.len() as u64 * 4,
        }
    }
}

#[derive(Default)]
struct Counters {
    bytes_in_use: AtomicU64,
    allocations: AtomicU64,
}

/// A handle to the CPU backend. Each `Device::cpu()` has its own memory counters; all CPU devices share
/// host memory, so tensors move freely between them.
#[derive(Clone, Default)]
pub struct CpuDevice {
    counters: Arc<Counters>,
}

/// One tensor's elements in host memory; counted in its device's memory stats while alive.
pub struct CpuBuffer {
    data: CpuData,
    counters: Arc<Counters>,
}

impl CpuBuffer {
    /// The elements.
    pub fn data(&self) -> &CpuData {
        &self.data
    }
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        self.counters
            .bytes_in_use
            .fetch_sub(self.data.bytes(), Ordering::Relaxed);
    }
}

impl CpuDevice {
    /// Takes ownership of `data` as a tensor's storage.
    pub(crate) fn store(&self, data: CpuData) -> CpuBuffer {
        self.counters.allocations.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_in_use
            .fetch_add(data.bytes(), Ordering::Relaxed);
        CpuBuffer {
            data,
            counters: self.counters.clone(),
        }
    }

    /// Host memory held by this device's live tensors.
    pub fn memory_stats(&self) -> MemoryStats {
        MemoryStats {
            bytes_in_use: self.counters.bytes_in_use.load(Ordering::Relaxed),
            bytes_pooled: 0,
            allocations: self.counters.allocations.load(Ordering::Relaxed),
            reuses: 0,
        }
    }

    /// Describes the CPU backend.
    pub fn info(&self) -> DeviceInfo {
        let threads = rayon::current_num_threads();
        DeviceInfo {
            name: format!("native CPU backend ({threads} threads)"),
            backend: "cpu".into(),
            device_type: "cpu".into(),
            driver: String::new(),
            is_software: false,
            shader_f16: false,
            subgroup: false,
            subgroup_sizes: [0, 0],
            timestamp_query: false,
            max_buffer_bytes: u64::MAX,
            max_binding_bytes: u64::MAX,
            max_workgroup_invocations: 0,
            max_workgroup_memory_bytes: 0,
            threads,
        }
    }
}

/// `n` copies of `value`, or an error naming `op` when the host cannot hold them (instead of the
/// abort an infallible allocation would be).
pub(crate) fn filled<T: Clone>(op: &'static str, n: usize, value: T) -> crate::Result<Vec<T>> {
    let mut values = Vec::new();
    values
        .try_reserve_exact(n)
        .map_err(|_| crate::Error::HostAlloc {
            op,
            bytes: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        })?;
    values.resize(n, value);
    Ok(values)
}

/// `Err` naming `op` when the host cannot hold `n` values of `T` (checked before a computation
/// that would otherwise abort on a failed allocation).
pub(crate) fn check_alloc<T>(op: &'static str, n: usize) -> crate::Result<()> {
    Vec::<T>::new()
        .try_reserve_exact(n)
        .map_err(|_| crate::Error::HostAlloc {
            op,
            bytes: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        })
}
