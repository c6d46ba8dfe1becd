//! burn 0.22 (ndarray, flex or wgpu backend, with autodiff) on the workloads.

use std::time::Instant;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, DeviceKind, Distribution, Int, Tensor, TensorData};

use crate::{
    Images, matmul_size, median_seconds, report_inference, report_kernel, report_kernel_with,
    report_training, seed_cnn_fields, training_images,
};

#[derive(Module, Debug)]
struct ReferenceCnn {
    conv: Conv2d,
    pool: MaxPool2d,
    dense: Linear,
}

impl ReferenceCnn {
    fn new(device: &Device) -> Self {
        ReferenceCnn {
            conv: Conv2dConfig::new([1, 32], [3, 3]).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            dense: LinearConfig::new(5408, 10).init(device),
        }
    }

    /// Logits for `[n, 1, 28, 28]` images.
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let y = self.pool.forward(relu(self.conv.forward(x)));
        self.dense.forward(y.flatten(1, 3))
    }
}

#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    output: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.output
            .forward(relu(self.hidden.forward(x.flatten(1, 3))))
    }
}

fn batch(
    images: &Images,
    index: usize,
    size: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<1, Int>) {
    let start = (index * size) % (images.len() - size);
    let pixels = images.pixels[start * 784..(start + size) * 784].to_vec();
    let labels: Vec<i64> = images.labels[start..start + size]
        .iter()
        .map(|&l| i64::from(l))
        .collect();
    (
        Tensor::from_data(TensorData::new(pixels, [size, 1, 28, 28]), device),
        Tensor::from_data(TensorData::new(labels, [size]), device),
    )
}

/// Trains `batches` batches and returns the model; `forward` gives logits.
fn train<M: Module + Clone>(
    mut model: M,
    forward: impl Fn(&M, Tensor<4>) -> Tensor<2>,
    images: &Images,
    first: usize,
    batches: usize,
    size: usize,
    device: &Device,
) -> M {
    let mut optimizer = AdamConfig::new().with_epsilon(1e-7).init();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let mut last_loss = None;
    for i in first..first + batches {
        let (x, y) = batch(images, i, size, device);
        let loss = loss_fn.forward(forward(&model, x), y);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-3, model, grads);
        last_loss = Some(loss);
    }
    // The last loss depends on every earlier step; reading it waits for them.
    last_loss.map(wait);
    model
}

/// Reads one element of `t` back, so the work that produced it has finished (on wgpu, `sync` and
/// `into_data` returned before the kernels ran in these workloads).
fn wait<const D: usize>(t: Tensor<D>) -> f32 {
    t.flatten::<1>(0, D - 1).slice([0..1]).into_scalar()
}

fn open(name: &str) -> (Device, &'static str) {
    match name {
        "burn-flex" => (Device::flex(), "flex (cpu)"),
        "burn-wgpu" => (
            Device::wgpu(DeviceKind::DefaultDevice),
            "wgpu (default adapter)",
        ),
        #[allow(
            deprecated,
            reason = "burn-ndarray is deprecated in 0.22 but still what many users run"
        )]
        _ => (Device::ndarray(), "ndarray (cpu)"),
    }
}

pub fn run(backend: &str, workload: &str, batches: usize) {
    let framework = format!("{backend} 0.22");
    let start = Instant::now();
    let (plain, device_name) = open(backend);
    let device = plain.clone().autodiff();
    let kernel = |seconds: f64| report_kernel(&framework, device_name, workload, seconds);
    match workload {
        "train-seed-cnn" => {
            let images = training_images();
            let model = train(
                ReferenceCnn::new(&device),
                ReferenceCnn::forward,
                &images,
                0,
                1,
                64,
                &device,
            );
            let first_batch_s = start.elapsed().as_secs_f64();
            let timer = Instant::now();
            train(
                model,
                ReferenceCnn::forward,
                &images,
                1,
                batches,
                64,
                &device,
            );
            let timed = (batches * 64, timer.elapsed().as_secs_f64(), 64);
            let fields = seed_cnn_fields(first_batch_s, batches, &images);
            report_training(&framework, device_name, workload, timed, &fields);
        }
        "train-mlp" => {
            let images = training_images();
            let model = Mlp {
                hidden: LinearConfig::new(784, 128).init(&device),
                output: LinearConfig::new(128, 10).init(&device),
            };
            let model = train(model, Mlp::forward, &images, 0, 10, 32, &device);
            let timer = Instant::now();
            train(model, Mlp::forward, &images, 10, batches * 2, 32, &device);
            let timed = (batches * 2 * 32, timer.elapsed().as_secs_f64(), 32);
            report_training(&framework, device_name, workload, timed, "");
        }
        "infer-seed-cnn-1" | "infer-seed-cnn-1000" => {
            let n = if workload.ends_with("-1") { 1 } else { 1000 };
            let model = ReferenceCnn::new(&plain);
            let x = Tensor::<4>::random([n, 1, 28, 28], Distribution::Default, &plain);
            // A new input each call (x + i): burn may reuse the result of an identical graph.
            let mut calls = 0;
            let seconds = median_seconds(|| {
                calls += 1;
                let input = x.clone().add_scalar(calls as f32);
                wait(burn::tensor::activation::softmax(model.forward(input), 1));
            });
            let total: f32 = burn::tensor::activation::softmax(model.forward(x.clone()), 1)
                .sum()
                .into_scalar();
            report_inference(&framework, device_name, workload, n, seconds, total);
        }
        "conv2d-seed-fwd-bwd" => {
            let x = Tensor::<4>::random([64, 1, 28, 28], Distribution::Default, &device);
            let w =
                Tensor::<4>::random([32, 1, 3, 3], Distribution::Default, &device).require_grad();
            let b = Tensor::<1>::zeros([32], &device).require_grad();
            let dy = Tensor::<4>::random([64, 32, 26, 26], Distribution::Default, &device);
            kernel(median_seconds(|| {
                let y = conv2d(
                    x.clone(),
                    w.clone(),
                    Some(b.clone()),
                    ConvOptions::new([1, 1], [0, 0], [1, 1], 1),
                );
                // burn's backward starts from a scalar: the weighted sum has dy as its gradient.
                let grads = (y * dy.clone()).sum().backward();
                w.grad(&grads).map(wait);
                b.grad(&grads).map(wait);
            }));
        }
        "softmax-4096x1000" => {
            let x = Tensor::<2>::random([4096, 1000], Distribution::Default, &plain);
            kernel(median_seconds(|| {
                let y = burn::tensor::activation::softmax(x.clone(), 1);
                wait(y);
            }));
        }
        "sum-16m" => {
            let x = Tensor::<1>::random([1 << 24], Distribution::Default, &plain);
            let seconds = median_seconds(|| {
                wait(x.clone().sum());
            });
            let sum: f32 = x.clone().sum().into_scalar();
            report_kernel_with(
                &framework,
                device_name,
                workload,
                seconds,
                &format!(", \"result\": {sum}"),
            );
        }
        other => match matmul_size(other) {
            Some(n) => {
                let a = Tensor::<2>::random([n, n], Distribution::Default, &plain);
                let b = Tensor::<2>::random([n, n], Distribution::Default, &plain);
                kernel(median_seconds(|| {
                    let c = a.clone().matmul(b.clone());
                    wait(c);
                }));
            }
            None => panic!("unknown workload {other}"),
        },
    }
}
