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
const NOT_YET_SUPPORTED: &[(&str, &str)] = &[
    ("matmul", "kernels"),
    ("conv2d", "kernels"),
    ("softmax", "kernels"),
    ("log_softmax", "kernels"),
    ("sum", "kernels"),
    ("mean", "kernels"),
    ("max", "kernels"),
    ("argmax", "kernels"),
    ("max_pool2d", "kernels"),
    ("avg_pool2d", "kernels"),
    ("cross_entropy", "kernels"),
    ("cross_entropy_soft", "kernels"),
    ("bce_with_logits", "kernels"),
    ("mse", "kernels"),
    ("adam_step", "kernels"),
    ("adamw_step", "kernels"),
    ("seed_cnn_step", "autograd"),
];

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

/// Runs one case's forward op; `None` when kiln does not implement the op here.
fn run(op: &str, inputs: &[RawTensor]) -> Option<Result<Vec<RawTensor>>> {
    let unary = UnaryOp::ALL.into_iter().find(|u| u.name() == op);
    let binary = BinaryOp::ALL.into_iter().find(|b| b.name() == op);
    if let Some(u) = unary {
        Some(inputs[0].unary(u).map(|t| vec![t]))
    } else {
        binary.map(|b| inputs[0].binary(b, &inputs[1]).map(|t| vec![t]))
    }
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
    let (mut passed, mut unsupported, mut failed) = (0, 0, Vec::new());
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
        match run(op, &inputs) {
            None if not_yet.contains_key(op) => unsupported += 1,
            None => failed.push(format!("{name}: op {op:?} is unknown to kiln")),
            Some(Err(e)) => failed.push(format!("{name}: {e}")),
            Some(Ok(outputs)) => {
                let expected = roles("outputs");
                let mismatch = outputs.iter().zip(&expected).find_map(|(got, role)| {
                    let want = load(&tensors, name, role, device).unwrap();
                    compare(got, &want, fixtures.atol, fixtures.rtol)
                        .err()
                        .map(|e| format!("{role}: {e}"))
                });
                match mismatch {
                    None => passed += 1,
                    Some(e) => failed.push(format!("{name}: {e}")),
                }
            }
        }
    }
    println!(
        "fixtures {device}: {passed} passed, {unsupported} unsupported, {} failed",
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
