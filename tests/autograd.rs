//! Autograd: finite-difference checks of compositions the fixtures do not cover, graph semantics
//! (accumulation, detach, no_grad), memory and readback discipline during training steps, seeded
//! random tensors, and bad input.

use kiln::device::device_test;
use kiln::prelude::*;

fn cpu_tensor(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(values, shape.to_vec(), &Device::cpu()).unwrap()
}

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 12.9898 + seed).sin() * 43758.547).fract())
        .collect()
}

/// Finite differences agree with backward through views, joins and lookups.
#[test]
fn finite_differences_match_backward_for_compositions() {
    let a = cpu_tensor(&values(6, 1.0), &[2, 3]);
    let b = cpu_tensor(&values(8, 2.0), &[2, 4]);
    let row = cpu_tensor(&values(3, 3.0), &[3]);
    let table = cpu_tensor(&values(12, 4.0), &[4, 3]);
    type Case = (
        &'static str,
        Box<dyn Fn(&[Tensor]) -> Result<Tensor>>,
        Vec<Tensor>,
    );
    let cases: Vec<Case> = vec![
        (
            "transpose -> matmul",
            Box::new(|t| t[0].t()?.matmul(&t[1])?.tanh()?.sum_all()),
            vec![a.clone(), b.clone()],
        ),
        (
            "broadcast -> mul",
            Box::new(|t| t[0].mul(&t[1].broadcast_to([2, 3])?)?.sigmoid()?.mean_all()),
            vec![a.clone(), row.clone()],
        ),
        (
            "narrow",
            Box::new(|t| t[0].narrow(1, 1, 2)?.exp()?.sum_all()),
            vec![a.clone()],
        ),
        (
            "concat",
            Box::new(|t| {
                Tensor::concat(&[&t[0], &t[1]], 1)?
                    .mul(&Tensor::concat(&[&t[0], &t[1]], 1)?)?
                    .sum_all()
            }),
            vec![a.clone(), b.clone()],
        ),
        (
            "stack + max",
            Box::new(|t| {
                Tensor::stack(&[&t[0], &t[0].mul_scalar(0.5)?], 0)?
                    .max(Some(2), false)?
                    .sum_all()
            }),
            vec![a.clone()],
        ),
        (
            "index_select with repeats",
            Box::new(|t| {
                let idx = Tensor::from_slice(&[2u32, 0, 2, 3], [4], &Device::cpu())?;
                t[0].index_select(&idx)?.mul_scalar(1.5)?.tanh()?.sum_all()
            }),
            vec![table.clone()],
        ),
        (
            "softmax -> log",
            Box::new(|t| t[0].softmax(-1)?.add_scalar(0.1)?.log()?.mean_all()),
            vec![b.clone()],
        ),
        (
            "division and maximum",
            Box::new(|t| {
                t[0].div(&t[1].abs()?.add_scalar(1.0)?)?
                    .maximum_scalar(0.1)?
                    .sum_all()
            }),
            vec![a.clone(), a.mul_scalar(0.3).unwrap()],
        ),
    ];
    for (name, f, inputs) in cases {
        let report = check_gradients(f, &inputs, 1e-2, 2e-2).unwrap();
        assert!(report.passed(), "{name}: {report:?}");
    }
}

device_test!(a_tensor_used_twice_accumulates, |device| {
    let x = Tensor::from_slice(&[1.0f32, -2.0, 3.0], [3], &device)
        .unwrap()
        .requires_grad_();
    let y = (&(&x * &x).unwrap() + &x).unwrap().sum_all().unwrap();
    let g = y
        .backward()
        .unwrap()
        .get(&x)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(g, vec![3.0, -3.0, 7.0]);
});

