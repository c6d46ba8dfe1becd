//! Launchers for `shaders/reduce.wgsl`: one or two passes (long axes are split into parts, each
//! reduced by one team of threads, then the parts are reduced).

use std::sync::Arc;

use super::context::WholeBuffer;
use super::params::Params;
use super::pipelines::Kernel;
use super::teams::Teams;
use super::{GpuBuffer, GpuContext};
use crate::shaders::Shader;
use crate::{DType, ReduceOp, Result};

/// Elements each part of a split reduction holds at least.
const MIN_PART: usize = 4096;

fn code(op: ReduceOp) -> u32 {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => 0,
        ReduceOp::Max => 1,
        ReduceOp::Min => 2,
    }
}

fn pass(
    ctx: &Arc<GpuContext>,
    name: &'static str,
    op: ReduceOp,
    src: &GpuBuffer,
    [outer, axis, inner]: [usize; 3],
    parts: usize,
    scale: f32,
) -> Result<GpuBuffer> {
    let outputs = outer * inner;
    let vec4 = inner == 1 && axis.is_multiple_of(4);
    let mut per_part = axis.div_ceil(parts).max(1);
    if vec4 {
        // Whole vec4s per part (a trailing part may come out empty: it yields the identity).
        per_part = per_part.next_multiple_of(4);
    }
    let out = ctx.alloc(name, (outputs * parts * 4) as u64)?;
    let teams = Teams::for_rows(ctx, if vec4 { per_part / 4 } else { per_part });
    let params = Params::new()
        .with_words(name, 0, &[outer, axis, inner, per_part, parts])?
        .set(5, scale.to_bits())
        .with_words(name, 6, &[teams.rows_per_group, usize::from(vec4)])?;
    let kernel = Kernel::new(Shader::Reduce, "reduce_main", DType::F32).with("OP", code(op));
    ctx.dispatch(
        name,
        &teams.kernel(kernel),
        &teams.params(params),
        &[(1, src), (2, &out), (4, &WholeBuffer(src))],
        teams.workgroups(outputs * parts),
    )?;
    Ok(out)
}

/// `op` of contiguous `src` viewed as `[outer, axis, inner]`, shaped `[outer, inner]`.
pub(crate) fn reduce(
    ctx: &Arc<GpuContext>,
    name: &'static str,
    op: ReduceOp,
    src: &GpuBuffer,
    shape: [usize; 3],
) -> Result<GpuBuffer> {
    let [outer, axis, inner] = shape;
    let outputs = outer * inner;
    let final_scale = if op == ReduceOp::Mean {
        1.0 / axis as f32
    } else {
        1.0
    };
    // Enough parts (of at least MIN_PART elements) for every compute unit to have a few workgroups.
    let teams_wanted = 4 * ctx.fill_workgroups() * Teams::for_rows(ctx, MIN_PART).rows_per_group;
    let parts = if outputs >= teams_wanted {
        1
    } else {
        axis.div_ceil(MIN_PART)
            .min(teams_wanted.div_ceil(outputs.max(1)))
            .max(1)
    };
    if parts == 1 {
        return pass(ctx, name, op, src, shape, 1, final_scale);
    }
    let partial = pass(ctx, name, op, src, shape, parts, 1.0)?;
    pass(ctx, name, op, &partial, [outputs, parts, 1], 1, final_scale)
}

/// Index of the largest element along the axis, as u32, shaped `[outer, inner]`.
pub(crate) fn argmax(
    ctx: &Arc<GpuContext>,
    src: &GpuBuffer,
    [outer, axis, inner]: [usize; 3],
) -> Result<GpuBuffer> {
    let op = "argmax";
    let outputs = outer * inner;
    let out = ctx.alloc(op, (outputs * 4) as u64)?;
    let teams = Teams::for_rows(ctx, axis);
    let params = Params::new()
        .with_words(op, 0, &[outer, axis, inner, axis, 1])?
        .with_words(op, 6, &[teams.rows_per_group])?;
    let kernel = Kernel::new(Shader::Reduce, "argmax_main", DType::F32);
    ctx.dispatch(
        op,
        &teams.kernel(kernel),
        &teams.params(params),
        &[(1, src), (3, &out)],
        teams.workgroups(outputs),
    )?;
    Ok(out)
}
