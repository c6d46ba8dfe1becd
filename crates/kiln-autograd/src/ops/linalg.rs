//! `matmul` and `linear` (a dense layer, optionally with its ReLU) and their gradients.

use kiln_device::{BinaryOp, RawTensor, ReduceOp, Result};

use super::sum_to;
use crate::Tensor;

/// The matrix transpose of the last two dimensions (a view).
fn mt(t: &RawTensor) -> Result<RawTensor> {
    let r = t.shape().rank();
    t.transpose(r - 2, r - 1)
}

impl Tensor {
    /// The matrix product, like `torch.matmul`: `[.., M, K] @ [.., K, N] -> [.., M, N]`, leading
    /// dimensions broadcast, 1-D operands are vectors.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        // 1-D operands become matrices through differentiable views, so one backward serves all.
        if self.shape().rank() == 1 {
            let out = self.unsqueeze(0)?.matmul(rhs)?;
            // The added row is the last dimension when rhs was a vector too, else the second to last.
            let row = out.shape().rank() - if rhs.shape().rank() == 1 { 1 } else { 2 };
            return out.squeeze(row);
        }
        if rhs.shape().rank() == 1 {
            let out = self.matmul(&rhs.unsqueeze(1)?)?;
            return out.squeeze(out.shape().rank() - 1);
        }
        let y = self.raw().matmul(rhs.raw())?;
        let (a, b) = (self.raw().clone(), rhs.raw().clone());
        Ok(Tensor::from_op("matmul", y, &[self, rhs], move |g| {
            let da = g.matmul(&mt(&b)?)?;
            let db = mt(&a)?.matmul(g)?;
            Ok(vec![
                Some(sum_to(da, a.shape())?),
                Some(sum_to(db, b.shape())?),
            ])
        }))
    }

    /// A dense layer, `self · weightᵀ + bias` for `self` `[N, in]` and `weight` `[out, in]`, recorded
    /// as one op (one kernel on the GPU, the bias added as outputs are stored).
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.record_linear(weight, bias, false)
    }

    /// `relu(self.linear(weight, bias))` as one op: the ReLU applied in the same kernel, and its
    /// backward as one kernel before the two gradient GEMMs.
    pub fn linear_relu(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.record_linear(weight, bias, true)
    }

    fn record_linear(&self, weight: &Tensor, bias: Option<&Tensor>, relu: bool) -> Result<Tensor> {
        let y = self
            .raw()
            .linear(weight.raw(), bias.map(Tensor::raw), relu)?;
        let (x, w) = (self.raw().clone(), weight.raw().clone());
        let relu_out = relu.then(|| y.clone());
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        let has_bias = bias.is_some();
        // Only the gradients something needs: a first layer's input has none.
        let (need_x, need_w) = (self.requires_grad(), weight.requires_grad());
        let need_b = bias.is_some_and(Tensor::requires_grad);
        let name = if relu { "linear_relu" } else { "linear" };
        Ok(Tensor::from_op(name, y, &inputs, move |g| {
            let g = match &relu_out {
                Some(y) => g.binary(BinaryOp::ReluBackward, y)?,
                None => g.clone(),
            };
            // y = x Wᵀ: dx = g W, dW = gᵀ x, db = the column sums of g.
            let mut grads = vec![
                need_x.then(|| g.matmul(&w)).transpose()?,
                need_w.then(|| mt(&g)?.matmul(&x)).transpose()?,
            ];
            if has_bias {
                grads.push(
                    need_b
                        .then(|| g.reduce(ReduceOp::Sum, Some(0), false))
                        .transpose()?,
                );
            }
            Ok(grads)
        }))
    }
}