device_test!(detach_and_no_grad_stop_recording, |device| {
    let x = Tensor::from_slice(&[2.0f32], [1], &device)
        .unwrap()
        .requires_grad_();
    let y = (&x * &x.detach()).unwrap().sum_all().unwrap();
    assert_eq!(
        y.backward()
            .unwrap()
            .get(&x)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![2.0]
    );
    let z = no_grad(|| x.exp().unwrap());
    assert!(!z.requires_grad());
    let err = z.sum_all().unwrap().backward().unwrap_err().to_string();
    assert!(
        err.contains("backward") && err.contains("does not require grad"),
        "{err}"
    );
});

device_test!(backward_errors_name_the_problem, |device| {
    let x = Tensor::from_slice(&[1.0f32, 2.0], [2], &device)
        .unwrap()
        .requires_grad_();
    let err = x.exp().unwrap().backward().unwrap_err().to_string();
    assert!(
        err.contains("backward") && err.contains("[2]") && err.contains("seed"),
        "{err}"
    );
    let other = Tensor::from_slice(&[1.0f32, 2.0], [2], &Device::cpu()).unwrap();
    if device.is_gpu() {
        let err = x.add(&other).unwrap_err().to_string();
        assert!(
            err.contains("add") && err.contains("different devices"),
            "{err}"
        );
    }
    let half = Tensor::from_slice(&[1.0f32, 2.0], [2], &device)
        .unwrap()
        .raw()
        .cast(DType::F16)
        .unwrap();
    let err = x.mul(&Tensor::from_raw(half)).unwrap_err().to_string();
    assert!(err.contains("mul") && err.contains("F16"), "{err}");
    let y = x.exp().unwrap().sum_all().unwrap();
    y.backward().unwrap();
    let err = y.backward().unwrap_err().to_string();
    assert!(err.contains("already differentiated"), "{err}");
    let table = Tensor::ones([3, 2], &device).unwrap();
    let idx = Tensor::from_slice(&[0u32, 3], [2], &device).unwrap();
    let err = table
        .index_select(&idx)
        .and_then(|t| t.to_vec::<f32>())
        .unwrap_err()
        .to_string();
    assert!(err.contains("index") && err.contains("[0, 3)"), "{err}");
});

/// One training step of a small CNN: forward, backward, Adam on every parameter.
fn cnn_step(
    params: &[Var],
    moments: &mut [(RawTensor, RawTensor)],
    images: &Tensor,
    labels: &Tensor,
    step: u32,
) -> f32 {
    let [cw, cb, dw, db] = [0, 1, 2, 3].map(|i| params[i].tensor());
    let logits = images
        .conv2d(&cw, Some(&cb), Conv2dParams::default())
        .unwrap()
        .relu()
        .unwrap()
        .max_pool2d(Pool2dParams::square(2))
        .unwrap()
        .flatten(1)
        .unwrap()
        .matmul(&dw.t().unwrap())
        .unwrap()
        .add(&db)
        .unwrap();
    let loss = logits.cross_entropy(labels).unwrap();
    let grads = loss.backward().unwrap();
    for (p, (m, v)) in params.iter().zip(moments.iter_mut()) {
        let g = grads.get(&p.tensor()).unwrap();
        let (p2, m2, v2) = RawTensor::adam_step(
            p.tensor().raw(),
            g.raw(),
            m,
            v,
            &AdamConfig::default(),
            step,
        )
        .unwrap();
        p.set(p2).unwrap();
        (*m, *v) = (m2, v2);
    }
    drop(loss);
    step as f32
}

fn small_cnn(device: &Device) -> (Vec<Var>, Vec<(RawTensor, RawTensor)>, Tensor, Tensor) {
    let shapes: [&[usize]; 4] = [&[4, 1, 3, 3], &[4], &[3, 36], &[3]];
    let params: Vec<Var> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Var::new(
                Tensor::randn(s.to_vec(), i as u64, device)
                    .unwrap()
                    .mul_scalar(0.3)
                    .unwrap(),
            )
        })
        .collect();
    let moments = shapes
        .iter()
        .map(|s| {
            (
                RawTensor::zeros(s.to_vec(), DType::F32, device).unwrap(),
                RawTensor::zeros(s.to_vec(), DType::F32, device).unwrap(),
            )
        })
        .collect();
    let images = Tensor::rand([4, 1, 8, 8], 7, device).unwrap();
    let labels = Tensor::from_slice(&[0u32, 2, 1, 2], [4], device).unwrap();
    (params, moments, images, labels)
}

