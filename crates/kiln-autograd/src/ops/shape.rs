//! Views (reshape, transpose, broadcast, narrow, ...) and joins (concat, stack) with their gradients.

use kiln_device::{BinaryOp, DType, Error, RawTensor, Result, Shape};

use super::sum_to;
use crate::Tensor;

impl Tensor {
    /// The same elements with a new shape (a view when the layout allows).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let y = self.raw().reshape(shape)?;
        let input = self.shape().clone();
        Ok(Tensor::from_op("reshape", y, &[self], move |g| {
            Ok(vec![Some(g.reshape(input)?)])
        }))
    }

    /// All dimensions from `start` on merged into one (`[N, C, H, W]` → `[N, C·H·W]` for `start` 1).
    pub fn flatten(&self, start: usize) -> Result<Tensor> {
        let dims = self.dims();
        if start > dims.len() {
            return Err(Error::invalid(
                "flatten",
                format!("start {start} is out of range for shape {}", self.shape()),
            ));
        }
        let mut shape = dims[..start].to_vec();
        shape.push(dims[start..].iter().product());
        self.reshape(shape)
    }

    /// Dimensions reordered (a view): output dimension `i` is input dimension `order[i]`.
    pub fn permute(&self, order: &[usize]) -> Result<Tensor> {
        let y = self.raw().permute(order)?;
        let mut inverse = vec![0; order.len()];
        for (i, &d) in order.iter().enumerate() {
            inverse[d] = i;
        }
        Ok(Tensor::from_op("permute", y, &[self], move |g| {
            Ok(vec![Some(g.permute(&inverse)?)])
        }))
    }

    /// Two dimensions swapped (a view).
    pub fn transpose(&self, dim0: usize, dim1: usize) -> Result<Tensor> {
        let y = self.raw().transpose(dim0, dim1)?;
        Ok(Tensor::from_op("transpose", y, &[self], move |g| {
            Ok(vec![Some(g.transpose(dim0, dim1)?)])
        }))
    }

    /// The matrix transpose of the last two dimensions.
    pub fn t(&self) -> Result<Tensor> {
        let rank = self.shape().rank();
        if rank < 2 {
            return Err(Error::invalid(
                "t",
                format!("needs at least 2 dimensions, got {}", self.shape()),
            ));
        }
        self.transpose(rank - 2, rank - 1)
    }

    /// Broadcast to `shape` (a view); the gradient is summed back.
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let y = self.raw().broadcast_to(shape)?;
        let input = self.shape().clone();
        Ok(Tensor::from_op("broadcast_to", y, &[self], move |g| {
            Ok(vec![Some(sum_to(g.clone(), &input)?)])
        }))
    }

    /// Elements `start .. start + len` of dimension `dim` (a view); the gradient is zero elsewhere.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        let y = self.raw().narrow(dim, start, len)?;
        let input = self.shape().clone();
        Ok(Tensor::from_op("narrow", y, &[self], move |g| {
            let zeros = |n: usize| {
                let mut dims = input.dims().to_vec();
                dims[dim] = n;
                RawTensor::zeros(dims, DType::F32, g.device())
            };
            let (before, after) = (zeros(start)?, zeros(input.dims()[dim] - start - len)?);
            Ok(vec![Some(RawTensor::concat(&[&before, g, &after], dim)?)])
        }))
    }

    /// Dimension `dim` (of size 1) removed.
    pub fn squeeze(&self, dim: usize) -> Result<Tensor> {
        let y = self.raw().squeeze(dim)?;
        Ok(Tensor::from_op("squeeze", y, &[self], move |g| {
            Ok(vec![Some(g.unsqueeze(dim)?)])
        }))
    }

    /// A dimension of size 1 inserted at `dim`.
    pub fn unsqueeze(&self, dim: usize) -> Result<Tensor> {
        let y = self.raw().unsqueeze(dim)?;
        Ok(Tensor::from_op("unsqueeze", y, &[self], move |g| {
            Ok(vec![Some(g.squeeze(dim)?)])
        }))
    }

    /// The tensors joined along `dim`.
    pub fn concat(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let raws: Vec<&RawTensor> = tensors.iter().map(|t| t.raw()).collect();
        let y = RawTensor::concat(&raws, dim)?;
        let sizes: Vec<usize> = tensors.iter().map(|t| t.dims()[dim]).collect();
        Ok(Tensor::from_op("concat", y, tensors, move |g| {
            let mut start = 0;
            sizes
                .iter()
                .map(|&len| {
                    let part = g.narrow(dim, start, len)?.contiguous()?;
                    start += len;
                    Ok(Some(part))
                })
                .collect()
        }))
    }

    /// The tensors (all of one shape) stacked along a new dimension `dim`.
    pub fn stack(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let expanded = tensors
            .iter()
            .map(|t| t.unsqueeze(dim))
            .collect::<Result<Vec<_>>>()?;
        if let Some(t) = tensors.iter().find(|t| t.shape() != tensors[0].shape()) {
            return Err(Error::invalid(
                "stack",
                format!("shapes {} and {} differ", tensors[0].shape(), t.shape()),
            ));
        }
        Tensor::concat(&expanded.iter().collect::<Vec<_>>(), dim)
    }
}

