//! `concat` and `stack`: tensors joined along a dimension. Each input is copied into its slice of
//! the output (a strided view), so any input layout works.

use crate::tensor::Backend;
use crate::{DType, Error, Layout, RawTensor, Result, Shape, cpu, gpu};

impl RawTensor {
    /// The tensors joined along `dim`; all other dimensions must match.
    pub fn concat(tensors: &[&RawTensor], dim: usize) -> Result<RawTensor> {
        let op = "concat";
        let first = tensors
            .first()
            .ok_or_else(|| Error::invalid(op, "needs at least one tensor"))?;
        let rank = first.shape().rank();
        if dim >= rank {
            return Err(Error::invalid(
                op,
                format!(
                    "dimension {dim} is out of range for shape {}",
                    first.shape()
                ),
            ));
        }
        let mut dims = first.shape().dims().to_vec();
        dims[dim] = 0;
        for t in tensors {
            let d = t.shape().dims();
            let compatible = d.len() == rank
                && d.iter()
                    .zip(first.shape().dims())
                    .enumerate()
                    .all(|(i, (a, b))| i == dim || a == b);
            if !compatible {
                return Err(Error::invalid(
                    op,
                    format!(
                        "shapes {} and {} differ outside dimension {dim}",
                        first.shape(),
                        t.shape()
                    ),
                ));
            }
            dims[dim] += d[dim];
        }
        RawTensor::check_same_device(op, tensors)?;
        let dtype = first.dtype();
        if let Some(t) = tensors.iter().find(|t| t.dtype() != dtype) {
            return Err(Error::DTypeMismatch {
                op,
                lhs: dtype,
                rhs: t.dtype(),
            });
        }
        if dtype == DType::F16 {
            let widened = tensors
                .iter()
                .map(|t| t.cast(DType::F32))
                .collect::<Result<Vec<_>>>()?;
            return RawTensor::concat(&widened.iter().collect::<Vec<_>>(), dim)?.cast(DType::F16);
        }
        let shape = Shape::from(dims);
        let out_layout = Layout::contiguous(shape.clone());
        let slices = || {
            let mut start = 0;
            tensors.iter().map(move |t| {
                let len = t.shape().dims()[dim];
                let view = out_layout
                    .narrow(dim, start, len)
                    .expect("slices lie inside the output");
                start += len;
                (*t, view)
            })
        };
        Ok(match first.backend() {
            Backend::Cpu(_) => {
                let mut data = cpu::copy::Scatter::new(dtype, shape.numel());
                for (t, view) in slices() {
                    data.write(t, &view);
                }
                RawTensor::from_cpu_data(data.finish(), shape, first.device())?
            }
            Backend::Gpu(ctx) => {
                let out = ctx.alloc(op, shape.numel().saturating_mul(4) as u64)?;
                for (t, view) in slices() {
                    gpu::copy::scatter(ctx, (t.buffer(), t.layout()), (&out, &view))?;
                }
                RawTensor::from_gpu(out, shape, dtype, first)
            }
        })
    }

    /// The tensors (all of one shape) stacked along a new dimension `dim`.
    pub fn stack(tensors: &[&RawTensor], dim: usize) -> Result<RawTensor> {
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
        RawTensor::concat(&expanded.iter().collect::<Vec<_>>(), dim)
    }
}
