//! Reuse of host tensor memory: a training step frees and allocates the same buffers every batch,
//! so the CPU backend keeps freed f32/u32 tensor buffers on a shelf by capacity and its kernels take
//! their outputs from there. After the first steps a training step allocates no tensor memory
//! (`host_pool_stats().allocations` stops growing; `tests/memory.rs` checks it).
//!
//! The shelf is one per process — every CPU device shares host memory. It takes a buffer back only
//! while more of that capacity are handed out than returned (buffers made elsewhere cannot pile up
//! on it). When a buffer would take it past [`MAX_POOLED_BYTES`], the shelf of that element type
//! is emptied first (shapes changed: the old sizes are unlikely to come back), so memory held for
//! reuse stays bounded; [`release_host_pool`] empties both shelves on demand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::CpuData;
use crate::Result;

/// Most bytes the shelves keep for reuse.
pub const MAX_POOLED_BYTES: u64 = 1 << 30;

/// What the host pool has done since the process started (all CPU devices together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostPoolStats {
    /// Tensor buffers the pool could not serve, allocated from the system.
    pub allocations: u64,
    /// Tensor buffers served from the shelf.
    pub reuses: u64,
    /// Bytes on the shelves now, ready for reuse.
    pub bytes_pooled: u64,
}

/// The freed buffers of one capacity, and how many of that capacity are handed out.
pub(crate) struct Slot<T> {
    free: Vec<Vec<T>>,
    handed_out: usize,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            free: Vec::new(),
            handed_out: 0,
        }
    }
}

/// Freed buffers of one element type, by capacity.
pub(crate) type Shelf<T> = LazyLock<Mutex<FxHashMap<usize, Slot<T>>>>;

static F32: Shelf<f32> = LazyLock::new(Default::default);
static U32: Shelf<u32> = LazyLock::new(Default::default);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static REUSES: AtomicU64 = AtomicU64::new(0);
static BYTES_POOLED: AtomicU64 = AtomicU64::new(0);

/// The process's host pool statistics.
pub fn host_pool_stats() -> HostPoolStats {
    HostPoolStats {
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
        reuses: REUSES.load(Ordering::Relaxed),
        bytes_pooled: BYTES_POOLED.load(Ordering::Relaxed),
    }
}

/// Frees every buffer waiting on the shelves (tensors in use are not touched); later kernels
/// allocate again as they need.
pub fn release_host_pool() {
    empty_shelf(&mut lock::<f32>());
    empty_shelf(&mut lock::<u32>());
}

/// An element type whose tensor buffers are pooled.
pub(crate) trait Pooled: Copy + Send + Sync + 'static {
    /// This type's shelf.
    fn shelf() -> &'static Shelf<Self>;
}

impl Pooled for f32 {
    fn shelf() -> &'static Shelf<f32> {
        &F32
    }
}

impl Pooled for u32 {
    fn shelf() -> &'static Shelf<u32> {
        &U32
    }
}

fn lock<T: Pooled>() -> MutexGuard<'static, FxHashMap<usize, Slot<T>>> {
    T::shelf()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn bytes<T>(capacity: usize) -> u64 {
    (capacity as u64).saturating_mul(std::mem::size_of::<T>() as u64)
}

/// Frees a shelf's waiting buffers and forgets the capacities none of which are handed out.
fn empty_shelf<T>(shelf: &mut FxHashMap<usize, Slot<T>>) {
    for (&capacity, slot) in shelf.iter_mut() {
        BYTES_POOLED.fetch_sub(
            bytes::<T>(capacity) * slot.free.len() as u64,
            Ordering::Relaxed,
        );
        slot.free.clear();
    }
    shelf.retain(|_, slot| slot.handed_out > 0);
}

/// An empty buffer with room for `len` elements: a freed one of that capacity when the shelf has
/// one, else a new allocation.
pub(crate) fn take<T: Pooled>(len: usize) -> Vec<T> {
    reuse(len).unwrap_or_else(|| {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        Vec::with_capacity(len)
    })
}

/// [`take`] that reports a failed allocation as [`crate::Error::HostAlloc`] naming `op` (for sizes a
/// caller chose, where an abort would be the alternative).
pub(crate) fn try_take<T: Pooled>(op: &'static str, len: usize) -> Result<Vec<T>> {
    if let Some(buffer) = reuse(len) {
        return Ok(buffer);
    }
    let mut buffer = Vec::new();
    if let Err(error) = super::reserve_exact(op, &mut buffer, len) {
        // Nothing was handed out after all.
        if let Some(slot) = lock::<T>().get_mut(&len) {
            slot.handed_out = slot.handed_out.saturating_sub(1);
        }
        return Err(error);
    }
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    Ok(buffer)
}

/// A freed buffer of capacity `len` from the shelf (an empty one for `len` 0), if there is one; a
/// buffer of that capacity is handed out either way (the caller allocates it when this is `None`).
fn reuse<T: Pooled>(len: usize) -> Option<Vec<T>> {
    if len == 0 {
        return Some(Vec::new());
    }
    let mut shelf = lock::<T>();
    let slot = shelf.entry(len).or_default();
    slot.handed_out += 1;
    let buffer = slot.free.pop()?;
    REUSES.fetch_add(1, Ordering::Relaxed);
    BYTES_POOLED.fetch_sub(bytes::<T>(buffer.capacity()), Ordering::Relaxed);
    Some(buffer)
}

