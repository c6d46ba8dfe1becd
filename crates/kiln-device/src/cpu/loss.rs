//! CPU losses with their gradients (see `shaders/loss.wgsl` for the formulas).

use rayon::prelude::*;

use super::host_pool;
use crate::ops::loss::PointwiseLoss;

/// Class labels or per-class probabilities.
pub(crate) enum Targets<'a> {
    Labels(&'a [u32]),
    Probabilities(&'a [f32]),
}

/// Per-row losses and the gradient of their mean; `Err(label)` for a label outside `[0, classes)`.
pub(crate) fn cross_entropy(
    logits: &[f32],
    targets: Targets<'_>,
    classes: usize,
) -> Result<(Vec<f32>, Vec<f32>), u32> {
    let rows = logits.len() / classes;
    if let Targets::Labels(labels) = targets
        && let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes)
    {
        return Err(bad);
    }
    let scale = 1.0 / rows as f32;
    let mut grad = host_pool::zeros(logits.len());
    let row = |(r, g): (usize, &mut [f32])| {
        let x = &logits[r * classes..][..classes];
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + x.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
        match &targets {
            Targets::Labels(labels) => {
                let label = labels[r] as usize;
                for (j, (gj, &xj)) in g.iter_mut().zip(x).enumerate() {
                    *gj = ((xj - lse).exp() - if j == label { 1.0 } else { 0.0 }) * scale;
                }
                lse - x[label]
            }
            Targets::Probabilities(p) => {
                let t = &p[r * classes..][..classes];
                let t_sum: f32 = t.iter().sum();
                for ((gj, &xj), &tj) in g.iter_mut().zip(x).zip(t) {
                    *gj = ((xj - lse).exp() * t_sum - tj) * scale;
                }
                t_sum * lse - t.iter().zip(x).map(|(a, b)| a * b).sum::<f32>()
            }
        }
    };
    // A small batch stays on the calling thread: handing it to rayon's pool costs more.
    let losses = if logits.len() < 1 << 15 {
        host_pool::collect(rows, grad.chunks_mut(classes).enumerate().map(row))
    } else {
        host_pool::par_collect(grad.par_chunks_mut(classes).enumerate().map(row))
    };
    Ok((losses, grad))
}

/// Per-element losses and the gradient of their mean.
pub(crate) fn pointwise(kind: PointwiseLoss, x: &[f32], t: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let scale = 1.0 / x.len() as f32;
    let (mut losses, mut grads) = (host_pool::take(x.len()), host_pool::take(x.len()));
    (x.iter().zip(t))
        .map(|(&x, &t)| match kind {
            PointwiseLoss::BceWithLogits => {
                let loss = x.max(0.0) - x * t + (-x.abs()).exp().ln_1p();
                (loss, (1.0 / (1.0 + (-x).exp()) - t) * scale)
            }
            PointwiseLoss::Mse => {
                let d = x - t;
                (d * d, 2.0 * d * scale)
            }
        })
        .for_each(|(loss, grad)| {
            losses.push(loss);
            grads.push(grad);
        });
    (losses, grads)
}
