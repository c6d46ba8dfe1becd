//! Elementwise ops, views, casts and fills on every device, against hand-computed values.

use kiln::device::device_test;
use kiln::prelude::*;

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= 1e-5 + 1e-4 * w.abs() || (g.is_nan() && w.is_nan()) || g == w;
        assert!(ok, "element {i}: got {g}, want {w}");
    }
}

/// erf by its Taylor series (f64; |x| >= 6 rounds to ±1), independent of kiln's approximation.
fn erf64(x: f64) -> f64 {
    if x.abs() >= 6.0 {
        return x.signum();
    }
    let (mut term, mut sum) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

fn gelu64(x: f64) -> f64 {
    0.5 * x * (1.0 + erf64(x / 2f64.sqrt()))
}

fn gelu_tanh64(x: f64) -> f64 {
    let inner = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
    0.5 * x * (1.0 + inner.tanh())
}

fn silu64(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Central difference of `f` at `x`.
fn derivative(f: fn(f64) -> f64, x: f64) -> f64 {
    let h = 1e-5;
    (f(x + h) - f(x - h)) / (2.0 * h)
}

fn reference_unary(op: UnaryOp, x: f32) -> f32 {
    let x64 = f64::from(x);
    match op {
        UnaryOp::Gelu => gelu64(x64) as f32,
        UnaryOp::GeluTanh => gelu_tanh64(x64) as f32,
        UnaryOp::Softplus => x64.exp().ln_1p().max(x64) as f32,
        UnaryOp::Silu => silu64(x64) as f32,
        UnaryOp::GeluGrad => derivative(gelu64, x64) as f32,
        UnaryOp::GeluTanhGrad => derivative(gelu_tanh64, x64) as f32,
        UnaryOp::SiluGrad => derivative(silu64, x64) as f32,
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sign => {
            if x == 0.0 {
                0.0
            } else {
                x.signum()
            }
        }
    }
}

device_test!(every_unary_op, |device| {
    let values = [-30.0f32, -2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0, 20.0, 90.0];
    let x = RawTensor::from_slice(&values, [2, 5], &device).unwrap();
    for op in UnaryOp::ALL {
        let got = x.unary(op).unwrap().to_vec::<f32>().unwrap();
        let want: Vec<f32> = values.iter().map(|&v| reference_unary(op, v)).collect();
        if op == UnaryOp::Log || op == UnaryOp::Sqrt {
            // Only positive inputs are comparable across math libraries.
            close(&got[5..], &want[5..]);
        } else {
            close(&got, &want);
        }
    }
});

device_test!(every_binary_op_broadcasts, |device| {
    let a: Vec<f32> = (0..6).map(|i| i as f32 - 2.5).collect();
    let b = [1.5f32, -2.0, 4.0];
    let ta = RawTensor::from_slice(&a, [2, 1, 3], &device).unwrap();
    let tb = RawTensor::from_slice(&b, [3], &device).unwrap();
    for op in BinaryOp::ALL {
        let out = ta.binary(op, &tb).unwrap();
        assert_eq!(out.shape().dims(), &[2, 1, 3]);
        let want: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let y = b[i % 3];
                match op {
                    BinaryOp::Add => x + y,
                    BinaryOp::Sub => x - y,
                    BinaryOp::Mul => x * y,
                    BinaryOp::Div => x / y,
                    BinaryOp::Maximum => x.max(y),
                    BinaryOp::Greater => f32::from(u8::from(x > y)),
                    BinaryOp::Equal => f32::from(u8::from(x == y)),
                    BinaryOp::ReluBackward => x * f32::from(u8::from(y > 0.0)),
                    BinaryOp::LeakyRelu => {
                        if x > 0.0 {
                            x
                        } else {
                            y * x
                        }
                    }
                    BinaryOp::LeakyReluGrad => {
                        if x > 0.0 {
                            1.0
                        } else {
                            y
                        }
                    }
                    BinaryOp::Elu => {
                        if x > 0.0 {
                            x
                        } else {
                            y * (x.exp() - 1.0)
                        }
                    }
                    BinaryOp::EluGrad => {
                        if x > 0.0 {
                            1.0
                        } else {
                            y * x.exp()
                        }
                    }
                }
            })
            .collect();
        close(&out.to_vec::<f32>().unwrap(), &want);
    }
});

