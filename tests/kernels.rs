//! Kernel edge cases on every device: sizes that are not multiples of the tiles, batches of one,
//! empty tensors, transposed operands, grids beyond 65,535 workgroups, and bad input. Each result is
//! compared with a plain-loop reference written here.

use kiln::device::device_test;
use kiln::prelude::*;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 12.9898 + seed).sin() * 43758.547).fract())
        .collect()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}"
        );
    }
}

fn naive_matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

device_test!(matmul_sizes_that_are_not_tile_multiples, |device| {
    for &(m, k, n) in &[
        (1, 1, 1),
        (65, 17, 129),
        (3, 200, 2),
        (64, 64, 64),
        (1, 300, 70),
    ] {
        let (a, b) = (values(m * k, 1.0), values(k * n, 2.0));
        let ta = RawTensor::from_slice(&a, [m, k], &device).unwrap();
        let tb = RawTensor::from_slice(&b, [k, n], &device).unwrap();
        let got = ta.matmul(&tb).unwrap().to_vec::<f32>().unwrap();
        assert_close(&got, &naive_matmul(&a, &b, m, k, n), 1e-4);
    }
});

device_test!(matmul_reads_transposed_views_without_copies, |device| {
    let (m, k, n) = (33, 21, 40);
    let (a, b) = (values(m * k, 3.0), values(k * n, 4.0));
    // Store Aᵀ and Bᵀ, multiply their transposed views.
    let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
    let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
    let ta = RawTensor::from_slice(&at, [k, m], &device)
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    let tb = RawTensor::from_slice(&bt, [n, k], &device)
        .unwrap()
        .transpose(0, 1)
        .unwrap();
    let allocations = device.memory_stats().allocations;
    let out = ta.matmul(&tb).unwrap();
    assert!(
        device.memory_stats().allocations <= allocations + 1,
        "only the output is allocated"
    );
    assert_close(
        &out.to_vec::<f32>().unwrap(),
        &naive_matmul(&a, &b, m, k, n),
        1e-4,
    );
});

device_test!(matmul_batches_vectors_and_empty_operands, |device| {
    // Batch of one, broadcast against a batch of three.
    let a = values(4 * 5, 5.0);
    let b = values(3 * 5 * 2, 6.0);
    let ta = RawTensor::from_slice(&a, [1, 4, 5], &device).unwrap();
    let tb = RawTensor::from_slice(&b, [3, 5, 2], &device).unwrap();
    let out = ta.matmul(&tb).unwrap();
    assert_eq!(out.shape().dims(), &[3, 4, 2]);
    let got = out.to_vec::<f32>().unwrap();
    for batch in 0..3 {
        assert_close(
            &got[batch * 8..][..8],
            &naive_matmul(&a, &b[batch * 10..][..10], 4, 5, 2),
            1e-4,
        );
    }
    // 1-D operands are vectors, as in numpy.
    let v = RawTensor::from_slice(&[1.0f32, 2.0, 3.0], [3], &device).unwrap();
    let mtx = RawTensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0], [3, 2], &device).unwrap();
    let vm = v.matmul(&mtx).unwrap();
    assert_eq!(
        (vm.shape().dims(), vm.to_vec::<f32>().unwrap()),
        (&[2][..], vec![4.0, 5.0])
    );
    assert_eq!(v.matmul(&v).unwrap().to_vec::<f32>().unwrap(), vec![14.0]);
    // Empty operands: [0, 4] @ [4, 3] is empty, [2, 0] @ [0, 3] is zeros.
    let e = RawTensor::zeros([0, 4], DType::F32, &device).unwrap();
    let w = RawTensor::ones([4, 3], DType::F32, &device).unwrap();
    assert_eq!(e.matmul(&w).unwrap().shape().dims(), &[0, 3]);
    let z = RawTensor::zeros([2, 0], DType::F32, &device)
        .unwrap()
        .matmul(&RawTensor::zeros([0, 3], DType::F32, &device).unwrap())
        .unwrap();
    assert_eq!(z.to_vec::<f32>().unwrap(), vec![0.0; 6]);
});

