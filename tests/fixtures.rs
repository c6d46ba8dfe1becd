//! PyTorch golden values checked on every device: the tutorial's ops (`tests/fixtures/torch`, or the
//! folder in `KILN_FIXTURES`) and the layers of sequence, tabular and recommender models
//! (`tests/fixtures/torch-layers`, or `KILN_LAYER_FIXTURES`). A case whose op kiln does not know fails
//! the test; ops that later work will add are listed in `NOT_YET_SUPPORTED`, the one list that shrinks
//! to nothing as they land.

use std::collections::HashMap;
use std::path::PathBuf;

use kiln::device::device_test;
use kiln::nn::metrics::{average_precision, roc_auc};
use kiln::nn::optim::clip_by_global_norm;
use kiln::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

/// Fixture ops this build cannot run yet, and the issue that brings each.
/// Empty now: every fixture op runs. A new fixture op that kiln cannot run yet goes here.
const NOT_YET_SUPPORTED: &[(&str, &str)] = &[];

/// A case's forward op on its inputs: `None` when kiln does not know the op.
type ForwardFn = fn(&str, &Value, &[RawTensor]) -> Option<Result<Vec<RawTensor>>>;
/// Gradients autograd gives for a case's float inputs, by input index.
type BackwardFn =
    fn(&str, &Value, &[RawTensor], &RawTensor) -> Option<Result<Vec<(usize, RawTensor)>>>;

/// One folder of fixtures and how its cases run.
struct Suite {
    /// The summary line's first word.
    label: &'static str,
    /// The environment variable naming the folder.
    env: &'static str,
    /// The vendored folder under the repository root.
    default_dir: &'static str,
    /// Runs a case's forward op.
    forward: ForwardFn,
    /// Runs a case's backward.
    backward: BackwardFn,
}

const TORCH: Suite = Suite {
    label: "fixtures",
    env: "KILN_FIXTURES",
    default_dir: "tests/fixtures/torch",
    forward,
    backward,
};

const TORCH_LAYERS: Suite = Suite {
    label: "layer-fixtures",
    env: "KILN_LAYER_FIXTURES",
    default_dir: "tests/fixtures/torch-layers",
    forward: layer_forward,
    backward: layer_backward,
};

fn fixture_dir(suite: &Suite) -> PathBuf {
    match std::env::var_os(suite.env) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(suite.default_dir),
    }
}

struct Fixtures {
    cases: Vec<Value>,
    atol: f32,
    rtol: f32,
    bytes: Vec<u8>,
}

