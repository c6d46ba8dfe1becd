//! burn and candle on kiln-bench's workloads, one JSON line each (the format of
//! `examples/kiln-bench.rs` and `bench/peers/common.py`).
//!
//! ```text
//! kiln-peers burn-ndarray|burn-flex|burn-wgpu|candle [--batches 50] [workload ...]
//! ```

mod burn_peer;
mod candle_peer;

use std::io::Read;
use std::time::Instant;

pub const WORKLOADS: &[&str] = &[
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

/// Training images as `[n, 1, 28, 28]` floats in [0, 1] with their labels: Fashion-MNIST when
/// installed, else the 8,000 training digits of the sample shipped with kiln.
pub struct Images {
    pub pixels: Vec<f32>,
    pub labels: Vec<u32>,
    pub source: &'static str,
}

impl Images {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
}

fn gunzip(path: &str) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes
}

pub fn training_images() -> Images {
    let fashion = "/usr/share/datasets/fashion-mnist";
    let (images, labels, source, limit) =
        if std::path::Path::new(&format!("{fashion}/train-images-idx3-ubyte.gz")).exists() {
            (
                format!("{fashion}/train-images-idx3-ubyte.gz"),
                format!("{fashion}/train-labels-idx1-ubyte.gz"),
                "fashion-mnist",
                60_000,
            )
        } else {
            let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../data/mnist-sample");
            (
                format!("{sample}/images-idx3-ubyte.gz"),
                format!("{sample}/labels-idx1-ubyte.gz"),
                "mnist-sample",
                8_000,
            )
        };
    let pixels = gunzip(&images)[16..16 + limit * 784]
        .iter()
        .map(|&b| f32::from(b) / 255.0)
        .collect();
    let labels = gunzip(&labels)[8..8 + limit]
        .iter()
        .map(|&b| u32::from(b))
        .collect();
    Images {
        pixels,
        labels,
        source,
    }
}

/// Median seconds of `run` after one warm-up call (at least 5 runs and one second).
pub fn median_seconds(mut run: impl FnMut()) -> f64 {
    run();
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || start.elapsed().as_secs_f64() < 1.0 {
        let t = Instant::now();
        run();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Prints one result line.
pub fn report(
    framework: &str,
    device: &str,
    workload: &str,
    value: f64,
    unit: &str,
    seconds: f64,
    extra: &str,
) {
    println!(
        "{{\"framework\": \"{framework}\", \"device\": \"{device}\", \"workload\": \"{workload}\", \
         \"value\": {value:.4}, \"unit\": \"{unit}\", \"median_ms\": {:.4}{extra}}}",
        seconds * 1e3
    );
}

/// Reports a training workload: `samples` trained in `seconds`, `batch` per step.
pub fn report_training(
    framework: &str,
    device: &str,
    workload: &str,
    (samples, seconds, batch): (usize, f64, usize),
    extra: &str,
) {
    let rate = samples as f64 / seconds;
    let step = batch as f64 / rate;
    report(framework, device, workload, rate, "samples/s", step, extra);
}

/// The extra fields of `train-seed-cnn`: time to the first batch, batches timed, data set.
pub fn seed_cnn_fields(first_batch_s: f64, batches: usize, images: &Images) -> String {
    format!(
        ", \"first_batch_s\": {first_batch_s:.3}, \"batches\": {batches}, \"data\": \"{}\"",
        images.source
    )
}

/// Reports an inference workload: `n` images per call in `seconds`, softmax outputs summing to `total`.
pub fn report_inference(
    framework: &str,
    device: &str,
    workload: &str,
    n: usize,
    seconds: f64,
    total: f32,
) {
    let extra = format!(", \"result\": {total}");
    report(
        framework,
        device,
        workload,
        n as f64 / seconds,
        "samples/s",
        seconds,
        &extra,
    );
}

/// Reports a fixed-shape kernel workload in its unit (GFLOP/s or GB/s).
pub fn report_kernel(framework: &str, device: &str, workload: &str, seconds: f64) {
    report_kernel_with(framework, device, workload, seconds, "");
}

/// [`report_kernel`] with extra JSON fields (`, "result": 8388608.0`).
pub fn report_kernel_with(
    framework: &str,
    device: &str,
    workload: &str,
    seconds: f64,
    extra: &str,
) {
    let (amount, unit) = match workload {
        "conv2d-seed-fwd-bwd" => (2.0 * 2.0 * (64 * 32 * 26 * 26 * 9) as f64, "GFLOP/s"),
        "softmax-4096x1000" => (4096.0 * 1000.0 * 8.0, "GB/s"),
        "sum-16m" => ((4u64 << 24) as f64, "GB/s"),
        matmul => {
            let n: f64 = matmul["matmul-".len()..].parse().expect("matmul-<n>");
            (2.0 * n * n * n, "GFLOP/s")
        }
    };
    report(
        framework,
        device,
        workload,
        amount / seconds / 1e9,
        unit,
        seconds,
        extra,
    );
}

/// The size of a `matmul-<n>` workload.
pub fn matmul_size(workload: &str) -> Option<usize> {
    workload.strip_prefix("matmul-")?.parse().ok()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(peer) = args.first().cloned() else {
        eprintln!(
            "usage: kiln-peers burn-ndarray|burn-flex|burn-wgpu|candle [--batches N] [workload ...]"
        );
        std::process::exit(2);
    };
    let mut batches = 50;
    let mut workloads = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        if arg == "--batches" {
            batches = rest.next().and_then(|b| b.parse().ok()).unwrap_or(50);
        } else {
            workloads.push(arg.clone());
        }
    }
    if workloads.is_empty() {
        workloads = WORKLOADS.iter().map(|w| w.to_string()).collect();
    }
    for workload in &workloads {
        match peer.as_str() {
            "candle" => candle_peer::run(workload, batches),
            burn => burn_peer::run(burn, workload, batches),
        }
    }
}