device_test!(matmul_every_tile_edge, |device| {
    // Every combination of sizes around the tile edges (each GPU plan: square, skinny and GEMV
    // tiles, short K-steps), then K = 5,409 (split-K) for a few.
    let sizes = [1usize, 3, 16, 17, 63, 64, 65, 129];
    let mut cases: Vec<(usize, usize, usize)> = Vec::new();
    for &m in &sizes {
        for &n in &sizes {
            for &k in &sizes {
                cases.push((m, n, k));
            }
        }
    }
    cases.extend([
        (1, 10, 5409),
        (64, 10, 5409),
        (17, 65, 5409),
        (129, 3, 5409),
    ]);
    for (m, n, k) in cases {
        let (a, b) = (values(m * k, m as f32), values(k * n, n as f32 + 0.5));
        let ta = RawTensor::from_slice(&a, [m, k], &device).unwrap();
        let tb = RawTensor::from_slice(&b, [k, n], &device).unwrap();
        let got = ta.matmul(&tb).unwrap().to_vec::<f32>().unwrap();
        let want = naive_matmul(&a, &b, m, k, n);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * (1.0 + w.abs()) * (k as f32).sqrt(),
                "{m}x{n}x{k}: element {i} is {g}, want {w}"
            );
        }
    }
});

device_test!(matmul_long_k_split_is_deterministic, |device| {
    // K far beyond M·N takes split-K on the GPU (partials summed in a fixed order): the same input
    // gives bit-identical output every time, close to an f64 reference. Shapes: GEMV (M = 4), a
    // square tile (32x32), and batch-1 inference against a transposed weight view.
    for (m, n, k, transpose_b) in [
        (4, 3, 65_536, false),
        (32, 32, 40_000, false),
        (1, 10, 5_408, true),
    ] {
        let (a, b) = (values(m * k, 1.5), values(k * n, 2.5));
        let ta = RawTensor::from_slice(&a, [m, k], &device).unwrap();
        let tb = if transpose_b {
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            RawTensor::from_slice(&bt, [n, k], &device)
                .unwrap()
                .transpose(0, 1)
                .unwrap()
        } else {
            RawTensor::from_slice(&b, [k, n], &device).unwrap()
        };
        let run = || {
            ta.matmul(&tb)
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run(), "{m}x{n}x{k}: two runs differ");
        for i in 0..m * n {
            let want: f64 = (0..k)
                .map(|p| f64::from(a[(i / n) * k + p]) * f64::from(b[p * n + i % n]))
                .sum();
            let got = f64::from(f32::from_bits(first[i]));
            assert!(
                (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                "{m}x{n}x{k}: {got} vs {want}"
            );
        }
    }
});

device_test!(matmul_broadcast_batches_of_transposed_operands, |device| {
    // [3, 1, 17, 40] @ [1, 4, 40, 65]ᵀ-stored: batch dims broadcast, B read through strides.
    let (m, k, n) = (17, 40, 65);
    let a = values(3 * m * k, 7.0);
    let b = values(4 * k * n, 8.0);
    let bt: Vec<f32> = (0..4 * n * k)
        .map(|i| {
            let (batch, rest) = (i / (n * k), i % (n * k));
            b[batch * k * n + (rest % k) * n + rest / k]
        })
        .collect();
    let ta = RawTensor::from_slice(&a, [3, 1, m, k], &device).unwrap();
    let tb = RawTensor::from_slice(&bt, [1, 4, n, k], &device)
        .unwrap()
        .transpose(2, 3)
        .unwrap();
    let out = ta.matmul(&tb).unwrap();
    assert_eq!(out.shape().dims(), &[3, 4, m, n]);
    let got = out.to_vec::<f32>().unwrap();
    for i in 0..3 {
        for j in 0..4 {
            let want = naive_matmul(&a[i * m * k..][..m * k], &b[j * k * n..][..k * n], m, k, n);
            assert_close(&got[(i * 4 + j) * m * n..][..m * n], &want, 1e-4);
        }
    }
});

device_test!(matmul_beyond_65535_workgroups, |device| {
    // 70,000 batched 1x1 products: one GEMM tile each, more than one grid dimension holds.
    let batch = 70_000;
    let a = RawTensor::from_slice(
        &(0..batch).map(|i| i as f32).collect::<Vec<_>>(),
        [batch, 1, 1],
        &device,
    )
    .unwrap();
    let b = RawTensor::full([batch, 1, 1], 2.0, DType::F32, &device).unwrap();
    let got = a.matmul(&b).unwrap().to_vec::<f32>().unwrap();
    assert!(
        got.iter().enumerate().all(|(i, &v)| v == 2.0 * i as f32),
        "every batch computed"
    );
});

fn naive_conv(
    x: &[f32],
    w: &[f32],
    [n, c, h, wd]: [usize; 4],
    [co, kh, kw]: [usize; 3],
    s: [usize; 2],
    p: [usize; 2],
) -> Vec<f32> {
    let oh = (h + 2 * p[0] - kh) / s[0] + 1;
    let ow = (wd + 2 * p[1] - kw) / s[1] + 1;
    let mut out = vec![0.0; n * co * oh * ow];
    for img in 0..n {
        for o in 0..co {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = 0.0;
                    for ci in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (y * s[0] + ky) as isize - p[0] as isize;
                                let ix = (xx * s[1] + kx) as isize - p[1] as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    acc += x[((img * c + ci) * h + iy as usize) * wd + ix as usize]
                                        * w[((o * c + ci) * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                    out[((img * co + o) * oh + y) * ow + xx] = acc;
                }
            }
        }
    }
    out
}

device_test!(conv2d_matches_a_plain_loop, |device| {
    for &(shape, kernel, stride, padding) in &[
        ([1, 3, 10, 9], [4, 3, 3], [2, 2], [1, 1]),
        ([2, 1, 5, 5], [70, 2, 2], [1, 1], [0, 0]),
        ([1, 2, 4, 4], [1, 4, 4], [1, 1], [0, 0]),
    ] {
        let x = values(shape.iter().product(), 7.0);
        let w = values(kernel[0] * shape[1] * kernel[1] * kernel[2], 8.0);
        let tx = RawTensor::from_slice(&x, shape, &device).unwrap();
        let tw = RawTensor::from_slice(&w, [kernel[0], shape[1], kernel[1], kernel[2]], &device)
            .unwrap();
        let params = Conv2dParams { stride, padding };
        let got = tx
            .conv2d(&tw, None, params)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_close(
            &got,
            &naive_conv(&x, &w, shape, kernel, stride, padding),
            1e-4,
        );
    }
});

device_test!(conv2d_weight_grad_over_a_long_reduction, |device| {
    // N·OH·OW = 8·30·30 = 7,200: the GPU splits this reduction over several workgroups.
    let (n, c, h, co) = (8, 2, 32, 3);
    let x = values(n * c * h * h, 9.0);
    let dy = values(n * co * 30 * 30, 10.0);
    let tx = RawTensor::from_slice(&x, [n, c, h, h], &device).unwrap();
    let tdy = RawTensor::from_slice(&dy, [n, co, 30, 30], &device).unwrap();
    let got =
        RawTensor::conv2d_weight_grad(&tdy, &tx, [co, c, 3, 3], Conv2dParams::default()).unwrap();
    let got = got.to_vec::<f32>().unwrap();
    // dW[o, ci, ky, kx] = sum over n, y, x of dy[n, o, y, x] · x[n, ci, y + ky, x + kx]
    let mut want = vec![0.0f64; co * c * 9];
    for img in 0..n {
        for o in 0..co {
            for ci in 0..c {
                for k in 0..9 {
                    let (ky, kx) = (k / 3, k % 3);
                    for y in 0..30 {
                        for xx in 0..30 {
                            want[(o * c + ci) * 9 + k] +=
                                f64::from(dy[((img * co + o) * 30 + y) * 30 + xx])
                                    * f64::from(x[((img * c + ci) * h + y + ky) * h + xx + kx]);
                        }
                    }
                }
            }
        }
    }
    assert_close(
        &got,
        &want.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        1e-3,
    );
});

device_test!(pooling_with_overlapping_windows, |device| {
    // 3x3 windows with stride 1 overlap: the backward must add every window's share.
    let x = values(2 * 5 * 5, 11.0);
    let tx = RawTensor::from_slice(&x, [1, 2, 5, 5], &device).unwrap();
    let params = Pool2dParams {
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
    };
    let (out, indices) = tx.max_pool2d(params).unwrap();
    assert_eq!(out.shape().dims(), &[1, 2, 5, 5]);
    let ones = RawTensor::ones([1, 2, 5, 5], DType::F32, &device).unwrap();
    let dx = RawTensor::max_pool2d_backward(&ones, &indices, [1, 2, 5, 5], params)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    // Every window routes 1.0 to its maximum, so the gradients add up to the window count.
    assert_eq!(dx.iter().sum::<f32>(), 50.0);
    let avg = RawTensor::avg_pool2d_backward(&ones, [1, 2, 5, 5], params)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!((avg.iter().sum::<f32>() - 50.0).abs() < 1e-4);
    // A corner pixel is covered by 4 windows with 4, 6, 6 and 9 taps.
    assert!(
        (avg[0] - (1.0 / 4.0 + 2.0 / 6.0 + 1.0 / 9.0)).abs() < 1e-6,
        "{}",
        avg[0]
    );
});

device_test!(max_pooling_backward_with_disjoint_windows, |device| {
    // Windows that tile the image, leave a border, pad, or stride past the window: each input's
    // gradient is dy at its window's argmax and zero elsewhere, as on the CPU.
    let cases = [
        ([6, 6], Pool2dParams::square(2)),
        ([5, 7], Pool2dParams::square(2)),
        (
            [5, 5],
            Pool2dParams {
                kernel: [3, 3],
                stride: [3, 3],
                padding: [1, 1],
            },
        ),
        (
            [7, 7],
            Pool2dParams {
                kernel: [2, 2],
                stride: [3, 3],
                padding: [0, 0],
            },
        ),
    ];
    let cpu = Device::cpu();
    for ([h, w], params) in cases {
        let x = values(2 * 3 * h * w, 5.0);
        let run = |device: &Device| {
            let tx = RawTensor::from_slice(&x, [2, 3, h, w], device).unwrap();
            let (out, indices) = tx.max_pool2d(params).unwrap();
            let dy = values(out.numel(), 9.0);
            let tdy = RawTensor::from_slice(&dy, out.shape().clone(), device).unwrap();
            RawTensor::max_pool2d_backward(&tdy, &indices, [2, 3, h, w], params)
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(run(&device), run(&cpu), "{h}x{w} {params:?}");
    }
});

device_test!(reductions_long_axes_and_empty_tensors, |device| {
    let n = 300_000;
    let x = values(n, 12.0);
    let t = RawTensor::from_slice(&x, [n], &device).unwrap();
    let sum = t.sum(None, false).unwrap().to_vec::<f32>().unwrap()[0];
    let want: f64 = x.iter().map(|&v| f64::from(v)).sum();
    assert!((f64::from(sum) - want).abs() < 1e-2, "sum {sum} vs {want}");
    let max = t.max(None, false).unwrap().to_vec::<f32>().unwrap()[0];
    assert_eq!(max, x.iter().copied().fold(f32::MIN, f32::max));
    let min = t.min(None, true).unwrap();
    assert_eq!(min.shape().dims(), &[1]);
    assert_eq!(
        min.to_vec::<f32>().unwrap()[0],
        x.iter().copied().fold(f32::MAX, f32::min)
    );
    let am = t.argmax(None, false).unwrap().to_vec::<u32>().unwrap()[0] as usize;
    assert_eq!(x[am], max);
    // Empty: the sum is 0, the max an error.
    let e = RawTensor::zeros([3, 0], DType::F32, &device).unwrap();
    assert_eq!(
        e.sum(Some(1), false).unwrap().to_vec::<f32>().unwrap(),
        vec![0.0; 3]
    );
    assert!(
        e.max(Some(1), false)
            .unwrap_err()
            .to_string()
            .contains("empty axis")
    );
});

device_test!(
    bad_kernel_input_is_an_error_naming_op_and_shapes,
    |device| {
        let a = RawTensor::zeros([3, 4], DType::F32, &device).unwrap();
        let b = RawTensor::zeros([5, 2], DType::F32, &device).unwrap();
        let err = a.matmul(&b).unwrap_err().to_string();
        assert!(
            err.contains("matmul") && err.contains("[3, 4]") && err.contains("[5, 2]"),
            "{err}"
        );

        let x = RawTensor::zeros([1, 1, 4, 4], DType::F32, &device).unwrap();
        let w = RawTensor::zeros([2, 1, 7, 7], DType::F32, &device).unwrap();
        let err = x
            .conv2d(&w, None, Conv2dParams::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("conv2d") && err.contains("7x7") && err.contains("[1, 1, 4, 4]"),
            "{err}"
        );
        let w3 = RawTensor::zeros([2, 3, 3, 3], DType::F32, &device).unwrap();
        let err = x
            .conv2d(&w3, None, Conv2dParams::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("channels"), "{err}");

        let err = x
            .max_pool2d(Pool2dParams::square(5))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_pool2d") && err.contains("[5, 5]"),
            "{err}"
        );

        let err = a.softmax(2).unwrap_err().to_string();
        assert!(
            err.contains("softmax") && err.contains("axis 2") && err.contains("[3, 4]"),
            "{err}"
        );
        let err = a.sum(Some(-3), false).unwrap_err().to_string();
        assert!(err.contains("sum") && err.contains("axis -3"), "{err}");

        let labels = RawTensor::from_slice(&[0u32, 4, 1], [3], &device).unwrap();
        let result =
            RawTensor::cross_entropy(&a, &labels).and_then(|(loss, _)| loss.to_vec::<f32>());
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("cross_entropy") && err.contains("[0, 4)") && err.contains("[3, 4]"),
            "{err}"
        );
        // The device stays usable after the error.
        let ok = RawTensor::from_slice(&[0u32, 3, 1], [3], &device).unwrap();
        let (loss, _) = RawTensor::cross_entropy(&a, &ok).unwrap();
        assert!((loss.to_vec::<f32>().unwrap()[0] - 4f32.ln()).abs() < 1e-6);

        let err = RawTensor::mse(&a, &b).unwrap_err().to_string();
        assert!(
            err.contains("mse") && err.contains("[3, 4]") && err.contains("[5, 2]"),
            "{err}"
        );
        let err = RawTensor::adam_step(&a, &b, &a, &a, &AdamConfig::default(), 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("adam_step"), "{err}");
    }
);

