//! `topk`: the k largest (or smallest) elements along the last axis and their indices.

use crate::tensor::Backend;
use crate::{DType, Error, RawTensor, Result, cpu, gpu};

impl RawTensor {
    /// The `k` largest elements along the last axis (smallest when `largest` is false), in order,
    /// as f32 (also for f16 input), and their indices (u32) along that axis: both shaped like `self`
    /// with the last axis `k`.
    /// NaN counts as the largest value; ties come out lower index first.
    pub fn topk(&self, k: usize, largest: bool) -> Result<(RawTensor, RawTensor)> {
        let op = "topk";
        let dims = self.shape().dims();
        let Some(&len) = dims.last() else {
            return Err(Error::invalid(
                op,
                "needs a tensor of rank >= 1, got a scalar",
            ));
        };
        if k == 0 || k > len {
            return Err(Error::argument(
                op,
                format!(
                    "k = {k} must be in 1..={len}, the length of the last axis of {}",
                    self.shape()
                ),
            ));
        }
        if !self.dtype().is_float() {
            return Err(Error::UnsupportedDType {
                op,
                dtype: self.dtype(),
                hint: "cast to f32 first",
            });
        }
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = k;
        let rows = self.numel() / len;
        let x = self.cast(DType::F32)?.contiguous()?;
        Ok(match x.backend() {
            Backend::Cpu(cpu) => {
                let (values, indices) = cpu::topk::topk_rows(x.host_f32(), len, k, largest);
                (
                    RawTensor::from_host_f32(values, out_dims.clone(), cpu),
                    RawTensor::from_host_u32(indices, out_dims, cpu),
                )
            }
            Backend::Gpu(ctx) => {
                let (values, indices) =
                    gpu::topk::topk_rows(ctx, x.buffer(), (rows, len), k, largest)?;
                (
                    RawTensor::from_gpu(values, out_dims.clone(), DType::F32, &x),
                    RawTensor::from_gpu(indices, out_dims, DType::U32, &x),
                )
            }
        })
    }
}
