//! The GPU runtime: buffer pool reuse, batched submission, pipeline cache, limits, and device loss.
//! These tests need a GPU adapter (lavapipe counts); without one they skip unless KILN_REQUIRE_GPU=1.

use kiln::device::testing::gpu_for_tests;
use kiln::prelude::*;

#[test]
fn buffers_are_reused_across_repeated_ops() {
    let Some(device) = gpu_for_tests() else {
        return;
    };
    let x = RawTensor::full([1000], 1.0, DType::F32, &device).unwrap();
    let step = || {
        drop(
            x.unary(UnaryOp::Exp)
                .unwrap()
                .scalar(BinaryOp::Add, 1.0)
                .unwrap(),
        )
    };
    step();
    let warm = device.memory_stats();
    for _ in 0..20 {
        step();
    }
    let after = device.memory_stats();
    assert_eq!(
        after.allocations, warm.allocations,
        "repeated ops allocated new buffers: {after:?}"
    );
    assert!(after.reuses >= warm.reuses + 40, "{after:?}");
    assert_eq!(after.bytes_in_use, warm.bytes_in_use, "{after:?}");
    device.release_pooled_memory();
    assert_eq!(device.memory_stats().bytes_pooled, 0);
}

#[test]
fn dispatches_are_submitted_in_batches() {
    let Some(device) = gpu_for_tests() else {
        return;
    };
    let mut x = RawTensor::full([64], 0.0, DType::F32, &device).unwrap();
    let before = device.runtime_stats();
    for _ in 0..100 {
        x = x.scalar(BinaryOp::Add, 1.0).unwrap();
    }
    assert_eq!(x.to_vec::<f32>().unwrap(), vec![100.0; 64]);
    let after = device.runtime_stats();
    assert_eq!(after.dispatches - before.dispatches, 100);
    // One submission for the batch and one for the readback copy.
    assert!(
        after.submissions - before.submissions <= 2,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.readbacks - before.readbacks, 1);
}

#[test]
fn repeated_steps_reuse_their_bind_groups() {
    let Some(device) = gpu_for_tests() else {
        return;
    };
    // A small training-like step: matmul, bias, softmax, sum. The first runs create the bind groups
    // (the pool hands out its buffers in a settled order from the second step on); later runs on the
    // same buffers only look them up.
    let a = RawTensor::full([16, 32], 0.5, DType::F32, &device).unwrap();
    let b = RawTensor::full([32, 8], 0.25, DType::F32, &device).unwrap();
    let bias = RawTensor::full([8], 1.0, DType::F32, &device).unwrap();
    let step = || {
        let y = a.matmul(&b).unwrap().binary(BinaryOp::Add, &bias).unwrap();
        y.softmax(-1)
            .unwrap()
            .reduce(ReduceOp::Sum, None, false)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
    };
    let first = step();
    assert_eq!(step(), first);
    let created = device.runtime_stats().bind_groups;
    for _ in 0..5 {
        assert_eq!(step(), first);
    }
    let after = device.runtime_stats();
    assert_eq!(after.bind_groups, created, "{after:?}");
}

#[test]
fn pipelines_are_compiled_once_per_kernel_and_specialisation() {
    let Some(device) = gpu_for_tests() else {
        return;
    };
    let x = RawTensor::full([8], 2.0, DType::F32, &device).unwrap();
    x.unary(UnaryOp::Sqrt).unwrap().to_vec::<f32>().unwrap();
    let compiled = device.runtime_stats().pipelines;
    for _ in 0..5 {
        x.unary(UnaryOp::Sqrt).unwrap().to_vec::<f32>().unwrap();
    }
    assert_eq!(device.runtime_stats().pipelines, compiled);
    // Another op is another specialisation of the same shader.
    x.unary(UnaryOp::Abs).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(device.runtime_stats().pipelines, compiled + 1);
}

#[test]
fn synchronize_waits_for_queued_work() {
    let Some(device) = gpu_for_tests() else {
        return;
    };
    let x = RawTensor::full([4096], 3.0, DType::F32, &device).unwrap();
    let y = x.unary(UnaryOp::Sqrt).unwrap();
    device.synchronize().unwrap();
    assert!((y.to_vec::<f32>().unwrap()[0] - 3f32.sqrt()).abs() < 1e-6);
}

