//! Size-bucketed pool of GPU storage buffers. A buffer returns to its bucket when the last tensor using
//! it drops, and the next allocation of that bucket reuses it instead of asking the driver.

use std::collections::HashMap;

/// Counters of a device's memory use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held by live tensors.
    pub bytes_in_use: u64,
    /// Bytes held by the pool, ready for reuse.
    pub bytes_pooled: u64,
    /// Buffers created with the driver (on the CPU: tensors the device has stored).
    pub allocations: u64,
    /// Allocations served from the pool.
    pub reuses: u64,
}

/// Smallest bucket, in bytes.
const MIN_BUCKET: u64 = 256;

/// The bucket size a request of `bytes` is served from: the next power of two (at least 256 bytes), or
/// the request rounded up to 256 bytes when the power of two would exceed `max_buffer`.
pub(crate) fn bucket_size(bytes: u64, max_buffer: u64) -> u64 {
    let pow2 = bytes.max(MIN_BUCKET).next_power_of_two();
    if pow2 <= max_buffer {
        pow2
    } else {
        bytes.div_ceil(MIN_BUCKET) * MIN_BUCKET
    }
}

/// Free buffers by bucket size, and the counters.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    pub(crate) stats: MemoryStats,
}

impl BufferPool {
    /// A pooled buffer of exactly `bucket` bytes, if one is free.
    pub(crate) fn take(&mut self, bucket: u64) -> Option<wgpu::Buffer> {
        let buffer = self.free.get_mut(&bucket)?.pop()?;
        self.stats.reuses += 1;
        self.stats.bytes_pooled -= bucket;
        self.stats.bytes_in_use += bucket;
        Some(buffer)
    }

    /// Records a buffer the driver just created.
    pub(crate) fn note_allocation(&mut self, bucket: u64) {
        self.stats.allocations += 1;
        self.stats.bytes_in_use += bucket;
    }

    /// Takes back a buffer whose last user dropped.
    pub(crate) fn give_back(&mut self, bucket: u64, buffer: wgpu::Buffer) {
        self.stats.bytes_in_use -= bucket;
        self.stats.bytes_pooled += bucket;
        self.free.entry(bucket).or_default().push(buffer);
    }

    /// Frees every pooled buffer (their memory goes back to the driver).
    pub(crate) fn clear(&mut self) {
        self.free.clear();
        self.stats.bytes_pooled = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_size;

    #[test]
    fn buckets_are_powers_of_two_within_the_limit() {
        assert_eq!(bucket_size(1, 1 << 30), 256);
        assert_eq!(bucket_size(257, 1 << 30), 512);
        assert_eq!(bucket_size(4096, 1 << 30), 4096);
        assert_eq!(bucket_size(600, 1000), 768);
    }
}