device_test!(
    training_steps_keep_memory_flat_and_read_nothing_back,
    |device| {
        let (params, mut moments, images, labels) = small_cnn(&device);
        cnn_step(&params, &mut moments, &images, &labels, 1);
        device.synchronize().unwrap();
        let baseline = device.memory_stats().bytes_in_use;
        let readbacks = device.runtime_stats().readbacks;
        for step in 2..=101 {
            cnn_step(&params, &mut moments, &images, &labels, step);
        }
        device.synchronize().unwrap();
        assert_eq!(
            device.runtime_stats().readbacks,
            readbacks,
            "a training step read data back to the host"
        );
        assert_eq!(
            device.memory_stats().bytes_in_use,
            baseline,
            "memory grew over 100 steps"
        );
    }
);

device_test!(
    seeded_random_tensors_are_reproducible_across_devices,
    |device| {
        let u = Tensor::uniform([10_000], -2.0, 3.0, 42, &device)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let u_cpu = Tensor::uniform([10_000], -2.0, 3.0, 42, &Device::cpu())
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(u, u_cpu, "uniform values are bit-identical on every device");
        assert!(u.iter().all(|&v| (-2.0..3.0).contains(&v)));
        let mean = u.iter().sum::<f32>() / u.len() as f32;
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
        let n = Tensor::randn([10_000], 7, &device)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let n_cpu = Tensor::randn([10_000], 7, &Device::cpu())
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert!(n.iter().zip(&n_cpu).all(|(a, b)| (a - b).abs() < 1e-4));
        let (m, var) = (
            n.iter().sum::<f32>() / 1e4,
            n.iter().map(|v| v * v).sum::<f32>() / 1e4,
        );
        assert!(
            m.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "mean {m}, variance {var}"
        );
        assert_ne!(
            Tensor::rand([4], 1, &device)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            Tensor::rand([4], 2, &device)
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
        );
        assert_eq!(
            Tensor::arange(4, &device).unwrap().to_vec::<f32>().unwrap(),
            vec![0.0, 1.0, 2.0, 3.0]
        );
    }
);

device_test!(gradients_match_between_devices, |device| {
    let x = Tensor::from_slice(&values(2 * 3 * 6 * 6, 9.0), [2, 3, 6, 6], &device)
        .unwrap()
        .requires_grad_();
    let w = Tensor::from_slice(&values(4 * 3 * 3 * 3, 10.0), [4, 3, 3, 3], &device)
        .unwrap()
        .requires_grad_();
    let run = |x: &Tensor, w: &Tensor| {
        let y = x
            .conv2d(
                w,
                None,
                Conv2dParams {
                    stride: [2, 2],
                    padding: [1, 1],
                },
            )
            .unwrap();
        let loss = y
            .avg_pool2d(Pool2dParams::square(3))
            .unwrap()
            .log_softmax(1)
            .unwrap()
            .mean_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        (
            grads.get(x).unwrap().to_vec::<f32>().unwrap(),
            grads.get(w).unwrap().to_vec::<f32>().unwrap(),
        )
    };
    let here = run(&x, &w);
    let cpu = Device::cpu();
    let on_cpu = run(
        &Tensor::from_raw(x.raw().to_device(&cpu).unwrap()).requires_grad_(),
        &Tensor::from_raw(w.raw().to_device(&cpu).unwrap()).requires_grad_(),
    );
    for (a, b) in here
        .0
        .iter()
        .chain(&here.1)
        .zip(on_cpu.0.iter().chain(&on_cpu.1))
    {
        assert!((a - b).abs() < 1e-5 + 1e-3 * b.abs(), "{a} vs {b}");
    }
});

