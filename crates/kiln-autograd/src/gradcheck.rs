//! Gradient checking: compares `backward` with central finite differences computed in f64 on the
//! CPU. Use it to verify a custom composition of ops:
//!
//! ```no_run
//! use kiln_autograd::{check_gradients, Tensor};
//! use kiln_device::Device;
//! let x = Tensor::from_slice(&[0.3f32, -1.2, 2.0], [3], &Device::cpu())?;
//! let report = check_gradients(|t| t[0].tanh()?.mul(&t[0])?.sum_all(), &[x], 1e-3, 1e-2)?;
//! assert!(report.passed(), "{report:?}");
//! # Ok::<(), kiln_device::Error>(())
//! ```

use kiln_device::{Device, Result};

use crate::Tensor;

/// The outcome of [`check_gradients`].
#[derive(Debug, Clone)]
pub struct GradCheck {
    /// Largest `|analytic - numeric| / max(1, |numeric|)` over all checked elements.
    pub max_error: f64,
    /// The tolerance it was held to.
    pub tolerance: f64,
    /// `(input, element, analytic, numeric)` of the worst element.
    pub worst: Option<(usize, usize, f64, f64)>,
}

impl GradCheck {
    /// Whether every element was within tolerance.
    pub fn passed(&self) -> bool {
        self.max_error <= self.tolerance
    }
}

/// Checks the gradients of the scalar `f(inputs)` with respect to every input against central
/// differences with step `eps`. Inputs are f32 tensors; `f` runs on copies of them on the CPU, and
/// the loss is accumulated in f64.
pub fn check_gradients(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    eps: f64,
    tolerance: f64,
) -> Result<GradCheck> {
    let cpu = Device::cpu();
    let values: Vec<Vec<f32>> = inputs
        .iter()
        .map(|t| t.to_vec::<f32>())
        .collect::<Result<_>>()?;
    let shapes: Vec<_> = inputs.iter().map(|t| t.shape().clone()).collect();
    let make = |vals: &[Vec<f32>], grad: bool| -> Result<Vec<Tensor>> {
        vals.iter()
            .zip(&shapes)
            .map(|(v, s)| {
                let t = Tensor::from_slice(v, s.clone(), &cpu)?;
                Ok(if grad { t.requires_grad_() } else { t })
            })
            .collect()
    };
    let leaves = make(&values, true)?;
    let grads = f(&leaves)?.backward()?;
    let loss_at =
        |vals: &[Vec<f32>]| -> Result<f64> { Ok(f64::from(f(&make(vals, false)?)?.to_scalar()?)) };

    let mut report = GradCheck {
        max_error: 0.0,
        tolerance,
        worst: None,
    };
    for (i, leaf) in leaves.iter().enumerate() {
        let analytic = match grads.get(leaf) {
            Some(g) => g.to_vec::<f32>()?,
            None => vec![0.0; values[i].len()],
        };
        for j in 0..values[i].len() {
            let mut plus = values.clone();
            plus[i][j] = (f64::from(values[i][j]) + eps) as f32;
            let mut minus = values.clone();
            minus[i][j] = (f64::from(values[i][j]) - eps) as f32;
            let step = f64::from(plus[i][j]) - f64::from(minus[i][j]);
            let numeric = (loss_at(&plus)? - loss_at(&minus)?) / step;
            let error = (f64::from(analytic[j]) - numeric).abs() / numeric.abs().max(1.0);
            if error > report.max_error {
                report.max_error = error;
                report.worst = Some((i, j, f64::from(analytic[j]), numeric));
            }
        }
    }
    Ok(report)
}
