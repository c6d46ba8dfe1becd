//! Launchers for `shaders/softmax.wgsl`: one team of threads per row, several rows per workgroup.

use std::sync::Arc;

use super::context::{Bindable, WholeBuffer};
use super::params::Params;
use super::pipelines::Kernel;
use super::teams::Teams;
use super::{GpuBuffer, GpuContext};
use crate::shaders::Shader;
use crate::{DType, Result};

/// Records `entry` over the rows of `g` with `bindings`; `rows` are the buffers the kernel reads
/// row by row (x, or y and dy), also bound whole at 4 and 5 as their vec4 views.
fn launch(
    ctx: &Arc<GpuContext>,
    op: &'static str,
    entry: &'static str,
    log: bool,
    g: [usize; 3],
    bindings: &[(u32, &GpuBuffer)],
    rows: &[&GpuBuffer],
) -> Result<()> {
    let vec4_rows = g[2] == 1 && g[1].is_multiple_of(4);
    let teams = Teams::for_rows(ctx, if vec4_rows { g[1] / 4 } else { g[1] });
    let kernel = Kernel::new(Shader::Softmax, entry, DType::F32).with("LOG", u32::from(log));
    let params = teams.params(Params::new().with_words(op, 0, &g)?.with_words(
        op,
        3,
        &[teams.rows_per_group, usize::from(vec4_rows)],
    )?);
    let views: Vec<WholeBuffer> = rows.iter().map(|&b| WholeBuffer(b)).collect();
    let mut all: Vec<(u32, &dyn Bindable)> = bindings.iter().map(|&(i, b)| (i, b as _)).collect();
    all.extend((4..).zip(views.iter().map(|v| v as &dyn Bindable)));
    ctx.dispatch(
        op,
        &teams.kernel(kernel),
        &params,
        &all,
        teams.workgroups(g[0] * g[2]),
    )
}

pub(crate) fn forward(
    ctx: &Arc<GpuContext>,
    x: &GpuBuffer,
    g: [usize; 3],
    log: bool,
) -> Result<GpuBuffer> {
    let op = if log { "log_softmax" } else { "softmax" };
    let out = ctx.alloc(op, (g.iter().product::<usize>() * 4) as u64)?;
    launch(
        ctx,
        op,
        "softmax_forward",
        log,
        g,
        &[(1, x), (3, &out)],
        &[x],
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
    launch(
        ctx,
        op,
        "softmax_backward",
        log,
        g,
        &[(1, y), (2, dy), (3, &out)],
        &[y, dy],
    )?;
    Ok(out)
}
