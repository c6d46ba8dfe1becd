//! Every SIMD path of kiln's own CPU kernels (AVX-512, AVX2, the baseline build) gives the same
//! results: the test runs itself again with `KILN_CPU_FEATURES` lowered to each level this CPU
//! supports, and compares what each run computed — softmax and log-softmax rows (NaN, -inf and
//! large values), 2x2 max pooling on odd planes with ties and NaN (values and argmax), the fused
//! convolution + ReLU + pooling with its gradients, and reductions. (Matrix products are the `gemm`
//! crate's, which picks its own kernels at run time whatever the level.)

use std::process::Command;

use kiln::device::{SimdLevel, simd_level};
use kiln::prelude::*;

/// Set in the child runs; names the level the parent asked for.
const CHILD: &str = "KILN_CPU_FEATURES_CHILD";

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32 * 12.9898 + seed).sin() * 43758.547).fract() * 4.0)
        .collect()
}

/// Everything the kernels compute, flattened (indices as floats).
fn outputs() -> Result<Vec<f32>> {
    let cpu = Device::cpu();
    let mut out = Vec::new();
    // Softmax rows of several lengths (tails of every vector width), with special values.
    let mut x = values(7 * 131, 1.0);
    x[5] = f32::NAN;
    x[131 + 3] = f32::NEG_INFINITY;
    x[2 * 131 + 7] = 80.0;
    for len in [131, 16, 64, 3] {
        let t = Tensor::from_slice(&x[..7 * len], [7, len], &cpu)?;
        out.extend(t.softmax(-1)?.to_vec::<f32>()?);
        out.extend(t.log_softmax(-1)?.to_vec::<f32>()?);
    }
    // 2x2 max pooling of odd planes, with ties and a NaN.
    let mut planes: Vec<f32> = values(3 * 2 * 9 * 37, 2.0)
        .iter()
        .map(|v| v.round())
        .collect();
    planes[40] = f32::NAN;
    let planes = RawTensor::from_slice(&planes, [3, 2, 9, 37], &cpu)?;
    let (pooled, indices) = planes.max_pool2d(Pool2dParams::square(2))?;
    out.extend(pooled.to_vec::<f32>()?);
    out.extend(indices.to_vec::<u32>()?.iter().map(|&i| i as f32));
    // The fused convolution + ReLU + pooling, forward and backward.
    let images =
        Tensor::from_slice(&values(5 * 2 * 13 * 11, 3.0), [5, 2, 13, 11], &cpu)?.requires_grad_();
    let weight = Tensor::from_slice(&values(6 * 2 * 9, 4.0), [6, 2, 3, 3], &cpu)?.requires_grad_();
    let bias = Tensor::from_slice(&values(6, 5.0), [6], &cpu)?.requires_grad_();
    let y = images.conv2d_relu_max_pool2d(
        &weight,
        Some(&bias),
        Conv2dParams::default(),
        Pool2dParams::square(2),
    )?;
    let grads = y.sum_all()?.backward()?;
    out.extend(y.to_vec::<f32>()?);
    for t in [&images, &weight, &bias] {
        out.extend(grads.get(t).expect("a gradient").to_vec::<f32>()?);
    }
    // Reductions.
    let m = Tensor::from_slice(&values(33 * 70, 6.0), [33, 70], &cpu)?;
    out.extend(m.sum(-1, false)?.to_vec::<f32>()?);
    out.extend(m.max(Some(0), false)?.to_vec::<f32>()?);
    Ok(out)
}

/// The child run: prints its level and the outputs' bits.
#[test]
fn simd_level_child() {
    let Ok(requested) = std::env::var(CHILD) else {
        return; // only as a child of the test below
    };
    assert_eq!(
        Some(simd_level()),
        SimdLevel::parse(&requested),
        "KILN_CPU_FEATURES was not applied"
    );
    let bits: Vec<String> = outputs()
        .unwrap()
        .iter()
        .map(|v| v.to_bits().to_string())
        .collect();
    println!("OUTPUTS {}", bits.join(","));
}

fn run_at(level: SimdLevel) -> Vec<f32> {
    let name = format!("{level:?}").to_lowercase();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "simd_level_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &name)
        .env("KILN_CPU_FEATURES", &name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the {name} run failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = (stdout
        .lines()
        .find_map(|l| l.split_once("OUTPUTS ").map(|(_, bits)| bits)))
    .unwrap_or_else(|| panic!("the {name} run printed no outputs: {stdout}"));
    line.split(',')
        .map(|b| f32::from_bits(b.parse().unwrap()))
        .collect()
}

#[test]
fn every_simd_level_this_cpu_has_gives_the_same_results() {
    let levels: Vec<SimdLevel> = [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512]
        .into_iter()
        .filter(|&l| l <= SimdLevel::detected())
        .collect();
    let reference = run_at(SimdLevel::Baseline);
    assert!(
        reference.iter().any(|v| v.is_nan()),
        "the cases include NaN"
    );
    for &level in &levels[1..] {
        let got = run_at(level);
        assert_eq!(got.len(), reference.len(), "{level:?}");
        for (i, (a, b)) in got.iter().zip(&reference).enumerate() {
            let same =
                a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-5 + 1e-5 * b.abs();
            assert!(same, "{level:?} output {i}: {a} vs baseline {b}");
        }
    }
    eprintln!("compared {levels:?} ({} outputs each)", reference.len());
}