device_test!(fused_conv_relu_matches_conv_then_relu, |device| {
    for batch in [1, 2, 7] {
        conv_relu_case(&device, batch);
    }
});

/// The fused convolution + ReLU against the unfused ops, and its gradients against the separate
/// input-, weight- and bias-gradient kernels given the masked output gradient.
fn conv_relu_case(device: &Device, batch: usize) {
    // Same forward values and the same input, weight and bias gradients as the unfused ops, with
    // stride, padding, and outputs on both sides of zero (a second layer, so the input gradient
    // and its ReLU mask are exercised too).
    let device = device.clone();
    let x = Tensor::from_slice(&values(batch * 3 * 7 * 7, 3.0), [batch, 3, 7, 7], &device)
        .unwrap()
        .requires_grad_();
    let w = Tensor::from_slice(&values(5 * 3 * 3 * 3, 4.0), [5, 3, 3, 3], &device)
        .unwrap()
        .requires_grad_();
    let b = Tensor::from_slice(&values(5, 5.0), [5], &device)
        .unwrap()
        .requires_grad_();
    let params = Conv2dParams {
        stride: [2, 1],
        padding: [1, 1],
    };
    let run = |fused: bool| {
        let y = if fused {
            x.conv2d_relu(&w, Some(&b), params).unwrap()
        } else {
            x.conv2d(&w, Some(&b), params).unwrap().relu().unwrap()
        };
        let weights =
            Tensor::from_slice(&values(y.numel(), 6.0), y.shape().clone(), &device).unwrap();
        let loss = y.mul(&weights).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let read = |t: &Tensor| grads.get(t).unwrap().to_vec::<f32>().unwrap();
        (y.to_vec::<f32>().unwrap(), read(&x), read(&w), read(&b))
    };
    let (fused, plain) = (run(true), run(false));
    assert!(fused.0.contains(&0.0) && fused.0.iter().any(|&v| v > 0.0));
    // The separate kernels, on the output gradient through the ReLU's mask.
    let y = x.conv2d_relu(&w, Some(&b), params).unwrap();
    let upstream = values(y.numel(), 6.0);
    let masked: Vec<f32> = (upstream.iter().zip(y.to_vec::<f32>().unwrap()))
        .map(|(&g, y)| if y > 0.0 { g } else { 0.0 })
        .collect();
    let dy = RawTensor::from_slice(&masked, y.shape().clone(), &device).unwrap();
    let separate = (
        RawTensor::conv2d_input_grad(&dy, w.raw(), x.shape().clone(), params).unwrap(),
        RawTensor::conv2d_weight_grad(&dy, x.raw(), w.shape().clone(), params).unwrap(),
        RawTensor::conv2d_bias_grad(&dy).unwrap(),
    );
    let read = |t: &RawTensor| t.to_vec::<f32>().unwrap();
    let (sx, sw, sb) = (read(&separate.0), read(&separate.1), read(&separate.2));
    for (name, got, want) in [
        ("output", &fused.0, &plain.0),
        ("input grad", &fused.1, &plain.1),
        ("weight grad", &fused.2, &plain.2),
        ("bias grad", &fused.3, &plain.3),
        ("input grad, separate kernel", &fused.1, &sx),
        ("weight grad, separate kernel", &fused.2, &sw),
        ("bias grad, separate kernel", &fused.3, &sb),
    ] {
        assert_eq!(got.len(), want.len(), "{name}");
        for (a, b) in got.iter().zip(want) {
            assert!(
                (a - b).abs() < 1e-5 + 1e-4 * b.abs(),
                "batch {batch}, {name}: {a} vs {b}"
            );
        }
    }
}

