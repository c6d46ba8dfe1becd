//! Launchers for `shaders/norm.wgsl`: per-channel sums and affine maps of `[N, C, L]` tensors.

use std::sync::Arc;

use super::context::{Bindable, or_placeholder};
use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, groups_for};
use crate::shaders::Shader;
use crate::{DType, Result};

/// Elements one workgroup of `channel_sums_main` takes at least.
const MIN_PART: usize = 4096;

fn params(
    op: &'static str,
    [n, c, l]: [usize; 3],
    parts: usize,
    per_part: usize,
) -> Result<Params> {
    Params::new().with_words(op, 0, &[n, c, l, parts, per_part])
}

/// `[2, C]`: the mean and biased variance of each channel of `p` (`q` `None`), or `Σ p` and
/// `Σ p·(q - center)` (`q` = `(q, center)`).
pub(crate) fn channel_sums(
    ctx: &Arc<GpuContext>,
    p: &GpuBuffer,
    q: Option<(&GpuBuffer, &GpuBuffer)>,
    dims: [usize; 3],
) -> Result<GpuBuffer> {
    let op = "channel_sums";
    let [n, c, l] = dims;
    let m = n * l;
    // enough workgroups to fill the device, each with a few thousand elements at least
    let parts = (ctx.fill_workgroups() / c.max(1))
        .min(m.div_ceil(MIN_PART))
        .max(1);
    let per_part = m.div_ceil(parts);
    let mode = u32::from(q.is_some());
    let partial = ctx.alloc(op, (2 * parts * c * 4) as u64)?;
    let placeholder = ctx.placeholder();
    let (q_buf, center): (&dyn Bindable, &dyn Bindable) = match q {
        Some((q, center)) => (q, center),
        None => (&placeholder, &placeholder),
    };
    let p_params = params(op, dims, parts, per_part)?;
    ctx.dispatch(
        op,
        &Kernel::new(Shader::Norm, "channel_sums_main", DType::F32).with("MODE", mode),
        &p_params,
        &[(1, p), (2, q_buf), (3, center), (4, &partial)],
        (parts * c) as u64,
    )?;
    let out = ctx.alloc(op, (2 * c * 4) as u64)?;
    ctx.dispatch(
        op,
        &Kernel::new(Shader::Norm, "channel_sums_finish", DType::F32).with("MODE", mode),
        &p_params,
        &[(1, p), (4, &out), (5, &partial)],
        groups_for(c),
    )?;
    Ok(out)
}

/// `α[c]·p + β[c]·(q - μ[c]) + γ[c]` (the β term only with `q`) for `coef` = `[4, C]`.
pub(crate) fn channel_affine(
    ctx: &Arc<GpuContext>,
    p: &GpuBuffer,
    q: Option<&GpuBuffer>,
    coef: &GpuBuffer,
    dims: [usize; 3],
) -> Result<GpuBuffer> {
    let op = "channel_affine";
    let numel = dims.iter().product::<usize>();
    let out = ctx.alloc(op, (numel * 4) as u64)?;
    let placeholder = ctx.placeholder();
    let q_buf = or_placeholder(q, &placeholder);
    ctx.dispatch(
        op,
        &Kernel::new(Shader::Norm, "channel_affine_main", DType::F32)
            .with("MODE", u32::from(q.is_some())),
        &params(op, dims, 1, 0)?,
        &[(1, p), (2, q_buf), (3, coef), (4, &out)],
        groups_for(numel),
    )?;
    Ok(out)
}
