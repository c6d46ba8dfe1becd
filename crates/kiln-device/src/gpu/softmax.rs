//! Launchers for `shaders/softmax.wgsl`: one workgroup per row.

use std::sync::Arc;

use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext};
use crate::shaders::Shader;
use crate::{DType, Result};

fn kernel(entry: &'static str, log: bool) -> Kernel {
    Kernel::new(Shader::Softmax, entry, DType::F32).with("LOG", u32::from(log))
}

pub(crate) fn forward(
    ctx: &Arc<GpuContext>,
    x: &GpuBuffer,
    g: [usize; 3],
    log: bool,
) -> Result<GpuBuffer> {
    let op = if log { "log_softmax" } else { "softmax" };
    let out = ctx.alloc(op, (g.iter().product::<usize>() * 4) as u64)?;
    let params = Params::new().with_words(op, 0, &g)?;
    ctx.dispatch(
        op,
        &kernel("softmax_forward", log),
        &params,
        &[(1, x), (3, &out)],
        (g[0] * g[2]) as u64,
    )?;
    Ok(out)
}

pub(crate) fn backward(
    ctx: &Arc<GpuContext>,
    y: &GpuBuffer,
    dy: &GpuBuffer,
    g: [usize; 3],
    log: bool,
) -> Result<GpuBuffer> {
    let op = if log {
        "log_softmax_backward"
    } else {
        "softmax_backward"
    };
    let out = ctx.alloc(op, (g.iter().product::<usize>() * 4) as u64)?;
    let params = Params::new().with_words(op, 0, &g)?;
    ctx.dispatch(
        op,
        &kernel("softmax_backward", log),
        &params,
        &[(1, y), (2, dy), (3, &out)],
        (g[0] * g[2]) as u64,
    )?;
    Ok(out)
}
