//! The layer families of text, tabular and recommender models, forward and backward, on the CPU
//! backend and (when an adapter exists) on the GPU: an LSTM at batch 64 × 128 units, self-attention
//! over 128 tokens, and batch normalisation over `[64, 32, 26, 26]`.
//!
//! `cargo bench --bench layers`  (filter: `cargo bench --bench layers -- lstm`)

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

fn param(shape: &[usize], seed: u64, device: &Device) -> Tensor {
    Tensor::uniform(shape.to_vec(), -0.1, 0.1, seed, device)
        .unwrap()
        .requires_grad_()
}

/// Forward, backward of the sum, and a wait for the device.
fn step(device: &Device, forward: impl Fn() -> Tensor) {
    let grads = forward().sum_all().unwrap().backward().unwrap();
    device.synchronize().unwrap();
    drop(grads);
}

fn lstm(c: &mut Criterion) {
    let mut group = c.benchmark_group("lstm");
    group
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(3));
    let (batch, units, steps) = (64, 128, 8);
    for (name, device) in devices() {
        let x = param(&[batch, steps, units], 1, &device);
        let (w_ih, w_hh, b) = (
            param(&[4 * units, units], 2, &device),
            param(&[4 * units, units], 3, &device),
            param(&[4 * units], 4, &device),
        );
        // two GEMMs of [64, 128] × [128, 512] per step, forward; twice that backward
        group.throughput(Throughput::Elements(
            (steps * 3 * 2 * 2 * batch * units * 4 * units) as u64,
        ));
        group.bench_function(
            BenchmarkId::new(format!("{name}/forward_backward"), "64x8x128"),
            |bench| {
                let weights = RecurrentWeights {
                    w_ih: &w_ih,
                    w_hh: &w_hh,
                    b_ih: Some(&b),
                    b_hh: None,
                };
                bench.iter(|| step(&device, || x.lstm(&weights, None).unwrap().sequence))
            },
        );
    }
    group.finish();
}

fn attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention");
    group
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(3));
    let (batch, tokens, features, heads) = (8, 128, 64, 4);
    for (name, device) in devices() {
        let x = param(&[batch, tokens, features], 1, &device);
        let (w_in, b_in, w_out, b_out) = (
            param(&[3 * features, features], 2, &device),
            param(&[3 * features], 3, &device),
            param(&[features, features], 4, &device),
            param(&[features], 5, &device),
        );
        group.bench_function(
            BenchmarkId::new(format!("{name}/multi_head_forward_backward"), "8x128x64_h4"),
            |bench| {
                let weights = AttentionWeights {
                    w_in: &w_in,
                    b_in: Some(&b_in),
                    w_out: &w_out,
                    b_out: Some(&b_out),
                };
                bench.iter(|| {
                    step(&device, || {
                        x.multi_head_attention(&weights, heads, None).unwrap()
                    })
                })
            },
        );
    }
    group.finish();
}

fn batch_norm(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_norm");
    group
        .sample_size(10)
        .measurement_time(std::time::Duration::from_secs(3));
    let shape = [64, 32, 26, 26];
    for (name, device) in devices() {
        let x = param(&shape, 1, &device);
        let (w, b) = (param(&[32], 2, &device), param(&[32], 3, &device));
        let (mean, var) = (
            RawTensor::zeros([32], DType::F32, &device).unwrap(),
            RawTensor::ones([32], DType::F32, &device).unwrap(),
        );
        group.throughput(Throughput::Bytes(
            (shape.iter().product::<usize>() * 4) as u64,
        ));
        group.bench_function(
            BenchmarkId::new(format!("{name}/train_forward_backward"), "64x32x26x26"),
            |bench| {
                bench.iter(|| {
                    step(&device, || {
                        x.batch_norm_train(&w, &b, (&mean, &var), 0.01, 1e-3)
                            .unwrap()
                            .0
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, lstm, attention, batch_norm);
criterion_main!(benches);
