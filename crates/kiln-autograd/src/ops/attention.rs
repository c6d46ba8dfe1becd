//! Attention: scaled dot-product attention and multi-head self-attention, composed from batched GEMMs,
//! a masked softmax and views.

use kiln_device::{Error, Result};

use crate::Tensor;

/// Added to the scores of masked keys: `e^(-1e9)` is exactly 0 in f32, so masked keys get no weight.
const MASKED_SCORE: f32 = -1e9;

/// The weights of a multi-head attention block in PyTorch's layout: `w_in` `[3E, E]` (rows q, k, v),
/// `b_in` `[3E]`, `w_out` `[E, E]`, `b_out` `[E]`.
pub struct AttentionWeights<'a> {
    /// Query, key and value projections, stacked.
    pub w_in: &'a Tensor,
    /// Their biases.
    pub b_in: Option<&'a Tensor>,
    /// The output projection.
    pub w_out: &'a Tensor,
    /// Its bias.
    pub b_out: Option<&'a Tensor>,
}

impl Tensor {
    /// `softmax(q kᵀ / √D + mask) v` for `q` `[.., Tq, D]`, `k` and `v` `[.., Tk, D]`. `attend` (1 =
    /// attend, 0 = ignore; broadcast against `[.., Tq, Tk]`, e.g. `[N, 1, 1, Tk]` for padding) keeps
    /// masked keys out of every softmax.
    pub fn scaled_dot_product_attention(
        &self,
        k: &Tensor,
        v: &Tensor,
        attend: Option<&Tensor>,
    ) -> Result<Tensor> {
        let op = "scaled_dot_product_attention";
        let rank = self.dims().len();
        if rank < 2 || k.dims().len() != rank || v.dims().len() != rank {
            return Err(Error::invalid(
                op,
                format!(
                    "q, k, v must have the same rank >= 2, got {}, {}, {}",
                    self.shape(),
                    k.shape(),
                    v.shape()
                ),
            ));
        }
        let d = self.dims()[rank - 1];
        if k.dims()[rank - 1] != d || k.dims()[rank - 2] != v.dims()[rank - 2] {
            return Err(Error::invalid(
                op,
                format!(
                    "q {} and k {} need the same last axis, k and v {} the same number of keys",
                    self.shape(),
                    k.shape(),
                    v.shape()
                ),
            ));
        }
        let mut scores = self
            .matmul(&k.transpose(rank - 2, rank - 1)?)?
            .mul_scalar(1.0 / (d as f32).sqrt())?;
        if let Some(mask) = attend {
            // (mask - 1) · 1e9: 0 where attended, -1e9 where not.
            let penalty = mask.sub_scalar(1.0)?.mul_scalar(-MASKED_SCORE)?;
            scores = scores.add(&penalty)?;
        }
        scores.softmax(-1)?.matmul(v)
    }

    /// Multi-head self-attention over `[N, T, E]` with `heads` heads (PyTorch's
    /// `nn.MultiheadAttention` with batch first). `ignore` (`[N, T]`, 1 = a padded key to ignore)
    /// is the key padding mask.
    pub fn multi_head_attention(
        &self,
        weights: &AttentionWeights<'_>,
        heads: usize,
        ignore: Option<&Tensor>,
    ) -> Result<Tensor> {
        let op = "multi_head_attention";
        let [n, t, e] = *self.dims() else {
            return Err(Error::invalid(
                op,
                format!(
                    "expects input [batch, steps, features], got {}",
                    self.shape()
                ),
            ));
        };
        if heads == 0 || e % heads != 0 {
            return Err(Error::invalid(
                op,
                format!("{heads} heads do not divide the feature size {e}"),
            ));
        }
        if weights.w_in.dims() != [3 * e, e] || weights.w_out.dims() != [e, e] {
            return Err(Error::invalid(
                op,
                format!(
                    "w_in {} must be [{}, {e}] and w_out {} [{e}, {e}] for input {}",
                    weights.w_in.shape(),
                    3 * e,
                    weights.w_out.shape(),
                    self.shape()
                ),
            ));
        }
        if let Some(m) = ignore.filter(|m| m.dims() != [n, t]) {
            return Err(Error::invalid(
                op,
                format!("key padding mask {} must be [{n}, {t}]", m.shape()),
            ));
        }
        let d = e / heads;
        let qkv = self
            .reshape([n * t, e])?
            .linear(weights.w_in, weights.b_in)?
            .reshape([n, t, 3 * e])?;
        // [N, T, E] slice → [N, heads, T, d]
        let split = |k: usize| -> Result<Tensor> {
            qkv.narrow(2, k * e, e)?
                .reshape([n, t, heads, d])?
                .permute(&[0, 2, 1, 3])
        };
        let attend = ignore
            .map(|m| m.mul_scalar(-1.0)?.add_scalar(1.0)?.reshape([n, 1, 1, t]))
            .transpose()?;
        let heads_out =
            split(0)?.scaled_dot_product_attention(&split(1)?, &split(2)?, attend.as_ref())?;
        heads_out
            .permute(&[0, 2, 1, 3])?
            .reshape([n * t, e])?
            .linear(weights.w_out, weights.b_out)?
            .reshape([n, t, e])
    }
}
