//! The native CPU backend: host memory and one module per kernel family, multi-threaded with rayon.

/// Defines `$name`, which runs `$generic` compiled for AVX-512 or AVX2 when [`simd_level`] allows.
/// With `$generic::<FMA>`, the generic function takes a `const FMA: bool`: true where fused
/// multiply-adds are single instructions (the AVX builds; AArch64), so it can use `mul_add` there
/// and plain `a * b + c` elsewhere (where `mul_add` would be a slow libm call).
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) => $generic:ident) => {
        multiversion!(@define $(#[$doc])* fn $name($($arg: $ty),*) => $generic, $generic, $generic);
    };
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) => $generic:ident::<FMA>) => {
        multiversion!(@define $(#[$doc])* fn $name($($arg: $ty),*) =>
            $generic::<true>,
            $generic::<true>,
            $generic::<{ cfg!(any(target_arch = "aarch64", target_feature = "fma")) }>);
    };
    (@define $(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) =>
        $avx512:expr, $avx2:expr, $baseline:expr) => {
        $(#[$doc])*
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::cpu::{SimdLevel, simd_level};
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $avx512($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $avx2($($arg),*)
                }
                match simd_level() {
                    // SAFETY: `simd_level` reports AVX-512F only where the CPU has it.
                    SimdLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: `simd_level` reports AVX2 only where the CPU has AVX2 and FMA.
                    SimdLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    SimdLevel::Baseline => {}
                }
            }
            $baseline($($arg),*)
        }
    };
}

pub(crate) mod conv1d;
pub(crate) mod conv2d;
pub(crate) mod copy;
pub(crate) mod elementwise;
mod gemm;
pub(crate) mod host_pool;
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

/// The widest vector instructions kiln's own CPU kernels use (matrix products dispatch inside the
/// `gemm` crate by themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SimdLevel {
    /// The target's baseline (SSE2 on x86-64; NEON on AArch64).
    Baseline,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512F.
    Avx512,
}

impl SimdLevel {
    /// The level this CPU supports.
    pub fn detected() -> SimdLevel {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return SimdLevel::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return SimdLevel::Avx2;
            }
        }
        SimdLevel::Baseline
    }

    /// Parses `avx512`, `avx2` or `baseline` (the values of `KILN_CPU_FEATURES`, as `Display`
    /// writes them).
    pub fn parse(name: &str) -> Option<SimdLevel> {
        match name.trim().to_ascii_lowercase().as_str() {
            "avx512" | "avx-512" => Some(SimdLevel::Avx512),
            "avx2" => Some(SimdLevel::Avx2),
            "baseline" | "scalar" | "none" => Some(SimdLevel::Baseline),
            _ => None,
        }
    }
}

impl std::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SimdLevel::Baseline => "baseline",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        })
    }
}

/// The level kiln's CPU kernels run at: [`SimdLevel::detected`], lowered (never raised) by the
/// environment variable `KILN_CPU_FEATURES=avx2|baseline` — to compare paths, or to rule out one
/// while hunting a bug. Read once per process.
pub fn simd_level() -> SimdLevel {
    static LEVEL: std::sync::LazyLock<SimdLevel> = std::sync::LazyLock::new(|| {
        let detected = SimdLevel::detected();
        match std::env::var("KILN_CPU_FEATURES") {
            Ok(value) => match SimdLevel::parse(&value) {
                Some(requested) => requested.min(detected),
                None => {
                    log::warn!(
                        "kiln: KILN_CPU_FEATURES={value:?} is not avx512, avx2 or baseline; using {detected:?}"
                    );
                    detected
                }
            },
            Err(_) => detected,
        }
    });
    *LEVEL
}

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
        host_pool::give_back_data(std::mem::replace(&mut self.data, CpuData::F32(Vec::new())));
    }
}

