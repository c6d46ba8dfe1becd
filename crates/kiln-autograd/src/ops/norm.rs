//! Normalisation: layer norm, composed from elementwise and reduction kernels (its gradient follows
//! through autograd), and batch norm, one recorded op on the per-channel kernels of
//! `RawTensor::channel_moments`, `channel_grad_sums` and `channel_affine`.

use kiln_device::{BinaryOp, DType, Error, RawTensor, Result, UnaryOp};

use crate::Tensor;

/// `1 / t`, elementwise.
fn reciprocal(t: &RawTensor) -> Result<RawTensor> {
    RawTensor::ones(t.shape().clone(), DType::F32, t.device())?.binary(BinaryOp::Div, t)
}

/// Batch statistics of one batch-norm training step, for the moving averages.
pub struct BatchNormStats {
    /// The running mean after this batch (`(1 - momentum) · old + momentum · batch mean`).
    pub running_mean: RawTensor,
    /// The running variance after this batch, from the unbiased batch variance (as PyTorch).
    pub running_var: RawTensor,
}

impl Tensor {
    /// Mean and biased variance over `axes` (kept as size-1 dimensions).
    fn moments(&self, axes: &[usize]) -> Result<(Tensor, Tensor)> {
        let mut mean = self.clone();
        for &a in axes {
            mean = mean.mean(a as isize, true)?;
        }
        let centred = self.sub(&mean)?;
        let mut var = centred.mul(&centred)?;
        for &a in axes {
            var = var.mean(a as isize, true)?;
        }
        Ok((mean, var))
    }

    /// Layer normalisation over the last axis: `(x - mean) / sqrt(var + eps) · weight + bias`, with
    /// the biased variance; `weight` and `bias` are `[D]` for a last axis of `D`.
    pub fn layer_norm(&self, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
        let op = "layer_norm";
        let d = *self
            .dims()
            .last()
            .ok_or_else(|| Error::invalid(op, "needs an input of rank >= 1"))?;
        for (name, p) in [("weight", weight), ("bias", bias)] {
            if p.dims() != [d] {
                return Err(Error::invalid(
                    op,
                    format!(
                        "{name} {} must be [{d}] for input {}",
                        p.shape(),
                        self.shape()
                    ),
                ));
            }
        }
        let axis = self.dims().len() - 1;
        let (mean, var) = self.moments(&[axis])?;
        let normed = self.sub(&mean)?.div(&var.add_scalar(eps)?.sqrt()?)?;
        normed.mul(weight)?.add(bias)
    }

