//! kiln's side of `bench/compare`: runs named workloads on one device and prints one JSON line each,
//! in the format every peer in `bench/peers/` prints, so runs can be set side by side.
//!
//! ```text
//! cargo run --release --example kiln-bench -- [--device cpu|gpu|auto] [--batches 50] [workload ...]
//! ```
//!
//! Workloads (all when none is named): `train-seed-cnn` (the reference CNN on Fashion-MNIST, batch
//! 64, Adam; samples/s and the time from `Device` creation to the first finished batch, shader
//! compilation included), `train-mlp` (784-128-10, batch 32), `infer-seed-cnn-1`,
//! `infer-seed-cnn-1000`, `matmul-<n>`, `conv2d-seed-fwd-bwd`, `softmax-4096x1000`, `sum-16m`, and
//! `dispatch-chain` (1,000 dependent tiny ops: the cost of a launch; not in the default set), and
//! `train-text-cnn` (Embedding 10000×64 → Conv1D 64×5 + ReLU → GlobalMaxPooling1D → Dense 1 on
//! 100-token sequences, batch 32, Adam, binary cross-entropy), `train-credit-mlp` (33 features →
//! Dense 64 → Dropout → Dense 32 → Dropout → Dense 1, batch 64, Adam, BCE) and `train-recommender`
//! (user and item embeddings of 64 and biases → dot, 943 users × 1682 items, batch 256, Adam, MSE) —
//! the applications' models on synthetic data of their shapes; not in the default set.
//! Each timed figure is the median of repeated runs (at least 5 and at least one second). With
//! `KILN_PROFILE=1` on a GPU, each workload also prints the profiler's per-kernel table to stderr
//! (training: one table per epoch).

use std::time::Instant;

use kiln::device::{Conv2dParams, DeviceInfo};
use kiln::prelude::*;

const DEFAULT_WORKLOADS: &[&str] = &[
    "train-seed-cnn",
    "train-mlp",
    "infer-seed-cnn-1",
    "infer-seed-cnn-1000",
    "matmul-256",
    "matmul-1024",
    "conv2d-seed-fwd-bwd",
    "softmax-4096x1000",
    "sum-16m",
];

/// One result line.
struct Report<'a> {
    device: &'a DeviceInfo,
    workload: &'a str,
    value: f64,
    unit: &'a str,
    median_ms: f64,
    extra: Vec<(&'static str, String)>,
}

impl Report<'_> {
    fn print(&self) {
        let mut line = format!(
            "{{\"framework\": \"kiln {}\", \"device\": \"{} ({})\", \"workload\": \"{}\", \"value\": {:.4}, \
             \"unit\": \"{}\", \"median_ms\": {:.4}",
            env!("CARGO_PKG_VERSION"),
            self.device.backend,
            self.device.name.replace('"', "'"),
            self.workload,
            self.value,
            self.unit,
            self.median_ms
        );
        for (key, value) in &self.extra {
            line += &format!(", \"{key}\": {value}");
        }
        println!("{line}}}");
    }
}

