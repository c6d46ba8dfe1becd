//! Normalisation: layer norm and batch norm, composed from elementwise and reduction kernels (their
//! gradients follow through autograd).

use kiln_device::{BinaryOp, Error, RawTensor, Result};

use crate::{Tensor, no_grad};

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

    /// The channel axis (1) and the axes batch norm reduces over, checking the `[C]` parameters.
    fn batch_norm_axes(&self, params: &[(&str, &Tensor)]) -> Result<(Vec<usize>, Vec<usize>)> {
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
        let axes = (0..dims.len()).filter(|&a| a != 1).collect();
        let mut param_shape = vec![1; dims.len()];
        param_shape[1] = c;
        Ok((axes, param_shape))
    }

    /// Batch normalisation in training mode over `[N, C, ..]` (statistics per channel over every
    /// other axis, biased variance), returning the output and the updated running statistics
    /// (`momentum` is PyTorch's: the weight of the new batch; Keras's `momentum = m` is `1 - m` here).
    pub fn batch_norm_train(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        (running_mean, running_var): (&RawTensor, &RawTensor),
        momentum: f32,
        eps: f32,
    ) -> Result<(Tensor, BatchNormStats)> {
        let (axes, param_shape) = self.batch_norm_axes(&[("weight", weight), ("bias", bias)])?;
        let count: usize = axes.iter().map(|&a| self.dims()[a]).product();
        if count < 2 {
            return Err(Error::invalid(
                "batch_norm",
                format!(
                    "training needs more than one value per channel, got input {}",
                    self.shape()
                ),
            ));
        }
        let (mean, var) = self.moments(&axes)?;
        let normed = self.sub(&mean)?.div(&var.add_scalar(eps)?.sqrt()?)?;
        let out = normed
            .mul(&weight.reshape(param_shape.clone())?)?
            .add(&bias.reshape(param_shape)?)?;
        let c = self.dims()[1];
        let stats = no_grad(|| -> Result<BatchNormStats> {
            let update = |old: &RawTensor, batch: &RawTensor| -> Result<RawTensor> {
                old.scalar(BinaryOp::Mul, 1.0 - momentum)?.binary(
                    BinaryOp::Add,
                    &batch.reshape([c])?.scalar(BinaryOp::Mul, momentum)?,
                )
            };
            let unbiased = var
                .raw()
                .scalar(BinaryOp::Mul, count as f32 / (count - 1) as f32)?;
            Ok(BatchNormStats {
                running_mean: update(running_mean, mean.raw())?,
                running_var: update(running_var, &unbiased)?,
            })
        })?;
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
        let mean = Tensor::from_raw(running_mean.clone());
        let var = Tensor::from_raw(running_var.clone());
        let (_, param_shape) = self.batch_norm_axes(&[
            ("weight", weight),
            ("bias", bias),
            ("running_mean", &mean),
            ("running_var", &var),
        ])?;
        let shaped = |t: &Tensor| t.reshape(param_shape.clone());
        let scale = shaped(weight)?.div(&shaped(&var)?.add_scalar(eps)?.sqrt()?)?;
        self.sub(&shaped(&mean)?)?.mul(&scale)?.add(&shaped(bias)?)
    }
}
