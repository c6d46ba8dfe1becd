//! The reference CNN end to end: one training step (forward, backward, Adam) at batch 64, and
//! inference at batch 1 and 1,000, on the CPU and, when an adapter exists, the GPU. Reported as
//! samples/s ("Kelem/s").
//!
//! `cargo bench --bench training`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln::prelude::*;

fn devices() -> Vec<(&'static str, Device)> {
    let mut devices = vec![("cpu", Device::cpu())];
    match Device::gpu() {
        Ok(gpu) => devices.push(("gpu", gpu)),
        Err(e) => eprintln!("no GPU benches: {e}"),
    }
    devices
}

fn reference_cnn(device: &Device) -> Sequential {
    let mut model = Sequential::new([1, 28, 28])
        .on(device)
        .add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))
        .and_then(|m| m.add(MaxPooling2D::new((2, 2))))
        .and_then(|m| m.add(Flatten::new()))
        .and_then(|m| m.add(Dense::new(10).activation(Activation::Softmax)))
        .unwrap();
    model
        .compile(
            Adam::new(0.001),
            Loss::SparseCategoricalCrossentropy,
            &[Metric::Accuracy],
        )
        .unwrap();
    model
}

fn training(c: &mut Criterion) {
    let mut group = c.benchmark_group("reference_cnn");
    group.sample_size(10);
    for (name, device) in devices() {
        let mut model = reference_cnn(&device);
        let x = Tensor::rand([64, 1, 28, 28], 1, &device).unwrap();
        let labels: Vec<u32> = (0..64).map(|i| i % 10).collect();
        let y = Tensor::from_slice(&labels, [64], &device).unwrap();
        group.throughput(Throughput::Elements(64));
        group.bench_function(BenchmarkId::new(format!("{name}/train_step"), 64), |b| {
            b.iter(|| {
                model.train_on_batch(&x, &y).unwrap();
                device.synchronize().unwrap();
            })
        });
        for batch in [1, 1000] {
            let x = Tensor::rand([batch, 1, 28, 28], 2, &device).unwrap();
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::new(format!("{name}/predict"), batch), |b| {
                b.iter(|| {
                    drop(model.predict(&x).unwrap());
                    device.synchronize().unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, training);
criterion_main!(benches);
