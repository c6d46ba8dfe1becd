//! Losses fused with their gradients: each returns the mean loss (a scalar tensor) and the gradient
//! of that mean with respect to the prediction, computed in the same pass.

use crate::tensor::Backend;
use crate::{DType, Error, RawTensor, ReduceOp, Result, Shape, cpu, gpu};

/// Which elementwise loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PointwiseLoss {
    /// Binary cross-entropy on logits.
    BceWithLogits,
    /// Squared error.
    Mse,
}

fn same_shape(op: &'static str, a: &RawTensor, b: &RawTensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::invalid(
            op,
            format!(
                "prediction {} and target {} must have the same shape",
                a.shape(),
                b.shape()
            ),
        ));
    }
    Ok(())
}

fn logits_and_rows(op: &'static str, logits: &RawTensor) -> Result<(usize, usize)> {
    match logits.shape().dims() {
        &[n, c] if c > 0 => Ok((n, c)),
        _ => Err(Error::invalid(
            op,
            format!("expects logits [N, C] with C >= 1, got {}", logits.shape()),
        )),
    }
}

fn require_f32(op: &'static str, tensors: &[&RawTensor]) -> Result<()> {
    for t in tensors {
        t.expect_dtype(
            op,
            DType::F32,
            "losses compute in f32; cast with .cast(DType::F32)",
        )?;
    }
    Ok(())
}

impl RawTensor {
    /// Softmax cross-entropy of `[N, C]` logits against `[N]` u32 class labels, averaged over N.
    /// Returns `(loss, d loss / d logits)`. A label outside `[0, C)` is an error (on the GPU it is
    /// detected in the kernel and reported by the next readback).
    pub fn cross_entropy(logits: &RawTensor, labels: &RawTensor) -> Result<(RawTensor, RawTensor)> {
        let op = "cross_entropy";
        let (n, c) = logits_and_rows(op, logits)?;
        if labels.shape().dims() != [n] {
            return Err(Error::invalid(
                op,
                format!(
                    "labels {} must be [{n}] for logits {}",
                    labels.shape(),
                    logits.shape()
                ),
            ));
        }
        require_f32(op, &[logits])?;
        labels.expect_dtype(op, DType::U32, "class labels are u32 indices")?;
        RawTensor::check_same_device(op, &[logits, labels])?;
        let (x, y) = (logits.contiguous()?, labels.contiguous()?);
        let (losses, grad) = match x.backend() {
            Backend::Cpu(cpu) => {
                let (losses, grad) = cpu::loss::cross_entropy(
                    x.host_f32(),
                    cpu::loss::Targets::Labels(y.host_u32()),
                    c,
                )
                .map_err(|label| Error::InvalidData {
                    op,
                    message: format!(
                        "label {label} is outside [0, {c}) for logits {}",
                        logits.shape()
                    ),
                })?;
                (
                    RawTensor::from_host_f32(losses, [n], cpu),
                    RawTensor::from_host_f32(grad, [n, c], cpu),
                )
            }
            Backend::Gpu(ctx) => {
                let message = format!(
                    "cross_entropy: a label is outside [0, {c}) for logits {}",
                    logits.shape()
                );
                let (losses, grad) = gpu::loss::cross_entropy(
                    ctx,
                    x.buffer(),
                    gpu::loss::Targets::Labels(y.buffer()),
                    [n, c],
                    message,
                )?;
                (
                    RawTensor::from_gpu(losses, [n], DType::F32, &x),
                    RawTensor::from_gpu(grad, [n, c], DType::F32, &x),
                )
            }
        };
        Ok((losses.reduce(ReduceOp::Mean, None, false)?, grad))
    }

    /// Softmax cross-entropy of `[N, C]` logits against `[N, C]` target probabilities (one-hot or
    /// soft), averaged over N. Returns `(loss, d loss / d logits)`.
    pub fn cross_entropy_soft(
        logits: &RawTensor,
        targets: &RawTensor,
    ) -> Result<(RawTensor, RawTensor)> {
        let op = "cross_entropy_soft";
        let (n, c) = logits_and_rows(op, logits)?;
        same_shape(op, logits, targets)?;
        require_f32(op, &[logits, targets])?;
        RawTensor::check_same_device(op, &[logits, targets])?;
        let (x, t) = (logits.contiguous()?, targets.contiguous()?);
        let (losses, grad) = match x.backend() {
            Backend::Cpu(cpu) => {
                let (losses, grad) = cpu::loss::cross_entropy(
                    x.host_f32(),
                    cpu::loss::Targets::Probabilities(t.host_f32()),
                    c,
                )
                .expect("probability targets cannot be out of range");
                (
                    RawTensor::from_host_f32(losses, [n], cpu),
                    RawTensor::from_host_f32(grad, [n, c], cpu),
                )
            }
            Backend::Gpu(ctx) => {
                let (losses, grad) = gpu::loss::cross_entropy(
                    ctx,
                    x.buffer(),
                    gpu::loss::Targets::Probabilities(t.buffer()),
                    [n, c],
                    String::new(),
                )?;
                (
                    RawTensor::from_gpu(losses, [n], DType::F32, &x),
                    RawTensor::from_gpu(grad, [n, c], DType::F32, &x),
                )
            }
        };
        Ok((losses.reduce(ReduceOp::Mean, None, false)?, grad))
    }

    /// Binary cross-entropy of logits against targets in [0, 1] (numerically stable, like
    /// `torch.nn.functional.binary_cross_entropy_with_logits`), averaged over all elements.
    pub fn bce_with_logits(
        logits: &RawTensor,
        targets: &RawTensor,
    ) -> Result<(RawTensor, RawTensor)> {
        RawTensor::pointwise_loss(
            "bce_with_logits",
            PointwiseLoss::BceWithLogits,
            logits,
            targets,
        )
    }

    /// Mean squared error between prediction and target.
    pub fn mse(prediction: &RawTensor, targets: &RawTensor) -> Result<(RawTensor, RawTensor)> {
        RawTensor::pointwise_loss("mse", PointwiseLoss::Mse, prediction, targets)
    }

    fn pointwise_loss(
        op: &'static str,
        kind: PointwiseLoss,
        prediction: &RawTensor,
        targets: &RawTensor,
    ) -> Result<(RawTensor, RawTensor)> {
        same_shape(op, prediction, targets)?;
        require_f32(op, &[prediction, targets])?;
        RawTensor::check_same_device(op, &[prediction, targets])?;
        let (x, t) = (prediction.contiguous()?, targets.contiguous()?);
        let shape: Shape = x.shape().clone();
        let (losses, grad) = match x.backend() {
            Backend::Cpu(cpu) => {
                let (losses, grad) = cpu::loss::pointwise(kind, x.host_f32(), t.host_f32());
                (
                    RawTensor::from_host_f32(losses, shape.clone(), cpu),
                    RawTensor::from_host_f32(grad, shape, cpu),
                )
            }
            Backend::Gpu(ctx) => {
                let (losses, grad) =
                    gpu::loss::pointwise(ctx, op, kind, x.buffer(), t.buffer(), shape.numel())?;
                (
                    RawTensor::from_gpu(losses, shape.clone(), DType::F32, &x),
                    RawTensor::from_gpu(grad, shape, DType::F32, &x),
                )
            }
        };
        Ok((losses.reduce(ReduceOp::Mean, None, false)?, grad))
    }
}
