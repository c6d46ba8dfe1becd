//! Per-channel statistics and affine maps of `[N, C, L]` tensors: the kernels of batch
//! normalisation (see `shaders/norm.wgsl`), so that its forward is two passes over the data and its
//! backward two more, whatever the layout of the channels.

use crate::tensor::Backend;
use crate::{DType, Error, RawTensor, Result, cpu, gpu};

/// `[N, C, L]` of a tensor with a channel axis 1 (`L` the product of the axes after it).
fn channel_dims(op: &'static str, x: &RawTensor) -> Result<[usize; 3]> {
    let dims = x.shape().dims();
    if dims.len() < 2 || x.numel() == 0 {
        return Err(Error::invalid(
            op,
            format!("expects a non-empty [N, C, ..] tensor, got {}", x.shape()),
        ));
    }
    Ok([dims[0], dims[1], dims[2..].iter().product()])
}

/// Two `[C]` rows per channel of contiguous `p` (`[N, C, L]` as `dims`): the mean and biased
/// variance, or with `(q, center)` `Σ p` and `Σ p · (q - center[c])`.
fn channel_sum_rows(
    p: &RawTensor,
    q: Option<(&RawTensor, &RawTensor)>,
    dims: [usize; 3],
) -> Result<(RawTensor, RawTensor)> {
    let both = match p.backend() {
        Backend::Cpu(cpu) => RawTensor::from_host_f32(
            cpu::norm::channel_sums(
                p.host_f32(),
                q.map(|(q, center)| (q.host_f32(), center.host_f32())),
                dims,
            ),
            [2, dims[1]],
            cpu,
        ),
        Backend::Gpu(ctx) => {
            let q = q.map(|(q, center)| (q.buffer(), center.buffer()));
            let out = gpu::norm::channel_sums(ctx, p.buffer(), q, dims)?;
            RawTensor::from_gpu(out, [2, dims[1]], DType::F32, p)
        }
    };
    Ok((
        both.narrow(0, 0, 1)?.reshape([dims[1]])?,
        both.narrow(0, 1, 1)?.reshape([dims[1]])?,
    ))
}

impl RawTensor {
    /// The mean and biased variance of each channel (axis 1) of `[N, C, ..]`, over every other axis:
    /// two `[C]` tensors, from one pass over the data.
    pub fn channel_moments(&self) -> Result<(RawTensor, RawTensor)> {
        let op = "channel_moments";
        let dims = channel_dims(op, self)?;
        self.expect_dtype(op, DType::F32, "cast to f32 first")?;
        channel_sum_rows(&self.contiguous()?, None, dims)
    }

    /// Per channel of `p` (`[N, C, ..]`): `Σ p` and `Σ p · (q - center[c])` over every axis but the
    /// channel axis (`q` shaped like `p`, `center` `[C]`): batch norm's gradient sums.
    pub fn channel_grad_sums(
        p: &RawTensor,
        q: &RawTensor,
        center: &RawTensor,
    ) -> Result<(RawTensor, RawTensor)> {
        let op = "channel_grad_sums";
        let dims = channel_dims(op, p)?;
        if q.shape() != p.shape() || center.shape().dims() != [dims[1]] {
            return Err(Error::invalid(
                op,
                format!(
                    "q {} must match p {} and center {} be [{}]",
                    q.shape(),
                    p.shape(),
                    center.shape(),
                    dims[1]
                ),
            ));
        }
        for t in [p, q, center] {
            t.expect_dtype(op, DType::F32, "cast to f32 first")?;
        }
        RawTensor::check_same_device(op, &[p, q, center])?;
        let (p, q, center) = (p.contiguous()?, q.contiguous()?, center.contiguous()?);
        channel_sum_rows(&p, Some((&q, &center)), dims)
    }

    /// `α[c]·p + β[c]·(q - μ[c]) + γ[c]` per channel of `p` (`[N, C, ..]`), with `coef` = `[4, C]`
    /// holding α, β, μ, γ; without `q` the β term is left out. Batch norm's forward is
    /// `channel_affine(x, None, [scale, 0, 0, shift])`, its input gradient one call with `q = x`.
    pub fn channel_affine(
        p: &RawTensor,
        q: Option<&RawTensor>,
        coef: &RawTensor,
    ) -> Result<RawTensor> {
        let op = "channel_affine";
        let dims = channel_dims(op, p)?;
        if q.is_some_and(|q| q.shape() != p.shape()) || coef.shape().dims() != [4, dims[1]] {
            return Err(Error::invalid(
                op,
                format!(
                    "q {:?} must match p {} and the coefficients {} be [4, {}]",
                    q.map(|q| q.shape().to_string()),
                    p.shape(),
                    coef.shape(),
                    dims[1]
                ),
            ));
        }
        for t in [p, coef].into_iter().chain(q) {
            t.expect_dtype(op, DType::F32, "cast to f32 first")?;
        }
        let mut all = vec![p, coef];
        all.extend(q);
        RawTensor::check_same_device(op, &all)?;
        let (p, coef) = (p.contiguous()?, coef.contiguous()?);
        let q = q.map(RawTensor::contiguous).transpose()?;
        Ok(match p.backend() {
            Backend::Cpu(cpu) => RawTensor::from_host_f32(
                cpu::norm::channel_affine(
                    p.host_f32(),
                    q.as_ref().map(RawTensor::host_f32),
                    coef.host_f32(),
                    dims,
                ),
                p.shape().clone(),
                cpu,
            ),
            Backend::Gpu(ctx) => {
                let out = gpu::norm::channel_affine(
                    ctx,
                    p.buffer(),
                    q.as_ref().map(RawTensor::buffer),
                    coef.buffer(),
                    dims,
                )?;
                RawTensor::from_gpu(out, p.shape().clone(), DType::F32, &p)
            }
        })
    }
}
