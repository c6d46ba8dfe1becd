//! Every kernel family on the CPU backend and, when an adapter exists, on the GPU (`Device::gpu()`,
//! lavapipe included — its timings are CPU timings, not GPU ones). Compute-bound kernels report
//! GFLOP/s ("Gelem/s"), bandwidth-bound ones bytes/s.
//!
//! `cargo bench --bench kernels`  (filter: `cargo bench --bench kernels -- conv2d`)

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln::prelude::*;

fn devices() -> Vec<(&'static str, Device)> {
    let mut devices = vec![("cpu", Device::cpu())];
    match Device::gpu() {
        Ok(gpu) => {
            eprintln!("GPU benches run on {gpu}");
            devices.push(("gpu", gpu));
        }
        Err(e) => eprintln!("no GPU benches: {e}"),
    }
    devices
}

fn tensor(shape: &[usize], device: &Device) -> RawTensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| ((i % 251) as f32 - 125.0) / 125.0).collect();
    RawTensor::from_slice(&values, shape.to_vec(), device).unwrap()
}

/// Runs `op` and waits for the device to finish it.
fn run(device: &Device, op: impl Fn() -> RawTensor) {
    let out = op();
    device.synchronize().unwrap();
    drop(out);
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    group
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(3));
    for (name, device) in devices() {
        let sizes: &[usize] = if name == "cpu" {
            &[128, 256, 512, 1024, 2048]
        } else {
            &[128, 256, 512, 1024]
        };
        for &n in sizes {
            let (a, b) = (tensor(&[n, n], &device), tensor(&[n, n], &device));
            group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
            group.bench_function(BenchmarkId::new(format!("{name}/square"), n), |bench| {
                bench.iter(|| run(&device, || a.matmul(&b).unwrap()))
            });
        }
        // The seed CNN's dense layer at batch 64: forward x·Wᵀ and the weight gradient dyᵀ·x.
        let (x, w, dy) = (
            tensor(&[64, 5408], &device),
            tensor(&[10, 5408], &device),
            tensor(&[64, 10], &device),
        );
        group.throughput(Throughput::Elements(2 * 64 * 5408 * 10));
        group.bench_function(
            BenchmarkId::new(format!("{name}/dense_forward"), "64x5408x10"),
            |bench| bench.iter(|| run(&device, || x.matmul(&w.transpose(0, 1).unwrap()).unwrap())),
        );
        group.bench_function(
            BenchmarkId::new(format!("{name}/dense_weight_grad"), "10x64x5408"),
            |bench| bench.iter(|| run(&device, || dy.transpose(0, 1).unwrap().matmul(&x).unwrap())),
        );
    }
    group.finish();
}

fn conv2d(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d");
    group
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(3));
    let cases = [
        ("64x1x28x28_32x3x3", [64, 1, 28, 28], [32, 1, 3, 3], 0),
        ("64x32x28x28_64x3x3_p1", [64, 32, 28, 28], [64, 32, 3, 3], 1),
    ];
    for (name, device) in devices() {
        for (label, xs, ws, pad) in cases {
            let params = Conv2dParams {
                stride: [1, 1],
                padding: [pad, pad],
            };
            let (x, w, b) = (
                tensor(&xs, &device),
                tensor(&ws, &device),
                tensor(&ws[..1], &device),
            );
            let y = x.conv2d(&w, Some(&b), params).unwrap();
            let dy = tensor(y.shape().dims(), &device);
            let flops = 2 * y.numel() * ws[1] * ws[2] * ws[3];
            group.throughput(Throughput::Elements(flops as u64));
            group.bench_function(
                BenchmarkId::new(format!("{name}/forward"), label),
                |bench| bench.iter(|| run(&device, || x.conv2d(&w, Some(&b), params).unwrap())),
            );
            group.bench_function(
                BenchmarkId::new(format!("{name}/input_grad"), label),
                |bench| {
                    bench.iter(|| {
                        run(&device, || {
                            RawTensor::conv2d_input_grad(&dy, &w, xs, params).unwrap()
                        })
                    })
                },
            );
            group.bench_function(
                BenchmarkId::new(format!("{name}/weight_grad"), label),
                |bench| {
                    bench.iter(|| {
                        run(&device, || {
                            RawTensor::conv2d_weight_grad(&dy, &x, ws, params).unwrap()
                        })
                    })
                },
            );
        }
    }
    group.finish();
}

fn bandwidth(c: &mut Criterion) {
    let mut group = c.benchmark_group("bandwidth");
    group
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(3));
    for (name, device) in devices() {
        let x = tensor(&[64, 32, 26, 26], &device);
        group.throughput(Throughput::Bytes((x.numel() * 4 * 5 / 4) as u64));
        group.bench_function(
            BenchmarkId::new(format!("{name}/max_pool2d"), "64x32x26x26_k2"),
            |bench| {
                bench.iter(|| run(&device, || x.max_pool2d(Pool2dParams::square(2)).unwrap().0))
            },
        );
        let logits = tensor(&[4096, 1000], &device);
        group.throughput(Throughput::Bytes((logits.numel() * 8) as u64));
        group.bench_function(
            BenchmarkId::new(format!("{name}/softmax"), "4096x1000"),
            |bench| bench.iter(|| run(&device, || logits.softmax(-1).unwrap())),
        );
        let big = tensor(&[1 << 24], &device);
        group.throughput(Throughput::Bytes((big.numel() * 4) as u64));
        group.bench_function(BenchmarkId::new(format!("{name}/sum"), "16M"), |bench| {
            bench.iter(|| run(&device, || big.sum(None, false).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, matmul, conv2d, bandwidth);
criterion_main!(benches);
