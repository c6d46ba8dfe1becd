//! GPU faults at every point the runtime meets them — out of memory, a failed submission, a failed
//! readback, a wait that times out, a lost device — come back as errors of the right kind, never a
//! panic or a poisoned lock, and the device keeps working afterwards (unless it is lost). A training
//! run whose device is lost stops with its last checkpoint intact and resumes on the CPU from it.
//! Faults are raised by the runtime's test hook (`testing::inject_gpu_fault`).

use kiln::device::testing::{GpuFault, gpu_for_tests, inject_gpu_fault};
use kiln::nn::callbacks::{Callback, Control, EpochLogs};
use kiln::prelude::*;

fn ones(device: &Device, n: usize) -> Result<RawTensor> {
    RawTensor::from_slice(&vec![1.0f32; n], [n], device)
}

/// A sum that needs an upload, a kernel, a submission and a readback.
fn sum(device: &Device, n: usize) -> Result<f32> {
    Ok(ones(device, n)?.sum(None, false)?.to_vec::<f32>()?[0])
}

#[test]
fn out_of_memory_releases_the_pool_and_retries_once_then_is_a_resource_error() {
    let Some(device) = gpu_for_tests() else {
        return;
    };
    // Fill the pool with a freed buffer, then fail the next driver allocation once: the pool is
    // given back and the retry succeeds.
    drop(ones(&device, 1 << 16).unwrap());
    assert!(device.memory_stats().bytes_pooled > 0);
    assert!(inject_gpu_fault(&device, GpuFault::OutOfMemoryOnce));
    let big = RawTensor::zeros([1 << 18], DType::F32, &device).unwrap();
    assert_eq!(
        device.memory_stats().bytes_pooled,
        0,
        "the pool was released"
    );
    drop(big);
    // Failing twice is an error naming the size, of kind Resource.
    inject_gpu_fault(&device, GpuFault::OutOfMemory);
    let e = RawTensor::zeros([1 << 19], DType::F32, &device).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Resource, "{e}");
    assert!(e.to_string().contains("out of memory"), "{e}");
    assert_eq!(
        sum(&device, 1000).unwrap(),
        1000.0,
        "the device still works"
    );
}

#[test]
fn a_failed_submission_readback_or_wait_is_an_error_and_the_device_goes_on() {
    let Some(device) = gpu_for_tests() else {
        return;
    };
    for fault in [GpuFault::Submit, GpuFault::Readback, GpuFault::Timeout] {
        assert!(inject_gpu_fault(&device, fault));
        let e = sum(&device, 777).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Gpu, "{fault:?}: {e}");
        assert_eq!(sum(&device, 777).unwrap(), 777.0, "after {fault:?}");
    }
}

#[test]
fn a_lost_device_fails_every_later_call_without_panicking() {
    let Some(device) = gpu_for_tests() else {
        return;
    };
    let x = ones(&device, 64).unwrap();
    inject_gpu_fault(&device, GpuFault::DeviceLost);
    let e = x.to_vec::<f32>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeviceLost, "{e}");
    for _ in 0..3 {
        assert_eq!(sum(&device, 8).unwrap_err().kind(), ErrorKind::DeviceLost);
    }
}

/// Loses the GPU at the end of epoch `at`, just before that epoch's checkpoint is saved (`fit` runs
/// checkpoint callbacks last), so the save fails with the device.
struct LoseDevice {
    at: usize,
    device: Device,
}

impl Callback for LoseDevice {
    fn on_epoch_end(&mut self, epoch: usize, _: &EpochLogs<'_>, _: &mut Model) -> Result<Control> {
        if epoch == self.at {
            inject_gpu_fault(&self.device, GpuFault::DeviceLost);
        }
        Ok(Control::Continue)
    }
}

fn data() -> Dataset {
    let x: Vec<f32> = (0..256 * 8)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let labels = (0..256).map(|i| u32::from(x[i * 8] > 0.0)).collect();
    Dataset::new(x, [8], Targets::Classes { labels, classes: 2 }).unwrap()
}

fn model(device: &Device) -> Sequential {
    let mut model = Sequential::new([8])
        .on(device)
        .add(Dense::new(16).activation(Activation::Relu))
        .unwrap()
        .add(Dense::new(2).activation(Activation::Softmax))
        .unwrap();
    model
        .compile(
            Adam::new(0.01),
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )
        .unwrap();
    model
}

#[test]
fn training_whose_device_is_lost_resumes_on_the_cpu_from_its_last_checkpoint() {
    let Some(gpu) = gpu_for_tests() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("kiln-lost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let checkpoint_dir = dir.join("checkpoint");
    let fit = |device: &Device, lose_at: Option<usize>| {
        let mut model = model(device);
        let mut checkpoint = ModelCheckpoint::new(&checkpoint_dir);
        let mut lose = LoseDevice {
            at: lose_at.unwrap_or(usize::MAX),
            device: device.clone(),
        };
        let config = FitConfig {
            epochs: 5,
            batch_size: 32,
            verbose: false,
            resume: true,
            callbacks: Callbacks::new(vec![&mut checkpoint, &mut lose]),
            ..Default::default()
        };
        model.fit(&data(), &config).map(|h| h.train.len())
    };
    // Lost at the end of epoch 3 (index 2): its save fails with DeviceLost, epoch 2's stays.
    let e = fit(&gpu, Some(2)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeviceLost, "{e}");
    let progress = kiln::nn::checkpoint_progress(&checkpoint_dir)
        .unwrap()
        .unwrap();
    assert_eq!(
        progress.epoch, 2,
        "the last complete checkpoint is epoch 2's"
    );
    // The same program on the CPU continues at epoch 3 and finishes the run.
    assert_eq!(fit(&Device::cpu(), None).unwrap(), 3);
    let progress = kiln::nn::checkpoint_progress(&checkpoint_dir)
        .unwrap()
        .unwrap();
    assert_eq!(progress.epoch, 5);
    std::fs::remove_dir_all(&dir).unwrap();
}