/// Median seconds of `run` (each call must finish its work), after one warm-up call.
fn median_seconds(device: &Device, mut run: impl FnMut() -> kiln::Result<()>) -> kiln::Result<f64> {
    run()?;
    device.synchronize()?;
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || start.elapsed().as_secs_f64() < 1.0 {
        let t = Instant::now();
        run()?;
        device.synchronize()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// `model` compiled like the Keras tutorial: Adam 1e-3, sparse cross-entropy, accuracy.
fn compiled(mut model: Sequential) -> kiln::Result<Sequential> {
    model.compile(
        Adam::new(0.001),
        Loss::SparseCategoricalCrossentropy,
        &[Metric::Accuracy],
    )?;
    Ok(model)
}

fn reference_cnn(device: &Device) -> kiln::Result<Sequential> {
    compiled(
        Sequential::new([1, 28, 28])
            .on(device)
            .add(Conv2D::new(32, (3, 3)).activation(Activation::Relu))?
            .add(MaxPooling2D::new((2, 2)))?
            .add(Flatten::new())?
            .add(Dense::new(10).activation(Activation::Softmax))?,
    )
}

fn mlp(device: &Device) -> kiln::Result<Sequential> {
    compiled(
        Sequential::new([1, 28, 28])
            .on(device)
            .add(Flatten::new())?
            .add(Dense::new(128).activation(Activation::Relu))?
            .add(Dense::new(10).activation(Activation::Softmax))?,
    )
}

const TEXT_VOCABULARY: usize = 10_000;
const TEXT_STEPS: usize = 100;

/// 4,096 synthetic sequences of 100 token ids (1..10,000) with 0/1 labels: only speed is measured.
fn text_data() -> kiln::Result<Dataset> {
    let (samples, mut next) = (4096, stream(0x2545_f491_4f6c_dd1d));
    let ids: Vec<u32> = (0..samples * TEXT_STEPS)
        .map(|_| (1 + next() % (TEXT_VOCABULARY as u64 - 1)) as u32)
        .collect();
    let labels = (0..samples).map(|i| (i % 2) as f32).collect();
    Dataset::from_columns(
        vec![Column::ids(ids, [TEXT_STEPS])],
        Targets::Values {
            values: labels,
            width: 1,
        },
    )
}

const CREDIT_FEATURES: usize = 33;
const USERS: usize = 943;
const ITEMS: usize = 1682;

/// A xorshift stream for the synthetic data sets.
fn stream(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// 4,454 rows of 33 standardised-looking features with 0/1 labels (the credit data's shape).
fn credit_data() -> kiln::Result<Dataset> {
    let (rows, mut next) = (4454, stream(0x9e37_79b9_7f4a_7c15));
    let features = (0..rows * CREDIT_FEATURES)
        .map(|_| (next() % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    let labels = (0..rows).map(|_| u32::from(next() % 100 < 28)).collect();
    Dataset::new(
        features,
        [CREDIT_FEATURES],
        Targets::Classes { labels, classes: 2 },
    )
}

/// 80,000 ratings of 1,682 items by 943 users (MovieLens 100K's training split's shape).
fn rating_data() -> kiln::Result<Dataset> {
    let (count, mut next) = (80_000, stream(0x2545_f491_4f6c_dd1d));
    let users = (0..count).map(|_| (next() % USERS as u64) as u32).collect();
    let items = (0..count).map(|_| (next() % ITEMS as u64) as u32).collect();
    let ratings = (0..count).map(|_| (next() % 5) as f32 - 2.0).collect();
    Dataset::from_inputs(
        vec![
            ("user", Column::ids(users, [1])),
            ("item", Column::ids(items, [1])),
        ],
        Targets::Values {
            values: ratings,
            width: 1,
        },
    )
}

fn compiled_binary(mut model: Sequential) -> kiln::Result<Sequential> {
    model.compile(Adam::new(0.001), Loss::BinaryCrossentropy, &[])?;
    Ok(model)
}

/// Fashion-MNIST's training images, or the shipped MNIST sample where it is not installed.
fn training_images() -> kiln::Result<(Dataset, &'static str)> {
    match kiln::datasets::fashion_mnist(None) {
        Ok(splits) => Ok((splits.train, "fashion-mnist")),
        Err(_) => Ok((kiln::datasets::sample()?.train, "mnist-sample")),
    }
}

/// Trains `batches` batches of `batch_size` with `fit` (one epoch over that many samples): samples/s.
fn train(
    model: &mut Model,
    data: &Dataset,
    batches: usize,
    batch_size: usize,
) -> kiln::Result<f64> {
    let n = (batches * batch_size).min(data.len());
    let subset = data.select(&(0..n).collect::<Vec<_>>())?;
    let config = FitConfig {
        epochs: 1,
        batch_size,
        verbose: false,
        ..Default::default()
    };
    let start = Instant::now();
    model.fit(&subset, &config)?;
    model.device().synchronize()?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// The first batch of a fresh model, timed from device creation (adapter, pipelines, upload).
fn first_batch(device_name: &str, data: &Dataset) -> kiln::Result<(Device, Sequential, f64)> {
    let start = Instant::now();
    let device = open_device(device_name)?;
    let mut model = reference_cnn(&device)?;
    train(&mut model, data, 1, 64)?;
    Ok((device, model, start.elapsed().as_secs_f64()))
}

fn open_device(name: &str) -> kiln::Result<Device> {
    match name {
        "cpu" => Ok(Device::cpu()),
        "gpu" => Device::gpu(),
        _ => Ok(Device::auto()),
    }
}

fn run_workload(workload: &str, device_name: &str, batches: usize) -> kiln::Result<()> {
    if workload == "train-seed-cnn" {
        let (data, source) = training_images()?;
        let (device, mut model, first_batch_s) = first_batch(device_name, &data)?;
        let samples_per_s = train(&mut model, &data, batches, 64)?;
        Report {
            device: &device.info(),
            workload,
            value: samples_per_s,
            unit: "samples/s",
            median_ms: 64_000.0 / samples_per_s,
            extra: vec![
                ("first_batch_s", format!("{first_batch_s:.3}")),
                ("batches", batches.to_string()),
                ("data", format!("\"{source}\"")),
            ],
        }
        .print();
        return Ok(());
    }
    let device = open_device(device_name)?;
    let info = device.info();
    let report = |value: f64, unit: &str, seconds: f64, extra: Vec<(&'static str, String)>| {
        Report {
            device: &info,
            workload,
            value,
            unit,
            median_ms: seconds * 1e3,
            extra,
        }
        .print()
    };
    match workload {
        "train-mlp" => {
            let (data, _) = training_images()?;
            let mut model = mlp(&device)?;
            train(&mut model, &data, 10, 32)?;
            let samples_per_s = train(&mut model, &data, batches * 2, 32)?;
            report(samples_per_s, "samples/s", 32.0 / samples_per_s, vec![]);
        }
        "train-text-cnn" => {
            let data = text_data()?;
            let mut model = compiled_binary(
                Sequential::new([TEXT_STEPS])
                    .on(&device)
                    .add(Embedding::new(TEXT_VOCABULARY, 64))?
                    .add(Conv1D::new(64, 5).activation(Activation::Relu))?
                    .add(GlobalMaxPooling1D::new())?
                    .add(Dense::new(1).activation(Activation::Sigmoid))?,
            )?;
            train(&mut model, &data, 5, 32)?;
            let samples_per_s = train(&mut model, &data, batches * 2, 32)?;
            report(samples_per_s, "samples/s", 32.0 / samples_per_s, vec![]);
        }
        "train-credit-mlp" => {
            let mut model = Sequential::new([CREDIT_FEATURES])
                .on(&device)
                .add(Dense::new(64).activation(Activation::Relu))?
                .add(Dropout::new(0.3))?
                .add(Dense::new(32).activation(Activation::Relu))?
                .add(Dropout::new(0.3))?
                .add(Dense::new(1).activation(Activation::Sigmoid))?;
            model.compile(Adam::new(0.001), Loss::BinaryCrossentropy, &[])?;
            let data = credit_data()?;
            train(&mut model, &data, 5, 64)?;
            let samples_per_s = train(&mut model, &data, batches * 2, 64)?;
            report(samples_per_s, "samples/s", 64.0 / samples_per_s, vec![]);
        }
        "train-recommender" => {
            let (user, item) = (Input::ids([1]).named("user"), Input::ids([1]).named("item"));
            let table = |n: usize, dim: usize, input: &Input| -> kiln::Result<Node> {
                Flatten::new().apply(&Embedding::new(n, dim).apply(input)?)
            };
            let affinity =
                Dot::new(1).apply(&[&table(USERS, 64, &user)?, &table(ITEMS, 64, &item)?])?;
            let rating = Add::new().apply(&[
                &affinity,
                &table(USERS, 1, &user)?,
                &table(ITEMS, 1, &item)?,
            ])?;
            let mut model = Model::new(&[&user, &item], &[&rating])?.on(&device);
            model.compile(Adam::new(0.003), Loss::MeanSquaredError, &[])?;
            let data = rating_data()?;
            train(&mut model, &data, 5, 256)?;
            let samples_per_s = train(&mut model, &data, batches * 2, 256)?;
            report(samples_per_s, "samples/s", 256.0 / samples_per_s, vec![]);
        }
        "infer-seed-cnn-1" | "infer-seed-cnn-1000" => {
            let n = if workload.ends_with("-1") { 1 } else { 1000 };
            let model = reference_cnn(&device)?;
            let x = Tensor::rand([n, 1, 28, 28], 1, &device)?;
            let seconds = median_seconds(&device, || model.predict(&x).map(drop))?;
            // Each softmax row sums to one: the total is n when the work was really done.
            let total = model.predict(&x)?.sum_all()?.to_scalar()?;
            let result = vec![("result", format!("{total}"))];
            report(n as f64 / seconds, "samples/s", seconds, result);
        }
        "conv2d-seed-fwd-bwd" => {
            let x = Tensor::rand([64, 1, 28, 28], 1, &device)?;
            let w = Tensor::rand([32, 1, 3, 3], 2, &device)?.requires_grad_();
            let b = Tensor::zeros([32], &device)?.requires_grad_();
            let dy = Tensor::rand([64, 32, 26, 26], 3, &device)?;
            let seconds = median_seconds(&device, || {
                let y = x.conv2d(&w, Some(&b), Conv2dParams::default())?;
                y.backward_with(&dy).map(drop)
            })?;
            // Forward, weight gradient and bias gradient: 2 * outputs * 9 each for the first two.
            let flops = 2.0 * 2.0 * (64 * 32 * 26 * 26 * 9) as f64;
            report(flops / seconds / 1e9, "GFLOP/s", seconds, vec![]);
        }
        "softmax-4096x1000" => {
            let x = Tensor::rand([4096, 1000], 1, &device)?;
            let seconds = median_seconds(&device, || x.softmax(-1).map(drop))?;
            report(
                4096.0 * 1000.0 * 8.0 / seconds / 1e9,
                "GB/s",
                seconds,
                vec![],
            );
        }
        "dispatch-chain" => {
            // 1,000 dependent adds on a 16-element tensor: what each launch costs beyond its work.
            let x = RawTensor::zeros([16], DType::F32, &device)?;
            let seconds = median_seconds(&device, || {
                let mut y = x.clone();
                for _ in 0..1000 {
                    y = y.scalar(BinaryOp::Add, 1.0)?;
                }
                Ok(())
            })?;
            report(1000.0 / seconds, "ops/s", seconds, vec![]);
        }
        "sum-16m" => {
            let x = Tensor::rand([1 << 24], 1, &device)?;
            let seconds = median_seconds(&device, || x.sum_all().map(drop))?;
            let sum = x.sum_all()?.to_scalar()?;
            let result = vec![("result", format!("{sum}"))];
            report((4u64 << 24) as f64 / seconds / 1e9, "GB/s", seconds, result);
        }
        matmul if matmul.starts_with("matmul-") => {
            let n: usize = matmul["matmul-".len()..].parse().map_err(|_| {
                kiln::Error::invalid("kiln-bench", format!("bad matrix size in {matmul}"))
            })?;
            let a = Tensor::rand([n, n], 1, &device)?;
            let b = Tensor::rand([n, n], 2, &device)?;
            let seconds = median_seconds(&device, || a.matmul(&b).map(drop))?;
            report(
                2.0 * (n as f64).powi(3) / seconds / 1e9,
                "GFLOP/s",
                seconds,
                vec![],
            );
        }
        other => {
            return Err(kiln::Error::invalid(
                "kiln-bench",
                format!("unknown workload {other:?}; known: {DEFAULT_WORKLOADS:?}, matmul-<n>"),
            ));
        }
    }
    // With KILN_PROFILE=1 (GPU), every kernel the workload ran, summed over its repetitions.
    if let Some(profile) = device.take_profile()?
        && !profile.rows.is_empty()
    {
        eprintln!("{workload}: {profile}");
    }
    Ok(())
}

fn main() -> kiln::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut device = "auto".to_string();
    let mut batches = 50;
    let mut workloads = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--device" => {
                device = args.get(i + 1).cloned().unwrap_or_default();
                i += 1;
            }
            "--batches" => {
                batches = args.get(i + 1).and_then(|b| b.parse().ok()).unwrap_or(50);
                i += 1;
            }
            workload => workloads.push(workload.to_string()),
        }
        i += 1;
    }
    if workloads.is_empty() {
        workloads = DEFAULT_WORKLOADS.iter().map(|w| w.to_string()).collect();
    }
    for workload in &workloads {
        run_workload(workload, &device, batches)?;
    }
    Ok(())
}
