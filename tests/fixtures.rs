//! PyTorch golden values (`tests/fixtures/torch`, or the folder in `KILN_FIXTURES`) checked on every
//! device. A case whose op kiln does not know fails the test; ops that later work will add are listed
//! in `NOT_YET_SUPPORTED`, the one list that shrinks to nothing as they land.

use std::collections::HashMap;
use std::path::PathBuf;

use kiln::device::device_test;
use kiln::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// Fixture ops this build cannot run yet, and the issue that brings each.
const NOT_YET_SUPPORTED: &[(&str, &str)] = &[("seed_cnn_step", "autograd")];

fn fixture_dir() -> PathBuf {
    match std::env::var_os("KILN_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch"),
    }
}

struct Fixtures {
    cases: Vec<Value>,
    atol: f32,
    rtol: f32,
    bytes: Vec<u8>,
}

impl Fixtures {
    fn load() -> Fixtures {
        let dir = fixture_dir();
        let json = std::fs::read_to_string(dir.join("cases.json"))
            .unwrap_or_else(|e| panic!("reading {}/cases.json: {e}", dir.display()));
        let json: Value = serde_json::from_str(&json).expect("cases.json is JSON");
        let bytes = std::fs::read(dir.join("ops.safetensors"))
            .unwrap_or_else(|e| panic!("reading {}/ops.safetensors: {e}", dir.display()));
        let tolerance = &json["tolerance"]["default"];
        Fixtures {
            cases: json["cases"].as_array().expect("cases array").clone(),
            atol: tolerance["atol"].as_f64().unwrap_or(1e-4) as f32,
            rtol: tolerance["rtol"].as_f64().unwrap_or(1e-3) as f32,
            bytes,
        }
    }
}

/// Loads `<case>/<role>` onto `device` (f32 stays f32; int64 labels become u32).
fn load(tensors: &SafeTensors, case: &str, role: &str, device: &Device) -> Result<RawTensor> {
    let name = format!("{case}/{role}");
    let view = tensors
        .tensor(&name)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let shape = view.shape().to_vec();
    match view.dtype() {
        Dtype::F32 => {
            let values: Vec<f32> = bytemuck_f32(view.data());
            RawTensor::from_slice(&values, shape, device)
        }
        Dtype::I64 => {
            let values: Vec<u32> = view
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
                .collect();
            RawTensor::from_slice(&values, shape, device)
        }
        other => panic!("{name}: unexpected dtype {other:?}"),
    }
}

