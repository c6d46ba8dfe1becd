//! The GPU runtime: one wgpu device and queue, the pipeline cache, the buffer pool, the pending batch of
//! dispatches, and the readback path. Kernel launchers (`elementwise.rs`, `copy.rs`, ...) go through
//! [`GpuContext::dispatch`].

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::buffer_pool::{BufferPool, MemoryStats, bucket_size};
use super::params::{PARAM_WORDS, Params};
use super::pipelines::{Kernel, PipelineCache};
use super::profiler::{Annotation, Profile, Profiler, Record};
use crate::{DeviceInfo, Error, Result};

/// Threads per workgroup of every 1-D kernel (`WORKGROUP` in the shaders).
pub(crate) const WORKGROUP_SIZE: u64 = 256;
/// Bytes between two parameter blocks in the batch's uniform buffer (the largest offset alignment
/// WebGPU allows an adapter to require).
const PARAM_SLOT_BYTES: u64 = 256;
/// Dispatches recorded before the batch is submitted.
const MAX_BATCH_DISPATCHES: usize = 512;

/// Submitted batches the CPU may have ahead of the GPU; recording waits for the oldest beyond this,
/// so a loop that never reads back cannot queue work (and the memory it holds) without limit.
const MAX_IN_FLIGHT: usize = 4;
/// Workgroups that fill a hardware GPU (see [`GpuContext::fill_workgroups`]).
const HARDWARE_FILL: usize = 128;

/// Workgroups of [`WORKGROUP_SIZE`] threads needed for `threads` threads.
pub(crate) fn groups_for(threads: usize) -> u64 {
    (threads as u64).div_ceil(WORKGROUP_SIZE)
}

/// A buffer a kernel can bind: the wgpu buffer and how many bytes of it to bind.
pub(crate) trait Bindable {
    fn binding(&self) -> (&wgpu::Buffer, u64);
}

/// Counters of the runtime's traffic with the driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Kernel launches recorded.
    pub dispatches: u64,
    /// Command buffers submitted to the queue (each holds a batch of dispatches).
    pub submissions: u64,
    /// Device-to-host copies (`to_vec`).
    pub readbacks: u64,
    /// Compute pipelines compiled.
    pub pipelines: u64,
    /// Bind groups created (a dispatch on the same buffers as an earlier one reuses its bind group).
    pub bind_groups: u64,
    /// Bytes of the readback staging buffer kept for the next readback.
    pub staging_bytes: u64,
    /// The most submitted batches that were ever in flight at once (at most 4 + 1).
    pub max_in_flight: u64,
}

/// `Mutex::lock` that survives poisoning: a panic on another thread while it held a lock (inside a
/// driver callback, say) must not turn every later GPU call into a panic. The runtime's locked state
/// stays consistent at every await point, so the data is still usable.
pub(crate) trait Locked<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Faults the test hook ([`crate::testing::inject_gpu_fault`]) makes the runtime raise, to test how
/// kiln handles what a driver may do at any time.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuFault {
    /// The next buffer asked of the driver fails as out of memory; the retry after releasing the
    /// pool succeeds.
    OutOfMemoryOnce,
    /// The next buffer asked of the driver and its retry fail as out of memory.
    OutOfMemory,
    /// The next submission fails; its batch of work is lost.
    Submit,
    /// The next readback's mapping fails.
    Readback,
    /// The next wait for the GPU times out.
    Timeout,
    /// The device is lost at the next wait.
    DeviceLost,
}

/// How long a wait for the GPU may take before it is an error (`KILN_GPU_TIMEOUT_SECS` overrides).
fn wait_timeout() -> std::time::Duration {
    let secs = std::env::var("KILN_GPU_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    std::time::Duration::from_secs(secs)
}

/// Readback staging buffers up to this size are kept for the next readback; larger ones are made
/// for one readback and dropped.
const KEPT_STAGING_BYTES: u64 = 64 << 20;

/// Device loss and uncaptured validation errors, filled in by wgpu's callbacks.
#[derive(Default)]
struct Health {
    lost: Mutex<Option<String>>,
    errors: Mutex<Vec<String>>,
}

/// Dispatches recorded but not yet submitted.
struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Parameter blocks of the recorded dispatches, one slot each, written to `params_buffer` at submit.
    params: Vec<u8>,
    params_buffer: wgpu::Buffer,
    /// Names of the recorded ops, for error messages.
    ops: Vec<&'static str>,
}

/// Timestamp queries around each dispatch of a batch, for the profiler.
struct Timestamps {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period: f64,
}

/// What a bind group binds: the pipeline (its layout) and each binding's buffer and size. The
/// parameter block is not part of it: it sits at a dynamic offset.
#[derive(PartialEq, Eq, Hash)]
struct BindKey {
    pipeline: usize,
    /// Inline for the common kernels (no allocation per dispatch); the multi-parameter optimizer
    /// kernels spill to the heap.
    buffers: SmallVec<[(u32, wgpu::Buffer, u64); 8]>,
}

