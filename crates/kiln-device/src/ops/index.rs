//! `index_select` along dimension 0 (an embedding lookup) and its gradient, a scatter-add of rows.

use crate::tensor::Backend;
use crate::{DType, Error, RawTensor, Result, Shape, gpu};

/// `(rows, row_len)` of a table and the output shape for `n` indices.
fn geometry(op: &'static str, table: &Shape, indices: &RawTensor) -> Result<(usize, usize, Shape)> {
    if table.rank() == 0 || indices.shape().rank() != 1 {
        return Err(Error::invalid(
            op,
            format!(
                "expects a table of rank >= 1 and 1-D indices, got {table} and {}",
                indices.shape()
            ),
        ));
    }
    indices.expect_dtype(op, DType::U32, "indices are u32")?;
    let dims = table.dims();
    let mut out = vec![indices.numel()];
    out.extend_from_slice(&dims[1..]);
    Ok((dims[0], dims[1..].iter().product(), out.into()))
}

impl RawTensor {
    /// Rows `indices` (u32, 1-D) of this tensor along dimension 0: `[n, ..rest]`. An index outside the
    /// table is an error (on the GPU, reported by the next readback).
    pub fn index_select(&self, indices: &RawTensor) -> Result<RawTensor> {
        let op = "index_select";
        let (rows, row_len, out_shape) = geometry(op, self.shape(), indices)?;
        self.expect_dtype(op, DType::F32, "cast the table to f32")?;
        RawTensor::check_same_device(op, &[self, indices])?;
        let (table, idx) = (self.contiguous()?, indices.contiguous()?);
        let error = format!(
            "index_select: an index is outside [0, {rows}) for table {}",
            self.shape()
        );
        Ok(match table.backend() {
            Backend::Cpu(cpu) => {
                let (src, ids) = (table.host_f32(), idx.host_u32());
                if let Some(bad) = crate::cpu::index_past(ids, rows) {
                    return Err(Error::InvalidData {
                        op,
                        message: format!(
                            "index {bad} is outside [0, {rows}) for table {}",
                            self.shape()
                        ),
                    });
                }
                let values = ids
                    .iter()
                    .flat_map(|&i| src[i as usize * row_len..][..row_len].iter().copied())
                    .collect();
                RawTensor::from_host_f32(values, out_shape, cpu)
            }
            Backend::Gpu(ctx) => {
                let out = gpu::index::gather_rows(
                    ctx,
                    table.buffer(),
                    (idx.buffer(), idx.numel()),
                    (rows, row_len),
                    error,
                )?;
                RawTensor::from_gpu(out, out_shape, DType::F32, &table)
            }
        })
    }

    /// The gradient of `index_select`: a `table_shape` of zeros with row `i` of `grad` added into row
    /// `indices[i]` (repeated indices accumulate).
    pub fn index_select_backward(
        grad: &RawTensor,
        indices: &RawTensor,
        table_shape: impl Into<Shape>,
    ) -> Result<RawTensor> {
        let op = "index_select_backward";
        let table_shape = table_shape.into();
        let (rows, row_len, out_shape) = geometry(op, &table_shape, indices)?;
        if grad.shape() != &out_shape {
            return Err(Error::invalid(
                op,
                format!("gradient {} must be {out_shape}", grad.shape()),
            ));
        }
        RawTensor::check_same_device(op, &[grad, indices])?;
        let (g, idx) = (grad.contiguous()?, indices.contiguous()?);
        let error = format!("index_select_backward: an index is outside [0, {rows})");
        Ok(match g.backend() {
            Backend::Cpu(cpu) => {
                let mut table = vec![0.0f32; rows * row_len];
                for (i, &row) in idx.host_u32().iter().enumerate() {
                    let row = row as usize;
                    if row >= rows {
                        return Err(Error::InvalidData {
                            op,
                            message: format!("index {row} is outside [0, {rows})"),
                        });
                    }
                    let src = &g.host_f32()[i * row_len..][..row_len];
                    table[row * row_len..][..row_len]
                        .iter_mut()
                        .zip(src)
                        .for_each(|(t, s)| *t += s);
                }
                RawTensor::from_host_f32(table, table_shape, cpu)
            }
            Backend::Gpu(ctx) => {
                let out = gpu::index::scatter_add_rows(
                    ctx,
                    g.buffer(),
                    (idx.buffer(), idx.numel()),
                    (rows, row_len),
                    error,
                )?;
                RawTensor::from_gpu(out, table_shape, DType::F32, &g)
            }
        })
    }
}