    /// Checks that the input is `[N, C, ..]` and each parameter `[C]`.
    fn check_batch_norm(&self, params: &[(&str, &Tensor)]) -> Result<()> {
        let op = "batch_norm";
        let dims = self.dims();
        if dims.len() < 2 {
            return Err(Error::invalid(
                op,
                format!("needs [N, C, ..] input, got {}", self.shape()),
            ));
        }
        let c = dims[1];
        for (name, p) in params {
            if p.dims() != [c] {
                return Err(Error::invalid(
                    op,
                    format!(
                        "{name} {} must be [{c}] for input {} (channels on axis 1)",
                        p.shape(),
                        self.shape()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Batch normalisation in training mode over `[N, C, ..]` (statistics per channel over every
    /// other axis, biased variance), returning the output and the updated running statistics
    /// (`momentum` is PyTorch's: the weight of the new batch; Keras's `momentum = m` is `1 - m` here).
    /// Recorded as one op: two passes over the data forward (`channel_moments`, `channel_affine`)
    /// and two backward (`channel_grad_sums`, `channel_affine`).
    pub fn batch_norm_train(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        (running_mean, running_var): (&RawTensor, &RawTensor),
        momentum: f32,
        eps: f32,
    ) -> Result<(Tensor, BatchNormStats)> {
        self.check_batch_norm(&[("weight", weight), ("bias", bias)])?;
        let c = self.dims()[1];
        let count = self.numel() / c.max(1);
        if count < 2 {
            return Err(Error::invalid(
                "batch_norm",
                format!(
                    "training needs more than one value per channel, got input {}",
                    self.shape()
                ),
            ));
        }
        let (mean, var) = self.raw().channel_moments()?;
        let inv_std = reciprocal(&var.scalar(BinaryOp::Add, eps)?.unary(UnaryOp::Sqrt)?)?;
        let out = self.channel_normalise(weight, bias, (&mean, inv_std), true)?;
        let update = |old: &RawTensor, batch: &RawTensor| -> Result<RawTensor> {
            old.scalar(BinaryOp::Mul, 1.0 - momentum)?
                .binary(BinaryOp::Add, &batch.scalar(BinaryOp::Mul, momentum)?)
        };
        let unbiased = var.scalar(BinaryOp::Mul, count as f32 / (count - 1) as f32)?;
        let stats = BatchNormStats {
            running_mean: update(running_mean, &mean)?,
            running_var: update(running_var, &unbiased)?,
        };
        Ok((out, stats))
    }

    /// Batch normalisation in inference mode: normalised by the running statistics.
    pub fn batch_norm_eval(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        (running_mean, running_var): (&RawTensor, &RawTensor),
        eps: f32,
    ) -> Result<Tensor> {
        let (mean, var) = (
            Tensor::from_raw(running_mean.clone()),
            Tensor::from_raw(running_var.clone()),
        );
        self.check_batch_norm(&[
            ("weight", weight),
            ("bias", bias),
            ("running_mean", &mean),
            ("running_var", &var),
        ])?;
        let inv_std = reciprocal(
            &running_var
                .scalar(BinaryOp::Add, eps)?
                .unary(UnaryOp::Sqrt)?,
        )?;
        self.channel_normalise(weight, bias, (running_mean, inv_std), false)
    }

    /// `(x - mean[c]) · inv_std[c] · weight[c] + bias[c]` per channel of `[N, C, ..]`, as one op.
    /// With `trains_statistics` `mean` and `inv_std` are the batch's own, so their gradient is part
    /// of the input gradient; otherwise (inference) they are constants.
    fn channel_normalise(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        (mean, inv_std): (&RawTensor, RawTensor),
        trains_statistics: bool,
    ) -> Result<Tensor> {
        let c = self.dims()[1];
        let (w, b) = (weight.raw().clone(), bias.raw());
        let scale = w.binary(BinaryOp::Mul, &inv_std)?;
        let shift = b.binary(BinaryOp::Sub, &mean.binary(BinaryOp::Mul, &scale)?)?;
        let zeros = RawTensor::zeros([c], DType::F32, self.device())?;
        let coef = RawTensor::stack(&[&scale, &zeros, &zeros, &shift], 0)?;
        let y = RawTensor::channel_affine(self.raw(), None, &coef)?;
        let (x, mean) = (self.raw().clone(), mean.clone());
        let count = (self.numel() / c.max(1)) as f32;
        Ok(Tensor::from_op(
            "batch_norm",
            y,
            &[self, weight, bias],
            move |g| {
                let (sum_dy, sum_dy_centred) = RawTensor::channel_grad_sums(g, &x, &mean)?;
                let d_weight = sum_dy_centred.binary(BinaryOp::Mul, &inv_std)?;
                let d_x = if trains_statistics {
                    // dx = w·s·(dy - Σdy/M - x̂·Σ(dy·x̂)/M), with s = 1/σ and x̂ = (x - μ)·s
                    let k1 = scale.clone();
                    let k2 = scale
                        .binary(BinaryOp::Mul, &inv_std)?
                        .binary(BinaryOp::Mul, &inv_std)?
                        .binary(BinaryOp::Mul, &sum_dy_centred)?
                        .scalar(BinaryOp::Mul, -1.0 / count)?;
                    let k3 = scale
                        .binary(BinaryOp::Mul, &sum_dy)?
                        .scalar(BinaryOp::Mul, -1.0 / count)?;
                    RawTensor::channel_affine(
                        g,
                        Some(&x),
                        &RawTensor::stack(&[&k1, &k2, &mean, &k3], 0)?,
                    )?
                } else {
                    let zeros =
                        RawTensor::zeros(scale.shape().clone(), DType::F32, scale.device())?;
                    RawTensor::channel_affine(
                        g,
                        None,
                        &RawTensor::stack(&[&scale, &zeros, &zeros, &zeros], 0)?,
                    )?
                };
                Ok(vec![Some(d_x), Some(d_weight), Some(sum_dy)])
            },
        ))
    }
}
