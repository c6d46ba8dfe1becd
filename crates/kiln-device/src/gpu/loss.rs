//! Launchers for `shaders/loss.wgsl`.

use std::sync::Arc;

use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, groups_for};
use crate::ops::loss::PointwiseLoss;
use crate::shaders::Shader;
use crate::{DType, Result};

/// Class labels or per-class probabilities.
pub(crate) enum Targets<'a> {
    Labels(&'a GpuBuffer),
    Probabilities(&'a GpuBuffer),
}

/// Per-row losses and the gradient of their mean. `label_error` is reported (at the next readback)
/// if a label is out of range.
pub(crate) fn cross_entropy(
    ctx: &Arc<GpuContext>,
    logits: &GpuBuffer,
    targets: Targets<'_>,
    [rows, classes]: [usize; 2],
    label_error: String,
) -> Result<(GpuBuffer, GpuBuffer)> {
    let op = "cross_entropy";
    let losses = ctx.alloc(op, (rows * 4) as u64)?;
    let grad = ctx.alloc(op, (rows * classes * 4) as u64)?;
    let (flag, code) = ctx.error_check(label_error);
    let params = Params::new()
        .with_words(op, 0, &[rows, classes])?
        .set(2, (1.0 / rows as f32).to_bits())
        .set(3, code);
    // The kernel declares both target bindings; the unused one is bound to the logits.
    let (soft, labels, probabilities) = match targets {
        Targets::Labels(labels) => (false, labels, logits),
        Targets::Probabilities(p) => (true, logits, p),
    };
    let kernel =
        Kernel::new(Shader::Loss, "cross_entropy_main", DType::F32).with("SOFT", u32::from(soft));
    ctx.dispatch(
        op,
        &kernel,
        &params,
        &[
            (1, logits),
            (2, labels),
            (3, probabilities),
            (4, &losses),
            (5, &grad),
            (6, &flag),
        ],
        rows as u64,
    )?;
    Ok((losses, grad))
}

/// Per-element losses and the gradient of their mean.
pub(crate) fn pointwise(
    ctx: &Arc<GpuContext>,
    op: &'static str,
    kind: PointwiseLoss,
    x: &GpuBuffer,
    t: &GpuBuffer,
    numel: usize,
) -> Result<(GpuBuffer, GpuBuffer)> {
    let losses = ctx.alloc(op, (numel * 4) as u64)?;
    let grad = ctx.alloc(op, (numel * 4) as u64)?;
    let params = Params::new()
        .with_words(op, 0, &[numel])?
        .set(2, (1.0 / numel as f32).to_bits());
    let entry = match kind {
        PointwiseLoss::BceWithLogits => "bce_with_logits_main",
        PointwiseLoss::Mse => "mse_main",
    };
    let kernel = Kernel::new(Shader::Loss, entry, DType::F32);
    ctx.dispatch(
        op,
        &kernel,
        &params,
        &[(1, x), (3, t), (4, &losses), (5, &grad)],
        groups_for(numel),
    )?;
    Ok((losses, grad))
}
