//! The differentiable ops of [`crate::Tensor`], one module per family; each forward runs the device
//! kernel and records a closure computing the inputs' gradients from device kernels too.

mod attention;
mod elementwise;
mod linalg;
mod loss;
mod nn;
mod norm;
mod recurrent;
mod reduce;
mod shape;

pub use attention::AttentionWeights;
pub use norm::BatchNormStats;
pub use recurrent::{RecurrentOutput, RecurrentWeights};

use kiln_device::{RawTensor, Result, Shape};

/// Sums a gradient computed at a broadcast shape back to an operand's `shape` (over the leading
/// dimensions it lacked and the dimensions where it had size 1).
pub(crate) fn sum_to(grad: RawTensor, shape: &Shape) -> Result<RawTensor> {
    if grad.shape() == shape {
        return Ok(grad);
    }
    let mut g = grad;
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