impl Tensor {
    /// Rows `indices` (u32, 1-D) along dimension 0 — an embedding lookup. The gradient adds each
    /// output row back into the row it came from.
    pub fn index_select(&self, indices: &Tensor) -> Result<Tensor> {
        let y = self.raw().index_select(indices.raw())?;
        let (idx, table) = (indices.raw().clone(), self.shape().clone());
        Ok(Tensor::from_op(
            "index_select",
            y,
            &[self, indices],
            move |g| {
                Ok(vec![
                    Some(RawTensor::index_select_backward(g, &idx, table)?),
                    None,
                ])
            },
        ))
    }
}

impl Tensor {
    /// An embedding lookup: rows of this `[V, D]` table for `ids` (u32, any shape) as
    /// `[..ids, D]`. The row `padding_idx` gets no gradient (PyTorch's `padding_idx`).
    pub fn embedding(&self, ids: &Tensor, padding_idx: Option<u32>) -> Result<Tensor> {
        let op = "embedding";
        let [_, d] = *self.dims() else {
            return Err(Error::invalid(
                op,
                format!("expects a [vocabulary, dim] table, got {}", self.shape()),
            ));
        };
        ids.raw().expect_dtype(
            op,
            DType::U32,
            "ids are u32; cast them with .cast(DType::U32)",
        )?;
        let flat = ids.raw().reshape([ids.numel()])?;
        let y = self.raw().index_select(&flat)?;
        let mut out_shape = ids.dims().to_vec();
        out_shape.push(d);
        let y = y.reshape(out_shape)?;
        let table = self.shape().clone();
        Ok(Tensor::from_op(op, y, &[self], move |g| {
            let mut g = g.reshape([flat.numel(), d])?;
            if let Some(pad) = padding_idx {
                // zero the gradient rows of padding ids before they are added into the table
                let keep = flat
                    .cast(DType::F32)?
                    .scalar(BinaryOp::Equal, pad as f32)?
                    .scalar(BinaryOp::Mul, -1.0)?
                    .scalar(BinaryOp::Add, 1.0)?
                    .reshape([flat.numel(), 1])?;
                g = g.binary(BinaryOp::Mul, &keep)?;
            }
            Ok(vec![Some(RawTensor::index_select_backward(
                &g, &flat, table,
            )?)])
        }))
    }

    /// The `k` largest elements along the last axis and their u32 indices (no gradient).
    pub fn topk(&self, k: usize) -> Result<(Tensor, Tensor)> {
        let (values, indices) = self.raw().topk(k, true)?;
        Ok((Tensor::from_raw(values), Tensor::from_raw(indices)))
    }
}