device_test!(scalar_ops, |device| {
    let x = RawTensor::from_slice(&[1.0f32, -2.0, 3.0], [3], &device).unwrap();
    let mul = x
        .scalar(BinaryOp::Mul, 2.0)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(mul, vec![2.0, -4.0, 6.0]);
    let max = x
        .scalar(BinaryOp::Maximum, 0.5)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(max, vec![1.0, 0.5, 3.0]);
    let sub = x
        .scalar(BinaryOp::Sub, 1.0)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(sub, vec![0.0, -3.0, 2.0]);
});

device_test!(strided_inputs, |device| {
    // a is a transposed view, b a narrowed one: the kernels must walk their strides.
    let a = RawTensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], &device).unwrap();
    let at = a.transpose(0, 1).unwrap(); // [[1,4],[2,5],[3,6]]
    let b = RawTensor::from_slice(
        &[10.0f32, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0],
        [3, 3],
        &device,
    )
    .unwrap()
    .narrow(1, 1, 2)
    .unwrap(); // [[20,30],[50,60],[80,90]]
    let sum = at.binary(BinaryOp::Add, &b).unwrap();
    assert_eq!(
        sum.to_vec::<f32>().unwrap(),
        vec![21.0, 34.0, 52.0, 65.0, 83.0, 96.0]
    );
    assert_eq!(
        at.unary(UnaryOp::Neg).unwrap().to_vec::<f32>().unwrap(),
        vec![-1.0, -4.0, -2.0, -5.0, -3.0, -6.0]
    );
    assert_eq!(
        at.to_vec::<f32>().unwrap(),
        vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    );
    assert_eq!(
        b.contiguous().unwrap().to_vec::<f32>().unwrap(),
        vec![20.0, 30.0, 50.0, 60.0, 80.0, 90.0]
    );
});

device_test!(views_do_not_copy, |device| {
    let x = RawTensor::from_slice(
        &(0..24).map(|i| i as f32).collect::<Vec<_>>(),
        [2, 3, 4],
        &device,
    )
    .unwrap();
    let before = device.memory_stats().bytes_in_use;
    let v = x
        .permute(&[2, 0, 1])
        .unwrap()
        .unsqueeze(0)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let n = x.narrow(2, 1, 2).unwrap();
    let r = x.reshape([6, 4]).unwrap();
    let bc = RawTensor::from_slice(&[1.0f32, 2.0], [2, 1], &device)
        .unwrap()
        .broadcast_to([3, 2, 5])
        .unwrap();
    let after_upload = device.memory_stats().bytes_in_use;
    assert!(after_upload - before <= 256, "views allocated memory");
    assert_eq!(v.shape().dims(), &[4, 2, 3]);
    assert_eq!(v.to_vec::<f32>().unwrap()[..4], [0.0, 4.0, 8.0, 12.0]);
    assert_eq!(n.to_vec::<f32>().unwrap()[..4], [1.0, 2.0, 5.0, 6.0]);
    assert_eq!(r.shape().dims(), &[6, 4]);
    assert_eq!(
        bc.to_vec::<f32>().unwrap()[..6],
        [1.0, 1.0, 1.0, 1.0, 1.0, 2.0]
    );
    // A reshape of a non-contiguous view copies.
    let rt = x.transpose(1, 2).unwrap().reshape([24]).unwrap();
    assert_eq!(rt.to_vec::<f32>().unwrap()[..4], [0.0, 4.0, 8.0, 1.0]);
});

device_test!(casts_round_trip, |device| {
    let values = [0.0f32, 1.0, -2.5, 65504.0, 1.0e-3, 2.71, 7.0];
    let x = RawTensor::from_slice(&values, [7], &device).unwrap();
    let h = x.cast(DType::F16).unwrap();
    assert_eq!(h.dtype(), DType::F16);
    let halves = h.to_vec::<half::f16>().unwrap();
    let want: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
    assert_eq!(halves, want);
    let back = h.cast(DType::F32).unwrap().to_vec::<f32>().unwrap();
    close(&back, &want.iter().map(|v| v.to_f32()).collect::<Vec<_>>());
    // Strided f16 views (odd offsets) copy correctly.
    let odd = h.narrow(0, 1, 5).unwrap().to_vec::<half::f16>().unwrap();
    assert_eq!(odd, want[1..6].to_vec());
    // f16 elementwise computes in f32 and stays f16.
    let relu = h.unary(UnaryOp::Relu).unwrap();
    assert_eq!(relu.dtype(), DType::F16);
    assert_eq!(relu.to_vec::<half::f16>().unwrap()[2], half::f16::ZERO);
    let labels = RawTensor::from_slice(&[0u32, 3, 9], [3], &device).unwrap();
    assert_eq!(
        labels.cast(DType::F32).unwrap().to_vec::<f32>().unwrap(),
        vec![0.0, 3.0, 9.0]
    );
    let trunc = RawTensor::from_slice(&[2.7f32, -1.0, 0.2], [3], &device).unwrap();
    assert_eq!(
        trunc.cast(DType::U32).unwrap().to_vec::<u32>().unwrap(),
        vec![2, 0, 0]
    );
    assert_eq!(
        labels
            .cast(DType::F16)
            .unwrap()
            .cast(DType::U32)
            .unwrap()
            .to_vec::<u32>()
            .unwrap(),
        vec![0, 3, 9]
    );
});

