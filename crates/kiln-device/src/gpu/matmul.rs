//! Launcher for matmul on `shaders/gemm.wgsl` (MODE 0): strided operands, broadcast batch dimensions.

use std::sync::Arc;

use super::params::Params;
use super::pipelines::Kernel;
use super::{GpuBuffer, GpuContext};
use crate::layout::coalesce_dims;
use crate::ops::matmul::{MatmulDims, matrix_strides};
use crate::shaders::Shader;
use crate::{DType, Error, Layout, Result};

/// Output tile edge of the GEMM kernel.
pub(crate) const TILE: usize = 64;
/// Batch dimensions the kernel walks (after merging).
const MAX_BATCH_RANK: usize = 4;

/// `C = A · B` with A, B already broadcast to the batch shape; C is contiguous `[batch.., m, n]`.
pub(crate) fn matmul(
    ctx: &Arc<GpuContext>,
    (a, la): (&GpuBuffer, &Layout),
    (b, lb): (&GpuBuffer, &Layout),
    d: &MatmulDims,
) -> Result<GpuBuffer> {
    let op = "matmul";
    let batches: usize = d.batch.iter().product();
    let out = ctx.alloc(op, (batches * d.m * d.n * 4) as u64)?;
    let (a_rs, a_cs, a_bs) = matrix_strides(la);
    let (b_rs, b_cs, b_bs) = matrix_strides(lb);
    let (batch_dims, batch_strides) = coalesce_dims(&d.batch, &[a_bs, b_bs]);
    if batch_dims.len() > MAX_BATCH_RANK {
        return Err(Error::invalid(
            op,
            format!(
                "{} batch dimensions that cannot be merged; reshape the batch to at most {MAX_BATCH_RANK}",
                batch_dims.len()
            ),
        ));
    }
    let tiles_m = d.m.div_ceil(TILE);
    let tiles_n = d.n.div_ceil(TILE);
    let params = Params::new()
        .with_words(op, 0, &[d.m, d.n, d.k, batches, tiles_m, tiles_n, d.k])?
        .with_words(
            op,
            8,
            &[
                la.offset(),
                a_rs,
                a_cs,
                lb.offset(),
                b_rs,
                b_cs,
                batch_dims.len(),
            ],
        )?
        .with_words(op, 16, &batch_dims)?
        .with_words(op, 20, &batch_strides[0])?
        .with_words(op, 24, &batch_strides[1])?;
    let kernel = Kernel::new(Shader::Gemm, "gemm_main", DType::F32).with("MODE", 0);
    let groups = (batches * tiles_m * tiles_n) as u64;
    ctx.dispatch(
        op,
        &kernel,
        &params,
        &[(1, a), (2, b), (3, b), (4, &out)],
        groups,
    )?;
    Ok(out)
}
