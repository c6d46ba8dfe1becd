//! Launcher for `shaders/topk.wgsl`: the k largest or smallest elements of each row.

use std::sync::Arc;

use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext, groups_for};
use crate::shaders::Shader;
use crate::{DType, Result};

/// Values (f32) and indices (u32) of the top `k` of each of the `rows` rows of `len` elements in `src`.
pub(crate) fn topk_rows(
    ctx: &Arc<GpuContext>,
    src: &GpuBuffer,
    (rows, len): (usize, usize),
    k: usize,
    largest: bool,
) -> Result<(GpuBuffer, GpuBuffer)> {
    let op = "topk";
    let values = ctx.alloc(op, (rows * k * 4) as u64)?;
    let indices = ctx.alloc(op, (rows * k * 4) as u64)?;
    let params = Params::new().with_words(op, 0, &[rows, len, k, usize::from(largest)])?;
    let kernel = Kernel::new(Shader::TopK, "topk_rows", DType::F32);
    ctx.dispatch(
        op,
        &kernel,
        &params,
        &[(1, src), (2, &values), (3, &indices)],
        groups_for(rows),
    )?;
    Ok((values, indices))
}
