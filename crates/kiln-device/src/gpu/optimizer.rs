//! Launchers for `shaders/optimizer.wgsl`.

use std::sync::Arc;

use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, groups_for};
use crate::shaders::Shader;
use crate::{AdamConfig, DType, Result, SgdConfig};

const DECOUPLED: u32 = 1;
const NESTEROV: u32 = 2;
const FIRST_STEP: u32 = 4;

fn floats(params: Params, start: usize, values: &[f32]) -> Params {
    values
        .iter()
        .enumerate()
        .fold(params, |p, (i, v)| p.set(start + i, v.to_bits()))
}

/// Returns the updated `[param, m, v]`.
pub(crate) fn adam(
    ctx: &Arc<GpuContext>,
    [p, g, m, v]: [&GpuBuffer; 4],
    numel: usize,
    c: &AdamConfig,
    step: u32,
) -> Result<[GpuBuffer; 3]> {
    let op = "adam_step";
    let c1 = 1.0 - c.beta1.powi(step as i32);
    let c2 = 1.0 - c.beta2.powi(step as i32);
    let params = floats(
        Params::new().with_words(op, 0, &[numel])?,
        1,
        &[c.lr, c.beta1, c.beta2, c.eps, c.weight_decay, c1, c2],
    )
    .set(8, if c.decoupled { DECOUPLED } else { 0 });
    let bytes = (numel * 4) as u64;
    let outs = [
        ctx.alloc(op, bytes)?,
        ctx.alloc(op, bytes)?,
        ctx.alloc(op, bytes)?,
    ];
    let kernel = Kernel::new(Shader::Optimizer, "adam_main", DType::F32);
    ctx.dispatch(
        op,
        &kernel,
        &params,
        &[
            (1, p),
            (2, g),
            (3, m),
            (4, v),
            (5, &outs[0]),
            (6, &outs[1]),
            (7, &outs[2]),
        ],
        groups_for(numel),
    )?;
    Ok(outs)
}

/// Returns the updated `(param, momentum buffer)`.
pub(crate) fn sgd(
    ctx: &Arc<GpuContext>,
    p: &GpuBuffer,
    g: &GpuBuffer,
    buf: Option<&GpuBuffer>,
    numel: usize,
    c: &SgdConfig,
) -> Result<(GpuBuffer, GpuBuffer)> {
    let op = "sgd_step";
    let flags = if c.nesterov { NESTEROV } else { 0 } | if buf.is_none() { FIRST_STEP } else { 0 };
    let params = floats(
        Params::new().with_words(op, 0, &[numel])?,
        1,
        &[c.lr, c.momentum, c.dampening],
    )
    .set(5, c.weight_decay.to_bits())
    .set(8, flags);
    let bytes = (numel * 4) as u64;
    let (p2, b2) = (ctx.alloc(op, bytes)?, ctx.alloc(op, bytes)?);
    let kernel = Kernel::new(Shader::Optimizer, "sgd_main", DType::F32);
    // On the first step there is no buffer yet; the kernel does not read it, the gradient stands in.
    ctx.dispatch(
        op,
        &kernel,
        &params,
        &[(1, p), (2, g), (3, buf.unwrap_or(g)), (5, &p2), (6, &b2)],
        groups_for(numel),
    )?;
    Ok((p2, b2))
}
