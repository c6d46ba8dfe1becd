//! Launchers for `shaders/index.wgsl`: row gather (index_select / embedding) and its scatter-add.

use std::sync::Arc;

use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, copy, groups_for};
use crate::shaders::Shader;
use crate::{DType, Result};

fn params(
    op: &'static str,
    indices: usize,
    row_len: usize,
    rows: usize,
    code: u32,
) -> Result<Params> {
    Ok(Params::new()
        .with_words(op, 0, &[indices, row_len, rows])?
        .set(3, code))
}

/// Rows `indices` of the `[rows, row_len]` table `src`.
pub(crate) fn gather_rows(
    ctx: &Arc<GpuContext>,
    src: &GpuBuffer,
    indices: (&GpuBuffer, usize),
    (rows, row_len): (usize, usize),
    error: String,
) -> Result<GpuBuffer> {
    let op = "index_select";
    let out = ctx.alloc(op, (indices.1 * row_len * 4) as u64)?;
    let (flag, code) = ctx.error_check(error);
    let kernel = Kernel::new(Shader::Index, "gather_rows", DType::F32);
    let p = params(op, indices.1, row_len, rows, code)?;
    ctx.dispatch(
        op,
        &kernel,
        &p,
        &[(1, src), (2, indices.0), (3, &out), (5, &flag)],
        groups_for(indices.1 * row_len),
    )?;
    Ok(out)
}

/// A `[rows, row_len]` table of zeros with each row `i` of `grad` added into row `indices[i]`.
pub(crate) fn scatter_add_rows(
    ctx: &Arc<GpuContext>,
    grad: &GpuBuffer,
    indices: (&GpuBuffer, usize),
    (rows, row_len): (usize, usize),
    error: String,
) -> Result<GpuBuffer> {
    let op = "index_select_backward";
    let sums = copy::fill(ctx, rows * row_len, DType::F32, 0.0)?;
    let (flag, code) = ctx.error_check(error);
    let kernel = Kernel::new(Shader::Index, "scatter_add_rows", DType::F32);
    let p = params(op, indices.1, row_len, rows, code)?;
    ctx.dispatch(
        op,
        &kernel,
        &p,
        &[(1, grad), (2, indices.0), (4, &sums), (5, &flag)],
        groups_for(indices.1 * row_len),
    )?;
    Ok(sums)
}