device_test!(fills, |device| {
    for dtype in [DType::F32, DType::F16, DType::U32] {
        let t = RawTensor::full([3, 3], 2.0, dtype, &device).unwrap();
        assert_eq!(t.to_f32_vec().unwrap(), vec![2.0; 9], "{dtype}");
    }
    assert_eq!(
        RawTensor::zeros([5], DType::F32, &device)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![0.0; 5]
    );
    assert_eq!(
        RawTensor::ones([1], DType::F16, &device)
            .unwrap()
            .to_f32_vec()
            .unwrap(),
        vec![1.0]
    );
});

device_test!(empty_tensors_give_empty_results, |device| {
    let e = RawTensor::zeros([0, 4], DType::F32, &device).unwrap();
    let other = RawTensor::ones([4], DType::F32, &device).unwrap();
    let out = e.binary(BinaryOp::Add, &other).unwrap();
    assert_eq!(out.shape().dims(), &[0, 4]);
    assert!(out.to_vec::<f32>().unwrap().is_empty());
    assert!(
        e.unary(UnaryOp::Exp)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .is_empty()
    );
});

device_test!(large_tensors_use_a_2d_dispatch_grid, |device| {
    // 70,000 workgroups of 256 threads: more than the 65,535 a single grid dimension allows.
    let n = 256 * 70_000;
    let x = RawTensor::full([n], 1.5, DType::F32, &device).unwrap();
    let y = x
        .scalar(BinaryOp::Mul, 2.0)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(y.len(), n);
    assert!(y.iter().all(|&v| v == 3.0), "every element computed");
});

device_test!(moves_between_devices, |device| {
    let x = RawTensor::from_slice(&[1.0f32, 2.0], [2], &device).unwrap();
    let on_cpu = x.to_device(&Device::cpu()).unwrap();
    assert!(!on_cpu.device().is_gpu());
    let back = on_cpu.to_device(&device).unwrap();
    assert_eq!(back.to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
});

device_test!(bad_input_is_an_error_naming_op_and_shapes, |device| {
    let a = RawTensor::zeros([3, 4], DType::F32, &device).unwrap();
    let b = RawTensor::zeros([5], DType::F32, &device).unwrap();
    let err = a.binary(BinaryOp::Add, &b).unwrap_err().to_string();
    assert!(
        err.contains("add") && err.contains("[3, 4]") && err.contains("[5]"),
        "{err}"
    );

    let h = RawTensor::zeros([3, 4], DType::F16, &device).unwrap();
    let err = a.binary(BinaryOp::Mul, &h).unwrap_err().to_string();
    assert!(
        err.contains("mul") && err.contains("F32") && err.contains("F16"),
        "{err}"
    );

    let labels = RawTensor::zeros([3], DType::U32, &device).unwrap();
    let err = labels.unary(UnaryOp::Exp).unwrap_err().to_string();
    assert!(err.contains("exp") && err.contains("cast"), "{err}");

    let err = a.reshape([5, 5]).unwrap_err().to_string();
    assert!(
        err.contains("reshape") && err.contains("[3, 4]") && err.contains("[5, 5]"),
        "{err}"
    );

    let err = RawTensor::from_slice(&[1.0f32; 5], [2, 3], &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("from_slice") && err.contains("[2, 3]"),
        "{err}"
    );

    let err = a.to_vec::<u32>().unwrap_err().to_string();
    assert!(err.contains("to_vec"), "{err}");

    let err = a.narrow(1, 3, 2).unwrap_err().to_string();
    assert!(err.contains("narrow") && err.contains("[3, 4]"), "{err}");
});

device_test!(reshape_of_a_transposed_view_takes_the_new_shape, |device| {
    let x = RawTensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3], &device).unwrap();
    let flat = x.transpose(0, 1).unwrap().reshape([6]).unwrap();
    assert_eq!(flat.shape().dims(), &[6]);
    assert_eq!(
        flat.to_vec::<f32>().unwrap(),
        vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    );
});
