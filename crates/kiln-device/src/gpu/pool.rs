//! Launchers for `shaders/pool.wgsl`.

use std::sync::Arc;

use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, groups_for};
use crate::ops::pool::PoolGeometry;
use crate::shaders::Shader;
use crate::{DType, Result};

fn params(op: &'static str, g: &PoolGeometry) -> Result<Params> {
    let p = &g.p;
    Params::new().with_words(
        op,
        0,
        &[
            g.planes,
            g.h,
            g.w,
            g.oh,
            g.ow,
            p.kernel[0],
            p.kernel[1],
            p.stride[0],
            p.stride[1],
            p.padding[0],
            p.padding[1],
        ],
    )
}

fn kernel(entry: &'static str) -> Kernel {
    Kernel::new(Shader::Pool, entry, DType::F32)
}

/// Pooled values and argmax indices.
pub(crate) fn max_forward(
    ctx: &Arc<GpuContext>,
    x: &GpuBuffer,
    g: &PoolGeometry,
) -> Result<(GpuBuffer, GpuBuffer)> {
    let op = "max_pool2d";
    let n = g.planes * g.oh * g.ow;
    let (values, indices) = (
        ctx.alloc(op, (n * 4) as u64)?,
        ctx.alloc(op, (n * 4) as u64)?,
    );
    ctx.dispatch(
        op,
        &kernel("max_forward"),
        &params(op, g)?,
        &[(1, x), (3, &values), (4, &indices)],
        groups_for(n),
    )?;
    Ok((values, indices))
}

/// Input gradient of max pooling: per window when windows do not overlap (each input written at
/// most once, so no gather over covering windows), else per input element.
pub(crate) fn max_backward(
    ctx: &Arc<GpuContext>,
    dy: &GpuBuffer,
    indices: &GpuBuffer,
    g: &PoolGeometry,
) -> Result<GpuBuffer> {
    let op = "max_pool2d_backward";
    let p = &g.p;
    let n = g.planes * g.h * g.w;
    let (flag, code) = ctx.error_check(format!(
        "max_pool2d_backward: an index is outside the {} positions of a {}x{} plane \
         (pass the indices max_pool2d returned)",
        g.h * g.w,
        g.h,
        g.w
    ));
    let params = params(op, g)?.set(11, code);
    let disjoint = p.stride[0] >= p.kernel[0] && p.stride[1] >= p.kernel[1];
    if !disjoint {
        let dx = ctx.alloc(op, (n * 4) as u64)?;
        ctx.dispatch(
            op,
            &kernel("max_backward"),
            &params,
            &[(1, dy), (2, indices), (3, &dx), (5, &flag)],
            groups_for(n),
        )?;
        return Ok(dx);
    }
    // Windows that tile the image exactly write every input; otherwise the rest starts at zero.
    let covers_all = p.padding == [0, 0]
        && p.kernel == p.stride
        && g.oh * p.stride[0] == g.h
        && g.ow * p.stride[1] == g.w;
    let dx = if covers_all {
        ctx.alloc(op, (n * 4) as u64)?
    } else {
        super::copy::fill(ctx, n, DType::F32, 0.0)?
    };
    let outputs = g.planes * g.oh * g.ow;
    ctx.dispatch(
        op,
        &kernel("max_backward_windows"),
        &params,
        &[(1, dy), (2, indices), (3, &dx), (5, &flag)],
        groups_for(outputs),
    )?;
    Ok(dx)
}

/// Average pooling forward or backward (`entry`), producing `outputs` elements.
pub(crate) fn avg(
    ctx: &Arc<GpuContext>,
    op: &'static str,
    entry: &'static str,
    src: &GpuBuffer,
    g: &PoolGeometry,
    outputs: usize,
) -> Result<GpuBuffer> {
    let out = ctx.alloc(op, (outputs * 4) as u64)?;
    ctx.dispatch(
        op,
        &kernel(entry),
        &params(op, g)?,
        &[(1, src), (3, &out)],
        groups_for(outputs),
    )?;
    Ok(out)
}