/// Distinct error messages kept for kernels' error codes.
const MAX_ERROR_MESSAGES: usize = 4096;

/// Bind groups kept for reuse; cleared when this many are held (and when pooled memory is released,
/// since a kept bind group keeps its buffers alive).
const MAX_BIND_GROUPS: usize = 4096;

/// Everything one GPU device owns.
pub(crate) struct GpuContext {
    pub(crate) device: wgpu::Device,
    queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    pub(crate) info: DeviceInfo,
    pipelines: PipelineCache,
    pool: Mutex<BufferPool>,
    batch: Mutex<Batch>,
    staging: Mutex<Option<wgpu::Buffer>>,
    health: Arc<Health>,
    /// One word kernels raise (atomicMax) when they meet bad data they cannot report otherwise, such as
    /// a class label out of range; checked at every readback.
    error_flag: wgpu::Buffer,
    /// A 4-byte storage buffer bound where a kernel declares an output the dispatch does not use.
    placeholder: wgpu::Buffer,
    /// A 4-byte word of zero that update kernels read as the step guard when no guard is set.
    zero_word: wgpu::Buffer,
    /// The step guard `fit` sets on a GPU (see `shaders/optimizer.wgsl`).
    guard: Mutex<Option<wgpu::Buffer>>,
    /// Messages of the error codes kernels may raise (code `i + 1` is the list's `i`), and the code
    /// of each message.
    error_messages: Mutex<(Vec<String>, FxHashMap<String, u32>)>,
    dispatches: AtomicU64,
    submissions: AtomicU64,
    readbacks: AtomicU64,
    bind_groups_created: AtomicU64,
    /// The per-kernel profiler, when on.
    profiler: Mutex<Option<Profiler>>,
    /// What the next dispatch's launcher said about it (profiling only).
    annotation: Mutex<Option<Annotation>>,
    /// Present when the adapter has TIMESTAMP_QUERY.
    timestamps: Option<Timestamps>,
    /// Whether row kernels use subgroup operations (the adapter has SUBGROUP and `KILN_SUBGROUPS`
    /// is not `0`).
    subgroups: AtomicBool,
    /// Bind groups by what they bind: a training step's dispatches find theirs from the last step.
    bind_groups: Mutex<FxHashMap<BindKey, wgpu::BindGroup>>,
    /// Faults injected by the test hook, raised once each where they apply.
    faults: Mutex<Vec<GpuFault>>,
    /// Submissions that may still be running, oldest first.
    in_flight: Mutex<std::collections::VecDeque<wgpu::SubmissionIndex>>,
    max_in_flight: AtomicU64,
}

/// A storage buffer holding one tensor's elements. Returns to the pool when dropped.
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    bytes: u64,
    bucket: u64,
    ctx: Arc<GpuContext>,
}

impl GpuBuffer {
    /// Bytes of tensor data (a multiple of 4).
    pub fn len_bytes(&self) -> u64 {
        self.bytes
    }

    fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
}

impl Bindable for GpuBuffer {
    fn binding(&self) -> (&wgpu::Buffer, u64) {
        (self.raw(), self.bytes)
    }
}

/// A buffer bound whole (its pool bucket, at least 256 bytes), for a kernel's vec4 view of a tensor
/// whose own size may not be a multiple of 16 bytes; kernels read only the tensor's part.
pub(crate) struct WholeBuffer<'a>(pub(crate) &'a GpuBuffer);

impl Bindable for WholeBuffer<'_> {
    fn binding(&self) -> (&wgpu::Buffer, u64) {
        (self.0.raw(), self.0.bucket)
    }
}

/// A small device buffer bound whole by kernels: the error flag (code and offending value), or the
/// 4-byte unused-output placeholder.
pub(crate) struct DeviceWord<'a>(&'a wgpu::Buffer);

impl Bindable for DeviceWord<'_> {
    fn binding(&self) -> (&wgpu::Buffer, u64) {
        (self.0, self.0.size())
    }
}

/// The step guard word update kernels bind (the set guard, or the zero word).
pub(crate) struct StepGuard(pub(crate) wgpu::Buffer);

impl Bindable for StepGuard {
    fn binding(&self) -> (&wgpu::Buffer, u64) {
        (&self.0, 4)
    }
}

/// `buffer` when the dispatch has one, else `placeholder` (from [`GpuContext::placeholder`]).
pub(crate) fn or_placeholder<'a>(
    buffer: Option<&'a GpuBuffer>,
    placeholder: &'a DeviceWord<'_>,
) -> &'a dyn Bindable {
    match buffer {
        Some(buffer) => buffer,
        None => placeholder,
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.ctx.pool.locked().give_back(self.bucket, buffer);
        }
    }
}

