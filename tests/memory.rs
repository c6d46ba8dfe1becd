//! Memory over time (issue 12): 1,000 training steps of the reference CNN on each device, with the
//! device's tensor and pool memory, the readback staging buffer and the process's resident memory
//! flat after warm-up, and at most a few submissions in flight (the CPU never runs far ahead of the
//! GPU, even in an epoch that reads nothing back until its end). On the CPU, training steps after
//! warm-up allocate no tensor memory: every buffer comes from the host pool (issue 14).

use kiln::device::device_test;
use kiln::nn::callbacks::{Callback, Control, EpochLogs};
use kiln::prelude::*;

/// Counts the test process's heap allocations (reported, not asserted: autograd's bookkeeping
/// allocates small nodes every step).
struct CountingAllocator;

static HEAP_ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP_ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const STEPS_PER_EPOCH: usize = 100;
const EPOCHS: usize = 10;
const BATCH: usize = 16;

/// The process's resident memory in bytes (Linux; 0 elsewhere).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// What is measured after each epoch.
#[derive(Debug, Clone, Copy)]
struct Sample {
    device_bytes: u64,
    staging_bytes: u64,
    resident: u64,
    /// Tensor buffers the host pool had to allocate so far (process-wide).
    host_allocations: u64,
    /// Heap allocations of the process so far.
    heap_allocations: u64,
}

struct Watch {
    device: Device,
    samples: Vec<Sample>,
}

impl Callback for Watch {
    fn on_epoch_end(&mut self, _: usize, _: &EpochLogs<'_>, _: &mut Model) -> Result<Control> {
        let memory = self.device.memory_stats();
        self.samples.push(Sample {
            device_bytes: memory.bytes_in_use + memory.bytes_pooled,
            staging_bytes: self.device.runtime_stats().staging_bytes,
            resident: resident_bytes(),
            host_allocations: kiln::device::host_pool_stats().allocations,
            heap_allocations: HEAP_ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed),
        });
        Ok(Control::Continue)
    }
}

/// The CPU and GPU runs take turns: resident memory is the whole process's.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

device_test!(a_thousand_training_steps_keep_memory_flat, |device| {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let samples = STEPS_PER_EPOCH * BATCH;
    let x: Vec<f32> = (0..samples * 28 * 28)
        .map(|i| ((i * 7919) % 256) as f32 / 255.0)
        .collect();
    let labels = (0..samples).map(|i| (i % 10) as u32).collect();
    let data = Dataset::new(
        x,
        [1, 28, 28],
        Targets::Classes {
            labels,
            classes: 10,
        },
    )
    .unwrap();
    let mut model = Sequential::new([1, 28, 28])
        .on(&device)
        .add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))
        .unwrap()
        .add(MaxPooling2D::new((2, 2)))
        .unwrap()
        .add(Flatten::new())
        .unwrap()
        .add(Dense::new(10).activation(Activation::Softmax))
        .unwrap();
    model
        .compile(
            Adam::new(0.001),
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )
        .unwrap();
    let mut watch = Watch {
        device: device.clone(),
        samples: Vec::new(),
    };
    let config = FitConfig {
        epochs: EPOCHS,
        batch_size: BATCH,
        verbose: false,
        callbacks: Callbacks::new(vec![&mut watch]),
        ..Default::default()
    };
    model.fit(&data, &config).unwrap();
    // Warm-up: the first two epochs (pool buckets, pipelines, bind groups, allocator arenas).
    let warm = watch.samples[1];
    // On the CPU a buffer the data loader's thread is filling is neither in use nor pooled when
    // the sample is taken: allow one batch of slack (that nothing is allocated is checked below).
    let slack = match device {
        Device::Cpu(_) => (BATCH * 28 * 28 * 4 + BATCH * 4) as u64,
        Device::Gpu(_) => 0,
    };
    for (epoch, s) in watch.samples.iter().enumerate().skip(2) {
        assert!(
            s.device_bytes <= warm.device_bytes + slack,
            "epoch {}: device memory grew from {} to {} bytes",
            epoch + 1,
            warm.device_bytes,
            s.device_bytes
        );
        assert!(
            s.staging_bytes <= warm.staging_bytes,
            "epoch {}: staging grew from {} to {} bytes",
            epoch + 1,
            warm.staging_bytes,
            s.staging_bytes
        );
        assert!(
            s.resident <= warm.resident + (48 << 20),
            "epoch {}: resident memory grew from {} to {} bytes ({:?})",
            epoch + 1,
            warm.resident,
            s.resident,
            watch.samples
        );
    }
    if matches!(device, Device::Cpu(_)) {
        let last = watch.samples[EPOCHS - 1];
        assert_eq!(
            last.host_allocations,
            warm.host_allocations,
            "the CPU allocated {} tensor buffers in {} steps after warm-up",
            last.host_allocations - warm.host_allocations,
            (EPOCHS - 2) * STEPS_PER_EPOCH
        );
        eprintln!(
            "cpu: {:.1} heap allocations per training step after warm-up (tensor buffers: 0)",
            (last.heap_allocations - warm.heap_allocations) as f64
                / ((EPOCHS - 2) * STEPS_PER_EPOCH) as f64
        );
    }
    if matches!(device, Device::Gpu(_)) {
        let in_flight = device.runtime_stats().max_in_flight;
        assert!(
            (1..=5).contains(&in_flight),
            "{in_flight} submissions in flight"
        );
    }
    eprintln!("{device}: {:?}", watch.samples);
});