device_test!(sgd_with_momentum_and_nesterov, |device| {
    let p = RawTensor::from_slice(&[1.0f32, -2.0], [2], &device).unwrap();
    let g = RawTensor::from_slice(&[0.5f32, 0.25], [2], &device).unwrap();
    let config = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        ..Default::default()
    };
    let (p1, b1) = RawTensor::sgd_step(&p, &g, None, &config).unwrap();
    // First step: buf = g; nesterov step = g + 0.9·buf.
    assert_close(
        &p1.to_vec::<f32>().unwrap(),
        &[1.0 - 0.1 * 0.95, -2.0 - 0.1 * 0.475],
        1e-6,
    );
    let (p2, b2) = RawTensor::sgd_step(&p1, &g, Some(&b1), &config).unwrap();
    // buf = 0.9·g + g = 1.9 g; step = g + 0.9·1.9 g = 2.71 g.
    assert_close(&b2.to_vec::<f32>().unwrap(), &[0.95, 0.475], 1e-6);
    assert_close(
        &p2.to_vec::<f32>().unwrap(),
        &[
            1.0 - 0.1 * 0.95 - 0.1 * 2.71 * 0.5,
            -2.0 - 0.1 * 0.475 - 0.1 * 2.71 * 0.25,
        ],
        1e-6,
    );
});