impl GpuContext {
    /// Wraps a freshly requested device and installs the loss and error callbacks.
    pub(crate) fn new(device: wgpu::Device, queue: wgpu::Queue, info: DeviceInfo) -> Arc<Self> {
        let health = Arc::new(Health::default());
        let on_lost = health.clone();
        device.set_device_lost_callback(move |reason, message| {
            let mut lost = on_lost.lost.locked();
            lost.get_or_insert_with(|| format!("{reason:?}: {message}"));
        });
        let on_error = health.clone();
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            on_error.errors.locked().push(error.to_string());
        }));
        let params_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln params"),
            size: PARAM_SLOT_BYTES * MAX_BATCH_DISPATCHES as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // Word 0: the largest error code raised; word 1: the largest offending value + 1.
        let error_flag = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln error flag"),
            size: 8,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln unused binding"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let zero_word = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln zero word"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let limits = device.limits();
        let timestamps = device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| {
                let bytes = 16 * MAX_BATCH_DISPATCHES as u64;
                let buffer = |label, usage| {
                    device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some(label),
                        size: bytes,
                        usage,
                        mapped_at_creation: false,
                    })
                };
                Timestamps {
                    queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                        label: Some("kiln profiler"),
                        ty: wgpu::QueryType::Timestamp,
                        count: 2 * MAX_BATCH_DISPATCHES as u32,
                    }),
                    resolved: buffer(
                        "kiln profiler resolve",
                        wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    ),
                    readback: buffer(
                        "kiln profiler readback",
                        wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    ),
                    period: f64::from(queue.get_timestamp_period()),
                }
            });
        let profiling = std::env::var("KILN_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0");
        let subgroups = info.subgroup && std::env::var("KILN_SUBGROUPS").map_or(true, |v| v != "0");
        Arc::new(GpuContext {
            device,
            queue,
            limits,
            info,
            pipelines: PipelineCache::default(),
            pool: Mutex::new(BufferPool::default()),
            batch: Mutex::new(Batch {
                encoder: None,
                pass: None,
                params: Vec::new(),
                params_buffer,
                ops: Vec::new(),
            }),
            staging: Mutex::new(None),
            health,
            error_flag,
            placeholder,
            zero_word,
            guard: Mutex::new(None),
            error_messages: Mutex::new((Vec::new(), FxHashMap::default())),
            dispatches: AtomicU64::new(0),
            submissions: AtomicU64::new(0),
            readbacks: AtomicU64::new(0),
            bind_groups_created: AtomicU64::new(0),
            profiler: Mutex::new(profiling.then(Profiler::default)),
            annotation: Mutex::new(None),
            timestamps,
            subgroups: AtomicBool::new(subgroups),
            bind_groups: Mutex::new(FxHashMap::default()),
            faults: Mutex::new(Vec::new()),
            in_flight: Mutex::new(std::collections::VecDeque::new()),
            max_in_flight: AtomicU64::new(0),
        })
    }

    /// Whether row kernels use subgroup operations.
    pub(crate) fn subgroups(&self) -> bool {
        self.subgroups.load(Ordering::Relaxed)
    }

    /// Makes row kernels use the workgroup-memory teams even where subgroups exist (tests compare
    /// both); has no effect on an adapter without SUBGROUP.
    #[cfg(test)]
    pub(crate) fn set_subgroups(&self, on: bool) {
        self.subgroups
            .store(on && self.info.subgroup, Ordering::Relaxed);
    }

    /// Workgroups that keep every compute unit busy: [`HARDWARE_FILL`] on a GPU (wgpu does not report
    /// compute units; a large GPU has 100+, an H200 132); two per CPU thread on a software adapter,
    /// which runs one workgroup per thread at a time.
    pub(crate) fn fill_workgroups(&self) -> usize {
        if self.info.is_software {
            2 * std::thread::available_parallelism().map_or(4, |n| n.get())
        } else {
            HARDWARE_FILL
        }
    }

    /// Turns the per-kernel profiler on or off (off drops what it recorded).
    pub(crate) fn set_profiling(&self, on: bool) -> Result<()> {
        self.flush()?;
        let mut profiler = self.profiler.locked();
        if on != profiler.is_some() {
            *profiler = on.then(Profiler::default);
        }
        Ok(())
    }

    /// Whether the profiler is on.
    pub(crate) fn profiling(&self) -> bool {
        self.profiler.locked().is_some()
    }

    /// The kernel times recorded since the last call (waits for pending work); `None` when the profiler
    /// is off.
    pub(crate) fn take_profile(&self) -> Result<Option<Profile>> {
        self.synchronize()?;
        let timer = if self.timestamps.is_some() {
            "GPU timestamps"
        } else {
            "host clock, one dispatch per submit"
        };
        Ok(self.profiler.locked().as_mut().map(|p| p.take(timer)))
    }

    /// Tells the profiler about the next dispatch; `describe` runs only while profiling.
    pub(crate) fn annotate(&self, describe: impl FnOnce() -> Annotation) {
        if self.profiling() {
            *self.annotation.locked() = Some(describe());
        }
    }

    /// `Err(DeviceLost)` once the device is gone.
    pub(crate) fn check_alive(&self, op: &'static str) -> Result<()> {
        match &*self.health.lost.locked() {
            Some(reason) => Err(Error::DeviceLost {
                op,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A buffer for `bytes` bytes of tensor data, from the pool when one is free.
    pub(crate) fn alloc(self: &Arc<Self>, op: &'static str, bytes: u64) -> Result<GpuBuffer> {
        self.check_alive(op)?;
        let bytes = bytes.max(4).next_multiple_of(4);
        let binding_limit = self.limits.max_storage_buffer_binding_size;
        if bytes > binding_limit {
            return Err(Error::TooLarge {
                op,
                what: "tensor (one storage binding)",
                bytes,
                limit: binding_limit,
            });
        }
        if bytes > self.limits.max_buffer_size {
            return Err(Error::TooLarge {
                op,
                what: "tensor (one buffer)",
                bytes,
                limit: self.limits.max_buffer_size,
            });
        }
        let bucket = bucket_size(bytes, self.limits.max_buffer_size);
        let pooled = self.pool.locked().take(bucket);
        let buffer = match pooled {
            Some(buffer) => buffer,
            None => {
                // Out of memory: give the pool's free buffers back to the driver and try once more.
                let buffer = match self.create_storage(op, bucket) {
                    Err(_) => {
                        self.release_pooled();
                        self.create_storage(op, bucket).map_err(|message| {
                            Error::DeviceOutOfMemory {
                                op,
                                bytes: bucket,
                                message,
                            }
                        })?
                    }
                    Ok(buffer) => buffer,
                };
                self.pool.locked().note_allocation(bucket);
                buffer
            }
        };
        Ok(GpuBuffer {
            buffer: Some(buffer),
            bytes,
            bucket,
            ctx: self.clone(),
        })
    }

    /// A new storage buffer of `bytes` from the driver, or its out-of-memory message.
    fn create_storage(
        &self,
        op: &'static str,
        bytes: u64,
    ) -> std::result::Result<wgpu::Buffer, String> {
        if let Some(fault) = self.take_fault(&[GpuFault::OutOfMemoryOnce, GpuFault::OutOfMemory]) {
            if fault == GpuFault::OutOfMemory {
                self.faults.locked().push(GpuFault::OutOfMemoryOnce);
            }
            return Err("out of memory (injected)".to_string());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(op),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        match pollster::block_on(scope.pop()) {
            Some(error) => Err(error.to_string()),
            None => Ok(buffer),
        }
    }

    /// Removes and returns the first injected fault among `kinds`.
    fn take_fault(&self, kinds: &[GpuFault]) -> Option<GpuFault> {
        let mut faults = self.faults.locked();
        let at = faults.iter().position(|f| kinds.contains(f))?;
        Some(faults.remove(at))
    }

    /// Makes the runtime raise `fault` where it next applies (tests only).
    pub(crate) fn inject_fault(&self, fault: GpuFault) {
        self.faults.locked().push(fault);
    }

    /// A buffer holding `data` (padded with zeros to a multiple of 4 bytes).
    pub(crate) fn upload(self: &Arc<Self>, op: &'static str, data: &[u8]) -> Result<GpuBuffer> {
        let buffer = self.alloc(op, data.len() as u64)?;
        // `write_buffer` lands before the next submission: pending dispatches that used this (pooled)
        // buffer must be submitted first so they do not see the new contents.
        self.flush()?;
        if data.len().is_multiple_of(4) {
            self.queue.write_buffer(buffer.raw(), 0, data);
        } else {
            let mut padded = data.to_vec();
            padded.resize(data.len().next_multiple_of(4), 0);
            self.queue.write_buffer(buffer.raw(), 0, &padded);
        }
        Ok(buffer)
    }

    /// A buffer to bind where a kernel declares an output this dispatch does not write.
    pub(crate) fn placeholder(&self) -> DeviceWord<'_> {
        DeviceWord(&self.placeholder)
    }

    /// The error-flag word and the code under which a kernel reports `message` through it. At most
    /// [`MAX_ERROR_MESSAGES`] distinct messages are kept; later ones share a general message.
    pub(crate) fn error_check(&self, message: String) -> (DeviceWord<'_>, u32) {
        let mut messages = self.error_messages.locked();
        let (list, codes) = &mut *messages;
        let code = match codes.get(&message) {
            Some(&code) => code,
            None if list.len() < MAX_ERROR_MESSAGES => {
                list.push(message.clone());
                codes.insert(message, list.len() as u32);
                list.len() as u32
            }
            None => MAX_ERROR_MESSAGES as u32 + 1,
        };
        (DeviceWord(&self.error_flag), code)
    }

    /// Records one kernel launch of `workgroups` workgroups (spread over an x·y grid; kernels flatten
    /// it back) into the pending batch. `bindings` pairs each storage buffer with its `@binding` index
    /// (binding 0 is always the parameter block).
    pub(crate) fn dispatch(
        &self,
        op: &'static str,
        kernel: &Kernel,
        params: &Params,
        bindings: &[(u32, &dyn Bindable)],
        workgroups: u64,
    ) -> Result<()> {
        self.check_alive(op)?;
        if workgroups == 0 {
            return Ok(());
        }
        let (x, y) = self.grid(op, workgroups)?;

        // Only compiling a pipeline can fail on a correct launcher; the bind group and the dispatch
        // are checked by wgpu's uncaptured-error handler, reported at the next submit.
        let pipeline = match self.pipelines.cached(kernel) {
            Some(pipeline) => pipeline,
            None => {
                let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
                let pipeline = self.pipelines.compile(&self.device, kernel);
                if let Some(error) = pollster::block_on(scope.pop()) {
                    // Not cached: a later call compiles again (and reports again) instead of
                    // dispatching a broken pipeline.
                    self.pipelines.forget(kernel);
                    return Err(Error::Gpu {
                        op: op.to_string(),
                        message: format!(
                            "compiling {}::{}: {error}",
                            kernel.shader.file_name(),
                            kernel.entry
                        ),
                    });
                }
                pipeline
            }
        };

        let record = self.profiling().then(|| Record {
            op,
            kernel: kernel.describe(),
            annotation: self.annotation.locked().take().unwrap_or_default(),
            bytes: bindings.iter().map(|(_, b)| b.binding().1).sum(),
        });
        let host_timed = record.is_some() && self.timestamps.is_none();
        if host_timed {
            // Time this dispatch alone: what is pending runs first.
            self.synchronize()?;
        }
        let started = std::time::Instant::now();

        let mut batch = self.batch.locked();
        if batch.ops.len() == MAX_BATCH_DISPATCHES {
            self.submit(&mut batch)?;
        }
        let slot = batch.ops.len() as u64;
        batch
            .params
            .extend_from_slice(bytemuck::cast_slice(&params.0));
        batch
            .params
            .resize(((slot + 1) * PARAM_SLOT_BYTES) as usize, 0);

        let params_offset = slot * PARAM_SLOT_BYTES;
        let bind_group = if pipeline.dynamic_params {
            let key = BindKey {
                pipeline: Arc::as_ptr(&pipeline) as usize,
                buffers: bindings
                    .iter()
                    .map(|&(binding, b)| {
                        let (buffer, bytes) = b.binding();
                        (binding, buffer.clone(), bytes)
                    })
                    .collect(),
            };
            let mut cache = self.bind_groups.locked();
            if let Some(group) = cache.get(&key) {
                group.clone()
            } else {
                if cache.len() >= MAX_BIND_GROUPS {
                    cache.clear();
                }
                let group =
                    self.bind_group(op, &pipeline.layout, &batch.params_buffer, 0, bindings);
                cache.insert(key, group.clone());
                group
            }
        } else {
            self.bind_group(
                op,
                &pipeline.layout,
                &batch.params_buffer,
                params_offset,
                bindings,
            )
        };

        let timestamp_pass = record.is_some() && self.timestamps.is_some();
        if batch.encoder.is_none() {
            batch.encoder = Some(self.device.create_command_encoder(
                &wgpu::CommandEncoderDescriptor {
                    label: Some("kiln batch"),
                },
            ));
        }
        if batch.pass.is_none() || timestamp_pass {
            // A profiled dispatch gets a pass of its own with timestamps at its start and end.
            drop(batch.pass.take());
            let timestamp_writes = self
                .timestamps
                .as_ref()
                .filter(|_| timestamp_pass)
                .map(|t| wgpu::ComputePassTimestampWrites {
                    query_set: &t.queries,
                    beginning_of_pass_write_index: Some(2 * slot as u32),
                    end_of_pass_write_index: Some(2 * slot as u32 + 1),
                });
            let encoder = batch.encoder.as_mut().expect("encoder just ensured");
            let pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("kiln batch"),
                    timestamp_writes,
                })
                .forget_lifetime();
            batch.pass = Some(pass);
        }
        let pass = batch.pass.as_mut().expect("pass just ensured");
        pass.set_pipeline(&pipeline.pipeline);
        if pipeline.dynamic_params {
            pass.set_bind_group(0, &bind_group, &[params_offset as u32]);
        } else {
            pass.set_bind_group(0, &bind_group, &[]);
        }
        pass.dispatch_workgroups(x, y, 1);
        batch.ops.push(op);
        self.dispatches.fetch_add(1, Ordering::Relaxed);
        if let Some(record) = record {
            if host_timed {
                self.submit(&mut batch)?;
                drop(batch);
                self.wait(op)?;
                let seconds = started.elapsed().as_secs_f64();
                if let Some(p) = self.profiler.locked().as_mut() {
                    p.add(record, seconds);
                }
            } else if let Some(p) = self.profiler.locked().as_mut() {
                p.pending.push(record);
            }
        }
        Ok(())
    }

    /// A bind group of `layout`: the parameter block at `params_offset`, then `bindings`.
    fn bind_group(
        &self,
        op: &'static str,
        layout: &wgpu::BindGroupLayout,
        params: &wgpu::Buffer,
        params_offset: u64,
        bindings: &[(u32, &dyn Bindable)],
    ) -> wgpu::BindGroup {
        let mut entries = Vec::with_capacity(bindings.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: params,
                offset: params_offset,
                size: NonZeroU64::new((PARAM_WORDS * 4) as u64),
            }),
        });
        for &(binding, bindable) in bindings {
            let (buffer, bytes) = bindable.binding();
            entries.push(wgpu::BindGroupEntry {
                binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: 0,
                    size: NonZeroU64::new(bytes),
                }),
            });
        }
        self.bind_groups_created.fetch_add(1, Ordering::Relaxed);
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(op),
            layout,
            entries: &entries,
        })
    }

    /// Splits `workgroups` into an x·y grid within the per-dimension limit (kernels flatten it back).
    fn grid(&self, op: &'static str, workgroups: u64) -> Result<(u32, u32)> {
        let max = u64::from(self.limits.max_compute_workgroups_per_dimension);
        let x = workgroups.min(max);
        let y = workgroups.div_ceil(x);
        if y > max {
            return Err(Error::invalid(
                op,
                format!(
                    "{workgroups} workgroups exceed the adapter's {max}x{max} dispatch grid; split the tensor"
                ),
            ));
        }
        Ok((x as u32, y as u32))
    }

    /// Submits the pending batch, if any, and reports errors wgpu raised while recording it.
    pub(crate) fn flush(&self) -> Result<()> {
        let mut batch = self.batch.locked();
        self.submit(&mut batch)
    }

    fn submit(&self, batch: &mut Batch) -> Result<()> {
        let Some(mut encoder) = batch.encoder.take() else {
            return self.take_errors("flush");
        };
        drop(batch.pass.take());
        let profiled = match (&self.timestamps, self.profiler.locked().as_mut()) {
            (Some(t), Some(p)) if !p.pending.is_empty() => {
                let queries = 2 * p.pending.len() as u32;
                encoder.resolve_query_set(&t.queries, 0..queries, &t.resolved, 0);
                encoder.copy_buffer_to_buffer(
                    &t.resolved,
                    0,
                    &t.readback,
                    0,
                    u64::from(queries) * 8,
                );
                std::mem::take(&mut p.pending)
            }
            _ => Vec::new(),
        };
        if self.take_fault(&[GpuFault::Submit]).is_some() {
            drop(encoder);
            batch.params.clear();
            let ops = std::mem::take(&mut batch.ops);
            return Err(Error::Gpu {
                op: format!("a batch of {} ops", ops.len()),
                message: "the submission failed (injected); its results are lost".to_string(),
            });
        }
        self.queue
            .write_buffer(&batch.params_buffer, 0, &batch.params);
        let submitted = self.queue.submit([encoder.finish()]);
        self.submissions.fetch_add(1, Ordering::Relaxed);
        self.limit_in_flight(submitted)?;
        if !profiled.is_empty() {
            self.read_timestamps(profiled)?;
        }
        batch.params.clear();
        let ops = std::mem::take(&mut batch.ops);
        let context = match ops.last() {
            Some(last) => format!("a batch of {} ops ending with {last}", ops.len()),
            None => "flush".to_string(),
        };
        self.take_errors(&context)
    }

    /// Waits for the submitted batch and adds each profiled dispatch's timestamp pair to the profile.
    fn read_timestamps(&self, records: Vec<Record>) -> Result<()> {
        let t = self.timestamps.as_ref().expect("profiled with timestamps");
        let bytes = 16 * records.len() as u64;
        let slice = t.readback.slice(..bytes);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        self.wait("profiler")?;
        let ticks: Vec<u64> = {
            let view = slice.get_mapped_range().map_err(|e| Error::Gpu {
                op: "profiler".into(),
                message: e.to_string(),
            })?;
            bytemuck::cast_slice(&view).to_vec()
        };
        t.readback.unmap();
        if let Some(p) = self.profiler.locked().as_mut() {
            for (record, pair) in records.into_iter().zip(ticks.chunks_exact(2)) {
                let seconds = pair[1].saturating_sub(pair[0]) as f64 * t.period * 1e-9;
                p.add(record, seconds);
            }
        }
        Ok(())
    }

    fn take_errors(&self, context: &str) -> Result<()> {
        let errors = std::mem::take(&mut *self.health.errors.locked());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Gpu {
                op: context.to_string(),
                message: errors.join("; "),
            })
        }
    }

    /// Submits pending work and waits until the GPU has finished it.
    pub(crate) fn synchronize(&self) -> Result<()> {
        self.check_alive("synchronize")?;
        self.flush()?;
        self.wait("synchronize")
    }

    /// Records `submitted` as in flight and waits for the oldest submissions beyond
    /// [`MAX_IN_FLIGHT`].
    fn limit_in_flight(&self, submitted: wgpu::SubmissionIndex) -> Result<()> {
        let mut in_flight = self.in_flight.locked();
        in_flight.push_back(submitted);
        self.max_in_flight
            .fetch_max(in_flight.len() as u64, Ordering::Relaxed);
        while in_flight.len() > MAX_IN_FLIGHT {
            let oldest = in_flight.pop_front().expect("more than MAX_IN_FLIGHT");
            let polled = self.device.poll(wgpu::PollType::Wait {
                submission_index: Some(oldest),
                timeout: Some(wait_timeout()),
            });
            self.poll_result("submit", polled)?;
        }
        Ok(())
    }

    /// Waits for the submitted work, at most [`wait_timeout`]: a hung GPU is an error, not a hang.
    fn wait(&self, op: &'static str) -> Result<()> {
        if self.take_fault(&[GpuFault::DeviceLost]).is_some() {
            self.lose("lost (injected)");
        }
        let polled = if self.take_fault(&[GpuFault::Timeout]).is_some() {
            Err(wgpu::PollError::Timeout)
        } else {
            self.device.poll(wgpu::PollType::Wait {
                submission_index: None,
                timeout: Some(wait_timeout()),
            })
        };
        if polled.is_ok() {
            self.in_flight.locked().clear();
        }
        self.poll_result(op, polled)
    }

    /// A poll's outcome as kiln's error: a lost device first (whatever the poll said), then a
    /// timeout naming the limit, then any other poll error.
    fn poll_result(
        &self,
        op: &'static str,
        polled: std::result::Result<wgpu::PollStatus, wgpu::PollError>,
    ) -> Result<()> {
        self.check_alive(op)?;
        polled.map(|_| ()).map_err(|e| Error::Gpu {
            op: op.to_string(),
            message: match e {
                wgpu::PollError::Timeout => format!(
                    "the GPU did not finish within {:?} (KILN_GPU_TIMEOUT_SECS sets the limit)",
                    wait_timeout()
                ),
                other => other.to_string(),
            },
        })
    }

    /// Copies `len` bytes starting at byte `offset` (a multiple of 4) of `buffer` to the host.
    pub(crate) fn read(
        &self,
        op: &'static str,
        buffer: &GpuBuffer,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        self.read_raw(op, buffer.raw(), offset, len)
    }

    /// [`GpuContext::read`] of any buffer of the device.
    fn read_raw(
        &self,
        op: &'static str,
        buffer: &wgpu::Buffer,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        self.check_alive(op)?;
        self.flush()?;
        let copy_len = (len as u64).next_multiple_of(4);
        // The error flag travels with the data, right after it.
        let staged_len = copy_len + 8;
        let mut staging_slot = self.staging.locked();
        let one_off;
        let staging = match staging_slot.as_ref() {
            Some(kept) if kept.size() >= staged_len => kept,
            _ => {
                // Its own size (rounded to 256 bytes), under an error scope: a failure is this
                // readback's error and leaves the kept buffer as it was.
                let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
                let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("kiln readback"),
                    size: staged_len.next_multiple_of(256),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                if let Some(error) = pollster::block_on(scope.pop()) {
                    return Err(Error::DeviceOutOfMemory {
                        op,
                        bytes: staged_len,
                        message: format!("the readback buffer: {error}"),
                    });
                }
                if staged_len <= KEPT_STAGING_BYTES {
                    &*staging_slot.insert(buffer)
                } else {
                    one_off = buffer;
                    &one_off
                }
            }
        };
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kiln readback"),
            });
        if copy_len > 0 {
            encoder.copy_buffer_to_buffer(buffer, offset, staging, 0, copy_len);
        }
        encoder.copy_buffer_to_buffer(&self.error_flag, 0, staging, copy_len, 8);
        self.queue.submit([encoder.finish()]);
        self.submissions.fetch_add(1, Ordering::Relaxed);

        let mapped = Arc::new(Mutex::new(None));
        let on_mapped = mapped.clone();
        let slice = staging.slice(..staged_len);
        slice.map_async(wgpu::MapMode::Read, move |result| {
            *on_mapped.locked() = Some(result);
        });
        let ready = self
            .wait(op)
            .and_then(|()| self.take_errors(op))
            .and_then(|()| match mapped.locked().take() {
                // An injected readback fault stands in for the driver's map result.
                Some(Ok(())) if self.take_fault(&[GpuFault::Readback]).is_some() => {
                    Err(Error::Gpu {
                        op: op.to_string(),
                        message: "mapping the readback buffer failed (injected)".to_string(),
                    })
                }
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(Error::Gpu {
                    op: op.to_string(),
                    message: format!("mapping the readback buffer: {e}"),
                }),
                None => Err(Error::Gpu {
                    op: op.to_string(),
                    message: "the readback buffer was never mapped".into(),
                }),
            });
        if let Err(e) = ready {
            // A map still pending (a timeout) or half done must not block the next readback: cancel
            // it and start the next one with a fresh staging buffer.
            staging.unmap();
            *staging_slot = None;
            return Err(e);
        }
        let (data, flag) = {
            let view = slice.get_mapped_range().map_err(|e| Error::Gpu {
                op: op.to_string(),
                message: e.to_string(),
            })?;
            let word = |at: u64| {
                let at = at as usize;
                u32::from_le_bytes([view[at], view[at + 1], view[at + 2], view[at + 3]])
            };
            let flag = (word(copy_len), word(copy_len + 4));
            (view[..len].to_vec(), flag)
        };
        staging.unmap();
        self.readbacks.fetch_add(1, Ordering::Relaxed);
        let (code, value) = flag;
        if code != 0 {
            self.queue.write_buffer(&self.error_flag, 0, &[0; 8]);
            let messages = self.error_messages.locked();
            let mut message = messages.0.get(code as usize - 1).cloned().unwrap_or_else(|| {
                "a kernel found bad data (an index or label out of range; more kinds of error were \
                 raised than kiln keeps messages for)"
                    .to_string()
            });
            if value != 0 {
                message += &format!(" (the largest offending value: {})", value - 1);
            }
            return Err(Error::InvalidData { op, message });
        }
        Ok(data)
    }

    /// Memory counters of the pool.
    pub(crate) fn memory_stats(&self) -> MemoryStats {
        self.pool.locked().stats
    }

    /// Traffic counters.
    pub(crate) fn runtime_stats(&self) -> RuntimeStats {
        RuntimeStats {
            dispatches: self.dispatches.load(Ordering::Relaxed),
            submissions: self.submissions.load(Ordering::Relaxed),
            readbacks: self.readbacks.load(Ordering::Relaxed),
            pipelines: self.pipelines.len() as u64,
            bind_groups: self.bind_groups_created.load(Ordering::Relaxed),
            staging_bytes: self.staging.locked().as_ref().map_or(0, |s| s.size()),
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
        }
    }

    /// Returns every pooled buffer's memory to the driver (kept bind groups would hold it).
    pub(crate) fn release_pooled(&self) {
        self.bind_groups.locked().clear();
        self.pool.locked().clear();
    }

    /// What update kernels bind as the step guard: the one set by [`GpuContext::begin_step_guard`],
    /// else a zero word (never held).
    pub(crate) fn step_guard(&self) -> StepGuard {
        StepGuard(
            self.step_guard_buffer()
                .unwrap_or_else(|| self.zero_word.clone()),
        )
    }

    /// The step guard's buffer, when one is set.
    pub(crate) fn step_guard_buffer(&self) -> Option<wgpu::Buffer> {
        self.guard.locked().clone()
    }

    /// Sets a fresh step guard (zero: every loss finite so far).
    pub(crate) fn begin_step_guard(&self, op: &'static str) -> Result<()> {
        self.check_alive(op)?;
        // Pending updates were recorded against the previous guard (or none): submit them first.
        self.flush()?;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kiln step guard"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        *self.guard.locked() = Some(buffer);
        Ok(())
    }

    /// Removes the step guard and reads it: the first step whose loss was non-finite, if any.
    pub(crate) fn end_step_guard(&self, op: &'static str) -> Result<Option<u32>> {
        let Some(buffer) = self.guard.locked().take() else {
            return Ok(None);
        };
        let word = self.read_raw(op, &buffer, 0, 4)?;
        let step = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        Ok(step.checked_sub(1))
    }

    /// Destroys the device: every later op returns [`Error::DeviceLost`].
    pub(crate) fn destroy(&self) {
        self.lose("destroyed by Device::destroy()");
    }

    /// Marks the device lost for `reason` (unless it already is) and destroys it.
    fn lose(&self, reason: &str) {
        self.health
            .lost
            .locked()
            .get_or_insert_with(|| reason.to_string());
        self.device.destroy();
    }
}