/// `len` zeros in a pooled buffer.
pub(crate) fn zeros<T: Pooled + Default>(len: usize) -> Vec<T> {
    filled(len, T::default())
}

/// `len` copies of `value` in a pooled buffer.
pub(crate) fn filled<T: Pooled>(len: usize, value: T) -> Vec<T> {
    let mut buffer = take(len);
    buffer.resize(len, value);
    buffer
}

/// [`filled`] that reports a failed allocation as [`crate::Error::HostAlloc`] naming `op`.
pub(crate) fn try_filled<T: Pooled>(op: &'static str, len: usize, value: T) -> Result<Vec<T>> {
    let mut buffer = try_take(op, len)?;
    buffer.resize(len, value);
    Ok(buffer)
}

/// A copy of `values` in a pooled buffer.
pub(crate) fn copied<T: Pooled>(values: &[T]) -> Vec<T> {
    let mut buffer = take(values.len());
    buffer.extend_from_slice(values);
    buffer
}

/// The `len` items of `values` in a pooled buffer.
pub(crate) fn collect<T: Pooled>(len: usize, values: impl Iterator<Item = T>) -> Vec<T> {
    let mut buffer = take(len);
    buffer.extend(values);
    buffer
}

/// The items of `values`, computed in parallel, in a pooled buffer.
pub(crate) fn par_collect<T: Pooled>(values: impl IndexedParallelIterator<Item = T>) -> Vec<T> {
    let mut buffer = take(values.len());
    values.collect_into_vec(&mut buffer);
    buffer
}

/// Puts a freed tensor buffer on its shelf (f16 ones are freed).
pub(crate) fn give_back_data(data: CpuData) {
    match data {
        CpuData::F32(values) => give_back(values),
        CpuData::U32(values) => give_back(values),
        CpuData::F16(_) => {}
    }
}

/// Puts a freed buffer back on the shelf, or frees it when no buffer of its capacity is handed out
/// (it was made elsewhere). A buffer that would pass [`MAX_POOLED_BYTES`] empties the shelf first.
pub(crate) fn give_back<T: Pooled>(mut buffer: Vec<T>) {
    let size = bytes::<T>(buffer.capacity());
    if size == 0 || size > MAX_POOLED_BYTES {
        return;
    }
    let mut shelf = lock::<T>();
    match shelf.get_mut(&buffer.capacity()) {
        Some(slot) if slot.handed_out > 0 => slot.handed_out -= 1,
        _ => return,
    }
    if BYTES_POOLED.load(Ordering::Relaxed).saturating_add(size) > MAX_POOLED_BYTES {
        empty_shelf(&mut shelf);
    }
    if BYTES_POOLED.load(Ordering::Relaxed).saturating_add(size) > MAX_POOLED_BYTES {
        return; // the other element type's shelf holds the bytes
    }
    buffer.clear();
    BYTES_POOLED.fetch_add(size, Ordering::Relaxed);
    shelf
        .entry(buffer.capacity())
        .or_default()
        .free
        .push(buffer);
}

#[cfg(test)]
mod tests {
    use super::{give_back, host_pool_stats, lock, release_host_pool, take, zeros};

    /// These tests take turns: one of them empties the shelves.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn turn() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[test]
    fn a_freed_buffer_is_taken_again_at_its_size() {
        let _turn = turn();
        // An odd size no other test uses, so parallel tests do not take it first.
        let len = 1_234_577;
        let buffer: Vec<f32> = zeros(len);
        let address = buffer.as_ptr();
        give_back(buffer);
        let before = host_pool_stats();
        let again: Vec<f32> = take(len);
        assert_eq!(again.as_ptr(), address);
        assert!(again.is_empty() && again.capacity() == len);
        assert!(host_pool_stats().reuses > before.reuses);
    }

    #[test]
    fn release_frees_the_waiting_buffers() {
        let _turn = turn();
        let len = 1_234_581;
        give_back(take::<f32>(len));
        assert_eq!(lock::<f32>().get(&len).map(|slot| slot.free.len()), Some(1));
        release_host_pool();
        assert!(
            lock::<f32>()
                .get(&len)
                .is_none_or(|slot| slot.free.is_empty())
        );
    }

    #[test]
    fn buffers_made_elsewhere_are_not_kept() {
        let _turn = turn();
        let len = 1_234_579;
        let before = host_pool_stats().bytes_pooled;
        give_back(vec![0.0f32; len]);
        let taken: Vec<f32> = take(len);
        assert!(host_pool_stats().bytes_pooled <= before);
        give_back(taken);
        give_back(vec![0.0f32; len]);
        let (first, second): (Vec<f32>, Vec<f32>) = (take(len), take(len));
        assert_ne!(first.as_ptr(), second.as_ptr());
    }
}