device_test!(
    whole_model_updates_match_one_parameter_at_a_time,
    |device| {
        // Six parameters of different sizes (two launches of the multi-parameter kernels on a GPU): two
        // Adam/AdamW steps and three SGD steps (the first without momentum buffers) give exactly what
        // updating each parameter alone gives.
        let sizes = [7usize, 1, 300, 33, 4, 1000];
        let tensor =
            |n: usize, seed: f32| RawTensor::from_slice(&values(n, seed), [n], &device).unwrap();
        let params: Vec<RawTensor> = sizes.iter().map(|&n| tensor(n, n as f32)).collect();
        let grads: Vec<RawTensor> = sizes.iter().map(|&n| tensor(n, 0.5 + n as f32)).collect();
        let read = |t: &RawTensor| t.to_vec::<f32>().unwrap();
        for decoupled in [false, true] {
            let config = AdamConfig {
                lr: 0.01,
                weight_decay: 0.1,
                decoupled,
                ..Default::default()
            };
            let zeros: Vec<RawTensor> = sizes
                .iter()
                .map(|&n| RawTensor::zeros([n], DType::F32, &device).unwrap())
                .collect();
            let mut together: Vec<(RawTensor, RawTensor, RawTensor)> = params
                .iter()
                .zip(&zeros)
                .map(|(p, z)| (p.clone(), z.clone(), z.clone()))
                .collect();
            let mut alone = together.clone();
            for step in 1..=2 {
                let items: Vec<[&RawTensor; 4]> = together
                    .iter()
                    .zip(&grads)
                    .map(|((p, m, v), g)| [p, g, m, v])
                    .collect();
                together = RawTensor::adam_step_many(&items, &config, step).unwrap();
                alone = alone
                    .iter()
                    .zip(&grads)
                    .map(|((p, m, v), g)| RawTensor::adam_step(p, g, m, v, &config, step).unwrap())
                    .collect();
            }
            for (a, b) in together.iter().zip(&alone) {
                assert_eq!(read(&a.0), read(&b.0), "param, decoupled {decoupled}");
                assert_eq!(read(&a.1), read(&b.1));
                assert_eq!(read(&a.2), read(&b.2));
            }
        }
        let config = SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.01,
            ..Default::default()
        };
        let mut together: Vec<(RawTensor, Option<RawTensor>)> =
            params.iter().map(|p| (p.clone(), None)).collect();
        let mut alone = together.clone();
        for _ in 0..3 {
            let items: Vec<_> = together
                .iter()
                .zip(&grads)
                .map(|((p, b), g)| (p, g, b.as_ref()))
                .collect();
            together = RawTensor::sgd_step_many(&items, &config)
                .unwrap()
                .into_iter()
                .map(|(p, b)| (p, Some(b)))
                .collect();
            alone = alone
                .iter()
                .zip(&grads)
                .map(|((p, b), g)| {
                    let (p, b) = RawTensor::sgd_step(p, g, b.as_ref(), &config).unwrap();
                    (p, Some(b))
                })
                .collect();
        }
        for (a, b) in together.iter().zip(&alone) {
            assert_eq!(read(&a.0), read(&b.0), "sgd param");
            assert_eq!(read(a.1.as_ref().unwrap()), read(b.1.as_ref().unwrap()));
        }
        // A parameter on another device, leading a later launch's group, is updated where it lives.
        let cpu_param = RawTensor::from_slice(&values(3, 0.5), [3], &Device::cpu()).unwrap();
        let mut items: Vec<[&RawTensor; 4]> = params
            .iter()
            .zip(&grads)
            .take(4)
            .map(|(p, g)| [p, g, p, p])
            .collect();
        items.push([&cpu_param, &cpu_param, &cpu_param, &cpu_param]);
        let config = AdamConfig::default();
        let many = RawTensor::adam_step_many(&items, &config, 1).unwrap();
        for ([p, g, m, v], got) in items.iter().zip(&many) {
            let want = RawTensor::adam_step(p, g, m, v, &config, 1).unwrap();
            assert_eq!(got.0.device().to_string(), p.device().to_string());
            let bits = |t: &RawTensor| read(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.0), bits(&want.0));
        }
    }
);

