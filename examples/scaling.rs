//! Data-parallel scaling: trains the reference CNN and a wide MLP (5.8 M parameters) on every rank
//! of an MPI job and prints, from rank 0, one JSON line per model — global samples/s, all-reduce
//! time per step and its share of the step — and the measured all-reduce bandwidth. `bench/scaling.sh`
//! runs it on 1 and 2 ranks.
//!
//! ```text
//! cargo build --release --features mpi --example scaling
//! mpirun -np 2 target/release/examples/scaling [--steps 40] [--batch-size 64]
//! ```

use std::time::Instant;

use kiln::prelude::*;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `samples` random images (or feature rows) of `shape` with labels in 0..10.
fn synthetic(samples: usize, shape: &[usize]) -> kiln::Result<Dataset> {
    let per: usize = shape.iter().product();
    let features = (0..samples * per)
        .map(|i| ((i as f32 * 12.9898).sin() * 43758.547).fract().abs())
        .collect();
    let labels = (0..samples).map(|i| (i * 7 % 10) as u32).collect();
    Dataset::new(
        features,
        shape.to_vec(),
        Targets::Classes {
            labels,
            classes: 10,
        },
    )
}

fn main() -> kiln::Result<()> {
    let job = Distributed::mpi()?;
    let device = job.device()?;
    let steps = arg("--steps", 40);
    let batch_size = arg("--batch-size", 64);
    let samples = steps * batch_size * job.size();
    let cnn = Sequential::new([1, 28, 28])
        .on(&device)
        .add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))?
        .add(MaxPooling2D::new((2, 2)))?
        .add(Flatten::new())?
        .add(Dense::new(10).activation(Activation::Softmax))?
        .into_model();
    let mlp = Sequential::new([784])
        .on(&device)
        .add(Dense::new(2048).activation(Activation::Relu))?
        .add(Dense::new(2048).activation(Activation::Relu))?
        .add(Dense::new(10).activation(Activation::Softmax))?
        .into_model();
    for (name, mut model, shape) in [
        ("reference-cnn", cnn, vec![1, 28, 28]),
        ("mlp-784-2048-2048-10", mlp, vec![784]),
    ] {
        let data = synthetic(samples, &shape)?;
        model.compile(Adam::new(0.001), Loss::SparseCategoricalCrossentropy, &[])?;
        let config = FitConfig {
            epochs: 1,
            batch_size,
            verbose: false,
            distributed: Some(&job),
            ..Default::default()
        };
        // One epoch to warm up (allocations, first-touch), then the measured one.
        model.fit(&data, &config)?;
        let before = job.stats();
        let started = Instant::now();
        model.fit(&data, &config)?;
        let seconds = started.elapsed().as_secs_f64();
        let after = job.stats();
        let reduce = (after.all_reduce - before.all_reduce).as_secs_f64();
        let synced = (after.steps - before.steps).max(1) as f64;
        if job.is_root() {
            let parameters: usize = (model.trainable_parameters().iter())
                .map(|p| p.tensor().numel())
                .sum();
            println!(
                "{{\"model\": \"{name}\", \"parameters\": {parameters}, \"ranks\": {}, \
                 \"device\": \"{device}\", \"global_batch\": {}, \"samples_per_s\": {:.1}, \
                 \"step_ms\": {:.3}, \"all_reduce_ms_per_step\": {:.3}, \"all_reduce_fraction\": {:.3}}}",
                job.size(),
                batch_size * job.size(),
                samples as f64 / seconds,
                seconds * 1000.0 / synced,
                reduce * 1000.0 / synced,
                reduce / seconds
            );
        }
    }
    let floats = 16 << 20;
    let took = job.time_all_reduce(floats, 5).as_secs_f64();
    if job.is_root() {
        // Ring all-reduce moves 2·(p-1)/p of the data through each rank's link.
        let p = job.size() as f64;
        let bus = 2.0 * (p - 1.0) / p * (floats * 4) as f64 / took / 1e9;
        println!(
            "{{\"all_reduce_bytes\": {}, \"ranks\": {}, \"seconds\": {took:.5}, \"bus_gb_per_s\": {bus:.2}}}",
            floats * 4,
            job.size()
        );
    }
    Ok(())
}