device_test!(
    fused_conv_relu_max_pool_matches_the_separate_ops,
    |device| {
        // (batch, channels in, height, width, convolution, pooling): batch 1 and 7, odd sizes whose
        // last row or column no 2x2 window covers, stride and padding, and a padded 3x3 pooling.
        let square = Conv2dParams::default();
        let padded = Conv2dParams {
            stride: [1, 1],
            padding: [1, 1],
        };
        let strided = Conv2dParams {
            stride: [2, 1],
            padding: [1, 0],
        };
        let overlapping = Pool2dParams {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
        };
        let cases = [
            (1, 1, 9, 9, square, Pool2dParams::square(2)),
            (7, 2, 11, 13, padded, Pool2dParams::square(2)),
            (3, 3, 8, 9, strided, overlapping),
        ];
        for (case, (batch, c_in, h, w, conv, pool)) in cases.into_iter().enumerate() {
            let seed = case as f32;
            let x = Tensor::from_slice(
                &values(batch * c_in * h * w, seed),
                [batch, c_in, h, w],
                &device,
            )
            .unwrap()
            .requires_grad_();
            let wt =
                Tensor::from_slice(&values(4 * c_in * 9, seed + 1.0), [4, c_in, 3, 3], &device)
                    .unwrap()
                    .requires_grad_();
            let b = Tensor::from_slice(&values(4, seed + 2.0), [4], &device)
                .unwrap()
                .requires_grad_();
            let run = |fused: bool| {
                let y = if fused {
                    x.conv2d_relu_max_pool2d(&wt, Some(&b), conv, pool).unwrap()
                } else {
                    (x.conv2d(&wt, Some(&b), conv).unwrap().relu().unwrap())
                        .max_pool2d(pool)
                        .unwrap()
                };
                let upstream =
                    Tensor::from_slice(&values(y.numel(), seed + 3.0), y.shape().clone(), &device)
                        .unwrap();
                let grads = y
                    .mul(&upstream)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let read = |t: &Tensor| grads.get(t).unwrap().to_vec::<f32>().unwrap();
                (
                    y.dims().to_vec(),
                    y.to_vec::<f32>().unwrap(),
                    read(&x),
                    read(&wt),
                    read(&b),
                )
            };
            let (fused, plain) = (run(true), run(false));
            assert_eq!(fused.0, plain.0, "case {case}: pooled shape");
            assert!(
                plain.1.contains(&0.0) && plain.1.iter().any(|&v| v > 0.0),
                "case {case}: the ReLU must cut some windows and pass others"
            );
            for (name, got, want) in [
                ("pooled output", &fused.1, &plain.1),
                ("input grad", &fused.2, &plain.2),
                ("weight grad", &fused.3, &plain.3),
                ("bias grad", &fused.4, &plain.4),
            ] {
                assert_eq!(got.len(), want.len(), "case {case}, {name}");
                for (a, b) in got.iter().zip(want) {
                    assert!(
                        (a - b).abs() < 1e-5 + 1e-4 * b.abs(),
                        "case {case}, {name}: {a} vs {b}"
                    );
                }
            }
        }
    }
);