device_test!(f16_inputs_compute_in_f32, |device| {
    let x = RawTensor::from_slice(&values(12, 13.0), [3, 4], &device).unwrap();
    let h = x.cast(DType::F16).unwrap();
    let s = h.softmax(-1).unwrap();
    assert_eq!(s.dtype(), DType::F16);
    let rows = s.sum(Some(-1), false).unwrap().to_f32_vec().unwrap();
    assert_close(&rows, &[1.0; 3], 2e-3);
    let m = h.matmul(&h.transpose(0, 1).unwrap()).unwrap();
    assert_eq!((m.dtype(), m.shape().dims()), (DType::F16, &[3, 3][..]));
});

device_test!(concat_and_stack_any_layout, |device| {
    let a = RawTensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], &device).unwrap();
    let at = a.transpose(0, 1).unwrap(); // [[1,4],[2,5],[3,6]]
    let b = RawTensor::from_slice(&[7.0f32, 8.0, 9.0], [3, 1], &device).unwrap();
    let c = RawTensor::concat(&[&at, &b], 1).unwrap();
    assert_eq!(c.shape().dims(), &[3, 3]);
    assert_eq!(
        c.to_vec::<f32>().unwrap(),
        vec![1.0, 4.0, 7.0, 2.0, 5.0, 8.0, 3.0, 6.0, 9.0]
    );
    let rows = RawTensor::concat(&[&a, &a.narrow(0, 1, 1).unwrap()], 0).unwrap();
    assert_eq!(
        rows.to_vec::<f32>().unwrap(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0]
    );
    let s = RawTensor::stack(&[&b, &b], 0).unwrap();
    assert_eq!(s.shape().dims(), &[2, 3, 1]);
    let labels = RawTensor::from_slice(&[1u32, 2], [2], &device).unwrap();
    assert_eq!(
        RawTensor::concat(&[&labels, &labels], 0)
            .unwrap()
            .to_vec::<u32>()
            .unwrap(),
        vec![1, 2, 1, 2]
    );
    let err = RawTensor::concat(&[&a, &b], 0).unwrap_err().to_string();
    assert!(
        err.contains("concat") && err.contains("[2, 3]") && err.contains("[3, 1]"),
        "{err}"
    );
});
