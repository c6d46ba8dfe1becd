//! Reductions and their gradients.

use kiln_device::{BinaryOp, RawTensor, ReduceOp, Result, Shape};

use crate::Tensor;

/// `t` (shaped like a reduction's output) with the reduced dimension kept as size 1, so that it
/// broadcasts against the input in elementwise kernels (a view, no copy).
fn keep_reduced(
    t: &RawTensor,
    input: &Shape,
    axis: Option<isize>,
    keepdim: bool,
) -> Result<RawTensor> {
    match (axis, keepdim) {
        (Some(a), false) => t.unsqueeze(input.axis("backward", a)?),
        (None, _) => t.reshape(vec![1; input.rank()]),
        _ => Ok(t.clone()),
    }
}

impl Tensor {
    fn reduce(&self, op: ReduceOp, axis: Option<isize>, keepdim: bool) -> Result<Tensor> {
        let y = self.raw().reduce(op, axis, keepdim)?;
        let (x, out) = (self.raw().clone(), y.clone());
        Ok(Tensor::from_op(op.name(), y, &[self], move |g| {
            let shape = x.shape().clone();
            let g = keep_reduced(g, &shape, axis, keepdim)?;
            let dx = match op {
                ReduceOp::Sum => g.broadcast_to(shape)?.contiguous()?,
                ReduceOp::Mean => {
                    let count = (shape.numel() / out.numel().max(1)).max(1);
                    // divide the small gradient, then spread it
                    g.scalar(BinaryOp::Div, count as f32)?
                        .broadcast_to(shape)?
                        .contiguous()?
                }
                // The gradient goes to the extreme element(s), split evenly between ties.
                ReduceOp::Max | ReduceOp::Min => x.extreme_backward(&out, &g, axis)?,
            };
            Ok(vec![Some(dx)])
        }))
    }

    /// Sum along `axis` (negative counts from the end); `keepdim` keeps it as size 1.
    pub fn sum(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, Some(axis), keepdim)
    }

    /// Sum of every element (a scalar).
    pub fn sum_all(&self) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, None, false)
    }

    /// Mean along `axis`.
    pub fn mean(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Mean, Some(axis), keepdim)
    }

    /// Mean of every element (a scalar).
    pub fn mean_all(&self) -> Result<Tensor> {
        self.reduce(ReduceOp::Mean, None, false)
    }

    /// Maximum along `axis` (`None`: of everything).
    pub fn max(&self, axis: Option<isize>, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, axis, keepdim)
    }

    /// Minimum along `axis` (`None`: of everything).
    pub fn min(&self, axis: Option<isize>, keepdim: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Min, axis, keepdim)
    }

    /// Index (u32) of the largest element along `axis` (no gradient).
    pub fn argmax(&self, axis: Option<isize>, keepdim: bool) -> Result<Tensor> {
        Ok(Tensor::from_raw(self.raw().argmax(axis, keepdim)?))
    }
}
