//! `matmul`: matrix products with numpy semantics (1-D operands promoted, batch dimensions broadcast),
//! and `linear`, a dense layer's `x · Wᵀ + b` (optionally then ReLU) in one GPU kernel. Transposed
//! operands are strided views: neither backend copies them.

use crate::tensor::Backend;
use crate::{DType, Error, Layout, RawTensor, Result, Shape, cpu, gpu};

/// The sizes of one matmul after promotion and broadcasting.
pub(crate) struct MatmulDims {
    /// Broadcast batch dimensions.
    pub batch: Vec<usize>,
    /// Rows of the output.
    pub m: usize,
    /// Columns of the output.
    pub n: usize,
    /// The shared (reduced) dimension.
    pub k: usize,
}

impl RawTensor {
    /// The matrix product `self @ rhs`, like `numpy.matmul`/`torch.matmul`: the last two dimensions
    /// multiply (`[.., M, K] @ [.., K, N] -> [.., M, N]`), leading dimensions broadcast, and a 1-D
    /// operand is a row (left) or column (right) vector whose dimension is dropped from the result.
    pub fn matmul(&self, rhs: &RawTensor) -> Result<RawTensor> {
        let op = "matmul";
        if self.shape().rank() == 0 || rhs.shape().rank() == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "operands must be at least 1-D, got {} @ {}",
                    self.shape(),
                    rhs.shape()
                ),
            ));
        }
        let a = if self.shape().rank() == 1 {
            self.unsqueeze(0)?
        } else {
            self.clone()
        };
        let b = if rhs.shape().rank() == 1 {
            rhs.unsqueeze(1)?
        } else {
            rhs.clone()
        };
        let (ad, bd) = (a.shape().dims(), b.shape().dims());
        let (m, k) = (ad[ad.len() - 2], ad[ad.len() - 1]);
        let (k2, n) = (bd[bd.len() - 2], bd[bd.len() - 1]);
        if k != k2 {
            return Err(Error::invalid(
                op,
                format!(
                    "inner dimensions differ: {} @ {} (K = {k} vs {k2}); transpose or reshape an operand",
                    self.shape(),
                    rhs.shape()
                ),
            ));
        }
        let batch = Shape::broadcast(
            op,
            &Shape::from(&ad[..ad.len() - 2]),
            &Shape::from(&bd[..bd.len() - 2]),
        )?;
        let dims = MatmulDims {
            batch: batch.dims().to_vec(),
            m,
            n,
            k,
        };
        let out_shape: Vec<usize> = dims.batch.iter().copied().chain([m, n]).collect();
        let out = RawTensor::float_op(op, &[&a, &b], |t| {
            let la = t[0].layout().broadcast_to(
                op,
                &dims
                    .batch
                    .iter()
                    .copied()
                    .chain([m, k])
                    .collect::<Vec<_>>()
                    .into(),
            )?;
            let lb = t[1].layout().broadcast_to(
                op,
                &dims
                    .batch
                    .iter()
                    .copied()
                    .chain([k, n])
                    .collect::<Vec<_>>()
                    .into(),
            )?;
            Ok(match t[0].backend() {
                Backend::Cpu(cpu) => {
                    let values = cpu::matmul::matmul(
                        (t[0].host_storage_f32(), &la),
                        (t[1].host_storage_f32(), &lb),
                        &dims,
                    );
                    RawTensor::from_host_f32(values, out_shape.clone(), cpu)
                }
                Backend::Gpu(ctx) => {
                    let buffer = gpu::matmul::matmul(
                        ctx,
                        (t[0].buffer(), &la),
                        (t[1].buffer(), &lb),
                        None,
                        false,
                        &dims,
                    )?;
                    RawTensor::from_gpu(buffer, out_shape.clone(), DType::F32, &t[0])
                }
            })
        })?;
        let rank = out.shape().rank();
        match (self.shape().rank(), rhs.shape().rank()) {
            (1, 1) => out.reshape(Shape::from(())),
            (1, _) => out.squeeze(rank - 2),
            (_, 1) => out.squeeze(rank - 1),
            _ => Ok(out),
        }
    }
}

impl RawTensor {
    /// A dense layer: `x · weightᵀ + bias` for `x` `[N, in]`, `weight` `[out, in]` (PyTorch's layout)
    /// and `bias` `[out]`, then ReLU when `relu`. On the GPU one GEMM with the bias and the ReLU
    /// applied as outputs are stored; the transposed weight is read through strides.
    pub fn linear(
        &self,
        weight: &RawTensor,
        bias: Option<&RawTensor>,
        relu: bool,
    ) -> Result<RawTensor> {
        let op = "linear";
        let (x, w) = (self.shape().dims(), weight.shape().dims());
        if x.len() != 2 || w.len() != 2 || x[1] != w[1] {
            return Err(Error::invalid(
                op,
                format!(
                    "expects x [N, in] and weight [out, in], got {} and {}",
                    self.shape(),
                    weight.shape()
                ),
            ));
        }
        if let Some(b) = bias
            && b.shape().dims() != [w[0]]
        {
            return Err(Error::invalid(
                op,
                format!("bias {} must be [{}] (one per output)", b.shape(), w[0]),
            ));
        }
        if let Backend::Cpu(cpu) = self.backend() {
            // One product with the bias and the ReLU applied to each row as it is written.
            let mut inputs = vec![self, weight];
            inputs.extend(bias);
            return RawTensor::float_op(op, &inputs, |t| {
                let (w, b) = (t[1].contiguous()?, t.get(2).map(RawTensor::contiguous));
                let b = b.transpose()?;
                let values = cpu::matmul::linear(
                    (t[0].host_storage_f32(), t[0].layout()),
                    w.host_f32(),
                    b.as_ref().map(RawTensor::host_f32),
                    relu,
                    (x[0], x[1], w.shape().dims()[0]),
                );
                Ok(RawTensor::from_host_f32(
                    values,
                    [x[0], w.shape().dims()[0]],
                    cpu,
                ))
            });
        }
        let wt = weight.transpose(0, 1)?;
        let dims = MatmulDims {
            batch: vec![],
            m: x[0],
            n: w[0],
            k: x[1],
        };
        let mut inputs = vec![self, &wt];
        inputs.extend(bias);
        RawTensor::float_op(op, &inputs, |t| {
            let Backend::Gpu(ctx) = t[0].backend() else {
                unreachable!("CPU tensors returned above")
            };
            let bias = t.get(2).map(RawTensor::contiguous).transpose()?;
            let buffer = gpu::matmul::matmul(
                ctx,
                (t[0].buffer(), t[0].layout()),
                (t[1].buffer(), t[1].layout()),
                bias.as_ref().map(RawTensor::buffer),
                relu,
                &dims,
            )?;
            Ok(RawTensor::from_gpu(
                buffer,
                [dims.m, dims.n],
                DType::F32,
                &t[0],
            ))
        })
    }
}

/// Row and column strides of the matrix part of a layout, and its batch strides.
pub(crate) fn matrix_strides(layout: &Layout) -> (usize, usize, &[usize]) {
    let s = layout.strides();
    let r = s.len();
    (s[r - 2], s[r - 1], &s[..r - 2])
}