impl Fixtures {
    fn load(suite: &Suite) -> Fixtures {
        let dir = fixture_dir(suite);
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

/// Loads `<case>/<role>` onto `device` (f32 stays f32; int64 labels become u32; uint8 masks f32).
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
        Dtype::U8 => {
            let values: Vec<f32> = view.data().iter().map(|&b| f32::from(b)).collect();
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
        "seed_cnn_step" => Some(seed_cnn_step_fused_and_composed(attrs, x)),
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

/// [`seed_cnn_step`] through the fused convolution + ReLU + max-pool op (what `Conv2D` with ReLU
/// before `MaxPooling2D` runs), after checking that it agrees with the composed ops at every output:
/// the fixture's comparison then holds both paths to PyTorch.
fn seed_cnn_step_fused_and_composed(attrs: &Value, x: &[RawTensor]) -> Result<Vec<RawTensor>> {
    let composed = seed_cnn_step(attrs, x, false)?;
    let fused = seed_cnn_step(attrs, x, true)?;
    for (i, (a, b)) in fused.iter().zip(&composed).enumerate() {
        let (a, b) = (a.to_vec::<f32>()?, b.to_vec::<f32>()?);
        if let Some((u, v)) =
            (a.iter().zip(&b)).find(|(u, v)| (*u - *v).abs() > 1e-5 + 1e-4 * v.abs())
        {
            return Err(Error::invalid(
                "seed_cnn_step",
                format!("output {i}: the fused op gives {u}, the composed ops {v}"),
            ));
        }
    }
    Ok(fused)
}

/// The reference CNN (Conv2D 32 3x3 + ReLU, MaxPool 2x2, Flatten, Dense 10) trained for `steps` Adam
/// steps on the fixture's images, from `Tensor` ops (the convolution, ReLU and pooling as one fused
/// op with `fused`): returns the first step's logits, every step's loss, the first step's gradients
/// and the parameters after the last step.
fn seed_cnn_step(attrs: &Value, x: &[RawTensor], fused: bool) -> Result<Vec<RawTensor>> {
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
        let (conv, pool) = (Conv2dParams::default(), Pool2dParams::square(2));
        let pooled = if fused {
            images.conv2d_relu_max_pool2d(&cw, Some(&cb), conv, pool)?
        } else {
            images
                .conv2d(&cw, Some(&cb), conv)?
                .relu()?
                .max_pool2d(pool)?
        };
        let logits = pooled.flatten(1)?.matmul(&dw.t()?)?.add(&db)?;
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

fn check_all(device: &Device, suite: &Suite) {
    let fixtures = Fixtures::load(suite);
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
        let outcome = match (suite.forward)(op, attrs, &inputs) {
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
            let Some(grads) = (suite.backward)(op, attrs, &inputs, &dy) else {
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
        "{} {device}: {passed} passed, {unsupported} unsupported, {} failed \
         ({gradients_checked} gradients checked through autograd)",
        suite.label,
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
    check_all(&device, &TORCH);
});

device_test!(torch_layer_fixtures, |device| {
    check_all(&device, &TORCH_LAYERS);
});

fn uint(attrs: &Value, key: &str) -> usize {
    attrs[key]
        .as_u64()
        .unwrap_or_else(|| panic!("attribute {key}")) as usize
}

/// A layer case's outputs composed from `Tensor` ops (so autograd differentiates the first).
fn layer_case(op: &str, attrs: &Value, x: &[Tensor]) -> Option<Result<Vec<Tensor>>> {
    let one = |r: Result<Tensor>| Some(r.map(|t| vec![t]));
    let axes = || -> Vec<isize> {
        let mut axes: Vec<isize> = attrs["axes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_i64().unwrap() as isize)
            .collect();
        axes.sort_unstable_by(|a, b| b.cmp(a));
        axes
    };
    let recurrent = || RecurrentWeights {
        w_ih: &x[1],
        w_hh: &x[2],
        b_ih: Some(&x[3]),
        b_hh: Some(&x[4]),
    };
    match op {
        "conv1d" => one(x[0].conv1d(
            &x[1],
            Some(&x[2]),
            uint(attrs, "stride"),
            uint(attrs, "padding"),
        )),
        "global_avg_pool" => one(axes()
            .into_iter()
            .try_fold(x[0].clone(), |t, a| t.mean(a, false))),
        "global_max_pool" => one(axes()
            .into_iter()
            .try_fold(x[0].clone(), |t, a| t.max(Some(a), false))),
        "layer_norm" => one(x[0].layer_norm(&x[1], &x[2], float(attrs, "eps"))),
        "batch_norm_train" => Some(
            x[0].batch_norm_train(
                &x[1],
                &x[2],
                (x[3].raw(), x[4].raw()),
                float(attrs, "momentum"),
                float(attrs, "eps"),
            )
            .map(|(out, stats)| {
                vec![
                    out,
                    Tensor::from_raw(stats.running_mean),
                    Tensor::from_raw(stats.running_var),
                ]
            }),
        ),
        "batch_norm_eval" => {
            one(x[0].batch_norm_eval(&x[1], &x[2], (x[3].raw(), x[4].raw()), float(attrs, "eps")))
        }
        "embedding" => one(x[0].embedding(&x[1], attrs["padding_idx"].as_u64().map(|p| p as u32))),
        "lstm" => Some(x[0].lstm(&recurrent(), None).map(|out| {
            vec![
                out.sequence,
                out.last_h,
                out.last_c.expect("an LSTM has a cell state"),
            ]
        })),
        "gru" => Some(
            x[0].gru(&recurrent(), None)
                .map(|out| vec![out.sequence, out.last_h]),
        ),
        "scaled_dot_product_attention" => {
            one(x[0].scaled_dot_product_attention(&x[1], &x[2], Some(&x[3])))
        }
        "multi_head_attention" => {
            let weights = AttentionWeights {
                w_in: &x[1],
                b_in: Some(&x[2]),
                w_out: &x[3],
                b_out: Some(&x[4]),
            };
            one(x[0].multi_head_attention(&weights, uint(attrs, "heads"), Some(&x[5])))
        }
        "gelu" => one(x[0].gelu()),
        "gelu_tanh" => one(x[0].gelu_tanh()),
        "leaky_relu" => one(x[0].leaky_relu(float(attrs, "negative_slope"))),
        "elu" => one(x[0].elu(float(attrs, "alpha"))),
        "softplus" => one(x[0].softplus()),
        "silu" => one(x[0].silu()),
        "huber" => one(x[0].huber(&x[1], float(attrs, "delta"))),
        "l1" => one(x[0].l1(&x[1])),
        "cross_entropy_weighted" => one(x[0].cross_entropy_weighted(&x[1], &x[2])),
        "cross_entropy_label_smoothing" => {
            one(x[0].cross_entropy_smoothed(&x[1], float(attrs, "label_smoothing")))
        }
        "bce_with_logits_pos_weight" => one(x[0].bce_with_logits_weighted(&x[1], &x[2])),
        "topk" => Some(
            x[0].topk(uint(attrs, "k"))
                .map(|(values, indices)| vec![values, indices]),
        ),
        _ => None,
    }
}

/// Cases that are not ops on tensors but optimizer steps, clipping and metrics.
fn layer_procedure(op: &str, attrs: &Value, x: &[RawTensor]) -> Option<Result<Vec<RawTensor>>> {
    Some(match op {
        "rmsprop_steps" => (|| {
            let config = RmsPropConfig {
                lr: float(attrs, "lr"),
                rho: float(attrs, "alpha"),
                eps: float(attrs, "eps"),
                momentum: float(attrs, "momentum"),
                centered: attrs["centered"].as_bool().unwrap(),
                weight_decay: 0.0,
            };
            let (mut param, mut state) = (x[0].clone(), None);
            for grad in &x[1..] {
                let (p, s) = RawTensor::rmsprop_step(&param, grad, state.as_ref(), &config)?;
                (param, state) = (p, Some(s));
            }
            Ok(vec![param])
        })(),
        "clip_grad_norm" => {
            let grads: Vec<&RawTensor> = x.iter().collect();
            clip_by_global_norm(&grads, float(attrs, "max_norm")).map(|(mut clipped, norm)| {
                clipped.push(norm);
                clipped
            })
        }
        "binary_ranking_metrics" => (|| {
            let scores = x[0].to_vec::<f32>()?;
            let labels = x[1].to_vec::<u32>()?;
            let device = x[0].device();
            let auc = roc_auc(&scores, &labels).expect("both classes present") as f32;
            let ap = average_precision(&scores, &labels).expect("positives present") as f32;
            Ok(vec![
                RawTensor::from_slice(&[auc], Vec::<usize>::new(), device)?,
                RawTensor::from_slice(&[ap], Vec::<usize>::new(), device)?,
            ])
        })(),
        _ => return None,
    })
}

/// Fixture inputs as autograd leaves; float ones require grad when `grad` is set.
fn leaves(x: &[RawTensor], grad: bool) -> Vec<Tensor> {
    x.iter()
        .map(|t| {
            let t = Tensor::from_raw(t.clone());
            if grad && t.dtype() == DType::F32 {
                t.requires_grad_()
            } else {
                t
            }
        })
        .collect()
}

fn layer_forward(op: &str, attrs: &Value, x: &[RawTensor]) -> Option<Result<Vec<RawTensor>>> {
    if let Some(result) = layer_procedure(op, attrs, x) {
        return Some(result);
    }
    let outputs = layer_case(op, attrs, &leaves(x, false))?;
    Some(outputs.map(|outs| outs.iter().map(|t| t.raw().clone()).collect()))
}

fn layer_backward(
    op: &str,
    attrs: &Value,
    x: &[RawTensor],
    dy: &RawTensor,
) -> Option<Result<Vec<(usize, RawTensor)>>> {
    let leaves = leaves(x, true);
    let outputs = layer_case(op, attrs, &leaves)?;
    Some((|| {
        let grads = outputs?[0].backward_with(&Tensor::from_raw(dy.clone()))?;
        Ok(leaves
            .iter()
            .enumerate()
            .filter_map(|(i, t)| grads.get(t).map(|g| (i, g.raw().clone())))
            .collect())
    })())
}