fn bytemuck_f32(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn ints(attrs: &Value, key: &str) -> [usize; 2] {
    let v = &attrs[key];
    [
        v[0].as_u64().unwrap() as usize,
        v[1].as_u64().unwrap() as usize,
    ]
}

fn float(attrs: &Value, key: &str) -> f32 {
    attrs[key]
        .as_f64()
        .unwrap_or_else(|| panic!("attribute {key}")) as f32
}

fn axis(attrs: &Value) -> Option<isize> {
    attrs["axis"].as_i64().map(|a| a as isize)
}

fn conv_params(attrs: &Value) -> Conv2dParams {
    Conv2dParams {
        stride: ints(attrs, "stride"),
        padding: ints(attrs, "padding"),
    }
}

fn pool_params(attrs: &Value) -> Pool2dParams {
    Pool2dParams {
        kernel: ints(attrs, "kernel"),
        stride: ints(attrs, "stride"),
        padding: ints(attrs, "padding"),
    }
}

fn adam_config(attrs: &Value) -> AdamConfig {
    AdamConfig {
        lr: float(attrs, "lr"),
        beta1: float(attrs, "beta1"),
        beta2: float(attrs, "beta2"),
        eps: float(attrs, "eps"),
        weight_decay: float(attrs, "weight_decay"),
        decoupled: attrs["decoupled"].as_bool().unwrap_or(false),
    }
}

/// Runs one case's forward op; `None` when kiln does not implement the op.
fn forward(op: &str, attrs: &Value, x: &[RawTensor]) -> Option<Result<Vec<RawTensor>>> {
    let keepdim = attrs["keepdim"].as_bool().unwrap_or(false);
    let one = |r: Result<RawTensor>| Some(r.map(|t| vec![t]));
    if let Some(u) = UnaryOp::ALL.into_iter().find(|u| u.name() == op) {
        return one(x[0].unary(u));
    }
    if let Some(b) = BinaryOp::ALL.into_iter().find(|b| b.name() == op) {
        return one(x[0].binary(b, &x[1]));
    }
    let loss = |r: Result<(RawTensor, RawTensor)>| Some(r.map(|(loss, _)| vec![loss]));
    match op {
        "matmul" => one(x[0].matmul(&x[1])),
        "conv2d" => one(x[0].conv2d(&x[1], Some(&x[2]), conv_params(attrs))),
        "max_pool2d" => one(x[0].max_pool2d(pool_params(attrs)).map(|(out, _)| out)),
        "avg_pool2d" => one(x[0].avg_pool2d(pool_params(attrs))),
        "softmax" => one(x[0].softmax(axis(attrs).unwrap())),
        "log_softmax" => one(x[0].log_softmax(axis(attrs).unwrap())),
        "sum" => one(x[0].sum(axis(attrs), keepdim)),
        "mean" => one(x[0].mean(axis(attrs), keepdim)),
        "max" => one(x[0].max(axis(attrs), keepdim)),
        "argmax" => one(x[0].argmax(axis(attrs), keepdim)),
        "cross_entropy" => loss(RawTensor::cross_entropy(&x[0], &x[1])),
        "cross_entropy_soft" => loss(RawTensor::cross_entropy_soft(&x[0], &x[1])),
        "bce_with_logits" => loss(RawTensor::bce_with_logits(&x[0], &x[1])),
        "mse" => loss(RawTensor::mse(&x[0], &x[1])),
        "adam_step" | "adamw_step" => {
            let step = attrs["step"].as_u64().unwrap() as u32;
            Some(
                RawTensor::adam_step(&x[0], &x[1], &x[2], &x[3], &adam_config(attrs), step)
                    .map(|(p, m, v)| vec![p, m, v]),
            )
        }
        _ => None,
    }
}

/// Gradients the device's backward kernels give for a case, by input role; `None` for ops whose
/// gradients need autograd's composition (elementwise, max) — those are checked by the autograd issue.
fn backward(
    op: &str,
    attrs: &Value,
    x: &[RawTensor],
    dy: &RawTensor,
) -> Option<Result<Vec<(usize, RawTensor)>>> {
    let keepdim = attrs["keepdim"].as_bool().unwrap_or(false);
    let scaled = |(_, grad): (RawTensor, RawTensor)| -> Result<Vec<(usize, RawTensor)>> {
        Ok(vec![(0, grad.binary(BinaryOp::Mul, dy)?)])
    };
    Some(match op {
        "matmul" => (|| {
            let grad_a =
                dy.matmul(&x[1].transpose(x[1].shape().rank() - 2, x[1].shape().rank() - 1)?)?;
            let grad_b = x[0]
                .transpose(x[0].shape().rank() - 2, x[0].shape().rank() - 1)?
                .matmul(dy)?;
            Ok(vec![
                (0, sum_to(&grad_a, x[0].shape())?),
                (1, sum_to(&grad_b, x[1].shape())?),
            ])
        })(),
        "conv2d" => (|| {
            let p = conv_params(attrs);
            Ok(vec![
                (
                    0,
                    RawTensor::conv2d_input_grad(dy, &x[1], x[0].shape().clone(), p)?,
                ),
                (
                    1,
                    RawTensor::conv2d_weight_grad(dy, &x[0], x[1].shape().clone(), p)?,
                ),
                (2, RawTensor::conv2d_bias_grad(dy)?),
            ])
        })(),
        "max_pool2d" => (|| {
            let p = pool_params(attrs);
            let (_, indices) = x[0].max_pool2d(p)?;
            Ok(vec![(
                0,
                RawTensor::max_pool2d_backward(dy, &indices, x[0].shape().clone(), p)?,
            )])
        })(),
        "avg_pool2d" => {
            RawTensor::avg_pool2d_backward(dy, x[0].shape().clone(), pool_params(attrs))
                .map(|g| vec![(0, g)])
        }
        "softmax" | "log_softmax" => (|| {
            let a = axis(attrs).unwrap();
            Ok(vec![(
                0,
                if op == "softmax" {
                    RawTensor::softmax_backward(&x[0].softmax(a)?, dy, a)?
                } else {
                    RawTensor::log_softmax_backward(&x[0].log_softmax(a)?, dy, a)?
                },
            )])
        })(),
        "sum" | "mean" => (|| {
            let dims = x[0].shape().dims();
            let dy = match (axis(attrs), keepdim) {
                (Some(a), false) => dy.unsqueeze(x[0].shape().axis("sum", a)?)?,
                (None, _) => dy.reshape(vec![1; dims.len()])?,
                _ => dy.clone(),
            };
            let mut g = dy.broadcast_to(dims.to_vec())?.contiguous()?;
            if op == "mean" {
                let count = x[0].numel() / dy.numel();
                g = g.scalar(BinaryOp::Div, count as f32)?;
            }
            Ok(vec![(0, g)])
        })(),
        "cross_entropy" => RawTensor::cross_entropy(&x[0], &x[1]).and_then(scaled),
        "cross_entropy_soft" => RawTensor::cross_entropy_soft(&x[0], &x[1]).and_then(scaled),
        "bce_with_logits" => RawTensor::bce_with_logits(&x[0], &x[1]).and_then(scaled),
        "mse" => RawTensor::mse(&x[0], &x[1]).and_then(scaled),
        _ => return None,
    })
}

/// Sums a broadcast gradient back to `shape` (over leading and size-1 dimensions).
fn sum_to(grad: &RawTensor, shape: &Shape) -> Result<RawTensor> {
    let mut g = grad.clone();
    while g.shape().rank() > shape.rank() {
        g = g.sum(Some(0), false)?;
    }
    for (d, &size) in shape.dims().iter().enumerate() {
        if size == 1 && g.shape().dims()[d] != 1 {
            g = g.sum(Some(d as isize), true)?;
        }
    }
    Ok(g)
}

fn compare(
    got: &RawTensor,
    want: &RawTensor,
    atol: f32,
    rtol: f32,
) -> std::result::Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!(
            "shape {} != expected {}",
            got.shape(),
            want.shape()
        ));
    }
    let got = got.to_f32_vec().map_err(|e| e.to_string())?;
    let want = want.to_f32_vec().map_err(|e| e.to_string())?;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let within = if w.is_finite() {
            (g - w).abs() <= atol + rtol * w.abs()
        } else {
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan())
        };
        if !within {
            return Err(format!("element {i}: got {g}, expected {w}"));
        }
    }
    Ok(())
}

