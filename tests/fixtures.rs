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
/// Empty now: every fixture op runs. A new fixture op that kiln cannot run yet goes here.
const NOT_YET_SUPPORTED: &[(&str, &str)] = &[];

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
        weight_decay: attrs["weight_decay"].as_f64().unwrap_or(0.0) as f32,
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
        "seed_cnn_step" => Some(seed_cnn_step(attrs, x)),
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

/// The reference CNN (Conv2D 32 3x3 + ReLU, MaxPool 2x2, Flatten, Dense 10) trained for `steps` Adam
/// steps on the fixture's images, composed purely from `Tensor` ops: returns the first step's logits,
/// every step's loss, the first step's gradients and the parameters after the last step.
fn seed_cnn_step(attrs: &Value, x: &[RawTensor]) -> Result<Vec<RawTensor>> {
    let (images, labels) = (
        Tensor::from_raw(x[0].clone()),
        Tensor::from_raw(x[1].clone()),
    );
    let params: Vec<Var> = x[2..6]
        .iter()
        .map(|t| Var::new(Tensor::from_raw(t.clone())))
        .collect();
    let config = adam_config(attrs);
    let zeros =
        |p: &Var| RawTensor::zeros(p.tensor().shape().clone(), DType::F32, p.tensor().device());
    let mut m: Vec<RawTensor> = params.iter().map(zeros).collect::<Result<_>>()?;
    let mut v: Vec<RawTensor> = params.iter().map(zeros).collect::<Result<_>>()?;
    let (mut losses, mut first_logits, mut first_grads) = (Vec::new(), None, Vec::new());
    for step in 1..=attrs["steps"].as_u64().unwrap() as u32 {
        let [cw, cb, dw, db] = [0, 1, 2, 3].map(|i| params[i].tensor());
        let logits = images
            .conv2d(&cw, Some(&cb), Conv2dParams::default())?
            .relu()?
            .max_pool2d(Pool2dParams::square(2))?
            .flatten(1)?
            .matmul(&dw.t()?)?
            .add(&db)?;
        let loss = logits.cross_entropy(&labels)?;
        let grads = loss.backward()?;
        losses.push(loss.raw().reshape([1])?);
        for (i, p) in params.iter().enumerate() {
            let g = grads
                .get(&p.tensor())
                .expect("every parameter gets a gradient");
            if step == 1 {
                first_grads.push(g.raw().clone());
            }
            let (p2, m2, v2) =
                RawTensor::adam_step(p.tensor().raw(), g.raw(), &m[i], &v[i], &config, step)?;
            p.set(p2)?;
            (m[i], v[i]) = (m2, v2);
        }
        first_logits.get_or_insert(logits.raw().clone());
    }
    let mut out = vec![
        first_logits.unwrap(),
        RawTensor::concat(&losses.iter().collect::<Vec<_>>(), 0)?,
    ];
    out.extend(first_grads);
    out.extend(params.iter().map(|p| p.tensor().raw().clone()));
    Ok(out)
}

/// The forward op of a case composed from `Tensor` ops, so autograd differentiates it.
fn forward_tensor(op: &str, attrs: &Value, x: &[Tensor]) -> Option<Result<Tensor>> {
    let keepdim = attrs["keepdim"].as_bool().unwrap_or(false);
    Some(match op {
        "relu" => x[0].relu(),
        "sigmoid" => x[0].sigmoid(),
        "tanh" => x[0].tanh(),
        "exp" => x[0].exp(),
        "log" => x[0].log(),
        "sqrt" => x[0].sqrt(),
        "neg" => x[0].neg(),
        "abs" => x[0].abs(),
        "add" => &x[0] + &x[1],
        "sub" => &x[0] - &x[1],
        "mul" => &x[0] * &x[1],
        "div" => &x[0] / &x[1],
        "maximum" => x[0].maximum(&x[1]),
        "matmul" => x[0].matmul(&x[1]),
        "conv2d" => x[0].conv2d(&x[1], Some(&x[2]), conv_params(attrs)),
        "max_pool2d" => x[0].max_pool2d(pool_params(attrs)),
        "avg_pool2d" => x[0].avg_pool2d(pool_params(attrs)),
        "softmax" => x[0].softmax(axis(attrs).unwrap()),
        "log_softmax" => x[0].log_softmax(axis(attrs).unwrap()),
        "sum" => match axis(attrs) {
            Some(a) => x[0].sum(a, keepdim),
            None => x[0].sum_all(),
        },
        "mean" => match axis(attrs) {
            Some(a) => x[0].mean(a, keepdim),
            None => x[0].mean_all(),
        },
        "max" => x[0].max(axis(attrs), keepdim),
        "cross_entropy" => x[0].cross_entropy(&x[1]),
        "cross_entropy_soft" => x[0].cross_entropy_soft(&x[1]),
        "bce_with_logits" => x[0].bce_with_logits(&x[1]),
        "mse" => x[0].mse(&x[1]),
        _ => return None,
    })
}

/// Gradients autograd gives for a case's float inputs, by input index.
fn backward(
    op: &str,
    attrs: &Value,
    x: &[RawTensor],
    dy: &RawTensor,
) -> Option<Result<Vec<(usize, RawTensor)>>> {
    let leaves: Vec<Tensor> = x
        .iter()
        .map(|t| {
            let t = Tensor::from_raw(t.clone());
            if t.dtype() == DType::F32 {
                t.requires_grad_()
            } else {
                t
            }
        })
        .collect();
    let out = forward_tensor(op, attrs, &leaves)?;
    Some((|| {
        let grads = out?.backward_with(&Tensor::from_raw(dy.clone()))?;
        Ok(leaves
            .iter()
            .enumerate()
            .filter_map(|(i, t)| grads.get(t).map(|g| (i, g.raw().clone())))
            .collect())
    })())
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
         ({gradients_checked} gradients checked through autograd)",
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