#[test]
fn an_upload_beyond_the_binding_limit_is_an_error_with_sizes() {
    let Some(gpu) = gpu_for_tests() else { return };
    let name = gpu.info().name;
    // Emulate a small GPU: the same adapter with buffers capped at 1 MiB.
    let device = Device::gpu_with(
        &GpuOptions::default()
            .adapter_name(name)
            .max_buffer_bytes(1 << 20),
    )
    .unwrap();
    assert_eq!(device.info().max_binding_bytes, 1 << 20);
    let data = vec![0.0f32; (1 << 18) + 1];
    let err = RawTensor::from_slice(&data, [data.len()], &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("from_slice") && err.contains("1048580") && err.contains("1048576"),
        "{err}"
    );
    // Ops whose output would be too large fail the same way.
    let x = RawTensor::full([1 << 18], 1.0, DType::F32, &device).unwrap();
    let err = x
        .broadcast_to([2, 1 << 18])
        .unwrap()
        .unary(UnaryOp::Neg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("neg") && err.contains("2097152"), "{err}");
    let a = RawTensor::full([1024, 1], 1.0, DType::F32, &device).unwrap();
    let err = a
        .matmul(&a.transpose(0, 1).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("matmul") && err.contains("4194304"), "{err}");
}

#[test]
fn a_lost_device_returns_errors_not_panics() {
    let Some(gpu) = gpu_for_tests() else { return };
    let device = Device::gpu_with(&GpuOptions::default().adapter_name(gpu.info().name)).unwrap();
    let x = RawTensor::full([16], 1.0, DType::F32, &device).unwrap();
    let Device::Gpu(handle) = &device else {
        unreachable!()
    };
    handle.destroy();
    let err = x.to_vec::<f32>().unwrap_err();
    assert!(
        matches!(err, Error::DeviceLost { op: "to_vec", .. }),
        "{err}"
    );
    let err = x.unary(UnaryOp::Relu).unwrap_err().to_string();
    assert!(err.contains("relu") && err.contains("lost"), "{err}");
    assert!(RawTensor::zeros([4], DType::F32, &device).is_err());
    assert!(device.synchronize().is_err());
}

#[test]
fn mixing_devices_is_an_error() {
    let Some(device) = gpu_for_tests() else {
        return;
    };
    let a = RawTensor::zeros([2], DType::F32, &device).unwrap();
    let b = RawTensor::zeros([2], DType::F32, &Device::cpu()).unwrap();
    let err = a.binary(BinaryOp::Add, &b).unwrap_err().to_string();
    assert!(
        err.contains("add") && err.contains("different devices"),
        "{err}"
    );
}

#[test]
fn the_webgpu_baseline_profile_leaves_out_optional_features_and_lowers_limits() {
    if kiln::device::testing::gpu_for_tests().is_none() {
        return;
    }
    let device = Device::gpu_with(&GpuOptions::default().baseline(true)).unwrap();
    let info = device.info();
    assert!(
        !info.subgroup && !info.shader_f16 && !info.timestamp_query,
        "{info:?}"
    );
    assert!(info.max_workgroup_memory_bytes <= 16 << 10, "{info:?}");
    assert!(info.max_workgroup_invocations <= 256, "{info:?}");
    assert!(info.max_binding_bytes <= 128 << 20, "{info:?}");
    assert!(info.max_storage_buffers_per_stage <= 8, "{info:?}");
    // Kernels take their fallbacks there (shared-memory row teams, smaller GEMM tiles): a matmul,
    // a softmax and a sum still give the CPU's numbers.
    let a: Vec<f32> = (0..300 * 200)
        .map(|i| ((i * 7) % 13) as f32 / 13.0)
        .collect();
    let b: Vec<f32> = (0..200 * 100)
        .map(|i| ((i * 5) % 11) as f32 / 11.0)
        .collect();
    let run = |d: &Device| {
        let x = RawTensor::from_slice(&a, [300, 200], d).unwrap();
        let y = RawTensor::from_slice(&b, [200, 100], d).unwrap();
        let product = x.matmul(&y).unwrap();
        let soft = product.softmax(-1).unwrap();
        let sum = soft.sum(Some(1), false).unwrap();
        (
            product.to_vec::<f32>().unwrap(),
            sum.to_vec::<f32>().unwrap(),
        )
    };
    let (gpu, cpu) = (run(&device), run(&Device::cpu()));
    for (g, c) in gpu.0.iter().zip(&cpu.0).chain(gpu.1.iter().zip(&cpu.1)) {
        assert!((g - c).abs() <= 1e-3 * (1.0 + c.abs()), "{g} vs {c}");
    }
}
