//! `matmul` and its gradient.

use kiln_device::{RawTensor, Result};

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
}