device_test!(fused_linear_matches_matmul_add_relu, |device| {
    // A dense layer as one op (with and without its ReLU) gives the unfused values and gradients.
    let x = Tensor::from_slice(&values(5 * 7, 11.0), [5, 7], &device)
        .unwrap()
        .requires_grad_();
    let w = Tensor::from_slice(&values(3 * 7, 12.0), [3, 7], &device)
        .unwrap()
        .requires_grad_();
    let b = Tensor::from_slice(&values(3, 13.0), [3], &device)
        .unwrap()
        .requires_grad_();
    for relu in [false, true] {
        let run = |fused: bool| {
            let y = match (fused, relu) {
                (true, false) => x.linear(&w, Some(&b)).unwrap(),
                (true, true) => x.linear_relu(&w, Some(&b)).unwrap(),
                (false, _) => {
                    let y = x.matmul(&w.t().unwrap()).unwrap().add(&b).unwrap();
                    if relu { y.relu().unwrap() } else { y }
                }
            };
            let weights = Tensor::from_slice(&values(15, 14.0), [5, 3], &device).unwrap();
            let grads = y
                .mul(&weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let read = |t: &Tensor| grads.get(t).unwrap().to_vec::<f32>().unwrap();
            [y.to_vec::<f32>().unwrap(), read(&x), read(&w), read(&b)]
        };
        let (fused, plain) = (run(true), run(false));
        for (name, got, want) in ["output", "x grad", "w grad", "b grad"]
            .iter()
            .zip(&fused)
            .zip(&plain)
            .map(|((n, g), w)| (n, g, w))
        {
            for (a, b) in got.iter().zip(want) {
                assert!(
                    (a - b).abs() < 1e-5 + 1e-4 * b.abs(),
                    "relu {relu} {name}: {a} vs {b}"
                );
            }
        }
    }
    // A transposed input (read through strides) and a transposed weight (copied) give the same.
    let xt = Tensor::from_slice(&values(7 * 5, 15.0), [7, 5], &device)
        .unwrap()
        .t()
        .unwrap();
    let wt = Tensor::from_slice(&values(7 * 3, 16.0), [7, 3], &device)
        .unwrap()
        .t()
        .unwrap();
    let fused = xt
        .linear_relu(&wt, Some(&b))
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let plain = (xt
        .matmul(&wt.t().unwrap())
        .unwrap()
        .add(&b)
        .unwrap()
        .relu()
        .unwrap())
    .to_vec::<f32>()
    .unwrap();
    for (a, p) in fused.iter().zip(&plain) {
        assert!((a - p).abs() < 1e-5 + 1e-4 * p.abs(), "strided: {a} vs {p}");
    }
    let err = x.linear(&w.t().unwrap(), None).unwrap_err().to_string();
    assert!(err.contains("linear") && err.contains("[out, in]"), "{err}");
});

device_test!(
    channels_last_conv1d_matches_the_transposed_convolution,
    |device| {
        // [N, L, C] sequences: values and every gradient equal the channels-first convolution between
        // two transposes (on the CPU an independent kernel: strided patches, no im2col).
        for (stride, padding, relu) in [(1, 0, true), (1, 2, false), (2, 1, true), (3, 0, false)] {
            let x = Tensor::from_slice(&values(2 * 11 * 3, 21.0), [2, 11, 3], &device)
                .unwrap()
                .requires_grad_();
            let w = Tensor::from_slice(&values(4 * 3 * 5, 22.0), [4, 3, 5], &device)
                .unwrap()
                .requires_grad_();
            let b = Tensor::from_slice(&values(4, 23.0), [4], &device)
                .unwrap()
                .requires_grad_();
            let run = |channels_last: bool| {
                let y = if channels_last {
                    x.conv1d_channels_last(&w, Some(&b), (stride, padding), relu)
                        .unwrap()
                } else {
                    let t = x.permute(&[0, 2, 1]).unwrap();
                    let y = if relu {
                        t.conv1d_relu(&w, Some(&b), stride, padding).unwrap()
                    } else {
                        t.conv1d(&w, Some(&b), stride, padding).unwrap()
                    };
                    y.permute(&[0, 2, 1]).unwrap()
                };
                let weights = Tensor::from_slice(
                    &values(y.shape().numel(), 24.0),
                    y.dims().to_vec(),
                    &device,
                )
                .unwrap();
                let grads = y
                    .mul(&weights)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let read = |t: &Tensor| grads.get(t).unwrap().to_vec::<f32>().unwrap();
                (
                    y.dims().to_vec(),
                    [y.to_vec::<f32>().unwrap(), read(&x), read(&w), read(&b)],
                )
            };
            let (fast, plain) = (run(true), run(false));
            assert_eq!(fast.0, plain.0, "stride {stride} padding {padding}");
            for (name, (a, b)) in ["output", "x grad", "w grad", "b grad"]
                .iter()
                .zip(fast.1.iter().zip(&plain.1))
            {
                for (a, b) in a.iter().zip(b) {
                    assert!(
                        (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                        "{name} (stride {stride}, padding {padding}, relu {relu}): {a} vs {b}"
                    );
                }
            }
        }
    }
);