/// Keeps the C allocator from handing freed tensor memory back to the kernel, once per process.
///
/// A training step frees and allocates the same large buffers every batch. glibc's malloc serves
/// blocks above its mmap threshold (128 KiB, rising only to 32 MiB) with fresh mappings and trims
/// the heap's top after frees, so every step paid page faults, zero-page copies and TLB shootdowns
/// across the worker threads (~20% of a text-CNN step in `perf`). Raising both thresholds makes
/// freed blocks reusable; memory stays reserved by the process at its high-water mark, as with
/// PyTorch's and TensorFlow's caching allocators. Other allocators (musl, macOS, Windows, a custom
/// `#[global_allocator]`) are left as they are.
fn keep_freed_host_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            const LARGE: libc::c_int = 1 << 30;
            // SAFETY: mallopt only changes allocator tuning parameters; no memory is touched.
            let accepted = unsafe {
                [
                    libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE),
                    libc::mallopt(libc::M_TRIM_THRESHOLD, LARGE),
                ]
            };
            // glibc returns 1 on success (older versions refuse thresholds above 32 MiB).
            if accepted != [1, 1] {
                log::debug!("kiln: glibc refused a malloc threshold ({accepted:?}); left as it is");
            }
        });
    }
}

impl CpuDevice {
    /// A handle with its own memory counters.
    pub(crate) fn new() -> CpuDevice {
        keep_freed_host_memory();
        CpuDevice::default()
    }

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

    /// Host memory of this device: `bytes_in_use` by its live tensors and `allocations`, the
    /// tensors it has stored. `bytes_pooled` and `reuses` are the process's host pool, which every
    /// CPU device shares (do not add them up across devices; see [`host_pool::host_pool_stats`]).
    pub fn memory_stats(&self) -> MemoryStats {
        MemoryStats {
            bytes_in_use: self.counters.bytes_in_use.load(Ordering::Relaxed),
            bytes_pooled: host_pool::host_pool_stats().bytes_pooled,
            allocations: self.counters.allocations.load(Ordering::Relaxed),
            reuses: host_pool::host_pool_stats().reuses,
        }
    }

    /// Describes the CPU backend.
    pub fn info(&self) -> DeviceInfo {
        let threads = rayon::current_num_threads();
        DeviceInfo {
            name: format!("native CPU backend ({threads} threads, {})", simd_level()),
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
            max_storage_buffers_per_stage: 0,
            threads,
        }
    }
}

/// `n` copies of `value`, or an error naming `op` when the host cannot hold them (instead of the
/// abort an infallible allocation would be).
pub(crate) fn filled<T: Clone>(op: &'static str, n: usize, value: T) -> crate::Result<Vec<T>> {
    let mut values = Vec::new();
    reserve_exact(op, &mut values, n)?;
    values.resize(n, value);
    Ok(values)
}

/// Room for `n` more values in `values`, or an [`Error::HostAlloc`](crate::Error::HostAlloc)
/// naming `op` when the host cannot hold them.
pub(crate) fn reserve_exact<T>(
    op: &'static str,
    values: &mut Vec<T>,
    n: usize,
) -> crate::Result<()> {
    values
        .try_reserve_exact(n)
        .map_err(|_| crate::Error::HostAlloc {
            op,
            bytes: (n as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        })
}

/// The largest of `indices` when it is `bound` or more (an index out of range; the GPU kernels report
/// the largest too), else `None`. One vectorised pass, no early exit: indices are nearly always fine.
pub(crate) fn index_past(indices: &[u32], bound: usize) -> Option<u32> {
    let largest = indices.iter().copied().max()?;
    (largest as usize >= bound).then_some(largest)
}

/// `Err` naming `op` when the host cannot hold `n` values of `T` (checked before a computation
/// that would otherwise abort on a failed allocation).
pub(crate) fn check_alloc<T>(op: &'static str, n: usize) -> crate::Result<()> {
    reserve_exact(op, &mut Vec::<T>::new(), n)
}
