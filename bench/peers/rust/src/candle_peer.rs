//! candle 0.11 (CPU) on the workloads.

use std::time::Instant;

use candle_core::{D, DType, Device, Module, Tensor, Var};
use candle_nn::{AdamW, Conv2d, Linear, Optimizer, ParamsAdamW, VarBuilder, VarMap};

use crate::{
    Images, matmul_size, median_seconds, report_inference, report_kernel, report_kernel_with,
    report_training, seed_cnn_fields, training_images,
};

type Result<T> = candle_core::Result<T>;

struct ReferenceCnn {
    conv: Conv2d,
    dense: Linear,
}

impl ReferenceCnn {
    fn new(vb: VarBuilder) -> Result<Self> {
        Ok(ReferenceCnn {
            conv: candle_nn::conv2d(1, 32, 3, Default::default(), vb.pp("conv"))?,
            dense: candle_nn::linear(5408, 10, vb.pp("dense"))?,
        })
    }
}

impl Module for ReferenceCnn {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv.forward(x)?.relu()?.max_pool2d(2)?;
        self.dense.forward(&y.flatten_from(1)?)
    }
}

struct Mlp {
    hidden: Linear,
    output: Linear,
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.output
            .forward(&self.hidden.forward(&x.flatten_from(1)?)?.relu()?)
    }
}

fn batch(images: &Images, index: usize, size: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let start = (index * size) % (images.len() - size);
    let x = Tensor::from_slice(
        &images.pixels[start * 784..(start + size) * 784],
        (size, 1, 28, 28),
        device,
    )?;
    let y = Tensor::from_slice(&images.labels[start..start + size], size, device)?;
    Ok((x, y))
}

fn train(
    model: &dyn Module,
    optimizer: &mut AdamW,
    images: &Images,
    first: usize,
    batches: usize,
    size: usize,
) -> Result<()> {
    for i in first..first + batches {
        let (x, y) = batch(images, i, size, &Device::Cpu)?;
        let loss = candle_nn::loss::cross_entropy(&model.forward(&x)?, &y)?;
        optimizer.backward_step(&loss)?;
    }
    Ok(())
}

fn adam(varmap: &VarMap) -> Result<AdamW> {
    AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: 1e-3,
            eps: 1e-7,
            weight_decay: 0.0,
            ..Default::default()
        },
    )
}

fn run_result(workload: &str, batches: usize) -> Result<()> {
    let framework = "candle 0.11";
    let device_name = "cpu";
    let device = Device::Cpu;
    let kernel = |seconds: f64| report_kernel(framework, device_name, workload, seconds);
    match workload {
        "train-seed-cnn" => {
            let start = Instant::now();
            let images = training_images();
            let varmap = VarMap::new();
            let model = ReferenceCnn::new(VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
            let mut optimizer = adam(&varmap)?;
            train(&model, &mut optimizer, &images, 0, 1, 64)?;
            let first_batch_s = start.elapsed().as_secs_f64();
            let timer = Instant::now();
            train(&model, &mut optimizer, &images, 1, batches, 64)?;
            let timed = (batches * 64, timer.elapsed().as_secs_f64(), 64);
            let fields = seed_cnn_fields(first_batch_s, batches, &images);
            report_training(framework, device_name, workload, timed, &fields);
        }
        "train-mlp" => {
            let images = training_images();
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
            let model = Mlp {
                hidden: candle_nn::linear(784, 128, vb.pp("hidden"))?,
                output: candle_nn::linear(128, 10, vb.pp("output"))?,
            };
            let mut optimizer = adam(&varmap)?;
            train(&model, &mut optimizer, &images, 0, 10, 32)?;
            let timer = Instant::now();
            train(&model, &mut optimizer, &images, 10, batches * 2, 32)?;
            let timed = (batches * 2 * 32, timer.elapsed().as_secs_f64(), 32);
            report_training(framework, device_name, workload, timed, "");
        }
        "infer-seed-cnn-1" | "infer-seed-cnn-1000" => {
            let n = if workload.ends_with("-1") { 1 } else { 1000 };
            let varmap = VarMap::new();
            let model = ReferenceCnn::new(VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
            let x = Tensor::rand(0f32, 1.0, (n, 1, 28, 28), &device)?;
            let seconds = median_seconds(|| {
                candle_nn::ops::softmax(&model.forward(&x).unwrap(), D::Minus1).unwrap();
            });
            let total = candle_nn::ops::softmax(&model.forward(&x)?, D::Minus1)?
                .sum_all()?
                .to_scalar::<f32>()?;
            report_inference(framework, device_name, workload, n, seconds, total);
        }
        "conv2d-seed-fwd-bwd" => {
            let x = Tensor::rand(0f32, 1.0, (64, 1, 28, 28), &device)?;
            let w = Var::rand(0f32, 1.0, (32, 1, 3, 3), &device)?;
            let b = Var::zeros(32, DType::F32, &device)?;
            let dy = Tensor::rand(0f32, 1.0, (64, 32, 26, 26), &device)?;
            kernel(median_seconds(|| {
                let y = x
                    .conv2d(&w, 0, 1, 1, 1)
                    .and_then(|y| y.broadcast_add(&b.reshape((1, 32, 1, 1))?))
                    .unwrap();
                // candle's backward starts from a scalar: the weighted sum has dy as its gradient.
                let grads = (y * &dy)
                    .and_then(|t| t.sum_all())
                    .and_then(|t| t.backward())
                    .unwrap();
                assert!(grads.get(&w).is_some() && grads.get(&b).is_some());
            }));
        }
        "softmax-4096x1000" => {
            let x = Tensor::rand(0f32, 1.0, (4096, 1000), &device)?;
            kernel(median_seconds(|| {
                candle_nn::ops::softmax_last_dim(&x).unwrap();
            }));
        }
        "sum-16m" => {
            let x = Tensor::rand(0f32, 1.0, 1usize << 24, &device)?;
            let seconds = median_seconds(|| {
                x.sum_all().unwrap();
            });
            let sum = x.sum_all()?.to_scalar::<f32>()?;
            report_kernel_with(
                framework,
                device_name,
                workload,
                seconds,
                &format!(", \"result\": {sum}"),
            );
        }
        other => match matmul_size(other) {
            Some(n) => {
                let a = Tensor::rand(0f32, 1.0, (n, n), &device)?;
                let b = Tensor::rand(0f32, 1.0, (n, n), &device)?;
                kernel(median_seconds(|| {
                    a.matmul(&b).unwrap();
                }));
            }
            None => panic!("unknown workload {other}"),
        },
    }
    Ok(())
}

pub fn run(workload: &str, batches: usize) {
    if let Err(e) = run_result(workload, batches) {
        panic!("candle {workload}: {e}");
    }
}