fn check_all(device: &Device) {
    let fixtures = Fixtures::load();
    let tensors = SafeTensors::deserialize(&fixtures.bytes).expect("ops.safetensors parses");
    let not_yet: HashMap<&str, &str> = NOT_YET_SUPPORTED.iter().copied().collect();
    let (mut passed, mut unsupported, mut failed, mut gradients_checked) = (0, 0, Vec::new(), 0);
    for case in &fixtures.cases {
        let name = case["name"].as_str().expect("case name");
        let op = case["op"].as_str().expect("case op");
        let roles = |key: &str| -> Vec<String> {
            case[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let inputs: Vec<RawTensor> = roles("inputs")
            .iter()
            .map(|role| load(&tensors, name, role, device).unwrap())
            .collect();
        let attrs = &case["attrs"];
        let check = |got: &RawTensor, role: &str| -> std::result::Result<(), String> {
            let want = load(&tensors, name, role, device).unwrap();
            compare(got, &want, fixtures.atol, fixtures.rtol)
                .map_err(|e| format!("{name}: {role}: {e}"))
        };
        let outcome = match forward(op, attrs, &inputs) {
            None if not_yet.contains_key(op) => {
                unsupported += 1;
                continue;
            }
            None => Err(format!("{name}: op {op:?} is unknown to kiln")),
            Some(Err(e)) => Err(format!("{name}: {e}")),
            Some(Ok(outputs)) => outputs
                .iter()
                .zip(roles("outputs"))
                .try_for_each(|(got, role)| check(got, &role)),
        };
        let outcome = outcome.and_then(|()| {
            let Some(grad_out) = case["grad_out"].as_str() else {
                return Ok(());
            };
            let dy = load(&tensors, name, grad_out, device).unwrap();
            let Some(grads) = backward(op, attrs, &inputs, &dy) else {
                return Ok(());
            };
            let grads = grads.map_err(|e| format!("{name}: backward: {e}"))?;
            let input_roles = roles("inputs");
            for (input, grad) in grads {
                if let Some(role) = case["grads"][&input_roles[input]].as_str() {
                    check(&grad, role)?;
                    gradients_checked += 1;
                }
            }
            Ok(())
        });
        match outcome {
            Ok(()) => passed += 1,
            Err(e) => failed.push(e),
        }
    }
    println!(
        "fixtures {device}: {passed} passed, {unsupported} unsupported, {} failed \
         ({gradients_checked} gradients checked through backward kernels)",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "fixture cases failed on {device}:\n{}",
        failed.join("\n")
    );
    assert!(passed > 0, "no fixture case ran");
}

device_test!(torch_fixtures, |device| {
    check_all(&device);
});
